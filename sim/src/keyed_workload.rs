//! The keyed workload (`workload.kind = "keyed"`), for compacted and
//! retention-limited topics: producers send (record key, unique value)
//! pairs to the workload's partitions, `record_keys` keys per partition;
//! consumers assign themselves random partitions, poll, and now and then
//! probe the partitions' log start and end offsets (ListOffsets); after the
//! healed phase a final reader reads every partition from its log start to
//! its end. weir_jepsen::keyed checks the history: nothing committed lost
//! (a key's latest value under compaction, everything at or above the log
//! start under delete), every record read an original at its one offset, a
//! key's values in send order (no half-cleaned segment served) and a log
//! start that never goes back.
//!
//! The queue workload (workload.rs) cannot judge these topics: compaction
//! removes every value of a key but the latest, retention everything below
//! the log start, so "a later record was read, an earlier one never was"
//! is no loss here. Sends and polls are recorded as in the queue workload
//! (an error makes a send `info`, or `fail` when the producer knows nothing
//! was appended), with keyed micro-ops (weir_jepsen::history).
//!
//! Kafka record keys and values are decimal text: record key `k` of any
//! partition is the bytes of `k`, so each partition holds its own
//! `record_keys` logs (a producer names the partition; the key does not
//! choose it).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use weir::client::{ClientError, Consumer, ConsumerRecord, Producer, ProducerRecord};
use weir::env::rng::WeirRng;
use weir::env::time::{sleep, timeout, Duration};
use weir_jepsen::{CleanupPolicy, Key, KeyedRecord, MicroOp, OpF, OpType, OpValue};

use crate::ctx::{Ctx, Phase};
use crate::history::HistoryRecorder;
use crate::workload::{connect_consumer, random_keys as random_partitions, ClientEnv};

/// How long one poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Wait before retrying a client that could not connect.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(300);
/// Extra time the harness gives a send beyond delivery.timeout.ms.
const SEND_GUARD_SLACK: Duration = Duration::from_secs(5);

/// Per partition, the records of one poll in the order returned.
type KeyedReads = BTreeMap<i64, Vec<KeyedRecord>>;
/// Per partition, (log start, log end).
type Bounds = BTreeMap<Key, (i64, i64)>;

impl HistoryRecorder {
    /// One send op of several records, each with the offset its ack
    /// reported.
    fn keyed_sends(
        &mut self,
        process: i64,
        kind: OpType,
        sends: &[KeyedWrite],
        time_ns: u64,
    ) -> &mut weir_jepsen::Op {
        let mops = sends
            .iter()
            .map(|w| MicroOp::KeyedSend {
                key: Key::Int(w.partition),
                record_key: Key::Int(w.record_key),
                offset: w.offset,
                value: w.value,
                tombstone: w.tombstone,
            })
            .collect();
        self.push(process, kind, OpF::Send, OpValue::Mops(mops), time_ns)
    }

    fn keyed_poll(
        &mut self,
        process: i64,
        kind: OpType,
        reads: KeyedReads,
        time_ns: u64,
    ) -> &mut weir_jepsen::Op {
        let reads = reads.into_iter().map(|(p, r)| (Key::Int(p), r)).collect();
        let value = OpValue::Mops(vec![MicroOp::KeyedPoll(reads)]);
        self.push(process, kind, OpF::Poll, value, time_ns)
    }

    /// A probe (or, with `policy`, the final read's opening probe).
    fn bounds(
        &mut self,
        process: i64,
        kind: OpType,
        policy: Option<CleanupPolicy>,
        bounds: Bounds,
        time_ns: u64,
    ) -> &mut weir_jepsen::Op {
        let mop = match policy {
            Some(policy) => MicroOp::FinalRead { policy, bounds },
            None => MicroOp::Bounds(bounds),
        };
        self.push(process, kind, OpF::Poll, OpValue::Mops(vec![mop]), time_ns)
    }
}

/// One record a producer sends: a value, or a tombstone (a null Kafka
/// value) named by `value` in its [`TOMBSTONE_HEADER`] header.
struct KeyedWrite {
    partition: i64,
    record_key: i64,
    value: i64,
    tombstone: bool,
    /// Where its acknowledgement put it.
    offset: Option<i64>,
}

impl KeyedWrite {
    fn record(&self, topic: &str) -> ProducerRecord {
        let name = self.value.to_string();
        let record = ProducerRecord::new(topic, name.clone())
            .with_partition(self.partition as i32)
            .with_key(self.record_key.to_string());
        if self.tombstone {
            let mut record = record.with_header(TOMBSTONE_HEADER, name);
            record.value = None;
            record
        } else {
            record
        }
    }
}

/// The header naming a tombstone: its value is null, so the workload's
/// unique value travels here.
const TOMBSTONE_HEADER: &str = "weir-sim-tombstone";

fn between(rng: &mut WeirRng, r: [u64; 2]) -> Duration {
    Duration::from_millis(rng.range_u64(r[0], r[1] + 1))
}

fn err_text(e: &ClientError) -> String {
    e.to_string()
}

/// Client `index` of the run: the first `producers` produce, the rest consume.
pub async fn worker(env: ClientEnv, index: usize, seed: u64) {
    if index < env.scenario.workload.producers as usize {
        producer_loop(env, index as i64, seed).await
    } else {
        consumer_loop(env, index as i64, seed).await
    }
}

/// One producer process: pick a partition, queue a burst of
/// `records_per_send` records to it (random record keys, fresh values; with
/// linger.ms they share a batch, so the cleaner must rewrite batches that
/// lose only some records), wait for every ack, record, pause, repeat.
///
/// The burst is one op. It is `ok` when every record was acknowledged,
/// `fail` when none can have been appended, `info` otherwise, and each
/// record the broker acknowledged carries its offset whatever the op's type
/// (weir_jepsen::keyed counts such a record as acknowledged).
pub async fn producer_loop(env: ClientEnv, process: i64, seed: u64) {
    let ctx = env.ctx.clone();
    let who = format!("p{process}");
    let w = &env.scenario.workload;
    let topic = env.scenario.topic.name.clone();
    let mut rng = WeirRng::from_seed(seed);
    let guard = env.producer.delivery_timeout + SEND_GUARD_SLACK;
    let producer = loop {
        if ctx.stopping() {
            return;
        }
        match Producer::connect(&env.bootstrap, env.producer.clone()).await {
            Ok(p) => break p,
            Err(e) => {
                ctx.trace(&who, format!("connect failed: {}", err_text(&e)));
                sleep(RECONNECT_BACKOFF).await;
            }
        }
    };
    ctx.trace(&who, "connected");
    while !ctx.stopping() {
        let partition = rng.range_u64(0, w.keys as u64) as i64;
        let [least, most] = w.records_per_send;
        let n = rng.range_u64(least as u64, most as u64 + 1);
        let mut sends: Vec<KeyedWrite> = (0..n)
            .map(|_| KeyedWrite {
                partition,
                record_key: rng.range_u64(0, w.record_keys as u64) as i64,
                value: ctx.next_value(),
                tombstone: w.tombstone_probability > 0.0 && rng.chance(w.tombstone_probability),
                offset: None,
            })
            .collect();
        ctx.history(|h, t| {
            h.keyed_sends(process, OpType::Invoke, &sends, t);
        });
        let text: Vec<String> = sends
            .iter()
            .map(|s| match s.tombstone {
                false => format!("{}:{}", s.record_key, s.value),
                true => format!("{}:{}(tombstone)", s.record_key, s.value),
            })
            .collect();
        let text = format!("{partition}/[{}]", text.join(" "));
        ctx.trace(&who, format!("send {text}"));
        let mut deliveries = Vec::with_capacity(sends.len());
        for write in &sends {
            deliveries.push(producer.send(write.record(&topic)).await);
        }
        // Per record: Ok(offset), or the error and whether it is certain
        // nothing was appended (see workload.rs).
        let mut errors: Vec<(String, bool)> = Vec::new();
        for (send, delivery) in sends.iter_mut().zip(deliveries) {
            let outcome = match delivery {
                Ok(d) => match timeout(guard, d.wait_detailed()).await {
                    Ok((Ok(meta), _)) => Ok(meta.offset),
                    Ok((Err(e), maybe_written)) => Err((err_text(&e), !maybe_written)),
                    Err(_) => Err((
                        "harness: no answer within the guard time".to_string(),
                        false,
                    )),
                },
                Err(e) => Err((err_text(&e), true)),
            };
            match outcome {
                Ok(offset) => {
                    ctx.acks.fetch_add(1, Ordering::Relaxed);
                    if ctx.phase() == Phase::Healed {
                        ctx.healed_acks.fetch_add(1, Ordering::Relaxed);
                    }
                    send.offset = (offset >= 0).then_some(offset);
                }
                Err(e) => errors.push(e),
            }
        }
        let offsets: Vec<String> = sends
            .iter()
            .map(|s| s.offset.map_or("?".to_string(), |o| o.to_string()))
            .collect();
        if errors.is_empty() {
            ctx.trace(
                &who,
                format!("send {text} ok offsets {}", offsets.join(" ")),
            );
            ctx.history(|h, t| {
                h.keyed_sends(process, OpType::Ok, &sends, t);
            });
        } else {
            ctx.send_errors.fetch_add(1, Ordering::Relaxed);
            let all_refused = errors.len() == sends.len() && errors.iter().all(|(_, d)| *d);
            let kind = if all_refused {
                OpType::Fail
            } else {
                OpType::Info
            };
            let why = errors[0].0.clone();
            ctx.trace(
                &who,
                format!(
                    "send {text} {kind:?} (offsets {}): {why}",
                    offsets.join(" ")
                ),
            );
            ctx.history(|h, t| {
                h.keyed_sends(process, kind, &sends, t).error = Some(why.into());
            });
        }
        sleep(between(&mut rng, w.send_interval_ms)).await;
    }
}

/// A polled record as (partition, record) or why it is not one the
/// workload wrote (decimal key and value, or a null value with a decimal
/// tombstone name).
fn as_record(r: &ConsumerRecord) -> Result<(i64, KeyedRecord), String> {
    let decimal = |b: &Option<bytes::Bytes>, what: &str| {
        b.as_ref()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|t| t.parse::<i64>().ok())
            .ok_or_else(|| {
                format!(
                    "record at {}-{} has a {what} that is not a workload {what}: {b:?}",
                    r.partition, r.offset
                )
            })
    };
    let record_key = decimal(&r.key, "key")?;
    // A tombstone's name is in its header; a live record's is its value.
    let tombstone = r.value.is_none();
    let value = if tombstone {
        let name = r
            .headers
            .iter()
            .find(|(k, _)| k == TOMBSTONE_HEADER)
            .and_then(|(_, v)| v.clone());
        decimal(&name, "tombstone name")?
    } else {
        decimal(&r.value, "value")?
    };
    Ok((
        r.partition as i64,
        KeyedRecord {
            offset: r.offset,
            record_key: Key::Int(record_key),
            value,
            tombstone,
        },
    ))
}

fn as_reads(records: &[ConsumerRecord]) -> Result<KeyedReads, String> {
    let mut out = KeyedReads::new();
    for r in records {
        let (p, rec) = as_record(r)?;
        out.entry(p).or_default().push(rec);
    }
    Ok(out)
}

fn summarize(reads: &KeyedReads) -> String {
    let parts: Vec<String> = reads
        .iter()
        .map(|(p, rs)| {
            let recs: Vec<String> = rs
                .iter()
                .map(|r| match r.tombstone {
                    false => format!("{}:{}={}", r.offset, r.record_key, r.value),
                    true => format!("{}:{}=tombstone({})", r.offset, r.record_key, r.value),
                })
                .collect();
            format!("{p}=[{}]", recs.join(" "))
        })
        .collect();
    parts.join(" ")
}

/// Poll once, recording the op. Err ends the consumer process.
async fn poll_once(
    ctx: &Ctx,
    who: &str,
    process: i64,
    consumer: &mut Consumer,
) -> Result<(), String> {
    ctx.history(|h, t| {
        h.keyed_poll(process, OpType::Invoke, KeyedReads::new(), t);
    });
    let result = match consumer.poll(POLL_WAIT).await {
        Ok(records) => as_reads(&records).inspect_err(|e| {
            ctx.garbage.fetch_add(1, Ordering::Relaxed);
            ctx.trace(who, format!("GARBAGE: {e}"));
        }),
        Err(e) => Err(err_text(&e)),
    };
    ctx.polls.fetch_add(1, Ordering::Relaxed);
    match result {
        Ok(reads) => {
            if reads.is_empty() {
                ctx.trace(who, "poll: nothing");
            } else {
                ctx.trace(who, format!("poll: {}", summarize(&reads)));
            }
            ctx.history(|h, t| {
                h.keyed_poll(process, OpType::Ok, reads, t);
            });
            Ok(())
        }
        Err(e) => {
            ctx.trace(who, format!("poll info: {e}"));
            let why = e.clone();
            ctx.history(|h, t| {
                h.keyed_poll(process, OpType::Info, KeyedReads::new(), t)
                    .error = Some(why.into());
            });
            Err(e)
        }
    }
}

/// Ask for the log start and end of `partitions`, recording the op (with
/// `policy`: the final read's opening probe).
async fn probe(
    ctx: &Ctx,
    who: &str,
    process: i64,
    consumer: &Consumer,
    env: &ClientEnv,
    partitions: &[i64],
    policy: Option<CleanupPolicy>,
) -> Result<Bounds, String> {
    let tps: Vec<_> = partitions
        .iter()
        .map(|p| (env.scenario.topic.name.clone(), *p as i32))
        .collect();
    ctx.history(|h, t| {
        h.bounds(process, OpType::Invoke, policy, Bounds::new(), t);
    });
    let result = async {
        let starts = consumer.beginning_offsets(&tps).await?;
        let ends = consumer.end_offsets(&tps).await?;
        Ok::<_, ClientError>((starts, ends))
    }
    .await;
    match result {
        Ok((starts, ends)) => {
            let bounds: Bounds = tps
                .iter()
                .map(|tp| {
                    let start = starts.get(tp).copied().unwrap_or(-1);
                    let end = ends.get(tp).copied().unwrap_or(-1);
                    (Key::Int(tp.1 as i64), (start, end))
                })
                .collect();
            let text: Vec<String> = bounds
                .iter()
                .map(|(p, (s, e))| format!("{p}:[{s},{e})"))
                .collect();
            ctx.trace(who, format!("bounds {}", text.join(" ")));
            let recorded = bounds.clone();
            ctx.history(|h, t| {
                h.bounds(process, OpType::Ok, policy, recorded, t);
            });
            Ok(bounds)
        }
        Err(e) => {
            let why = err_text(&e);
            ctx.trace(who, format!("bounds info: {why}"));
            let recorded = why.clone();
            ctx.history(|h, t| {
                h.bounds(process, OpType::Info, policy, Bounds::new(), t)
                    .error = Some(recorded.into());
            });
            Err(why)
        }
    }
}

/// One consumer worker: assign, poll, sometimes probe, sometimes reassign.
/// A failed poll or probe retires the process; the worker continues as a
/// fresh one.
pub async fn consumer_loop(env: ClientEnv, first_process: i64, seed: u64) {
    let ctx = env.ctx.clone();
    let w = &env.scenario.workload;
    let mut rng = WeirRng::from_seed(seed);
    let mut process = first_process;
    let mut consumer: Option<(Consumer, Vec<i64>)> = None;
    while !ctx.stopping() {
        let who = format!("c{process}");
        let reassign = rng.chance(w.reassign_probability);
        let probing = rng.chance(w.probe_probability);
        if consumer.is_none() {
            match connect_consumer(&env, &who).await {
                Some(c) => consumer = Some((c, Vec::new())),
                None => {
                    sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            }
        }
        let (c, assigned) = consumer.as_mut().expect("connected above");
        if assigned.is_empty() || reassign {
            *assigned = random_partitions(&mut rng, w.keys);
            let tps: Vec<_> = assigned
                .iter()
                .map(|p| (env.scenario.topic.name.clone(), *p as i32))
                .collect();
            c.assign(&tps);
            let keys = assigned.clone();
            ctx.history(|h, t| h.assign(process, &keys, t));
            ctx.trace(&who, format!("assign {keys:?}"));
        }
        let ok = if probing {
            probe(&ctx, &who, process, c, &env, assigned, None)
                .await
                .is_ok()
        } else {
            poll_once(&ctx, &who, process, c).await.is_ok()
        };
        if !ok {
            consumer = None;
            process = ctx.fresh_process();
        }
        sleep(between(&mut rng, w.poll_interval_ms)).await;
    }
}

/// After the healed phase: a fresh process states the topic's cleanup
/// policy and the bounds it will read between (the `final-read` op), reads
/// every partition from its log start until it reaches the end it saw, then
/// probes once more (a log start that moved meanwhile excuses what it
/// passed). True when it got there within `final_read_s` (liveness).
pub async fn final_read(env: ClientEnv) -> bool {
    let ctx = env.ctx.clone();
    let w = &env.scenario.workload;
    let partitions: Vec<i64> = (0..w.keys as i64).collect();
    let topic = env.scenario.topic.name.clone();
    let tps: Vec<_> = partitions
        .iter()
        .map(|p| (topic.clone(), *p as i32))
        .collect();
    let policy = CleanupPolicy::parse(&env.scenario.cleanup_policy())
        .expect("scenario validation checked the cleanup policy");
    let budget = Duration::from_secs(w.final_read_s);
    let attempt = async {
        loop {
            let process = ctx.fresh_process();
            let who = format!("final{process}");
            let Some(mut c) = connect_consumer(&env, &who).await else {
                sleep(RECONNECT_BACKOFF).await;
                continue;
            };
            c.assign(&tps);
            ctx.history(|h, t| h.assign(process, &partitions, t));
            let bounds = match probe(&ctx, &who, process, &c, &env, &partitions, Some(policy)).await
            {
                Ok(b) => b,
                Err(_) => {
                    sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            };
            let mut seek_failed = false;
            for tp in &tps {
                let start = bounds.get(&Key::Int(tp.1 as i64)).map_or(0, |b| b.0);
                if let Err(e) = c.seek(tp, start.max(0)) {
                    ctx.trace(&who, format!("seek failed: {}", err_text(&e)));
                    seek_failed = true;
                }
            }
            if seek_failed {
                continue;
            }
            ctx.trace(&who, format!("final read ({policy}) of {bounds:?}"));
            loop {
                let done = tps.iter().all(|tp| {
                    let end = bounds.get(&Key::Int(tp.1 as i64)).map_or(0, |b| b.1);
                    c.position(tp).unwrap_or(0) >= end
                });
                if done {
                    // Best effort: without it the opening start stands.
                    let _ = probe(&ctx, &who, process, &c, &env, &partitions, None).await;
                    ctx.trace(&who, "final read complete");
                    return;
                }
                if poll_once(&ctx, &who, process, &mut c).await.is_err() {
                    break;
                }
            }
        }
    };
    timeout(budget, attempt).await.is_ok()
}

//! The Jepsen Kafka queue workload over Weir's real client: producers send
//! unique integers to keys (key k is partition k), consumers assign
//! themselves random subsets of keys and poll; a final reader then reads
//! every partition from the start to its end. Every operation goes into the
//! history (weir-jepsen's format) and the trace.
//!
//! A send that errs or times out is `info` (it may or may not have
//! happened: the producer cannot know whether the broker appended the batch
//! before the connection broke), unless the producer knows every attempt
//! was refused before the append (`DeliveryFuture::wait_detailed`): then it
//! is `fail`, and a consumer that reads its value shows G1a.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use weir::client::admin::NewTopic;
use weir::client::{
    Admin, ClientError, Consumer, ConsumerConfig, ConsumerRecord, Producer, ProducerConfig,
    ProducerRecord,
};
use weir::env::rng::WeirRng;
use weir::env::time::{sleep, timeout, Duration};

use crate::ctx::{Ctx, Phase};
use crate::scenario::{Scenario, WorkloadSpec};

/// How long one poll waits for records.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// Wait before retrying a client that could not connect.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(300);
/// Kafka's TOPIC_ALREADY_EXISTS: a retried CreateTopics may meet its own topic.
const TOPIC_ALREADY_EXISTS: i16 = 36;
/// Extra time the harness gives a send beyond delivery.timeout.ms before it
/// calls the send indeterminate itself (a client bug must not hang a run).
const SEND_GUARD_SLACK: Duration = Duration::from_secs(5);

pub fn producer_config(w: &WorkloadSpec) -> anyhow::Result<ProducerConfig> {
    let mut cfg = ProducerConfig::default();
    let mut set = |k: &str, v: &str| {
        cfg.set(k, v)
            .map_err(|e| anyhow::anyhow!("producer property {k}={v}: {e}"))
    };
    set("acks", &w.acks)?;
    set(
        "enable.idempotence",
        if w.idempotence { "true" } else { "false" },
    )?;
    set("linger.ms", "0")?;
    set("request.timeout.ms", "2000")?;
    set("delivery.timeout.ms", "8000")?;
    set("retry.backoff.ms", "100")?;
    for (k, v) in &w.producer {
        set(k, v)?;
    }
    cfg.allow_auto_topic_creation = false;
    cfg.client_id = "jepsen-producer".to_string();
    Ok(cfg)
}

pub fn consumer_config(w: &WorkloadSpec) -> anyhow::Result<ConsumerConfig> {
    let mut cfg = ConsumerConfig::default();
    let mut set = |k: &str, v: &str| {
        cfg.set(k, v)
            .map_err(|e| anyhow::anyhow!("consumer property {k}={v}: {e}"))
    };
    set("auto.offset.reset", "earliest")?;
    if w.transactional {
        set("isolation.level", "read_committed")?;
    }
    set("fetch.max.wait.ms", "100")?;
    set("request.timeout.ms", "2000")?;
    set("retry.backoff.ms", "100")?;
    for (k, v) in &w.consumer {
        set(k, v)?;
    }
    cfg.client_id = "jepsen-consumer".to_string();
    Ok(cfg)
}

/// Everything one client process needs, cloned into its node's task.
#[derive(Clone)]
pub struct ClientEnv {
    pub ctx: Arc<Ctx>,
    pub scenario: Arc<Scenario>,
    pub bootstrap: String,
    pub producer: ProducerConfig,
    pub consumer: ConsumerConfig,
}

impl ClientEnv {
    fn topic(&self) -> &str {
        &self.scenario.topic.name
    }

    fn tp(&self, key: i64) -> (String, i32) {
        (self.topic().to_string(), key as i32)
    }
}

pub(crate) fn between(rng: &mut WeirRng, r: [u64; 2]) -> Duration {
    Duration::from_millis(rng.range_u64(r[0], r[1] + 1))
}

fn err_text(e: &ClientError) -> String {
    e.to_string()
}

/// One producer process: send, wait for the ack, record, pause, repeat.
pub async fn producer_loop(env: ClientEnv, process: i64, seed: u64) {
    if env.scenario.workload.transactional {
        return txn_producer_loop(env, process, seed).await;
    }
    let ctx = env.ctx.clone();
    let who = format!("p{process}");
    let w = &env.scenario.workload;
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
        let key = rng.range_u64(0, w.keys as u64) as i64;
        let value = ctx.next_value();
        ctx.history(|h, t| h.send_invoke(process, key, value, t));
        ctx.trace(&who, format!("send {key}:{value}"));
        let record = ProducerRecord::new(env.topic().to_string(), value.to_string())
            .with_partition(key as i32)
            .with_key(key.to_string());
        // `definite`: the producer knows no attempt can have been appended
        // (every one refused before the append, or none sent), so the send
        // is a `fail` and reading its value would be G1a; otherwise `info`.
        let (result, definite) = match producer.send(record).await {
            Ok(delivery) => match timeout(guard, delivery.wait_detailed()).await {
                Ok((Ok(meta), _)) => (Ok(meta.offset), false),
                Ok((Err(e), maybe_written)) => (Err(err_text(&e)), !maybe_written),
                Err(_) => (
                    Err("harness: no answer within the guard time".to_string()),
                    false,
                ),
            },
            // Refused before it was queued: never sent.
            Err(e) => (Err(err_text(&e)), true),
        };
        match &result {
            Ok(offset) => {
                ctx.acks.fetch_add(1, Ordering::Relaxed);
                if ctx.phase() == Phase::Healed {
                    ctx.healed_acks.fetch_add(1, Ordering::Relaxed);
                }
                ctx.trace(&who, format!("send {key}:{value} ok offset {offset}"));
            }
            Err(e) => {
                ctx.send_errors.fetch_add(1, Ordering::Relaxed);
                let kind = if definite { "fail" } else { "info" };
                ctx.trace(&who, format!("send {key}:{value} {kind}: {e}"));
            }
        }
        match result {
            Err(why) if definite => ctx.history(|h, t| h.send_failed(process, key, value, why, t)),
            result => ctx.history(|h, t| h.send_complete(process, key, value, result, t)),
        }
        sleep(between(&mut rng, w.send_interval_ms)).await;
    }
}

/// Records of one poll as `key -> [(offset, value)]`, in the order returned.
pub(crate) fn as_reads(
    records: &[ConsumerRecord],
) -> Result<BTreeMap<i64, Vec<(i64, i64)>>, String> {
    let mut out: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for r in records {
        let text = r
            .value
            .as_ref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .ok_or_else(|| format!("record at {}-{} has no utf-8 value", r.partition, r.offset))?;
        let value: i64 = text.parse().map_err(|_| {
            format!(
                "record at {}-{} holds '{text}', not a workload value",
                r.partition, r.offset
            )
        })?;
        out.entry(r.partition as i64)
            .or_default()
            .push((r.offset, value));
    }
    Ok(out)
}

pub(crate) fn summarize(reads: &BTreeMap<i64, Vec<(i64, i64)>>) -> String {
    let parts: Vec<String> = reads
        .iter()
        .map(|(k, rs)| {
            let vals: Vec<String> = rs.iter().map(|(o, v)| format!("{o}:{v}")).collect();
            format!("{k}=[{}]", vals.join(" "))
        })
        .collect();
    parts.join(" ")
}

/// Poll once, recording the op. Returns the reads, or the error (the caller
/// then retires the consumer and continues as a new process).
async fn poll_once(
    ctx: &Ctx,
    who: &str,
    process: i64,
    consumer: &mut Consumer,
) -> Result<BTreeMap<i64, Vec<(i64, i64)>>, String> {
    ctx.history(|h, t| h.poll_invoke(process, t));
    let result = match consumer.poll(POLL_WAIT).await {
        Ok(records) => as_reads(&records).inspect_err(|e| {
            ctx.garbage.fetch_add(1, Ordering::Relaxed);
            ctx.trace(who, format!("GARBAGE: {e}"));
        }),
        Err(e) => Err(err_text(&e)),
    };
    ctx.polls.fetch_add(1, Ordering::Relaxed);
    match &result {
        Ok(reads) if reads.is_empty() => ctx.trace(who, "poll: nothing"),
        Ok(reads) => ctx.trace(who, format!("poll: {}", summarize(reads))),
        Err(e) => ctx.trace(who, format!("poll info: {e}")),
    }
    let recorded = result.clone();
    ctx.history(|h, t| h.poll_complete(process, recorded, t));
    result
}

/// A random non-empty half (on average) of `0..keys`.
pub(crate) fn random_keys(rng: &mut WeirRng, keys: u32) -> Vec<i64> {
    let mut chosen: Vec<i64> = (0..keys as i64).filter(|_| rng.chance(0.5)).collect();
    if chosen.is_empty() {
        chosen.push(rng.range_u64(0, keys as u64) as i64);
    }
    chosen
}

pub(crate) async fn connect_consumer(env: &ClientEnv, who: &str) -> Option<Consumer> {
    match Consumer::connect(&env.bootstrap, env.consumer.clone()).await {
        Ok(c) => Some(c),
        Err(e) => {
            env.ctx
                .trace(who, format!("connect failed: {}", err_text(&e)));
            None
        }
    }
}

/// One consumer worker: assign, poll, sometimes reassign. A failed poll
/// retires the process; the worker continues as a fresh one.
pub async fn consumer_loop(env: ClientEnv, first_process: i64, seed: u64) {
    let ctx = env.ctx.clone();
    let w = &env.scenario.workload;
    let mut rng = WeirRng::from_seed(seed);
    let mut process = first_process;
    let mut consumer: Option<Consumer> = None;
    while !ctx.stopping() {
        let who = format!("c{process}");
        let reassign = rng.chance(w.reassign_probability);
        if consumer.is_none() {
            consumer = connect_consumer(&env, &who).await;
            if consumer.is_none() {
                sleep(RECONNECT_BACKOFF).await;
                continue;
            }
        }
        let c = consumer.as_mut().expect("connected above");
        if c.assignment().is_empty() || reassign {
            let keys = random_keys(&mut rng, w.keys);
            let tps: Vec<_> = keys.iter().map(|k| env.tp(*k)).collect();
            c.assign(&tps);
            ctx.history(|h, t| h.assign(process, &keys, t));
            ctx.trace(&who, format!("assign {keys:?}"));
        }
        if poll_once(&ctx, &who, process, c).await.is_err() {
            consumer = None;
            process = ctx.fresh_process();
        }
        sleep(between(&mut rng, w.poll_interval_ms)).await;
    }
}

/// After the healed phase: a fresh process reads every key from the start
/// until it reaches the end offsets it saw when it began. True when it got
/// there within `final_read_s` (liveness).
pub async fn final_read(env: ClientEnv) -> bool {
    let ctx = env.ctx.clone();
    let w = &env.scenario.workload;
    let keys: Vec<i64> = (0..w.keys as i64).collect();
    let tps: Vec<_> = keys.iter().map(|k| env.tp(*k)).collect();
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
            ctx.history(|h, t| h.assign(process, &keys, t));
            let ends = match c.end_offsets(&tps).await {
                Ok(ends) => ends,
                Err(e) => {
                    ctx.trace(&who, format!("end offsets failed: {}", err_text(&e)));
                    sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            };
            let starts = match c.beginning_offsets(&tps).await {
                Ok(s) => s,
                Err(e) => {
                    ctx.trace(&who, format!("start offsets failed: {}", err_text(&e)));
                    sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
            };
            let mut seek_failed = false;
            for tp in &tps {
                if let Err(e) = c.seek(tp, starts.get(tp).copied().unwrap_or(0)) {
                    ctx.trace(&who, format!("seek failed: {}", err_text(&e)));
                    seek_failed = true;
                }
            }
            if seek_failed {
                continue;
            }
            ctx.trace(&who, format!("final read from {starts:?} to {ends:?}"));
            loop {
                let done = tps
                    .iter()
                    .all(|tp| c.position(tp).unwrap_or(0) >= ends.get(tp).copied().unwrap_or(0));
                if done {
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

/// A transactional producer, (re)initialized: a fatal error (fenced) makes
/// a new one with the same transactional id, which fences the old.
async fn txn_producer(env: &ClientEnv, who: &str, process: i64) -> Option<Producer> {
    let ctx = &env.ctx;
    let mut cfg = env.producer.clone();
    cfg.transactional_id = Some(format!("jepsen-p{process}"));
    cfg.enable_idempotence = Some(true);
    loop {
        if ctx.stopping() {
            return None;
        }
        match Producer::connect(&env.bootstrap, cfg.clone()).await {
            Ok(p) => match p.init_transactions().await {
                Ok(()) => return Some(p),
                Err(e) => ctx.trace(who, format!("init_transactions failed: {}", err_text(&e))),
            },
            Err(e) => ctx.trace(who, format!("connect failed: {}", err_text(&e))),
        }
        sleep(RECONNECT_BACKOFF).await;
    }
}

/// How a transaction ended, for the history.
enum TxnEnd {
    Committed,
    /// Certainly not committed (aborted, or EndTxn(commit) never sent).
    NotCommitted(String),
    /// EndTxn(commit) may have reached the coordinator.
    Unknown(String),
}

/// One transactional producer process: begin, send to several keys, commit
/// (or abort on purpose), record one `txn` op, pause, repeat.
async fn txn_producer_loop(env: ClientEnv, process: i64, seed: u64) {
    use weir::client::producer::txn::TxnState;
    use weir_jepsen::OpType;
    let ctx = env.ctx.clone();
    let who = format!("p{process}");
    let w = &env.scenario.workload;
    let mut rng = WeirRng::from_seed(seed);
    let guard = env.producer.delivery_timeout + SEND_GUARD_SLACK;
    let Some(mut producer) = txn_producer(&env, &who, process).await else {
        return;
    };
    ctx.trace(&who, "connected");
    while !ctx.stopping() {
        let n = rng.range_u64(w.txn_sends[0] as u64, w.txn_sends[1].max(1) as u64 + 1);
        let sends: Vec<(i64, i64)> = (0..n)
            .map(|_| (rng.range_u64(0, w.keys as u64) as i64, ctx.next_value()))
            .collect();
        let abort = rng.chance(w.abort_probability);
        if let Err(e) = producer.begin_transaction() {
            ctx.trace(&who, format!("begin failed: {}", err_text(&e)));
            match txn_producer(&env, &who, process).await {
                Some(p) => producer = p,
                None => return,
            }
            continue;
        }
        ctx.history(|h, t| h.txn_invoke(process, &sends, t));
        ctx.trace(&who, format!("txn {sends:?}"));
        let mut deliveries = Vec::new();
        let mut send_error = None;
        for (key, value) in &sends {
            let record = ProducerRecord::new(env.topic().to_string(), value.to_string())
                .with_partition(*key as i32)
                .with_key(key.to_string());
            match producer.send(record).await {
                Ok(d) => deliveries.push(Some(d)),
                Err(e) => {
                    send_error = Some(err_text(&e));
                    deliveries.push(None);
                    break;
                }
            }
        }
        let end = if abort || send_error.is_some() {
            let why = send_error
                .clone()
                .unwrap_or_else(|| "aborted on purpose".to_string());
            if let Err(e) = producer.abort_transaction().await {
                ctx.trace(&who, format!("abort failed: {}", err_text(&e)));
            }
            TxnEnd::NotCommitted(why)
        } else {
            match timeout(guard, producer.commit_transaction()).await {
                Ok(Ok(())) => TxnEnd::Committed,
                Ok(Err(e)) => match producer.transaction_state() {
                    // A batch failed: EndTxn(commit) was never sent.
                    Some(TxnState::Abortable(_)) => {
                        if let Err(e) = producer.abort_transaction().await {
                            ctx.trace(&who, format!("abort failed: {}", err_text(&e)));
                        }
                        TxnEnd::NotCommitted(err_text(&e))
                    }
                    _ => TxnEnd::Unknown(err_text(&e)),
                },
                Err(_) => TxnEnd::Unknown("harness: commit not answered in time".to_string()),
            }
        };
        // Offsets of acknowledged sends (all of them once committed).
        let mut done = Vec::new();
        for ((key, value), d) in sends.iter().zip(
            deliveries
                .into_iter()
                .chain(std::iter::repeat_with(|| None)),
        ) {
            let offset = match d {
                Some(d) if d.is_done() => match d.await {
                    Ok(meta) => Some(meta.offset),
                    Err(_) => None,
                },
                _ => None,
            };
            done.push((*key, offset, *value));
        }
        let (kind, error) = match &end {
            TxnEnd::Committed => {
                ctx.acks.fetch_add(1, Ordering::Relaxed);
                if ctx.phase() == Phase::Healed {
                    ctx.healed_acks.fetch_add(1, Ordering::Relaxed);
                }
                (OpType::Ok, None)
            }
            TxnEnd::NotCommitted(why) => (OpType::Fail, Some(why.clone())),
            TxnEnd::Unknown(why) => {
                ctx.send_errors.fetch_add(1, Ordering::Relaxed);
                (OpType::Info, Some(why.clone()))
            }
        };
        // A failed txn's offsets are dropped: its records are not in the
        // committed log, so they must not enter the version order.
        if kind == OpType::Fail {
            for d in done.iter_mut() {
                d.1 = None;
            }
        }
        ctx.trace(&who, format!("txn {kind:?} {done:?} {error:?}"));
        ctx.history(|h, t| h.txn_complete(process, kind, &done, error, t));
        if matches!(end, TxnEnd::Unknown(_))
            || matches!(
                producer.transaction_state(),
                Some(TxnState::Fatal(_)) | Some(TxnState::Abortable(_))
            )
        {
            // Unknown outcome or unusable producer: start over, which fences
            // the old epoch and lets the coordinator finish the transaction.
            match txn_producer(&env, &who, process).await {
                Some(p) => producer = p,
                None => return,
            }
        }
        sleep(between(&mut rng, w.send_interval_ms)).await;
    }
}

/// Create the workload's topic as the scenario describes it, retrying
/// until it exists (the cluster may still be electing its controller).
pub async fn create_topic(env: ClientEnv, s: Arc<Scenario>) {
    let ctx = env.ctx.clone();
    let mut configs: Vec<(String, String)> = s
        .topic
        .configs
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    configs.push((
        "min.insync.replicas".to_string(),
        s.topic.min_insync_replicas.to_string(),
    ));
    if s.topic.unclean {
        configs.push((
            "unclean.leader.election.enable".to_string(),
            "true".to_string(),
        ));
    }
    loop {
        ctx.trace("setup", format!("admin connecting to {}", env.bootstrap));
        let admin = match Admin::connect(&env.bootstrap).await {
            Ok(a) => a,
            Err(e) => {
                ctx.trace("setup", format!("admin connect failed: {e}"));
                sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        ctx.trace("setup", "admin connected; creating the topic");
        let topic = NewTopic {
            name: s.topic.name.clone(),
            partitions: s.topic.partitions as i32,
            replication_factor: s.topic.replication_factor,
            configs: configs.clone(),
        };
        match admin.create_topic(topic).await {
            Ok(()) => break,
            Err(e) if e.code() == Some(TOPIC_ALREADY_EXISTS) => break,
            Err(e) => {
                ctx.trace("setup", format!("create topic failed: {e}"));
                sleep(Duration::from_millis(200)).await;
            }
        }
    }
    ctx.trace("setup", format!("topic {} created", s.topic.name));
}

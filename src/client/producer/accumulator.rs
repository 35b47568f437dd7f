//! The record accumulator: per-partition queues of batches, and the rule
//! deciding which batches are ready to send. Pure logic under one lock, no
//! I/O and no clock reads (time comes in as `now`), so it is unit-tested
//! directly.
//!
//! **Invariants:**
//! - a partition queue is sorted by `order` (creation order), including
//!   batches put back for retry, so retries never reorder a partition;
//! - a batch gets its idempotent sequence once, at its first drain, in
//!   queue order; retries resend the same sequence;
//! - at most `max_in_flight` batches of one partition are in flight.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};

use kafka_protocol::records::Record;
use tokio::sync::Notify;

use crate::client::error::ClientError;
use crate::client::partitioner::StickyPartitioner;
use crate::env::time::{Duration, Instant};

/// How a batch ended; shared by every record future of the batch.
#[derive(Debug, Clone)]
pub struct BatchDone {
    /// Offset of the batch's first record; -1 with acks=0.
    pub base_offset: i64,
    /// Broker append time when the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
    pub completed_at: Instant,
}

#[derive(Debug, Default)]
pub struct BatchOutcome {
    result: OnceLock<Result<BatchDone, ClientError>>,
    notify: Notify,
}

impl BatchOutcome {
    /// Set the result once; later calls are ignored (a batch completes once).
    pub fn complete(&self, result: Result<BatchDone, ClientError>) {
        let _ = self.result.set(result);
        self.notify.notify_waiters();
    }

    pub fn get(&self) -> Option<&Result<BatchDone, ClientError>> {
        self.result.get()
    }

    pub async fn wait(&self) -> Result<BatchDone, ClientError> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.result.get() {
                return r.clone();
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
pub struct ProducerBatch {
    pub topic: Arc<str>,
    pub partition: i32,
    pub records: Vec<Record>,
    pub bytes: usize,
    /// Creation order within the partition.
    pub order: u64,
    pub created: Instant,
    /// Fail the batch if it is not delivered by then.
    pub deadline: Instant,
    pub outcome: Arc<BatchOutcome>,
    pub base_sequence: Option<i32>,
    pub attempts: u32,
    pub retry_at: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct PartitionQueue {
    pub batches: VecDeque<ProducerBatch>,
    pub in_flight: usize,
    pub next_sequence: i32,
    next_order: u64,
}

/// What `drain` decided.
#[derive(Debug, Default)]
pub struct Drained {
    /// Batches per leader broker, grouped into requests: each inner Vec holds
    /// at most one batch per partition and stays under max.request.size.
    pub requests: BTreeMap<i32, Vec<Vec<ProducerBatch>>>,
    /// Batches that expired before they could be sent.
    pub expired: Vec<ProducerBatch>,
    /// Some batch had no known leader: metadata should be refreshed.
    pub needs_metadata: bool,
    /// The earliest time a not-yet-ready batch becomes ready.
    pub next_wakeup: Option<Instant>,
}

pub struct DrainRules {
    pub linger: Duration,
    pub batch_size: usize,
    pub max_in_flight: usize,
    pub max_request_size: usize,
    /// flush() or close() in progress: send everything now.
    pub send_all: bool,
    /// Assign sequences (idempotent producer).
    pub idempotent: bool,
}

pub struct Accumulator {
    pub queues: BTreeMap<Arc<str>, BTreeMap<i32, PartitionQueue>>,
    pub sticky: StickyPartitioner,
    /// Batches not yet completed (queued or in flight).
    pub unfinished_batches: usize,
    /// Partition count per topic as last seen by `append`, for sticky moves.
    partition_counts: BTreeMap<Arc<str>, i32>,
}

/// Where `append` put a record.
pub struct Appended {
    pub outcome: Arc<BatchOutcome>,
    pub index: i32,
    /// A new batch was started (the sender should arm a linger timer).
    pub new_batch: bool,
    /// The batch is now full (the sender should send it right away).
    pub batch_full: bool,
}

impl Accumulator {
    pub fn new(sticky: StickyPartitioner) -> Self {
        Accumulator {
            queues: BTreeMap::new(),
            sticky,
            unfinished_batches: 0,
            partition_counts: BTreeMap::new(),
        }
    }

    /// Append one record to the partition's open batch, or open a new one.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        topic: &str,
        partition: i32,
        partitions: i32,
        make_record: impl FnOnce(i32) -> Record,
        bytes: usize,
        batch_size: usize,
        now: Instant,
        delivery_timeout: Duration,
    ) -> Appended {
        let topic_queues = match self.queues.get_mut(topic) {
            Some(q) => q,
            None => self.queues.entry(Arc::from(topic)).or_default(),
        };
        let queue = topic_queues.entry(partition).or_default();
        let fits = queue.batches.back().is_some_and(|b| {
            b.base_sequence.is_none()
                && b.attempts == 0
                && b.bytes + bytes <= batch_size
                && b.records.len() < i32::MAX as usize
        });
        let mut new_batch = false;
        if !fits {
            if queue.batches.back().is_some() {
                // The open batch is full: unkeyed records move on.
                self.sticky.on_batch_closed(topic, partition, partitions);
            }
            let order = queue.next_order;
            queue.next_order += 1;
            let topic_arc = self
                .queues
                .get_key_value(topic)
                .map(|(k, _)| k.clone())
                .expect("topic queue exists");
            let queue = self
                .queues
                .get_mut(topic)
                .and_then(|t| t.get_mut(&partition))
                .expect("partition queue exists");
            queue.batches.push_back(ProducerBatch {
                topic: topic_arc,
                partition,
                records: Vec::new(),
                bytes: 0,
                order,
                created: now,
                deadline: now + delivery_timeout,
                outcome: Arc::new(BatchOutcome::default()),
                base_sequence: None,
                attempts: 0,
                retry_at: None,
            });
            self.unfinished_batches += 1;
            new_batch = true;
        }
        let queue = self
            .queues
            .get_mut(topic)
            .and_then(|t| t.get_mut(&partition))
            .expect("partition queue exists");
        let batch = queue.batches.back_mut().expect("an open batch exists");
        if new_batch {
            self.partition_counts
                .insert(batch.topic.clone(), partitions);
        }
        let index = batch.records.len() as i32;
        batch.records.push(make_record(index));
        batch.bytes += bytes;
        Appended {
            outcome: batch.outcome.clone(),
            index,
            new_batch,
            batch_full: batch.bytes >= batch_size,
        }
    }

    /// Take the batches ready to send. `leader_of` maps a partition to its
    /// leader broker, `None` when unknown.
    pub fn drain(
        &mut self,
        now: Instant,
        rules: &DrainRules,
        mut leader_of: impl FnMut(&str, i32) -> Option<i32>,
    ) -> Drained {
        let mut out = Drained::default();
        // (broker, request slot) -> bytes in it, to respect max.request.size.
        let mut slot_bytes: BTreeMap<(i32, usize), usize> = BTreeMap::new();
        let mut closed_sticky: Vec<(Arc<str>, i32, i32)> = Vec::new();
        for (topic, partitions) in self.queues.iter_mut() {
            let partition_count = self.partition_counts.get(topic).copied().unwrap_or(1);
            for (&partition, queue) in partitions.iter_mut() {
                // Expire batches that are not in flight and past their deadline.
                while let Some(front) = queue.batches.front() {
                    if front.deadline <= now {
                        out.expired
                            .push(queue.batches.pop_front().expect("front exists"));
                    } else {
                        break;
                    }
                }
                let mut slot = 0usize;
                while queue.in_flight < rules.max_in_flight {
                    let Some(front) = queue.batches.front() else {
                        break;
                    };
                    if let Some(at) = front.retry_at {
                        if at > now {
                            out.next_wakeup = min_instant(out.next_wakeup, at);
                            break;
                        }
                    }
                    let ready_at = front.created + rules.linger;
                    let ready = rules.send_all
                        || front.attempts > 0
                        || queue.batches.len() > 1
                        || front.bytes >= rules.batch_size
                        || ready_at <= now;
                    if !ready {
                        out.next_wakeup = min_instant(out.next_wakeup, ready_at);
                        break;
                    }
                    let Some(leader) = leader_of(topic, partition) else {
                        out.needs_metadata = true;
                        break;
                    };
                    let mut batch = queue.batches.pop_front().expect("front exists");
                    if rules.idempotent && batch.base_sequence.is_none() {
                        batch.base_sequence = Some(queue.next_sequence);
                        queue.next_sequence =
                            queue.next_sequence.wrapping_add(batch.records.len() as i32);
                    }
                    if batch.attempts == 0 && queue.batches.is_empty() {
                        closed_sticky.push((topic.clone(), partition, partition_count));
                    }
                    queue.in_flight += 1;
                    // Next free request slot for this broker with room.
                    while slot_bytes.get(&(leader, slot)).copied().unwrap_or(0) > 0
                        && slot_bytes[&(leader, slot)] + batch.bytes > rules.max_request_size
                    {
                        slot += 1;
                    }
                    *slot_bytes.entry((leader, slot)).or_default() += batch.bytes;
                    let requests = out.requests.entry(leader).or_default();
                    while requests.len() <= slot {
                        requests.push(Vec::new());
                    }
                    requests[slot].push(batch);
                    slot += 1;
                }
            }
        }
        for (topic, partition, count) in closed_sticky {
            self.sticky
                .on_batch_closed(&topic, partition, count.max(partition + 1));
        }
        out
    }

    /// A batch came back for another attempt: put it back in creation order.
    pub fn requeue(&mut self, batch: ProducerBatch) {
        let queue = self
            .queues
            .get_mut(&batch.topic)
            .and_then(|t| t.get_mut(&batch.partition))
            .expect("a requeued batch has a queue");
        let pos = queue.batches.partition_point(|b| b.order < batch.order);
        queue.batches.insert(pos, batch);
    }

    /// A batch's request finished (either way): it no longer counts as in flight.
    pub fn request_finished(&mut self, topic: &str, partition: i32) {
        if let Some(q) = self
            .queues
            .get_mut(topic)
            .and_then(|t| t.get_mut(&partition))
        {
            assert!(q.in_flight > 0, "in-flight count never goes negative");
            q.in_flight -= 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.unfinished_batches == 0
    }
}

fn min_instant(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::records::{to_wire, ProducerRecord};
    use crate::env::rng::WeirRng;

    fn acc() -> Accumulator {
        Accumulator::new(StickyPartitioner::new(WeirRng::from_seed(1)))
    }

    fn rules(send_all: bool) -> DrainRules {
        DrainRules {
            linger: Duration::from_millis(10),
            batch_size: 100,
            max_in_flight: 2,
            max_request_size: 1000,
            send_all,
            idempotent: true,
        }
    }

    fn add(a: &mut Accumulator, p: i32, bytes: usize, now: Instant) -> Appended {
        a.append(
            "t",
            p,
            4,
            |i| to_wire(ProducerRecord::new("t", "v"), i, 0),
            bytes,
            100,
            now,
            Duration::from_secs(60),
        )
    }

    #[tokio::test]
    async fn linger_holds_a_partial_batch_until_due() {
        let mut a = acc();
        let t0 = crate::env::time::now();
        assert!(add(&mut a, 0, 10, t0).new_batch);
        assert!(!add(&mut a, 0, 10, t0).new_batch);
        let d = a.drain(t0 + Duration::from_millis(5), &rules(false), |_, _| Some(1));
        assert!(d.requests.is_empty());
        assert_eq!(d.next_wakeup, Some(t0 + Duration::from_millis(10)));
        let d = a.drain(t0 + Duration::from_millis(10), &rules(false), |_, _| {
            Some(1)
        });
        assert_eq!(d.requests[&1].len(), 1);
        assert_eq!(d.requests[&1][0][0].records.len(), 2);
    }

    #[tokio::test]
    async fn full_batches_go_at_once_one_per_partition_per_request() {
        let mut a = acc();
        let t0 = crate::env::time::now();
        for _ in 0..25 {
            add(&mut a, 0, 10, t0);
        }
        add(&mut a, 1, 100, t0);
        // Partition 0 has 3 batches (10, 10, 5 records): 2 may fly.
        let d = a.drain(t0, &rules(false), |_, _| Some(7));
        let reqs = &d.requests[&7];
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].len(), 2, "p0 and p1 share the first request");
        assert_eq!(reqs[1].len(), 1);
        assert_eq!(reqs[0][0].base_sequence, Some(0));
        assert_eq!(reqs[1][0].base_sequence, Some(10));
        // The third p0 batch waits for an in-flight slot.
        let d2 = a.drain(t0 + Duration::from_secs(1), &rules(false), |_, _| Some(7));
        assert!(d2.requests.is_empty());
        a.request_finished("t", 0);
        let d3 = a.drain(t0 + Duration::from_secs(1), &rules(false), |_, _| Some(7));
        assert_eq!(d3.requests[&7][0][0].base_sequence, Some(20));
    }

    #[tokio::test]
    async fn retried_batches_keep_order_and_sequence() {
        let mut a = acc();
        let t0 = crate::env::time::now();
        for _ in 0..20 {
            add(&mut a, 0, 10, t0);
        }
        let mut d = a.drain(t0, &rules(true), |_, _| Some(1));
        let mut reqs = d.requests.remove(&1).unwrap();
        let second = reqs.pop().unwrap().pop().unwrap();
        let first = reqs.pop().unwrap().pop().unwrap();
        a.request_finished("t", 0);
        a.request_finished("t", 0);
        // Responses come back in reverse order; the queue order still holds.
        for mut b in [second, first] {
            b.attempts += 1;
            a.requeue(b);
        }
        let q = &a.queues["t"][&0];
        let seqs: Vec<_> = q.batches.iter().map(|b| b.base_sequence).collect();
        assert_eq!(seqs, vec![Some(0), Some(10)]);
        let d = a.drain(t0, &rules(false), |_, _| None);
        assert!(d.needs_metadata);
    }

    #[tokio::test]
    async fn expired_batches_are_taken_out() {
        let mut a = acc();
        let t0 = crate::env::time::now();
        add(&mut a, 0, 10, t0);
        let d = a.drain(t0 + Duration::from_secs(61), &rules(true), |_, _| None);
        assert_eq!(d.expired.len(), 1);
    }
}

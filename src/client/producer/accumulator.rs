//! The record accumulator: per-partition queues of batches, and the rule
//! deciding which batches are ready to send. Pure logic under one lock, no
//! I/O and no clock reads (time comes in as `now`), so it is unit-tested
//! directly.
//!
//! **Invariants:**
//! - a partition queue is sorted by `order` (creation order), including
//!   batches put back for retry, so retries never reorder a partition;
//! - a batch gets its idempotent stamp (producer id, epoch, sequence) at its
//!   first drain, in queue order; retries resend the same stamp, except that
//!   a batch the broker refused under an identity that has since been
//!   replaced is unstamped (`clear_stamp`) and stamped afresh;
//! - at most `max_in_flight` batches of one partition are in flight;
//! - a partition never has batches of two producer identities in flight: a
//!   batch is stamped with the current identity only when none of its
//!   partition's in-flight batches carries an older one, so re-stamped
//!   batches keep their place in the partition's order.
//!
//! **Identity reset** (KIP-360 for a non-transactional idempotent producer):
//! when the broker has lost acknowledged batches (or a stamped batch failed
//! for good, leaving a sequence gap), the producer begins a reset
//! (`begin_reset`: the generation moves on, nothing new is stamped), fetches a
//! new identity, and `finish_reset` restarts every partition's sequence at 0.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// For a failed batch: some attempt may have been written anyway (an
    /// unanswered or ambiguous attempt). False means every attempt was
    /// definitely refused, or none was sent: the records do not exist.
    maybe_written: AtomicBool,
}

impl BatchOutcome {
    /// Note, before `complete`, whether a failure may still have been written.
    pub fn set_maybe_written(&self, maybe: bool) {
        self.maybe_written.store(maybe, Ordering::Release);
    }

    pub fn maybe_written(&self) -> bool {
        self.maybe_written.load(Ordering::Acquire)
    }

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

/// The idempotent identity a batch was sent with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// The accumulator's identity generation when the batch was stamped.
    pub generation: u64,
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
    /// Set at the first drain of an idempotent producer's batch.
    pub stamp: Option<Stamp>,
    pub attempts: u32,
    pub retry_at: Option<Instant>,
    /// Some attempt ended without a definite answer (lost connection,
    /// timeout): the broker may hold this batch under its stamp, so it must
    /// never be resent under another identity (that could duplicate it).
    pub maybe_written: bool,
}

impl ProducerBatch {
    pub fn base_sequence(&self) -> Option<i32> {
        self.stamp.map(|s| s.base_sequence)
    }

    fn generation(&self) -> u64 {
        self.stamp.map_or(0, |s| s.generation)
    }
}

#[derive(Debug, Default)]
pub struct PartitionQueue {
    pub batches: VecDeque<ProducerBatch>,
    pub in_flight: usize,
    /// In-flight batches per identity generation (0 for unstamped batches).
    in_flight_generations: BTreeMap<u64, usize>,
    pub next_sequence: i32,
    /// The sequence after the last batch acknowledged under the current
    /// identity: a batch starting here is the first unacknowledged one.
    pub acked_next_sequence: i32,
    next_order: u64,
}

impl PartitionQueue {
    /// Some in-flight batch carries an identity older than `generation`.
    fn has_older_in_flight(&self, generation: u64) -> bool {
        self.in_flight_generations
            .iter()
            .any(|(&g, &n)| n > 0 && g != 0 && g != generation)
    }
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
    /// Stamp batches with the accumulator's identity (idempotent producer).
    pub idempotent: bool,
}

pub struct Accumulator {
    pub queues: BTreeMap<Arc<str>, BTreeMap<i32, PartitionQueue>>,
    pub sticky: StickyPartitioner,
    /// Batches not yet completed (queued or in flight).
    pub unfinished_batches: usize,
    /// Partition count per topic as last seen by `append`, for sticky moves.
    partition_counts: BTreeMap<Arc<str>, i32>,
    /// The idempotent identity new batches are stamped with; `None` before
    /// `finish_reset` and while a reset is under way.
    identity: Option<(i64, i16)>,
    /// Bumped by every `begin_reset`; stamps of older generations are stale.
    pub generation: u64,
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
            identity: None,
            generation: 1,
        }
    }

    /// The identity new batches get, if one is in place.
    pub fn identity(&self) -> Option<(i64, i16)> {
        self.identity
    }

    /// Stop stamping batches: the current identity must be replaced. Returns
    /// false when a reset is already under way (one reset per generation).
    pub fn begin_reset(&mut self) -> bool {
        if self.identity.is_none() {
            return false;
        }
        self.identity = None;
        self.generation += 1;
        true
    }

    /// Install a (new) identity: every partition's sequences restart at 0.
    /// Batches still stamped with an older identity keep it: they are retried
    /// under it, or unstamped by `clear_stamp` if the broker refuses it.
    pub fn finish_reset(&mut self, identity: (i64, i16)) {
        assert!(
            self.identity.is_none(),
            "an identity is installed only at start or after begin_reset"
        );
        self.identity = Some(identity);
        for queue in self.queues.values_mut().flat_map(|t| t.values_mut()) {
            queue.next_sequence = 0;
            queue.acked_next_sequence = 0;
        }
    }

    /// The batch's stamp belongs to an identity that has been replaced.
    pub fn is_stale(&self, batch: &ProducerBatch) -> bool {
        batch.stamp.is_some_and(|s| s.generation != self.generation)
    }

    /// The batch carries the current identity and is its partition's first
    /// unacknowledged batch: if the broker calls its sequence out of order,
    /// no earlier failure explains it, so the broker lost acknowledged data.
    pub fn is_first_unacked(&self, batch: &ProducerBatch) -> bool {
        let Some(stamp) = batch.stamp else {
            return false;
        };
        stamp.generation == self.generation
            && self
                .queues
                .get(&batch.topic)
                .and_then(|t| t.get(&batch.partition))
                .is_some_and(|q| q.acked_next_sequence == stamp.base_sequence)
    }

    /// A batch was acknowledged: move its partition's acknowledged sequence.
    pub fn acknowledged(&mut self, batch: &ProducerBatch) {
        let Some(stamp) = batch.stamp else {
            return;
        };
        if stamp.generation != self.generation {
            return;
        }
        if let Some(q) = self
            .queues
            .get_mut(&batch.topic)
            .and_then(|t| t.get_mut(&batch.partition))
        {
            let end = stamp.base_sequence.wrapping_add(batch.records.len() as i32);
            // Responses may be handled out of order: only move forward
            // (sequences wrap at i32::MAX, so compare by distance).
            if end.wrapping_sub(q.acked_next_sequence) > 0 {
                q.acked_next_sequence = end;
            }
        }
    }

    /// Forget a batch's stamp so it is stamped with the current identity
    /// when next drained. Only for a batch the broker definitely refused and
    /// never may have written (`maybe_written` false).
    pub fn clear_stamp(&self, batch: &mut ProducerBatch) {
        assert!(
            !batch.maybe_written,
            "a batch that may be written is never resent under a new identity"
        );
        assert!(
            self.is_stale(batch),
            "only a batch of a replaced identity is re-stamped"
        );
        batch.stamp = None;
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
            b.stamp.is_none()
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
                stamp: None,
                attempts: 0,
                retry_at: None,
                maybe_written: false,
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
        let identity = self.identity;
        let generation = self.generation;
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
                    let stamp_with = if rules.idempotent && front.stamp.is_none() {
                        // No identity (a reset is under way), or batches of
                        // an older identity still in flight here (they may
                        // come back to be re-stamped ahead of this one).
                        match identity {
                            Some(id) if !queue.has_older_in_flight(generation) => Some(id),
                            _ => break,
                        }
                    } else {
                        None
                    };
                    let Some(leader) = leader_of(topic, partition) else {
                        out.needs_metadata = true;
                        break;
                    };
                    let mut batch = queue.batches.pop_front().expect("front exists");
                    if let Some((producer_id, producer_epoch)) = stamp_with {
                        batch.stamp = Some(Stamp {
                            producer_id,
                            producer_epoch,
                            base_sequence: queue.next_sequence,
                            generation,
                        });
                        queue.next_sequence =
                            queue.next_sequence.wrapping_add(batch.records.len() as i32);
                    }
                    if batch.attempts == 0 && queue.batches.is_empty() {
                        closed_sticky.push((topic.clone(), partition, partition_count));
                    }
                    queue.in_flight += 1;
                    *queue
                        .in_flight_generations
                        .entry(batch.generation())
                        .or_default() += 1;
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

    /// A batch's request finished (either way): it no longer counts as in
    /// flight. Call before changing the batch's stamp.
    pub fn request_finished(&mut self, batch: &ProducerBatch) {
        if let Some(q) = self
            .queues
            .get_mut(&batch.topic)
            .and_then(|t| t.get_mut(&batch.partition))
        {
            assert!(q.in_flight > 0, "in-flight count never goes negative");
            q.in_flight -= 1;
            let n = q
                .in_flight_generations
                .get_mut(&batch.generation())
                .expect("an in-flight batch's generation is counted");
            assert!(*n > 0, "in-flight count per generation never goes negative");
            *n -= 1;
            if *n == 0 {
                q.in_flight_generations.remove(&batch.generation());
            }
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
        let mut a = Accumulator::new(StickyPartitioner::new(WeirRng::from_seed(1)));
        a.finish_reset((1, 0));
        a
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
        assert_eq!(reqs[0][0].base_sequence(), Some(0));
        assert_eq!(reqs[1][0].base_sequence(), Some(10));
        // The third p0 batch waits for an in-flight slot.
        let d2 = a.drain(t0 + Duration::from_secs(1), &rules(false), |_, _| Some(7));
        assert!(d2.requests.is_empty());
        a.request_finished(&reqs[0][0]);
        let d3 = a.drain(t0 + Duration::from_secs(1), &rules(false), |_, _| Some(7));
        assert_eq!(d3.requests[&7][0][0].base_sequence(), Some(20));
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
        a.request_finished(&second);
        a.request_finished(&first);
        // Responses come back in reverse order; the queue order still holds.
        for mut b in [second, first] {
            b.attempts += 1;
            a.requeue(b);
        }
        let q = &a.queues["t"][&0];
        let seqs: Vec<_> = q.batches.iter().map(|b| b.base_sequence()).collect();
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

    /// Drain one partition-0 request's batches (broker 1).
    fn drain_p0(a: &mut Accumulator, now: Instant) -> Vec<ProducerBatch> {
        let mut d = a.drain(now, &rules(true), |_, _| Some(1));
        d.requests
            .remove(&1)
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .collect()
    }

    fn stamps(batches: &[ProducerBatch]) -> Vec<(i64, i32)> {
        batches
            .iter()
            .map(|b| {
                let s = b.stamp.expect("drained batches are stamped");
                (s.producer_id, s.base_sequence)
            })
            .collect()
    }

    #[tokio::test]
    async fn reset_restamps_refused_batches_in_order_from_sequence_zero() {
        let mut a = acc();
        let t0 = crate::env::time::now();
        for _ in 0..40 {
            add(&mut a, 0, 10, t0); // four batches of ten records
        }
        let flying = drain_p0(&mut a, t0);
        assert_eq!(stamps(&flying), vec![(1, 0), (1, 10)]);
        // The broker lost everything: the first batch is the first
        // unacknowledged one, its refusal is not explained by another failure.
        assert!(a.is_first_unacked(&flying[0]));
        assert!(!a.is_first_unacked(&flying[1]));
        let mut flying = flying.into_iter();
        let first = flying.next().unwrap();
        let mut second = flying.next().unwrap();
        a.request_finished(&first);
        assert!(a.begin_reset());
        assert!(!a.begin_reset(), "one reset at a time");
        // No identity: nothing is stamped, even though a slot is free.
        assert!(drain_p0(&mut a, t0).is_empty());
        a.finish_reset((2, 0));
        // The old second batch is still in flight: the queued batches must
        // not overtake it under the new identity.
        assert!(drain_p0(&mut a, t0).is_empty());
        // It comes back refused (OUT_OF_ORDER_SEQUENCE_NUMBER), definitely
        // not written: it is re-stamped and goes first.
        a.request_finished(&second);
        assert!(a.is_stale(&second));
        a.clear_stamp(&mut second);
        second.attempts += 1;
        a.requeue(second);
        let resent = drain_p0(&mut a, t0);
        assert_eq!(stamps(&resent), vec![(2, 0), (2, 10)]);
        assert_eq!(resent[0].attempts, 1, "the old second batch leads");
        assert!(a.is_first_unacked(&resent[0]));
        for b in &resent {
            a.request_finished(b);
            a.acknowledged(b);
        }
        let last = drain_p0(&mut a, t0);
        assert_eq!(stamps(&last), vec![(2, 20)]);
        assert!(a.is_first_unacked(&last[0]));
    }

    #[tokio::test]
    async fn old_identity_retries_keep_their_stamp_and_block_new_ones() {
        let mut a = acc();
        let t0 = crate::env::time::now();
        for _ in 0..30 {
            add(&mut a, 0, 10, t0);
        }
        let mut flying = drain_p0(&mut a, t0);
        assert_eq!(stamps(&flying), vec![(1, 0), (1, 10)]);
        // Another partition triggered a reset; this one's batches come back
        // with a retriable error and are retried under their old identity.
        assert!(a.begin_reset());
        a.finish_reset((2, 0));
        let second = flying.pop().unwrap();
        let first = flying.pop().unwrap();
        for mut b in [second, first] {
            a.request_finished(&b);
            b.attempts += 1;
            a.requeue(b);
        }
        let retried = drain_p0(&mut a, t0);
        assert_eq!(
            stamps(&retried),
            vec![(1, 0), (1, 10)],
            "old stamps are kept; the new batch waits behind them"
        );
        // Once they are acknowledged the new identity starts at 0.
        for b in &retried {
            a.request_finished(b);
            a.acknowledged(b);
        }
        assert_eq!(stamps(&drain_p0(&mut a, t0)), vec![(2, 0)]);
    }

    #[tokio::test]
    #[should_panic(expected = "never resent under a new identity")]
    async fn a_batch_that_may_be_written_is_never_restamped() {
        let mut a = acc();
        let t0 = crate::env::time::now();
        add(&mut a, 0, 10, t0);
        let mut b = drain_p0(&mut a, t0).pop().unwrap();
        a.request_finished(&b);
        b.maybe_written = true;
        a.begin_reset();
        a.clear_stamp(&mut b);
    }
}

//! The consumer: manual assignment, seek, and poll with prefetch.
//!
//! Each poll keeps one Fetch in flight per partition (grouped per leader)
//! while less than a poll's worth is buffered, so the next response is
//! on its way while the caller handles the current one. Fetch tasks decode
//! record batches themselves (on the runtime's worker threads), and poll
//! only moves decoded records out.
//!
//! **Invariant:** records handed out for a partition have strictly
//! increasing offsets; a seek discards any fetch started before it (each
//! partition carries an epoch bumped on seek).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::mpsc;

use super::cluster::{ClientConfig, Cluster};
use super::error::{codes, ClientError};
use super::offsets::{list_offsets, TopicPartition, EARLIEST, LATEST};
use super::records::{decode_fetched_filtered, AbortedRange, ConsumerRecord};
use crate::env::time::{now, sleep, timeout, Duration};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
    /// Fail the poll with OFFSET_OUT_OF_RANGE.
    None,
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub client_id: String,
    /// fetch.max.wait.ms: how long the broker may hold a fetch for data.
    pub fetch_max_wait: Duration,
    pub fetch_min_bytes: i32,
    pub fetch_max_bytes: i32,
    /// max.partition.fetch.bytes. Weir defaults to 4 MiB (Kafka: 1 MiB):
    /// fewer round trips per partition is what lets one partition reach GB/s.
    pub max_partition_fetch_bytes: i32,
    /// max.poll.records
    pub max_poll_records: usize,
    pub auto_offset_reset: OffsetReset,
    /// isolation.level: 0 read_uncommitted, 1 read_committed.
    pub isolation_level: i8,
    pub request_timeout: Duration,
    pub retry_backoff: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            client_id: "weir-consumer".to_string(),
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 64 * 1024 * 1024,
            max_partition_fetch_bytes: 4 * 1024 * 1024,
            max_poll_records: 10_000,
            auto_offset_reset: OffsetReset::Latest,
            isolation_level: 0,
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
        }
    }
}

impl ConsumerConfig {
    /// Apply one Kafka-named property.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ClientError> {
        let num = |v: &str| -> Result<u64, ClientError> {
            v.trim().parse::<u64>().map_err(|_| {
                ClientError::Config(format!("{key} must be a non-negative integer, got '{v}'"))
            })
        };
        let i32_of = |v: &str| num(v).map(|n| n.min(i32::MAX as u64) as i32);
        match key {
            "client.id" => self.client_id = value.to_string(),
            "fetch.max.wait.ms" => self.fetch_max_wait = Duration::from_millis(num(value)?),
            "fetch.min.bytes" => self.fetch_min_bytes = i32_of(value)?,
            "fetch.max.bytes" => self.fetch_max_bytes = i32_of(value)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = i32_of(value)?,
            "max.poll.records" => self.max_poll_records = num(value)?.max(1) as usize,
            "request.timeout.ms" => self.request_timeout = Duration::from_millis(num(value)?),
            "retry.backoff.ms" => self.retry_backoff = Duration::from_millis(num(value)?),
            "auto.offset.reset" => {
                self.auto_offset_reset = match value {
                    "earliest" => OffsetReset::Earliest,
                    "latest" => OffsetReset::Latest,
                    "none" => OffsetReset::None,
                    v => {
                        return Err(ClientError::Config(format!(
                            "auto.offset.reset must be earliest, latest or none, got '{v}'"
                        )))
                    }
                }
            }
            "isolation.level" => {
                self.isolation_level = match value {
                    "read_uncommitted" => 0,
                    "read_committed" => 1,
                    v => {
                        return Err(ClientError::Config(format!(
                            "isolation.level must be read_uncommitted or read_committed, got '{v}'"
                        )))
                    }
                }
            }
            "bootstrap.servers" | "group.id" | "key.deserializer" | "value.deserializer"
            | "enable.auto.commit" => {}
            other => {
                return Err(ClientError::Config(format!(
                    "unknown consumer property '{other}'"
                )))
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct PartitionState {
    /// Next offset to fetch; `None` until reset by a seek or the reset policy.
    fetch_position: Option<i64>,
    /// Unique per (assignment, seek) across the consumer's life: results of
    /// fetches started under another epoch are dropped. Drawn from
    /// `Consumer::next_epoch`, never reset, so a partition dropped and
    /// assigned again can't accept a fetch sent before the drop.
    epoch: u64,
    in_flight: bool,
    /// Records fetched but not yet returned.
    buffered: VecDeque<ConsumerRecord>,
    /// Next offset the caller will see.
    position: Option<i64>,
    high_watermark: i64,
}

struct FetchedPartition {
    tp: TopicPartition,
    epoch: u64,
    fetch_offset: i64,
    result: Result<(Vec<ConsumerRecord>, i64, i64), ClientError>,
}

pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    results_tx: mpsc::UnboundedSender<Vec<FetchedPartition>>,
    results_rx: mpsc::UnboundedReceiver<Vec<FetchedPartition>>,
    /// Round-robin start for handing out buffered records fairly.
    next_partition: usize,
    /// Source of partition epochs; only grows.
    next_epoch: u64,
}

impl Consumer {
    pub fn new(cluster: Arc<Cluster>, config: ConsumerConfig) -> Consumer {
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        Consumer {
            cluster,
            config,
            partitions: BTreeMap::new(),
            results_tx,
            results_rx,
            next_partition: 0,
            next_epoch: 1,
        }
    }

    pub async fn connect(bootstrap: &str, config: ConsumerConfig) -> Result<Consumer, ClientError> {
        let mut cc = ClientConfig::new(bootstrap);
        cc.connection.client_id = config.client_id.clone();
        cc.connection.request_timeout = config.request_timeout + config.fetch_max_wait;
        cc.retry_backoff = config.retry_backoff;
        Ok(Consumer::new(Cluster::connect(cc).await?, config))
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Replace the assignment. Partitions kept keep their positions.
    pub fn assign(&mut self, partitions: &[TopicPartition]) {
        let mut next = BTreeMap::new();
        for tp in partitions {
            let state = match self.partitions.remove(tp) {
                Some(kept) => kept,
                None => PartitionState {
                    epoch: self.fresh_epoch(),
                    ..PartitionState::default()
                },
            };
            next.insert(tp.clone(), state);
        }
        self.partitions = next;
    }

    fn fresh_epoch(&mut self) -> u64 {
        self.next_epoch += 1;
        self.next_epoch
    }

    /// Assign every partition of `topic`.
    pub async fn assign_topic(&mut self, topic: &str) -> Result<Vec<TopicPartition>, ClientError> {
        let info = self.cluster.topic(topic).await?;
        let mut tps: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        for p in &info.partitions {
            let tp = (topic.to_string(), p.partition);
            if !tps.contains(&tp) {
                tps.push(tp);
            }
        }
        self.assign(&tps);
        Ok(info
            .partitions
            .iter()
            .map(|p| (topic.to_string(), p.partition))
            .collect())
    }

    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// The next offset poll will return for `tp`.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp).and_then(|s| s.position)
    }

    /// The high watermark seen in the last fetch of `tp` (-1 before one).
    pub fn high_watermark(&self, tp: &TopicPartition) -> i64 {
        self.partitions.get(tp).map_or(-1, |s| s.high_watermark)
    }

    /// Start reading `tp` at `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<(), ClientError> {
        let epoch = self.fresh_epoch();
        let state = self
            .partitions
            .get_mut(tp)
            .ok_or_else(|| ClientError::Config(format!("{}-{} is not assigned", tp.0, tp.1)))?;
        state.epoch = epoch;
        state.in_flight = false;
        state.buffered.clear();
        state.fetch_position = Some(offset);
        state.position = Some(offset);
        Ok(())
    }

    pub async fn seek_to_beginning(&mut self, tps: &[TopicPartition]) -> Result<(), ClientError> {
        self.seek_to(tps, EARLIEST).await
    }

    pub async fn seek_to_end(&mut self, tps: &[TopicPartition]) -> Result<(), ClientError> {
        self.seek_to(tps, LATEST).await
    }

    async fn seek_to(&mut self, tps: &[TopicPartition], spec: i64) -> Result<(), ClientError> {
        let queries: Vec<(String, i32, i64)> =
            tps.iter().map(|(t, p)| (t.clone(), *p, spec)).collect();
        let offsets = list_offsets(&self.cluster, &queries).await?;
        for tp in tps {
            let (offset, _) = offsets
                .get(tp)
                .copied()
                .ok_or_else(|| ClientError::Protocol(format!("no offset for {}-{}", tp.0, tp.1)))?;
            self.seek(tp, offset)?;
        }
        Ok(())
    }

    /// Log start offsets.
    pub async fn beginning_offsets(
        &self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        self.offsets(tps, EARLIEST).await
    }

    /// Log end offsets (high watermarks).
    pub async fn end_offsets(
        &self,
        tps: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        self.offsets(tps, LATEST).await
    }

    async fn offsets(
        &self,
        tps: &[TopicPartition],
        spec: i64,
    ) -> Result<BTreeMap<TopicPartition, i64>, ClientError> {
        let queries: Vec<(String, i32, i64)> =
            tps.iter().map(|(t, p)| (t.clone(), *p, spec)).collect();
        Ok(list_offsets(&self.cluster, &queries)
            .await?
            .into_iter()
            .map(|(tp, (o, _))| (tp, o))
            .collect())
    }

    /// For each partition, the first offset whose timestamp is >= the given
    /// one (`None` when no such record exists), with that record's timestamp.
    pub async fn offsets_for_times(
        &self,
        query: &[(TopicPartition, i64)],
    ) -> Result<BTreeMap<TopicPartition, Option<(i64, i64)>>, ClientError> {
        let queries: Vec<(String, i32, i64)> = query
            .iter()
            .map(|((t, p), ts)| (t.clone(), *p, *ts))
            .collect();
        Ok(list_offsets(&self.cluster, &queries)
            .await?
            .into_iter()
            .map(|(tp, (o, ts))| (tp, (o >= 0).then_some((o, ts))))
            .collect())
    }

    /// Records available within `wait`; empty when none arrived in time.
    pub async fn poll(&mut self, wait: Duration) -> Result<Vec<ConsumerRecord>, ClientError> {
        let deadline = now() + wait;
        loop {
            self.reset_unpositioned().await?;
            self.send_fetches();
            if let Some(records) = self.take_buffered() {
                return Ok(records);
            }
            let remaining = deadline.saturating_duration_since(now());
            if remaining.is_zero() {
                return Ok(Vec::new());
            }
            match timeout(remaining, self.results_rx.recv()).await {
                Ok(Some(batch)) => {
                    self.apply_fetched(batch)?;
                    // Take whatever else already arrived without waiting.
                    while let Ok(more) = self.results_rx.try_recv() {
                        self.apply_fetched(more)?;
                    }
                }
                Ok(None) => return Err(ClientError::Closed),
                Err(_) => return Ok(Vec::new()),
            }
        }
    }

    async fn reset_unpositioned(&mut self) -> Result<(), ClientError> {
        let missing: Vec<TopicPartition> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.fetch_position.is_none())
            .map(|(tp, _)| tp.clone())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        match self.config.auto_offset_reset {
            OffsetReset::Earliest => self.seek_to(&missing, EARLIEST).await,
            OffsetReset::Latest => self.seek_to(&missing, LATEST).await,
            OffsetReset::None => Err(ClientError::Config(format!(
                "no position for {}-{} and auto.offset.reset=none",
                missing[0].0, missing[0].1
            ))),
        }
    }

    fn take_buffered(&mut self) -> Option<Vec<ConsumerRecord>> {
        let n = self.partitions.len();
        if n == 0 {
            return None;
        }
        let mut out = Vec::new();
        let start = self.next_partition % n;
        self.next_partition = self.next_partition.wrapping_add(1);
        let keys: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        for i in 0..n {
            let tp = &keys[(start + i) % n];
            let state = self.partitions.get_mut(tp).expect("key from the map");
            while out.len() < self.config.max_poll_records {
                let Some(r) = state.buffered.pop_front() else {
                    break;
                };
                if let Some(pos) = state.position {
                    assert!(r.offset >= pos, "a partition's offsets only grow");
                }
                state.position = Some(r.offset + 1);
                out.push(r);
            }
        }
        // Ask for more now that buffers drained.
        self.send_fetches();
        (!out.is_empty()).then_some(out)
    }

    fn send_fetches(&mut self) {
        let metadata = self.cluster.metadata();
        let mut by_leader: BTreeMap<i32, Vec<PartitionFetch>> = BTreeMap::new();
        let mut needs_metadata = false;
        for (tp, state) in self.partitions.iter_mut() {
            let Some(offset) = state.fetch_position else {
                continue;
            };
            // Prefetch: ask for more while the caller still has up to one
            // poll's worth buffered, so the next response overlaps its work.
            if state.in_flight || state.buffered.len() >= self.config.max_poll_records {
                continue;
            }
            match metadata.leader(&tp.0, tp.1) {
                Some(leader) => {
                    state.in_flight = true;
                    by_leader.entry(leader).or_default().push(PartitionFetch {
                        tp: tp.clone(),
                        offset,
                        epoch: state.epoch,
                        leader_epoch: metadata.leader_epoch(&tp.0, tp.1),
                    });
                }
                None => needs_metadata = true,
            }
        }
        for (leader, parts) in by_leader {
            let cluster = self.cluster.clone();
            let config = self.config.clone();
            let tx = self.results_tx.clone();
            tokio::spawn(async move {
                let results = fetch_from(&cluster, &config, leader, &parts).await;
                let _ = tx.send(results);
            });
        }
        if needs_metadata {
            let topics = self.assigned_topics();
            self.cluster.refresh_soon(topics);
            let tx = self.results_tx.clone();
            let backoff = self.config.retry_backoff;
            tokio::spawn(async move {
                sleep(backoff).await;
                // An empty result wakes a waiting poll to try again.
                let _ = tx.send(Vec::new());
            });
        }
    }

    fn assigned_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.partitions.keys().map(|(t, _)| t.clone()).collect();
        topics.dedup();
        topics
    }

    fn apply_fetched(&mut self, fetched: Vec<FetchedPartition>) -> Result<(), ClientError> {
        let mut first_error = None;
        let mut refresh = false;
        for f in fetched {
            let Some(state) = self.partitions.get_mut(&f.tp) else {
                continue;
            };
            if state.epoch != f.epoch {
                continue; // a seek happened since this fetch started
            }
            state.in_flight = false;
            match f.result {
                Ok((records, next, hw)) => {
                    // decode_fetched starts `next` at the fetch offset and only
                    // raises it, whatever the broker sent.
                    assert!(
                        next >= f.fetch_offset,
                        "the fetch position never moves back"
                    );
                    state.fetch_position = Some(next);
                    state.high_watermark = hw;
                    state.buffered.extend(records);
                    if state.buffered.is_empty() {
                        // Nothing left to hand out: the position moves past
                        // what the fetch skipped (control batches, aborted
                        // or cleaned-away records), as Kafka's consumer.
                        state.position = Some(state.position.map_or(next, |p| p.max(next)));
                    }
                }
                Err(e) if e.code() == Some(codes::OFFSET_OUT_OF_RANGE) => {
                    match self.config.auto_offset_reset {
                        OffsetReset::None => first_error = first_error.or(Some(e)),
                        _ => {
                            state.fetch_position = None;
                            state.position = None;
                        }
                    }
                }
                // The leader moved (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH:
                // our metadata is older than the broker's), is not known yet
                // (UNKNOWN_LEADER_EPOCH: the broker is behind us), or stopped
                // answering: refresh and fetch the same offset again from
                // whoever leads next. Records come only from below the high
                // watermark, so nothing read can be taken back by a clean
                // election.
                Err(e) if e.is_retriable() => refresh |= e.invalidates_metadata(),
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if refresh {
            self.cluster.refresh_soon(self.assigned_topics());
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// One partition of a Fetch about to be sent.
struct PartitionFetch {
    tp: TopicPartition,
    offset: i64,
    /// The consumer's epoch for the partition (see `PartitionState::epoch`).
    epoch: u64,
    /// The leader epoch our metadata names (current_leader_epoch, KIP-320).
    leader_epoch: i32,
}

async fn fetch_from(
    cluster: &Cluster,
    config: &ConsumerConfig,
    leader: i32,
    parts: &[PartitionFetch],
) -> Vec<FetchedPartition> {
    let fail = |e: ClientError| -> Vec<FetchedPartition> {
        parts
            .iter()
            .map(|f| FetchedPartition {
                tp: f.tp.clone(),
                epoch: f.epoch,
                fetch_offset: f.offset,
                result: Err(e.clone()),
            })
            .collect()
    };
    let conn = match cluster.broker_connection(leader).await {
        Ok(c) => c,
        Err(e) => {
            sleep(config.retry_backoff).await;
            return fail(e);
        }
    };
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for f in parts {
        topics.entry(&f.tp.0).or_default().push(
            FetchPartition::default()
                .with_partition(f.tp.1)
                .with_current_leader_epoch(f.leader_epoch)
                .with_fetch_offset(f.offset)
                .with_partition_max_bytes(config.max_partition_fetch_bytes),
        );
    }
    let request = FetchRequest::default()
        .with_max_wait_ms(config.fetch_max_wait.as_millis().min(i32::MAX as u128) as i32)
        .with_min_bytes(config.fetch_min_bytes)
        .with_max_bytes(config.fetch_max_bytes)
        .with_isolation_level(config.isolation_level)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let response = match conn.send(&request).await {
        Ok(r) => r,
        Err(e) => {
            sleep(config.retry_backoff).await;
            return fail(e);
        }
    };
    if response.error_code != 0 {
        sleep(config.retry_backoff).await;
        return fail(ClientError::kafka(response.error_code));
    }
    let mut out = Vec::with_capacity(parts.len());
    let mut any_retriable = false;
    for f in parts {
        let ((t, p), offset, epoch) = (&f.tp, &f.offset, &f.epoch);
        let data = response
            .responses
            .iter()
            .filter(|r| r.topic.0.as_str() == t)
            .flat_map(|r| r.partitions.iter())
            .find(|d| d.partition_index == *p);
        let result = match data {
            None => Err(ClientError::Protocol(format!(
                "fetch response lacks {t}-{p}"
            ))),
            Some(d) if d.error_code != 0 => Err(ClientError::kafka(d.error_code)),
            Some(d) => {
                let data = d.records.clone().unwrap_or_default();
                let had_bytes = !data.is_empty();
                // read_committed: drop the aborted transactions' records
                // (the broker lists those overlapping the data it sent).
                let aborted = (config.isolation_level == 1).then(|| {
                    d.aborted_transactions
                        .iter()
                        .flatten()
                        .map(|a| AbortedRange {
                            first_offset: a.first_offset,
                            producer_id: a.producer_id.0,
                        })
                        .collect()
                });
                match decode_fetched_filtered(t, *p, data, *offset, aborted) {
                    // Bytes but not one whole batch: refetching the same
                    // offset would loop forever, so say why instead.
                    Ok((records, next)) if had_bytes && records.is_empty() && next == *offset => {
                        Err(ClientError::Protocol(format!(
                            "{t}-{p}: the batch at offset {offset} is larger than \
                             max.partition.fetch.bytes ({})",
                            config.max_partition_fetch_bytes
                        )))
                    }
                    other => other.map(|(records, next)| (records, next, d.high_watermark)),
                }
            }
        };
        any_retriable |= result.as_ref().is_err_and(|e| e.is_retriable());
        out.push(FetchedPartition {
            tp: (t.clone(), *p),
            epoch: *epoch,
            fetch_offset: *offset,
            result,
        });
    }
    if any_retriable {
        sleep(config.retry_backoff).await;
    }
    out
}

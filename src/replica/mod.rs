//! Partition replication (Kafka's ReplicaManager): which partitions this
//! broker hosts, whether it leads or follows each, the follower fetchers,
//! ISR changes and the high watermark.
//!
//! Flow: the broker's image loop calls [`ReplicaManager::apply_image`];
//! each assigned partition's log is opened (through the registry, which
//! owns logs) and its [`partition::Partition`] becomes leader or follower
//! at the image's leader epoch. Followers fetch from their leader through a
//! [`endpoint::LeaderEndpoint`] (one fetcher task per leader broker, see
//! fetcher.rs); the leader serves them in [`ReplicaManager::fetch_as_leader`],
//! tracks their progress, advances the HW and asks the controller to change
//! the ISR through an [`IsrChannel`]. A periodic tick shrinks the ISR of
//! lagging followers and checkpoints HWs (hw_checkpoint.rs).
//!
//! **Architecture Invariant:** replica/ reads no clock directly (env::time
//! only) and decides nothing about metadata: leadership and ISR take effect
//! only once the controller committed them (image or AlterPartition answer).

pub mod endpoint;
pub mod fetcher;
pub mod hw_checkpoint;
pub mod partition;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use kafka_protocol::protocol::StrBytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::registry::{lock_or_recover, Registry};
use crate::config::ServerConfig;
use crate::controller::api::{ControllerRequest, ControllerResponse};
use crate::env::time::{mono_ms, now, now_ms, sleep, timeout, Duration};
use crate::metadata::MetadataImage;
use endpoint::{EndpointFactory, FetchPartition, FetchedPartition, ReplicaFetchRequest};
use partition::Partition;

/// Kafka error codes replication answers with.
pub mod codes {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
}

/// Sends AlterPartition to the controller (lead wires it to ControllerClient).
pub trait IsrChannel: Send + Sync + 'static {
    fn alter_partition(
        &self,
        req: ControllerRequest, /* AlterPartition */
    ) -> Pin<Box<dyn Future<Output = Option<ControllerResponse>> + Send>>;
}

/// An IsrChannel that refuses every change (no controller: single node).
pub struct NoIsrChannel;

impl IsrChannel for NoIsrChannel {
    fn alter_partition(
        &self,
        _req: ControllerRequest,
    ) -> Pin<Box<dyn Future<Output = Option<ControllerResponse>> + Send>> {
        Box::pin(async { None })
    }
}

/// Replication settings (Kafka's keys, from the broker config).
#[derive(Clone, Debug)]
pub struct ReplicaSettings {
    pub node_id: i32,
    /// replica.lag.time.max.ms (30000)
    pub lag_time_max_ms: i64,
    /// replica.fetch.wait.max.ms (500)
    pub fetch_wait_max_ms: i32,
    /// replica.fetch.max.bytes (1 MiB), per partition
    pub fetch_max_bytes: i32,
    /// replica.fetch.response.max.bytes (10 MiB)
    pub fetch_response_max_bytes: i32,
    /// replica.fetch.backoff.ms (1000)
    pub fetch_backoff_ms: u64,
    /// min.insync.replicas broker default (1)
    pub min_insync_replicas: i32,
    /// replica.high.watermark.checkpoint.interval.ms (5000)
    pub hw_checkpoint_interval_ms: u64,
}

impl ReplicaSettings {
    pub fn from_config(config: &ServerConfig) -> Self {
        ReplicaSettings {
            node_id: config.node_id,
            lag_time_max_ms: config.replica_lag_time_max_ms,
            fetch_wait_max_ms: config.replica_fetch_wait_max_ms.clamp(0, i32::MAX as i64) as i32,
            fetch_max_bytes: config.replica_fetch_max_bytes,
            fetch_response_max_bytes: config.replica_fetch_response_max_bytes,
            fetch_backoff_ms: config.replica_fetch_backoff_ms.max(0) as u64,
            min_insync_replicas: config.min_insync_replicas,
            hw_checkpoint_interval_ms: config.replica_high_watermark_checkpoint_interval_ms.max(1)
                as u64,
        }
    }
}

type PartitionKey = (String, i32);

struct FetcherEntry {
    task: JoinHandle<()>,
}

struct ManagerState {
    partitions: BTreeMap<PartitionKey, Arc<Partition>>,
    fetchers: BTreeMap<i32, FetcherEntry>,
    broker_epoch: i64,
    image: Arc<MetadataImage>,
    /// HWs read from the checkpoint at start, used when a log first opens.
    checkpointed: BTreeMap<PartitionKey, i64>,
}

/// Shared by the manager handle, its fetchers and its tick task.
pub struct Inner {
    settings: ReplicaSettings,
    registry: Arc<Registry>,
    isr: Arc<dyn IsrChannel>,
    endpoints: Arc<dyn EndpointFactory>,
    state: Mutex<ManagerState>,
    hw_file_dir: PathBuf,
    shutdown: watch::Sender<bool>,
}

/// This broker's partition replicas.
pub struct ReplicaManager {
    inner: Arc<Inner>,
    tick_task: Mutex<Option<JoinHandle<()>>>,
}

impl ReplicaManager {
    /// Start a manager over `registry`'s log dir (spawns the ISR/checkpoint
    /// tick task: call inside a runtime).
    pub fn new(
        settings: ReplicaSettings,
        registry: Arc<Registry>,
        isr: Arc<dyn IsrChannel>,
        endpoints: Arc<dyn EndpointFactory>,
    ) -> ReplicaManager {
        let hw_file_dir = registry.config().data_dir();
        let checkpointed = hw_checkpoint::read(registry.disk().as_ref(), &hw_file_dir)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "reading the high watermark checkpoint failed: starting from 0");
                BTreeMap::new()
            });
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            settings,
            registry,
            isr,
            endpoints,
            state: Mutex::new(ManagerState {
                partitions: BTreeMap::new(),
                fetchers: BTreeMap::new(),
                broker_epoch: -1,
                image: Arc::new(MetadataImage::default()),
                checkpointed,
            }),
            hw_file_dir,
            shutdown,
        });
        let tick_task = tokio::spawn(tick_loop(inner.clone()));
        ReplicaManager {
            inner,
            tick_task: Mutex::new(Some(tick_task)),
        }
    }

    /// Make this manager reachable by `InProcessEndpoint`s of `net`.
    pub fn join_network(&self, net: &endpoint::InProcessNetwork) {
        net.register(self.inner.settings.node_id, &self.inner);
    }

    pub fn node_id(&self) -> i32 {
        self.inner.settings.node_id
    }

    /// Act on a new image: open/close/delete logs for partitions assigned to
    /// / removed from this node, become leader or follower, start/stop
    /// follower fetchers, apply topic config changes. Idempotent.
    pub fn apply_image(&self, image: &MetadataImage, broker_epoch: i64) {
        apply_image(&self.inner, image, broker_epoch);
    }

    /// The hosted replica of (topic, partition), if any.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        lock_or_recover(&self.inner.state)
            .partitions
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    /// The topic's name in the last applied image.
    pub fn topic_name(&self, id: uuid::Uuid) -> Option<String> {
        let st = lock_or_recover(&self.inner.state);
        st.image.topic_by_id(id).map(|t| t.name.clone())
    }

    /// The partition's leader and leader epoch in the last applied image,
    /// if the image has the partition (hosted here or not).
    pub fn image_leader(&self, topic: &str, partition: i32) -> Option<(i32, i32)> {
        let st = lock_or_recover(&self.inner.state);
        st.image
            .partition(topic, partition)
            .map(|p| (p.leader, p.leader_epoch))
    }

    /// Every hosted replica, sorted by (topic, partition).
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        lock_or_recover(&self.inner.state)
            .partitions
            .values()
            .cloned()
            .collect()
    }

    /// Serve a follower's fetch as leader (the Fetch handler's replica path).
    pub async fn fetch_as_leader(&self, request: ReplicaFetchRequest) -> Vec<FetchedPartition> {
        fetch_as_leader(&self.inner, request).await
    }

    /// The broker default min.insync.replicas.
    pub fn settings(&self) -> &ReplicaSettings {
        &self.inner.settings
    }

    /// Write every hosted partition's HW to `replication-offset-checkpoint`.
    pub fn checkpoint_high_watermarks(&self) {
        checkpoint_hws(&self.inner);
    }

    /// Stop fetchers and the tick task, checkpoint HWs. Logs stay open
    /// (the registry closes them in `close_all`).
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let fetchers: Vec<FetcherEntry> = {
            let mut st = lock_or_recover(&self.inner.state);
            std::mem::take(&mut st.fetchers).into_values().collect()
        };
        for f in fetchers {
            f.task.abort();
            let _ = f.task.await;
        }
        let tick = lock_or_recover(&self.tick_task).take();
        if let Some(t) = tick {
            t.abort();
            let _ = t.await;
        }
        for p in self.partitions() {
            p.stop();
        }
        checkpoint_hws(&self.inner);
    }
}

impl Drop for ReplicaManager {
    fn drop(&mut self) {
        let _ = self.inner.shutdown.send(true);
        if let Some(t) = lock_or_recover(&self.tick_task).take() {
            t.abort();
        }
        for f in lock_or_recover(&self.inner.state).fetchers.values() {
            f.task.abort();
        }
    }
}

/// min.insync.replicas: the topic's override, else the broker default.
fn min_insync(settings: &ReplicaSettings, configs: &BTreeMap<String, String>) -> i32 {
    const KEY: &str = "min.insync.replicas";
    configs
        .get(KEY)
        .and_then(|v| crate::log::topic_config::parse(KEY, v).ok())
        .and_then(|v| i32::try_from(v.number()).ok())
        .unwrap_or(settings.min_insync_replicas)
}

fn apply_image(inner: &Arc<Inner>, image: &MetadataImage, broker_epoch: i64) {
    let me = inner.settings.node_id;
    // Monotonic: the election time ISR members start from is compared with
    // fetch times for replica.lag.time.max.ms (a wall-clock jump must not
    // shrink the ISR).
    let now = mono_ms();
    // Wall: a log opened here starts its segment.ms age from it.
    let wall = now_ms();
    let image = Arc::new(image.clone());
    let mut assigned: BTreeSet<PartitionKey> = BTreeSet::new();
    let mut leaders_needed: BTreeSet<i32> = BTreeSet::new();
    let mut to_remove: Vec<(Arc<Partition>, bool)> = Vec::new();
    {
        let mut st = lock_or_recover(&inner.state);
        st.broker_epoch = broker_epoch;
        st.image = image.clone();
    }
    for topic in image.topics.values() {
        for (i, reg) in topic.partitions.iter().enumerate() {
            if !reg.replicas.contains(&me) {
                continue;
            }
            let key = (topic.name.clone(), i as i32);
            assigned.insert(key.clone());
            let existing = lock_or_recover(&inner.state).partitions.get(&key).cloned();
            let partition = match existing {
                Some(p) if p.topic_id == topic.id => p,
                other => {
                    if let Some(old) = other {
                        // Same name, new topic: the old log must go first.
                        old.stop();
                        lock_or_recover(&inner.state).partitions.remove(&key);
                        if let Err(e) = inner.registry.close_partition(&key.0, key.1, true) {
                            tracing::warn!(topic = %key.0, partition = key.1, error = %e, "deleting a replaced log failed");
                        }
                    }
                    match open_partition(
                        inner,
                        &topic.name,
                        topic.id,
                        i as i32,
                        &topic.configs,
                        wall,
                    ) {
                        Some(p) => p,
                        None => continue,
                    }
                }
            };
            let min_isr = min_insync(&inner.settings, &topic.configs);
            if let Err(code) = partition.apply_registration(reg, &topic.configs, min_isr, now) {
                tracing::warn!(topic = %topic.name, partition = i, code, "applying partition state failed");
            }
            // Config changes reach the open log.
            if let Ok(cfg) = inner.registry.config().log_config_for(&topic.configs) {
                let _ = partition.log.with_log(|l| {
                    if l.config() != &cfg {
                        l.set_config(cfg.clone());
                    }
                    Ok(())
                });
            }
            if reg.leader != me && reg.has_leader() {
                leaders_needed.insert(reg.leader);
            }
        }
    }
    {
        let st = lock_or_recover(&inner.state);
        for (key, p) in &st.partitions {
            if !assigned.contains(key) {
                to_remove.push((p.clone(), true));
            }
        }
    }
    for (p, delete) in to_remove {
        p.stop();
        {
            let mut st = lock_or_recover(&inner.state);
            let key = (p.topic.clone(), p.index);
            st.partitions.remove(&key);
            st.checkpointed.remove(&key);
        }
        tracing::info!(topic = %p.topic, partition = p.index, "replica removed from this broker");
        if let Err(e) = inner.registry.close_partition(&p.topic, p.index, delete) {
            tracing::warn!(topic = %p.topic, partition = p.index, error = %e, "removing a replica's log failed");
        }
    }
    for leader in leaders_needed {
        ensure_fetcher(inner, leader, &image);
    }
}

fn open_partition(
    inner: &Arc<Inner>,
    topic: &str,
    topic_id: uuid::Uuid,
    index: i32,
    configs: &BTreeMap<String, String>,
    now: i64,
) -> Option<Arc<Partition>> {
    let key = (topic.to_string(), index);
    let log = match inner.registry.open_partition(topic, index, configs, now) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(topic, partition = index, error = %e, "opening a replica log failed");
            return None;
        }
    };
    let hw = lock_or_recover(&inner.state)
        .checkpointed
        .get(&key)
        .copied()
        .unwrap_or(0);
    match Partition::new(
        topic.to_string(),
        index,
        topic_id,
        inner.settings.node_id,
        log,
        hw,
    ) {
        Ok(p) => {
            let p = Arc::new(p);
            lock_or_recover(&inner.state)
                .partitions
                .insert(key, p.clone());
            Some(p)
        }
        Err(code) => {
            tracing::warn!(topic, partition = index, code, "opening a replica failed");
            None
        }
    }
}

/// Start the fetcher for `leader` unless one runs.
fn ensure_fetcher(inner: &Arc<Inner>, leader: i32, image: &MetadataImage) {
    let mut st = lock_or_recover(&inner.state);
    if let Some(f) = st.fetchers.get(&leader) {
        if !f.task.is_finished() {
            return;
        }
    }
    let Some(endpoint) = inner.endpoints.endpoint(leader, image) else {
        tracing::warn!(leader, "no endpoint for the leader: not fetching");
        return;
    };
    let task = tokio::spawn(fetcher::run(inner.clone(), leader, endpoint));
    st.fetchers.insert(leader, FetcherEntry { task });
}

/// Send an AlterPartition in the background and apply the answer.
fn send_alter(inner: &Arc<Inner>, partition: Arc<Partition>, req: ControllerRequest) {
    let ControllerRequest::AlterPartition { leader_epoch, .. } = &req else {
        return;
    };
    let epoch = *leader_epoch;
    let fut = inner.isr.alter_partition(req);
    tokio::spawn(async move {
        let resp = fut.await;
        partition.on_alter_response(epoch, resp);
    });
}

/// The leader side of a follower fetch, long-polling up to `max_wait_ms`
/// for `min_bytes`.
pub(crate) async fn fetch_as_leader(
    inner: &Arc<Inner>,
    request: ReplicaFetchRequest,
) -> Vec<FetchedPartition> {
    let deadline = now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let broker_epoch = lock_or_recover(&inner.state).broker_epoch;
    loop {
        let targets: Vec<Option<Arc<Partition>>> = {
            let st = lock_or_recover(&inner.state);
            request
                .partitions
                .iter()
                .map(|p| st.partitions.get(&(p.topic.clone(), p.partition)).cloned())
                .collect()
        };
        let mut waits = Vec::new();
        for t in targets.iter().flatten() {
            waits.push(Box::pin(t.log.appended()));
        }
        for w in waits.iter_mut() {
            w.as_mut().enable();
        }
        let mut out = Vec::with_capacity(request.partitions.len());
        let mut total = 0usize;
        let mut any_error = false;
        // Monotonic: follower progress feeds the ISR lag check.
        let now = mono_ms();
        for (p, target) in request.partitions.iter().zip(&targets) {
            let Some(partition) = target else {
                any_error = true;
                out.push(FetchedPartition {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    error_code: codes::NOT_LEADER_OR_FOLLOWER,
                    high_watermark: -1,
                    log_start_offset: -1,
                    leader_epoch: -1,
                    ..Default::default()
                });
                continue;
            };
            let limit = (p.max_bytes.max(0) as usize)
                .min((request.max_bytes.max(0) as usize).saturating_sub(total));
            let (r, alter) = partition.fetch_from_follower(
                request.replica_id,
                broker_epoch,
                p,
                limit,
                total == 0,
                now,
            );
            if let Some(req) = alter {
                send_alter(inner, partition.clone(), req);
            }
            total += r.records.len();
            any_error |= r.error_code != codes::NONE || r.diverging_epoch.is_some();
            out.push(r);
        }
        let remaining = deadline.saturating_duration_since(crate::env::time::now());
        if total >= request.min_bytes.max(0) as usize
            || any_error
            || remaining.is_zero()
            || waits.is_empty()
            || *inner.shutdown.borrow()
        {
            return out;
        }
        let any = std::future::poll_fn(|cx| {
            for w in waits.iter_mut() {
                if w.as_mut().poll(cx).is_ready() {
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        });
        let _ = timeout(remaining, any).await;
    }
}

/// ISR shrink checks and HW checkpoints.
async fn tick_loop(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    let check_ms = (inner.settings.lag_time_max_ms / 2).clamp(10, 5000) as u64;
    let mut last_checkpoint = mono_ms();
    loop {
        tokio::select! {
            _ = sleep(Duration::from_millis(check_ms)) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        let (parts, epoch) = {
            let st = lock_or_recover(&inner.state);
            (
                st.partitions.values().cloned().collect::<Vec<_>>(),
                st.broker_epoch,
            )
        };
        // Monotonic, as every time the lag is measured against.
        let now = mono_ms();
        for p in parts {
            if let Some(req) = p.maybe_shrink_isr(now, inner.settings.lag_time_max_ms, epoch) {
                send_alter(&inner, p.clone(), req);
            }
        }
        if now - last_checkpoint >= inner.settings.hw_checkpoint_interval_ms as i64 {
            last_checkpoint = now;
            checkpoint_hws(&inner);
        }
    }
}

fn checkpoint_hws(inner: &Arc<Inner>) {
    let hws: BTreeMap<PartitionKey, i64> = {
        let mut st = lock_or_recover(&inner.state);
        // Entries of logs not opened yet (no image since the restart) are
        // kept; removed replicas left `checkpointed` in apply_image.
        let hosted: Vec<(PartitionKey, i64)> = st
            .partitions
            .iter()
            .map(|(k, p)| (k.clone(), p.high_watermark()))
            .collect();
        st.checkpointed.extend(hosted);
        st.checkpointed.clone()
    };
    // The checkpoint lives in the first log dir (with the metadata).
    if inner.registry.log_dirs()[0].is_offline() {
        return;
    }
    if let Err(e) = hw_checkpoint::write(inner.registry.disk().as_ref(), &inner.hw_file_dir, &hws) {
        tracing::warn!(error = %e, "writing the high watermark checkpoint failed");
    }
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Fetch requests a follower builds for `leader` (used by fetcher.rs).
fn follower_requests(inner: &Arc<Inner>, leader: i32) -> Vec<(Arc<Partition>, FetchPartition)> {
    let parts: Vec<Arc<Partition>> = lock_or_recover(&inner.state)
        .partitions
        .values()
        .cloned()
        .collect();
    parts
        .into_iter()
        .filter_map(|p| {
            let r = p.fetch_request(leader, inner.settings.fetch_max_bytes)?;
            Some((p, r))
        })
        .collect()
}

//! The topic/partition registry: every topic this broker hosts, each
//! partition's open [`PartitionLog`] and the notifier that wakes long-polling
//! fetches when it grows.
//!
//! Topics are immutable snapshots (`Arc<TopicState>`) swapped whole on
//! change (new partitions, new configs), so readers never hold the registry
//! lock while they work; a partition's `Arc<PartitionState>` is shared by
//! every snapshot, so its log is never reopened by a metadata change.
//!
//! Log dirs follow Kafka: `<log.dirs>/<topic>-<partition>/`.
//!
//! A failed write or fsync takes the whole log dir offline, as Kafka's
//! LogDirFailureChannel does: once one log in a directory has failed, the
//! filesystem under every other log there is suspect (disk full, dead
//! device), so every partition in it answers KAFKA_STORAGE_ERROR until the
//! broker restarts and recovers the logs. [`LogDirHealth`] carries that
//! state; each partition holds its directory's. (This broker keeps every
//! partition in the first of log.dirs, so today there is one.)

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use uuid::Uuid;

use super::store::{MetaStore, TopicRecord};
use crate::config::ServerConfig;
use crate::env::rng::WeirRng;
use crate::env::Disk;
use crate::log::{LogConfig, LogError, PartitionLog};
use crate::protocol::error_codes as ec;

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Upper bound on partitions per topic, so one request cannot open millions of logs.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 10_000;

/// A failed registry operation: the Kafka error code and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (error {code})")]
pub struct TopicError {
    pub code: i16,
    pub message: String,
}

impl TopicError {
    pub fn new(code: i16, message: impl Into<String>) -> Self {
        TopicError {
            code,
            message: message.into(),
        }
    }
}

fn storage_error(e: impl std::fmt::Display) -> TopicError {
    TopicError::new(ec::KAFKA_STORAGE_ERROR, e.to_string())
}

/// Whether a log directory is still usable. Goes offline at the first
/// failed write or fsync of any log in it and never comes back online in
/// this process: a restart reopens (and recovers) every log.
#[derive(Debug)]
pub struct LogDirHealth {
    dir: PathBuf,
    offline: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl LogDirHealth {
    pub fn new(dir: PathBuf) -> Self {
        LogDirHealth {
            dir,
            offline: AtomicBool::new(false),
            reason: Mutex::new(None),
        }
    }

    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    /// Take the directory offline (idempotent; the first reason is kept).
    pub fn set_offline(&self, reason: &str) {
        let mut r = lock_or_recover(&self.reason);
        if r.is_none() {
            tracing::error!(dir = %self.dir.display(), reason, "log dir offline: every partition in it now fails with KAFKA_STORAGE_ERROR");
            *r = Some(reason.to_string());
        }
        self.offline.store(true, Ordering::Release);
    }

    /// Why the directory went offline, if it did.
    pub fn reason(&self) -> Option<String> {
        lock_or_recover(&self.reason).clone()
    }

    fn error(&self) -> PartitionError {
        PartitionError::LogDirOffline {
            dir: self.dir.display().to_string(),
            reason: self.reason().unwrap_or_default(),
        }
    }
}

/// One partition: its log (None once closed or deleted) and its append notifier.
pub struct PartitionState {
    pub topic: String,
    pub index: i32,
    log: Mutex<Option<PartitionLog>>,
    appended: Notify,
    log_dir: Arc<LogDirHealth>,
}

impl PartitionState {
    /// Run `f` on the open log under its lock. Keep `f` short: appends and
    /// reads of other requests for this partition wait on it.
    ///
    /// Fails with `LogDirOffline` (KAFKA_STORAGE_ERROR) once the partition's
    /// log dir is offline; an I/O failure inside `f` that takes this log
    /// offline takes the whole dir offline with it.
    pub fn with_log<R>(
        &self,
        f: impl FnOnce(&mut PartitionLog) -> Result<R, LogError>,
    ) -> Result<R, PartitionError> {
        let mut guard = lock_or_recover(&self.log);
        let Some(log) = guard.as_mut() else {
            return Err(PartitionError::Closed);
        };
        if self.log_dir.is_offline() {
            return Err(self.log_dir.error());
        }
        let r = f(log);
        if log.is_offline() {
            let why = match &r {
                Err(e) => e.to_string(),
                Ok(_) => "a log in it failed an I/O operation".to_string(),
            };
            self.log_dir
                .set_offline(&format!("{}-{}: {why}", self.topic, self.index));
        }
        r.map_err(PartitionError::Log)
    }

    /// Whether this partition's log dir is offline (Metadata reports it).
    pub fn is_offline(&self) -> bool {
        self.log_dir.is_offline()
    }

    /// Wake every fetch waiting on this partition (after an append).
    pub fn notify_appended(&self) {
        self.appended.notify_waiters();
    }

    /// A future that completes at the next `notify_appended`. Call
    /// `Notified::enable` before checking for data so no append is missed.
    pub fn appended(&self) -> Notified<'_> {
        self.appended.notified()
    }

    fn take_log(&self) -> Option<PartitionLog> {
        lock_or_recover(&self.log).take()
    }
}

/// Why a partition operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(transparent)]
    Log(LogError),
    #[error("partition is closed (topic deleted or broker shutting down)")]
    Closed,
    #[error("log dir {dir} is offline after an I/O failure ({reason}); restart the broker once the disk is usable")]
    LogDirOffline { dir: String, reason: String },
}

impl PartitionError {
    pub fn error_code(&self) -> i16 {
        match self {
            PartitionError::Log(e) => e.error_code(),
            // The partition moved away under the client: it refreshes metadata and retries.
            PartitionError::Closed => ec::NOT_LEADER_OR_FOLLOWER,
            PartitionError::LogDirOffline { .. } => ec::KAFKA_STORAGE_ERROR,
        }
    }
}

/// A topic snapshot.
pub struct TopicState {
    pub name: String,
    pub id: Uuid,
    /// Topic-level overrides only (dynamic topic configs).
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<Arc<PartitionState>>,
}

impl TopicState {
    pub fn partition(&self, index: i32) -> Option<&Arc<PartitionState>> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
    }

    fn record(&self) -> TopicRecord {
        TopicRecord {
            name: self.name.clone(),
            id: self.id,
            partitions: self.partitions.len() as i32,
            configs: self.configs.clone(),
        }
    }
}

#[derive(Default)]
struct Topics {
    by_name: BTreeMap<String, Arc<TopicState>>,
    by_id: BTreeMap<Uuid, String>,
}

/// Every topic on this broker.
pub struct Registry {
    disk: Arc<dyn Disk>,
    config: Arc<ServerConfig>,
    data_dir: PathBuf,
    /// The health of `data_dir`, the one log dir every partition lives in.
    log_dir: Arc<LogDirHealth>,
    store: MetaStore,
    topics: Mutex<Topics>,
    rng: Mutex<WeirRng>,
    /// Partitions opened for the metadata image (replicated topics), by
    /// (topic, partition): the ReplicaManager opens and closes them as
    /// images arrive. Separate from `topics` (the single-node path, driven
    /// by the broker's own MetaStore) until the handlers move over.
    hosted: Mutex<BTreeMap<(String, i32), Arc<PartitionState>>>,
}

pub fn lock_or_recover<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take every later request down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kafka's topic name rule: 1..=249 chars of [a-zA-Z0-9._-], not "." or "..".
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let bad = |why: &str| {
        Err(TopicError::new(
            ec::INVALID_TOPIC_EXCEPTION,
            format!("invalid topic name {name:?}: {why}"),
        ))
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return bad("longer than 249 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return bad("legal characters are [a-zA-Z0-9._-]");
    }
    Ok(())
}

impl Registry {
    /// Load every persisted topic and open its partition logs.
    pub fn open(
        disk: Arc<dyn Disk>,
        config: Arc<ServerConfig>,
        now_ms: i64,
    ) -> anyhow::Result<Registry> {
        let data_dir = config.data_dir();
        disk.create_dir_all(&data_dir)?;
        let store = MetaStore::open(disk.clone(), &data_dir)?;
        let registry = Registry {
            disk,
            log_dir: Arc::new(LogDirHealth::new(data_dir.clone())),
            data_dir,
            store,
            topics: Mutex::new(Topics::default()),
            rng: Mutex::new(WeirRng::from_env()),
            config,
            hosted: Mutex::new(BTreeMap::new()),
        };
        for record in registry.store.load_topics()? {
            let log_config = registry
                .config
                .log_config_for(&record.configs)
                .map_err(|e| anyhow::anyhow!("topic {}: {e}", record.name))?;
            let mut partitions = Vec::new();
            for p in 0..record.partitions {
                partitions.push(registry.open_partition(&record.name, p, &log_config, now_ms)?);
            }
            let mut topics = lock_or_recover(&registry.topics);
            topics.by_id.insert(record.id, record.name.clone());
            topics.by_name.insert(
                record.name.clone(),
                Arc::new(TopicState {
                    name: record.name,
                    id: record.id,
                    configs: record.configs,
                    partitions,
                }),
            );
        }
        Ok(registry)
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The disk every log lives on.
    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }

    /// The broker metadata files (topics, producer ids).
    pub fn store(&self) -> &MetaStore {
        &self.store
    }

    fn partition_dir(&self, topic: &str, index: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{index}"))
    }

    /// The health of the log dir partitions live in.
    pub fn log_dir(&self) -> &Arc<LogDirHealth> {
        &self.log_dir
    }

    /// KAFKA_STORAGE_ERROR while the log dir is offline: no new logs there.
    fn ensure_log_dir_online(&self) -> Result<(), TopicError> {
        if self.log_dir.is_offline() {
            return Err(storage_error(self.log_dir.error()));
        }
        Ok(())
    }

    fn open_partition(
        &self,
        topic: &str,
        index: i32,
        log_config: &LogConfig,
        now_ms: i64,
    ) -> Result<Arc<PartitionState>, TopicError> {
        self.ensure_log_dir_online()?;
        let log = PartitionLog::open(
            self.disk.clone(),
            self.partition_dir(topic, index),
            log_config.clone(),
            now_ms,
        )
        .map_err(storage_error)?;
        Ok(Arc::new(PartitionState {
            topic: topic.to_string(),
            index,
            log: Mutex::new(Some(log)),
            appended: Notify::new(),
            log_dir: self.log_dir.clone(),
        }))
    }

    pub fn get(&self, name: &str) -> Option<Arc<TopicState>> {
        lock_or_recover(&self.topics).by_name.get(name).cloned()
    }

    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<TopicState>> {
        let topics = lock_or_recover(&self.topics);
        let name = topics.by_id.get(&id)?;
        topics.by_name.get(name).cloned()
    }

    /// Every topic, sorted by name.
    pub fn list(&self) -> Vec<Arc<TopicState>> {
        lock_or_recover(&self.topics)
            .by_name
            .values()
            .cloned()
            .collect()
    }

    fn fresh_topic_id(&self, taken: &BTreeMap<Uuid, String>) -> Uuid {
        let mut rng = lock_or_recover(&self.rng);
        loop {
            let id = Uuid::from_u64_pair(rng.next_u64(), rng.next_u64());
            // Kafka reserves the all-zero id and the metadata topic's id (0..01).
            if id.as_u128() > 1 && !taken.contains_key(&id) {
                return id;
            }
        }
    }

    /// Check a create request without changing anything; returns the
    /// partition count that would be used.
    pub fn validate_create(
        &self,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), TopicError> {
        validate_topic_name(name)?;
        if lock_or_recover(&self.topics).by_name.contains_key(name) {
            return Err(TopicError::new(
                ec::TOPIC_ALREADY_EXISTS,
                format!("topic {name:?} already exists"),
            ));
        }
        validate_partition_count(partitions)?;
        for (k, v) in configs {
            self.config
                .validate_topic_config(k, v)
                .map_err(|e| TopicError::new(ec::INVALID_CONFIG, e.to_string()))?;
        }
        Ok(())
    }

    /// Create a topic: persist its record, then open its logs.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<Arc<TopicState>, TopicError> {
        self.validate_create(name, partitions, &configs)?;
        self.ensure_log_dir_online()?;
        let log_config = self
            .config
            .log_config_for(&configs)
            .map_err(|e| TopicError::new(ec::INVALID_CONFIG, e.to_string()))?;
        // Hold the lock across creation so two concurrent creates of one name
        // cannot both succeed; creation is rare, lookups are not blocked long.
        let mut topics = lock_or_recover(&self.topics);
        if topics.by_name.contains_key(name) {
            return Err(TopicError::new(
                ec::TOPIC_ALREADY_EXISTS,
                format!("topic {name:?} already exists"),
            ));
        }
        let id = self.fresh_topic_id(&topics.by_id);
        let record = TopicRecord {
            name: name.to_string(),
            id,
            partitions,
            configs: configs.clone(),
        };
        // Leftover dirs of a deleted topic of the same name (a crash between
        // the metadata removal and the log removal) must not resurface.
        for p in 0..partitions {
            let dir = self.partition_dir(name, p);
            if self.disk.exists(&dir) {
                self.disk.remove_dir_all(&dir).map_err(storage_error)?;
            }
        }
        let mut opened = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            opened.push(self.open_partition(name, p, &log_config, now_ms)?);
        }
        self.store.save_topic(&record).map_err(storage_error)?;
        let topic = Arc::new(TopicState {
            name: name.to_string(),
            id,
            configs,
            partitions: opened,
        });
        topics.by_id.insert(id, name.to_string());
        topics.by_name.insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Delete a topic: forget it, remove its record, then delete its logs.
    pub fn delete(&self, name: &str) -> Result<Arc<TopicState>, TopicError> {
        let topic = {
            let mut topics = lock_or_recover(&self.topics);
            let Some(topic) = topics.by_name.remove(name) else {
                return Err(TopicError::new(
                    ec::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("unknown topic {name:?}"),
                ));
            };
            topics.by_id.remove(&topic.id);
            topic
        };
        self.store.remove_topic(name).map_err(storage_error)?;
        for p in &topic.partitions {
            if let Some(log) = p.take_log() {
                if let Err(e) = log.delete() {
                    tracing::warn!(topic = name, partition = p.index, error = %e, "deleting log failed");
                }
            }
            p.notify_appended();
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(topic)
    }

    /// Grow a topic to `count` partitions (Kafka never shrinks).
    pub fn add_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
        now_ms: i64,
    ) -> Result<(), TopicError> {
        let mut topics = lock_or_recover(&self.topics);
        let Some(topic) = topics.by_name.get(name).cloned() else {
            return Err(TopicError::new(
                ec::UNKNOWN_TOPIC_OR_PARTITION,
                format!("unknown topic {name:?}"),
            ));
        };
        let current = topic.partitions.len() as i32;
        if count <= current {
            return Err(TopicError::new(
                ec::INVALID_PARTITIONS,
                format!(
                    "topic has {current} partitions; the new count must be larger, got {count}"
                ),
            ));
        }
        validate_partition_count(count)?;
        if validate_only {
            return Ok(());
        }
        let log_config = self
            .config
            .log_config_for(&topic.configs)
            .map_err(|e| TopicError::new(ec::INVALID_CONFIG, e.to_string()))?;
        let mut partitions = topic.partitions.clone();
        for p in current..count {
            let dir = self.partition_dir(name, p);
            if self.disk.exists(&dir) {
                self.disk.remove_dir_all(&dir).map_err(storage_error)?;
            }
            partitions.push(self.open_partition(name, p, &log_config, now_ms)?);
        }
        let next = Arc::new(TopicState {
            name: topic.name.clone(),
            id: topic.id,
            configs: topic.configs.clone(),
            partitions,
        });
        self.store
            .save_topic(&next.record())
            .map_err(storage_error)?;
        topics.by_name.insert(name.to_string(), next);
        Ok(())
    }

    /// Replace a topic's overrides: validate, persist, then apply to open logs.
    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        for (k, v) in &configs {
            self.config
                .validate_topic_config(k, v)
                .map_err(|e| TopicError::new(ec::INVALID_CONFIG, e.to_string()))?;
        }
        let log_config = self
            .config
            .log_config_for(&configs)
            .map_err(|e| TopicError::new(ec::INVALID_CONFIG, e.to_string()))?;
        let mut topics = lock_or_recover(&self.topics);
        let Some(topic) = topics.by_name.get(name).cloned() else {
            return Err(TopicError::new(
                ec::UNKNOWN_TOPIC_OR_PARTITION,
                format!("unknown topic {name:?}"),
            ));
        };
        if validate_only {
            return Ok(());
        }
        let next = Arc::new(TopicState {
            name: topic.name.clone(),
            id: topic.id,
            configs,
            partitions: topic.partitions.clone(),
        });
        self.store
            .save_topic(&next.record())
            .map_err(storage_error)?;
        for p in &next.partitions {
            let _ = p.with_log(|log| {
                log.set_config(log_config.clone());
                Ok(())
            });
        }
        topics.by_name.insert(name.to_string(), next);
        Ok(())
    }

    /// Image-driven: the partition's state, opening its log if this
    /// broker does not hold it yet. A partition the single-node path
    /// already opened (same topic name) is shared, never opened twice.
    /// A stale log of an older topic with the same name (other `topic_id`)
    /// must have been removed with `close_hosted(.., delete = true)` first.
    pub fn open_hosted(
        &self,
        topic: &str,
        index: i32,
        configs: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<Arc<PartitionState>, TopicError> {
        let key = (topic.to_string(), index);
        if let Some(p) = lock_or_recover(&self.hosted).get(&key) {
            return Ok(p.clone());
        }
        if let Some(p) = self.get(topic).and_then(|t| t.partition(index).cloned()) {
            lock_or_recover(&self.hosted).insert(key, p.clone());
            return Ok(p);
        }
        validate_topic_name(topic)?;
        let log_config = self
            .config
            .log_config_for(configs)
            .map_err(|e| TopicError::new(ec::INVALID_CONFIG, e.to_string()))?;
        let p = self.open_partition(topic, index, &log_config, now_ms)?;
        lock_or_recover(&self.hosted).insert(key, p.clone());
        tracing::info!(topic, partition = index, "opened replica log");
        Ok(p)
    }

    /// Image-driven: the hosted partition, if open.
    pub fn hosted(&self, topic: &str, index: i32) -> Option<Arc<PartitionState>> {
        lock_or_recover(&self.hosted)
            .get(&(topic.to_string(), index))
            .cloned()
    }

    /// Image-driven: every hosted partition, sorted by (topic, partition).
    pub fn hosted_list(&self) -> Vec<Arc<PartitionState>> {
        lock_or_recover(&self.hosted).values().cloned().collect()
    }

    /// Image-driven: stop hosting a partition; close its log cleanly, or
    /// delete it (topic deleted, replica moved away). Waiting fetches wake.
    pub fn close_hosted(&self, topic: &str, index: i32, delete: bool) -> Result<(), TopicError> {
        let p = lock_or_recover(&self.hosted).remove(&(topic.to_string(), index));
        let p = match p {
            Some(p) => p,
            None if delete => {
                // Nothing open, but a leftover directory must not resurface.
                let dir = self.partition_dir(topic, index);
                if self.disk.exists(&dir) {
                    self.disk.remove_dir_all(&dir).map_err(storage_error)?;
                }
                return Ok(());
            }
            None => return Ok(()),
        };
        let r = match p.take_log() {
            Some(log) if delete => log.delete().map_err(storage_error),
            Some(log) if !self.log_dir.is_offline() => log.close().map_err(storage_error),
            _ => Ok(()),
        };
        p.notify_appended();
        r
    }

    /// Flush logs whose flush.ms has elapsed.
    pub fn maybe_flush_all(&self, now_ms: i64) {
        let mut all: Vec<Arc<PartitionState>> = Vec::new();
        for topic in self.list() {
            all.extend(topic.partitions.iter().cloned());
        }
        for p in self.hosted_list() {
            // A hosted partition may be the single-node path's own.
            if !all.iter().any(|q| Arc::ptr_eq(q, &p)) {
                all.push(p);
            }
        }
        for p in &all {
            if let Err(e @ PartitionError::Log(_)) = p.with_log(|log| log.maybe_flush(now_ms)) {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "periodic flush failed");
            }
        }
    }

    /// Close every log cleanly (flush + clean-shutdown marker). Later
    /// requests for these partitions get NOT_LEADER_OR_FOLLOWER.
    ///
    /// Logs in an offline log dir are dropped without a clean-shutdown
    /// marker: what they hold is suspect, so the next open must recover them.
    pub fn close_all(&self) -> anyhow::Result<()> {
        let mut first_error = None;
        let offline = self.log_dir.is_offline();
        if offline {
            tracing::warn!(dir = %self.data_dir.display(), "log dir offline: closing its logs without a clean-shutdown marker");
        }
        for topic in self.list() {
            for p in &topic.partitions {
                if let Some(log) = p.take_log() {
                    if offline {
                        drop(log);
                    } else if let Err(e) = log.close() {
                        tracing::error!(topic = %topic.name, partition = p.index, error = %e, "closing log failed");
                        first_error.get_or_insert(e);
                    }
                }
                p.notify_appended();
            }
        }
        for p in self.hosted_list() {
            if let Err(e) = self.close_hosted(&p.topic, p.index, false) {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "closing log failed");
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

fn validate_partition_count(partitions: i32) -> Result<(), TopicError> {
    if partitions < 1 {
        return Err(TopicError::new(
            ec::INVALID_PARTITIONS,
            format!("number of partitions must be at least 1, got {partitions}"),
        ));
    }
    if partitions > PARTITIONS_PER_TOPIC_MAX {
        return Err(TopicError::new(
            ec::INVALID_PARTITIONS,
            format!("number of partitions must be at most {PARTITIONS_PER_TOPIC_MAX}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("a.B_c-9").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "é"] {
            assert_eq!(
                validate_topic_name(bad).unwrap_err().code,
                ec::INVALID_TOPIC_EXCEPTION
            );
        }
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }
}

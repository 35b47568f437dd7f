//! The partition log registry: every partition log this broker holds open,
//! each with the notifier that wakes long-polling fetches when it grows.
//!
//! Which partitions those are is decided elsewhere: topics exist only in the
//! controller's metadata image, and the ReplicaManager
//! (`crate::replica::ReplicaManager::apply_image`) opens, closes and deletes
//! logs here as images arrive. The registry persists no metadata of its own;
//! it owns the logs and their directory's health, nothing more.
//!
//! Log dirs follow Kafka: `<one of log.dirs>/<topic>-<partition>/`. With
//! several dirs (one per disk, JBOD), every dir is scanned at startup and a
//! partition opens where its directory is; a partition found in two dirs
//! refuses the start, naming both. A new partition goes to the online dir
//! holding the fewest partitions (ties: the order of log.dirs), as Kafka
//! places them.
//!
//! A failed write or fsync takes its whole log dir offline, as Kafka's
//! LogDirFailureChannel does: once one log in a directory has failed, the
//! filesystem under every other log there is suspect (disk full, dead
//! device), so every partition in it answers KAFKA_STORAGE_ERROR until the
//! broker restarts and recovers the logs; partitions in the other dirs go
//! on. [`LogDirHealth`] carries that state; each partition holds its
//! directory's.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::config::ServerConfig;
use crate::env::Disk;
use crate::log::{LogError, PartitionLog};
use crate::protocol::error_codes as ec;

/// Kafka's limit on topic name length.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

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

/// Every partition log open on this broker, by (topic, partition).
pub struct Registry {
    disk: Arc<dyn Disk>,
    config: Arc<ServerConfig>,
    /// log.dirs, in their configured order, each with its health.
    log_dirs: Vec<Arc<LogDirHealth>>,
    /// The log dir (index into `log_dirs`) of every partition directory
    /// found at startup or created since.
    placement: Mutex<BTreeMap<(String, i32), usize>>,
    /// Open partitions, sorted by (topic, partition) so iteration is deterministic.
    partitions: Mutex<BTreeMap<(String, i32), Arc<PartitionState>>>,
}

/// `<topic>-<partition>` as a partition directory name, if it is one.
fn parse_partition_dir(name: &str) -> Option<(String, i32)> {
    let (topic, index) = name.rsplit_once('-')?;
    let index: i32 = index.parse().ok()?;
    (index >= 0 && validate_topic_name(topic).is_ok()).then(|| (topic.to_string(), index))
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
    /// A registry over the configured log dirs (created if missing), each
    /// scanned for the partition directories it holds. Logs open later, as
    /// the ReplicaManager applies metadata images.
    pub fn open(disk: Arc<dyn Disk>, config: Arc<ServerConfig>) -> anyhow::Result<Registry> {
        let mut dirs: Vec<PathBuf> = config.log_dirs.clone();
        if dirs.is_empty() {
            dirs.push(config.data_dir());
        }
        let mut placement: BTreeMap<(String, i32), usize> = BTreeMap::new();
        for (i, dir) in dirs.iter().enumerate() {
            if dirs[..i].contains(dir) {
                anyhow::bail!("log.dirs names {} twice", dir.display());
            }
            disk.create_dir_all(dir)?;
            for name in disk.list_dir(dir)? {
                if name.starts_with(crate::controller::METADATA_DIR)
                    || !disk.is_dir(&dir.join(&name))
                {
                    continue;
                }
                let Some(key) = parse_partition_dir(&name) else {
                    continue;
                };
                if let Some(&other) = placement.get(&key) {
                    anyhow::bail!(
                        "partition {name} is in two log dirs, {} and {}: remove the stale copy",
                        dirs[other].display(),
                        dir.display()
                    );
                }
                placement.insert(key, i);
            }
        }
        Ok(Registry {
            disk,
            log_dirs: dirs
                .into_iter()
                .map(|d| Arc::new(LogDirHealth::new(d)))
                .collect(),
            placement: Mutex::new(placement),
            config,
            partitions: Mutex::new(BTreeMap::new()),
        })
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The disk every log lives on.
    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }

    /// The log dirs, in the order of log.dirs.
    pub fn log_dirs(&self) -> &[Arc<LogDirHealth>] {
        &self.log_dirs
    }

    /// Whether any log dir has failed.
    pub fn any_log_dir_offline(&self) -> bool {
        self.log_dirs.iter().any(|d| d.is_offline())
    }

    /// The log dir a partition's directory is in, if it has one yet.
    fn placed(&self, topic: &str, index: i32) -> Option<usize> {
        lock_or_recover(&self.placement)
            .get(&(topic.to_string(), index))
            .copied()
    }

    /// The log dir for a new partition: the online one holding the fewest
    /// partitions, the first in log.dirs on a tie.
    fn place(&self, topic: &str, index: i32) -> Result<usize, TopicError> {
        let mut placement = lock_or_recover(&self.placement);
        let key = (topic.to_string(), index);
        if let Some(&i) = placement.get(&key) {
            return Ok(i);
        }
        let mut counts = vec![0usize; self.log_dirs.len()];
        for &i in placement.values() {
            counts[i] += 1;
        }
        let chosen = (0..self.log_dirs.len())
            .filter(|&i| !self.log_dirs[i].is_offline())
            .min_by_key(|&i| (counts[i], i))
            .ok_or_else(|| storage_error(self.log_dirs[0].error()))?;
        placement.insert(key, chosen);
        Ok(chosen)
    }

    fn partition_path(&self, dir: usize, topic: &str, index: i32) -> PathBuf {
        self.log_dirs[dir].dir.join(format!("{topic}-{index}"))
    }

    /// The partition's state, opening its log if this broker does not hold
    /// it yet (KAFKA_STORAGE_ERROR while the log dir is offline). A stale
    /// log of an older topic with the same name (other topic id) must have
    /// been removed with `close_partition(.., delete = true)` first.
    pub fn open_partition(
        &self,
        topic: &str,
        index: i32,
        configs: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> Result<Arc<PartitionState>, TopicError> {
        let key = (topic.to_string(), index);
        if let Some(p) = lock_or_recover(&self.partitions).get(&key) {
            return Ok(p.clone());
        }
        validate_topic_name(topic)?;
        let log_config = self
            .config
            .log_config_for(configs)
            .map_err(|e| TopicError::new(ec::INVALID_CONFIG, e.to_string()))?;
        let dir = self.place(topic, index)?;
        let health = &self.log_dirs[dir];
        if health.is_offline() {
            return Err(storage_error(health.error()));
        }
        let log = PartitionLog::open(
            self.disk.clone(),
            self.partition_path(dir, topic, index),
            log_config,
            now_ms,
        )
        .map_err(storage_error)?;
        let p = Arc::new(PartitionState {
            topic: topic.to_string(),
            index,
            log: Mutex::new(Some(log)),
            appended: Notify::new(),
            log_dir: health.clone(),
        });
        lock_or_recover(&self.partitions).insert(key, p.clone());
        tracing::info!(topic, partition = index, "opened partition log");
        Ok(p)
    }

    /// The open partition, if this broker holds it.
    pub fn get(&self, topic: &str, index: i32) -> Option<Arc<PartitionState>> {
        lock_or_recover(&self.partitions)
            .get(&(topic.to_string(), index))
            .cloned()
    }

    /// Every open partition, sorted by (topic, partition).
    pub fn list(&self) -> Vec<Arc<PartitionState>> {
        lock_or_recover(&self.partitions)
            .values()
            .cloned()
            .collect()
    }

    /// Stop holding a partition; close its log cleanly, or delete it (topic
    /// deleted, replica moved away). Waiting fetches wake. A log in an
    /// offline log dir is dropped without a clean-shutdown marker: what it
    /// holds is suspect, so the next open must recover it.
    pub fn close_partition(&self, topic: &str, index: i32, delete: bool) -> Result<(), TopicError> {
        let p = lock_or_recover(&self.partitions).remove(&(topic.to_string(), index));
        let placed = self.placed(topic, index);
        if delete {
            lock_or_recover(&self.placement).remove(&(topic.to_string(), index));
        }
        let p = match (p, placed) {
            (Some(p), _) => p,
            (None, Some(dir)) if delete => {
                // Nothing open, but a leftover directory must not resurface.
                let path = self.partition_path(dir, topic, index);
                if self.disk.exists(&path) {
                    self.disk.remove_dir_all(&path).map_err(storage_error)?;
                }
                return Ok(());
            }
            (None, _) => return Ok(()),
        };
        let r = match p.take_log() {
            Some(log) if delete => log.delete().map_err(storage_error),
            Some(log) if !p.log_dir.is_offline() => log.close().map_err(storage_error),
            _ => Ok(()),
        };
        p.notify_appended();
        r
    }

    /// Flush logs whose flush.ms has elapsed.
    pub fn maybe_flush_all(&self, now_ms: i64) {
        for p in self.list() {
            if let Err(e @ PartitionError::Log(_)) = p.with_log(|log| log.maybe_flush(now_ms)) {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "periodic flush failed");
            }
        }
    }

    /// Close every log cleanly (flush + clean-shutdown marker). Later
    /// requests for these partitions get NOT_LEADER_OR_FOLLOWER. Every log
    /// is closed; the first failure is returned.
    pub fn close_all(&self) -> anyhow::Result<()> {
        for d in self.log_dirs.iter().filter(|d| d.is_offline()) {
            tracing::warn!(dir = %d.dir.display(), "log dir offline: closing its logs without a clean-shutdown marker");
        }
        let mut first_error = None;
        for p in self.list() {
            if let Err(e) = self.close_partition(&p.topic, p.index, false) {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "closing log failed");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
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

//! The leader epoch cache of one partition: for every leader epoch that
//! wrote to the log, the offset of its first batch (Kafka's
//! LeaderEpochFileCache, file `leader-epoch-checkpoint`).
//!
//! A follower (or a restarted old leader) asks the leader where each of its
//! epochs ended (`end_offset_for_epoch`) and truncates the suffix the leader
//! never had, so logs never diverge below the high watermark (KIP-101,
//! KIP-320).
//!
//! Layout: a checkpoint file (see checkpoint.rs: format line, values, CRC
//! line) with one `<epoch> <start offset>` line per entry, oldest first.
//!
//! Crash story: every change rewrites the whole file (temp, fsync, rename),
//! so a reader sees the old or the new list. The file may run ahead of the
//! log (an epoch assigned for records that were not yet durable): `open`
//! drops entries beyond the recovered log end. It may also be missing (a log
//! written before the cache existed): the log rebuilds it from batch headers.
//!
//! Invariants: epochs strictly increase and start offsets strictly increase
//! from one entry to the next.

use std::path::{Path, PathBuf};

use super::checkpoint;
use super::LogError;
use crate::env::Disk;

/// File holding the cache.
pub const EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// Kafka's "no epoch" / "no offset" answer.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_OFFSET: i64 = -1;

/// One epoch and the offset of its first batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The in-memory cache, written through to its file on every change.
#[derive(Debug)]
pub struct LeaderEpochCache {
    dir: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// Load the cache of the log in `dir`; None when the file is absent or
    /// damaged (the caller rebuilds it from the log).
    pub fn load(disk: &dyn Disk, dir: &Path) -> Result<Option<LeaderEpochCache>, LogError> {
        let Some(lines) = checkpoint::read_lines(disk, dir, EPOCH_FILE)? else {
            return Ok(None);
        };
        let mut entries: Vec<EpochEntry> = Vec::with_capacity(lines.len());
        for line in &lines {
            let parsed = line.split_once(' ').and_then(|(e, o)| {
                Some(EpochEntry {
                    epoch: e.parse().ok()?,
                    start_offset: o.parse().ok()?,
                })
            });
            let Some(entry) = parsed else {
                tracing::warn!(dir = %dir.display(), line, "ignoring damaged leader epoch checkpoint");
                return Ok(None);
            };
            if let Some(last) = entries.last() {
                if entry.epoch <= last.epoch || entry.start_offset <= last.start_offset {
                    tracing::warn!(dir = %dir.display(), "leader epoch checkpoint not increasing: rebuilding");
                    return Ok(None);
                }
            }
            entries.push(entry);
        }
        Ok(Some(LeaderEpochCache {
            dir: dir.to_path_buf(),
            entries,
        }))
    }

    /// An empty cache for the log in `dir` (nothing written until a change).
    pub fn empty(dir: &Path) -> LeaderEpochCache {
        LeaderEpochCache {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
        }
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch, if any batch or leader ever assigned one.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Record that `epoch` starts at `start_offset`, if it is news: a larger
    /// epoch than any known. An epoch already known keeps its first start.
    /// Entries at or after `start_offset` belong to epochs that never wrote
    /// there (a leader that appended nothing) and are replaced, as Kafka
    /// does. An older epoch than the latest is ignored (never happens for a
    /// log that truncates before fetching). Returns whether anything changed.
    pub fn assign(
        &mut self,
        disk: &dyn Disk,
        epoch: i32,
        start_offset: i64,
    ) -> Result<bool, LogError> {
        if epoch < 0 {
            return Ok(false);
        }
        if let Some(last) = self.entries.last() {
            if epoch <= last.epoch {
                if epoch < last.epoch {
                    tracing::warn!(dir = %self.dir.display(), epoch, latest = last.epoch, "ignoring an older leader epoch");
                }
                return Ok(false);
            }
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        self.check_invariants();
        self.write(disk)?;
        Ok(true)
    }

    /// Forget epochs that start at or after `end_offset` (the log was cut there).
    pub fn truncate_from_end(&mut self, disk: &dyn Disk, end_offset: i64) -> Result<(), LogError> {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        if self.entries.len() != before {
            self.write(disk)?;
        }
        Ok(())
    }

    /// The log now starts at `start_offset` (retention, DeleteRecords):
    /// epochs wholly below it go, and the one it falls in starts there.
    pub fn truncate_from_start(
        &mut self,
        disk: &dyn Disk,
        start_offset: i64,
    ) -> Result<(), LogError> {
        // The last entry starting at or below the new start survives.
        let keep_from = self
            .entries
            .iter()
            .rposition(|e| e.start_offset <= start_offset);
        let Some(i) = keep_from else {
            return Ok(());
        };
        if i == 0 && self.entries[0].start_offset == start_offset {
            return Ok(());
        }
        self.entries.drain(..i);
        self.entries[0].start_offset = start_offset;
        self.check_invariants();
        self.write(disk)
    }

    /// Forget everything (the log restarted empty).
    pub fn clear(&mut self, disk: &dyn Disk) -> Result<(), LogError> {
        if self.entries.is_empty() {
            return Ok(());
        }
        self.entries.clear();
        self.write(disk)
    }

    /// Kafka's `endOffsetFor`: the largest epoch <= `requested` this log
    /// knows and the offset where it ended (the start of the next epoch, or
    /// `log_end_offset` for the latest). (UNDEFINED_EPOCH, UNDEFINED_OFFSET)
    /// when `requested` is undefined or newer than every known epoch... except
    /// that asking for the latest epoch answers the log end.
    pub fn end_offset_for_epoch(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_OFFSET);
        if requested == UNDEFINED_EPOCH {
            return undefined;
        }
        match self.latest_epoch() {
            None => return undefined,
            Some(latest) if latest == requested => return (requested, log_end_offset),
            _ => {}
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
            return undefined;
        };
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            // Older than every epoch we know: it ended where our first began.
            None => (requested, higher.start_offset),
            Some(floor) => (floor.epoch, higher.start_offset),
        }
    }

    /// The epoch of the batch holding `offset` (largest start <= offset).
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.start_offset <= offset)
            .map(|e| e.epoch)
    }

    fn write(&self, disk: &dyn Disk) -> Result<(), LogError> {
        let lines: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{} {}", e.epoch, e.start_offset))
            .collect();
        checkpoint::write_lines(disk, &self.dir, EPOCH_FILE, &lines)
    }

    fn check_invariants(&self) {
        for w in self.entries.windows(2) {
            assert!(
                w[0].epoch < w[1].epoch,
                "epoch cache invariant: epochs strictly increase"
            );
            assert!(
                w[0].start_offset < w[1].start_offset,
                "epoch cache invariant: start offsets strictly increase"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::sim_disk::{SimDisk, SimDiskOptions};

    fn setup() -> (SimDisk, PathBuf) {
        let disk = SimDisk::new(1, SimDiskOptions::default());
        let dir = PathBuf::from("/data/t-0");
        disk.create_dir_all(&dir).unwrap();
        (disk, dir)
    }

    fn epochs(c: &LeaderEpochCache) -> Vec<(i32, i64)> {
        c.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn assign_keeps_first_start_and_replaces_empty_epochs() {
        let (disk, dir) = setup();
        let mut c = LeaderEpochCache::empty(&dir);
        assert!(c.assign(&disk, 0, 0).unwrap());
        assert!(!c.assign(&disk, 0, 5).unwrap());
        assert!(c.assign(&disk, 2, 10).unwrap());
        // Epoch 3 became leader at 10 without appending: epoch 2 wrote nothing.
        assert!(c.assign(&disk, 3, 10).unwrap());
        assert!(!c.assign(&disk, 1, 12).unwrap());
        assert_eq!(epochs(&c), vec![(0, 0), (3, 10)]);
        let loaded = LeaderEpochCache::load(&disk, &dir).unwrap().unwrap();
        assert_eq!(epochs(&loaded), vec![(0, 0), (3, 10)]);
    }

    #[test]
    fn truncation_from_both_ends() {
        let (disk, dir) = setup();
        let mut c = LeaderEpochCache::empty(&dir);
        for (e, o) in [(1, 0), (2, 10), (4, 20), (5, 30)] {
            c.assign(&disk, e, o).unwrap();
        }
        c.truncate_from_end(&disk, 20).unwrap();
        assert_eq!(epochs(&c), vec![(1, 0), (2, 10)]);
        c.truncate_from_start(&disk, 12).unwrap();
        assert_eq!(epochs(&c), vec![(2, 12)]);
        c.truncate_from_start(&disk, 5).unwrap();
        assert_eq!(epochs(&c), vec![(2, 12)]);
        let loaded = LeaderEpochCache::load(&disk, &dir).unwrap().unwrap();
        assert_eq!(epochs(&loaded), vec![(2, 12)]);
    }

    #[test]
    fn end_offset_for_epoch_as_kafka() {
        let (disk, dir) = setup();
        let mut c = LeaderEpochCache::empty(&dir);
        assert_eq!(c.end_offset_for_epoch(0, 0), (-1, -1));
        for (e, o) in [(1, 5), (3, 10), (4, 20)] {
            c.assign(&disk, e, o).unwrap();
        }
        assert_eq!(c.end_offset_for_epoch(4, 25), (4, 25));
        assert_eq!(c.end_offset_for_epoch(3, 25), (3, 20));
        assert_eq!(c.end_offset_for_epoch(2, 25), (1, 10));
        assert_eq!(c.end_offset_for_epoch(0, 25), (0, 5));
        assert_eq!(c.end_offset_for_epoch(7, 25), (-1, -1));
        assert_eq!(c.end_offset_for_epoch(-1, 25), (-1, -1));
        assert_eq!(c.epoch_for_offset(12), Some(3));
        assert_eq!(c.epoch_for_offset(2), None);
    }

    #[test]
    fn damaged_file_means_rebuild() {
        let (disk, dir) = setup();
        checkpoint::write_lines(&disk, &dir, EPOCH_FILE, &["3 10".into(), "2 20".into()]).unwrap();
        assert!(LeaderEpochCache::load(&disk, &dir).unwrap().is_none());
        assert!(LeaderEpochCache::load(&disk, &PathBuf::from("/none"))
            .unwrap()
            .is_none());
    }
}

//! The time index of one segment: `<base offset, 20 digits>.timeindex`.
//!
//! Layout: a flat array of 12-byte entries, big-endian
//! `timestamp i64 | relative offset u32`. An entry (T, o) says: the largest
//! record timestamp in the segment up to and including the batch that holds
//! offset `o` is T, and `o` is (the last offset of) the batch that carries it.
//! Entries are added at the same points as offset-index entries, only when
//! the running max timestamp grew, and once more when the segment stops being
//! active (roll, close), so the last entry holds the segment's max timestamp.
//!
//! Crash story: as for the offset index, entries go to the page cache and are
//! fsynced at roll and close; the active segment's time index is rebuilt by
//! scanning after a crash, and an inactive one failing [`TimeIndex::load`]'s
//! checks is rebuilt.
//!
//! Invariants: timestamps strictly increase; relative offsets never decrease.

use std::io;
use std::path::Path;

use crate::env::disk::{Disk, DiskFile, OpenMode};

/// Bytes per entry.
pub const ENTRY_BYTES: usize = 12;

pub struct TimeIndex {
    file: Box<dyn DiskFile>,
    base_offset: i64,
    /// (timestamp, relative offset).
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Create an empty index, replacing any file at `path`.
    pub fn create(disk: &dyn Disk, path: &Path, base_offset: i64) -> io::Result<TimeIndex> {
        let file = disk.open(path, OpenMode::CREATE_NEW_EMPTY)?;
        Ok(TimeIndex {
            file,
            base_offset,
            entries: Vec::new(),
        })
    }

    /// Load an existing index; `Ok(None)` when missing or failing the checks
    /// (whole entries, timestamps strictly increasing, offsets non-decreasing
    /// and below `next_offset`, the segment's end), so the caller rebuilds it.
    pub fn load(
        disk: &dyn Disk,
        path: &Path,
        base_offset: i64,
        next_offset: i64,
    ) -> io::Result<Option<TimeIndex>> {
        if !disk.exists(path) {
            return Ok(None);
        }
        let file = disk.open(path, OpenMode::EXISTING)?;
        let len = file.len()? as usize;
        if len % ENTRY_BYTES != 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, 0)?;
        let mut entries: Vec<(i64, u32)> = Vec::with_capacity(len / ENTRY_BYTES);
        for chunk in buf.chunks_exact(ENTRY_BYTES) {
            let ts = i64::from_be_bytes(chunk[0..8].try_into().expect("8 bytes"));
            let rel = u32::from_be_bytes(chunk[8..12].try_into().expect("4 bytes"));
            if let Some(&(prev_ts, prev_rel)) = entries.last() {
                if ts <= prev_ts || rel < prev_rel {
                    return Ok(None);
                }
            }
            if base_offset + rel as i64 >= next_offset {
                return Ok(None);
            }
            entries.push((ts, rel));
        }
        Ok(Some(TimeIndex {
            file,
            base_offset,
            entries,
        }))
    }

    /// Append (timestamp, offset) if `timestamp` is larger than the last
    /// entry's; otherwise the index already covers it.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) -> io::Result<()> {
        if let Some(&(last_ts, _)) = self.entries.last() {
            if timestamp <= last_ts {
                return Ok(());
            }
        }
        let rel = offset - self.base_offset;
        assert!(
            rel >= 0 && rel <= u32::MAX as i64,
            "time index invariant: relative offset fits u32"
        );
        let rel = rel as u32;
        if let Some(&(_, last_rel)) = self.entries.last() {
            assert!(
                rel >= last_rel,
                "time index invariant: offsets never decrease"
            );
        }
        let mut e = [0u8; ENTRY_BYTES];
        e[0..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..12].copy_from_slice(&rel.to_be_bytes());
        self.file
            .write_at(&e, (self.entries.len() * ENTRY_BYTES) as u64)?;
        self.entries.push((timestamp, rel));
        Ok(())
    }

    /// The last entry with timestamp strictly below `timestamp`, as
    /// (timestamp, absolute offset). Every record up to that entry's batch
    /// is older than `timestamp`, so a search may start there.
    pub fn lookup_below(&self, timestamp: i64) -> Option<(i64, i64)> {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp);
        if i == 0 {
            None
        } else {
            let (t, r) = self.entries[i - 1];
            Some((t, self.base_offset + r as i64))
        }
    }

    /// The last entry as (timestamp, absolute offset).
    pub fn last_entry(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|&(t, r)| (t, self.base_offset + r as i64))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::RealDisk;

    #[test]
    fn append_lookup_load() {
        let dir = tempfile::tempdir().unwrap();
        let disk = RealDisk::new();
        let path = dir.path().join("00000000000000000000.timeindex");
        let mut idx = TimeIndex::create(&disk, &path, 0).unwrap();
        idx.maybe_append(100, 5).unwrap();
        idx.maybe_append(90, 7).unwrap(); // not larger: skipped
        idx.maybe_append(200, 9).unwrap();
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.lookup_below(100), None);
        assert_eq!(idx.lookup_below(101), Some((100, 5)));
        assert_eq!(idx.lookup_below(1000), Some((200, 9)));
        let loaded = TimeIndex::load(&disk, &path, 0, 10).unwrap().unwrap();
        assert_eq!(loaded.last_entry(), Some((200, 9)));
        assert!(TimeIndex::load(&disk, &path, 0, 9).unwrap().is_none());
    }
}

//! The sparse offset index of one segment: `<base offset, 20 digits>.index`.
//!
//! Layout: a flat array of 8-byte entries, big-endian
//! `relative offset u32 | file position u32`, where relative offset = the
//! base offset of a batch minus the segment's base offset, and position is
//! where that batch starts in the `.log` file. One entry is added whenever more
//! than `index.interval.bytes` were appended since the previous entry, so a
//! lookup lands at most about one interval before the wanted batch. The file
//! is exactly `8 * entries` bytes long (not preallocated, unlike Kafka's).
//!
//! Crash story: entries are written to the page cache as batches are appended
//! and fsynced only when the segment rolls or the log closes. After a crash
//! the active segment's index is rebuilt by scanning its log; an inactive
//! segment's index that fails [`OffsetIndex::load`]'s checks is rebuilt too.
//! A stale-but-valid prefix would only make lookups land earlier, never wrong.
//!
//! Invariants: relative offsets and positions strictly increase; every
//! position is the start of a whole batch inside the segment's log. An entry
//! is kept in memory too, so lookups never touch the disk.

use std::io;
use std::path::Path;

use crate::env::disk::{Disk, DiskFile, OpenMode};

/// Bytes per entry.
pub const ENTRY_BYTES: usize = 8;

pub struct OffsetIndex {
    file: Box<dyn DiskFile>,
    base_offset: i64,
    /// (relative offset, position), both strictly increasing.
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Create an empty index, replacing any file at `path`.
    pub fn create(disk: &dyn Disk, path: &Path, base_offset: i64) -> io::Result<OffsetIndex> {
        let file = disk.open(path, OpenMode::CREATE_NEW_EMPTY)?;
        Ok(OffsetIndex {
            file,
            base_offset,
            entries: Vec::new(),
        })
    }

    /// Load an existing index; `Ok(None)` when it is missing or fails the
    /// sanity checks (whole entries, strictly increasing, positions inside a
    /// log of `log_size` bytes), so the caller rebuilds it.
    pub fn load(
        disk: &dyn Disk,
        path: &Path,
        base_offset: i64,
        log_size: u64,
    ) -> io::Result<Option<OffsetIndex>> {
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
        let mut entries = Vec::with_capacity(len / ENTRY_BYTES);
        for chunk in buf.chunks_exact(ENTRY_BYTES) {
            let rel = u32::from_be_bytes(chunk[0..4].try_into().expect("4 bytes"));
            let pos = u32::from_be_bytes(chunk[4..8].try_into().expect("4 bytes"));
            if let Some(&(prev_rel, prev_pos)) = entries.last() {
                if rel <= prev_rel || pos <= prev_pos {
                    return Ok(None);
                }
            }
            if pos as u64 >= log_size {
                return Ok(None);
            }
            entries.push((rel, pos));
        }
        Ok(Some(OffsetIndex {
            file,
            base_offset,
            entries,
        }))
    }

    /// Record that the batch with base offset `offset` starts at `position`.
    pub fn append(&mut self, offset: i64, position: u32) -> io::Result<()> {
        let rel = offset - self.base_offset;
        assert!(
            rel >= 0 && rel <= u32::MAX as i64,
            "offset index invariant: relative offset fits u32"
        );
        let rel = rel as u32;
        if let Some(&(prev_rel, prev_pos)) = self.entries.last() {
            assert!(rel > prev_rel, "offset index invariant: offsets increase");
            assert!(
                position > prev_pos,
                "offset index invariant: positions increase"
            );
        }
        let mut e = [0u8; ENTRY_BYTES];
        e[0..4].copy_from_slice(&rel.to_be_bytes());
        e[4..8].copy_from_slice(&position.to_be_bytes());
        self.file
            .write_at(&e, (self.entries.len() * ENTRY_BYTES) as u64)?;
        self.entries.push((rel, position));
        Ok(())
    }

    /// Position of the last indexed batch whose base offset is <= `offset`,
    /// or 0 (the segment start) when there is none.
    pub fn lookup(&self, offset: i64) -> u32 {
        let rel = offset - self.base_offset;
        if rel < 0 {
            return 0;
        }
        let rel = rel.min(u32::MAX as i64) as u32;
        let i = self.entries.partition_point(|&(r, _)| r <= rel);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// The last entry as (absolute offset, position).
    pub fn last_entry(&self) -> Option<(i64, u32)> {
        self.entries
            .last()
            .map(|&(r, p)| (self.base_offset + r as i64, p))
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
    fn append_lookup_load_and_reject_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let disk = RealDisk::new();
        let path = dir.path().join("00000000000000000100.index");
        let mut idx = OffsetIndex::create(&disk, &path, 100).unwrap();
        assert_eq!(idx.lookup(150), 0);
        idx.append(110, 4000).unwrap();
        idx.append(130, 9000).unwrap();
        assert_eq!(idx.lookup(105), 0);
        assert_eq!(idx.lookup(110), 4000);
        assert_eq!(idx.lookup(129), 4000);
        assert_eq!(idx.lookup(500), 9000);
        let loaded = OffsetIndex::load(&disk, &path, 100, 10_000)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.last_entry(), Some((130, 9000)));
        // A position beyond the log makes the index invalid.
        assert!(OffsetIndex::load(&disk, &path, 100, 9000)
            .unwrap()
            .is_none());
        // A torn entry makes it invalid.
        let f = disk.open(&path, OpenMode::EXISTING).unwrap();
        f.set_len(12).unwrap();
        assert!(OffsetIndex::load(&disk, &path, 100, 10_000)
            .unwrap()
            .is_none());
        // Missing is None.
        assert!(OffsetIndex::load(&disk, &dir.path().join("nope"), 0, 1)
            .unwrap()
            .is_none());
    }
}

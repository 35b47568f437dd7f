//! Transactions in one partition's log: the markers a transaction
//! coordinator has the leader append (control batches), and the index of
//! aborted transactions read_committed consumers need.
//!
//! A marker is a control batch (attributes transactional | control) of the
//! transaction's producer id and epoch, base sequence -1, holding exactly one
//! record: key `[version i16 = 0][type i16]` (0 ABORT, 1 COMMIT), value
//! `[version i16 = 0][coordinator epoch i32]`, Kafka's layout.
//!
//! Aborted transactions: when an ABORT marker closes a transaction that
//! wrote to this partition, `(producer id, first offset, last offset = the
//! marker's offset, last stable offset then)` is appended to
//! `<segment base>.txnindex` of the segment holding the marker, Kafka's
//! 34-byte entry (version i16 0, then the four i64, big-endian). The files
//! are appended without fsync, as the log is; after a crash, entries at or
//! above the offset producer state is replayed from are cut and rebuilt by
//! the replay, and a torn tail entry is ignored. Every entry is also kept in
//! memory, ordered by last offset, for [`AbortedIndex::overlapping`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::batch::{self, BatchHeader, SimpleRecord, ATTR_CONTROL, NO_SEQUENCE};
use super::segment;
use super::LogError;
use crate::env::disk::{Disk, OpenMode};

/// What a marker says about the transaction it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxnMarker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

const CONTROL_ABORT: i16 = 0;
const CONTROL_COMMIT: i16 = 1;

/// One marker batch with base offset 0, for the leader to append.
pub fn build_marker(
    producer_id: i64,
    producer_epoch: i16,
    marker: TxnMarker,
    timestamp_ms: i64,
) -> Vec<u8> {
    let kind = if marker.commit {
        CONTROL_COMMIT
    } else {
        CONTROL_ABORT
    };
    let mut key = 0i16.to_be_bytes().to_vec();
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = 0i16.to_be_bytes().to_vec();
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let record = SimpleRecord {
        key: Some(key),
        value: Some(value),
        headers: Vec::new(),
        timestamp: timestamp_ms,
    };
    let mut b = batch::build_batch(
        &[record],
        batch::BatchProducer {
            producer_id,
            producer_epoch,
            base_sequence: NO_SEQUENCE,
            transactional: true,
        },
    );
    batch::set_attributes(&mut b, batch::ATTR_TRANSACTIONAL | ATTR_CONTROL);
    b
}

/// The marker a control batch carries. Kafka's control records other than
/// markers (none exist for data partitions) are refused.
pub fn parse_marker(batch_bytes: &[u8]) -> Result<TxnMarker, LogError> {
    let bad = |why: &str| LogError::InvalidRecord(format!("transaction marker: {why}"));
    let records = batch::decode_records(batch_bytes)?;
    let [record] = records.as_slice() else {
        return Err(bad("a control batch must hold exactly one record"));
    };
    let key = record.key.as_deref().ok_or_else(|| bad("no key"))?;
    if key.len() < 4 || i16::from_be_bytes([key[0], key[1]]) < 0 {
        return Err(bad("bad control record key"));
    }
    let commit = match i16::from_be_bytes([key[2], key[3]]) {
        CONTROL_ABORT => false,
        CONTROL_COMMIT => true,
        other => return Err(bad(&format!("control record type {other} is not a marker"))),
    };
    let value = record.value.as_deref().ok_or_else(|| bad("no value"))?;
    if value.len() < 6 {
        return Err(bad("control record value shorter than 6 bytes"));
    }
    let coordinator_epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
    Ok(TxnMarker {
        commit,
        coordinator_epoch,
    })
}

/// One aborted transaction of this partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The ABORT marker's offset.
    pub last_offset: i64,
    /// The partition's last stable offset once the marker was written.
    pub last_stable_offset: i64,
}

/// Bytes of one `.txnindex` entry.
pub const ENTRY_BYTES: usize = 34;
const ENTRY_VERSION: i16 = 0;

impl AbortedTxn {
    fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[0..2].copy_from_slice(&ENTRY_VERSION.to_be_bytes());
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        if b.len() < ENTRY_BYTES || i16::from_be_bytes([b[0], b[1]]) != ENTRY_VERSION {
            return None;
        }
        let t = AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        };
        (t.producer_id >= 0 && t.first_offset <= t.last_offset).then_some(t)
    }
}

fn index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(segment::file_name(base, "txnindex"))
}

/// Every aborted transaction of the log, in memory and in the segments'
/// `.txnindex` files.
#[derive(Debug, Default)]
pub struct AbortedIndex {
    /// Last offset (the marker's, unique) -> the transaction.
    by_last: BTreeMap<i64, AbortedTxn>,
}

impl AbortedIndex {
    /// Read the index files of `bases` (each segment's base offset). A torn
    /// tail or an entry that makes no sense ends that file's entries.
    pub fn load(disk: &dyn Disk, dir: &Path, bases: &[i64]) -> Result<AbortedIndex, LogError> {
        let mut by_last = BTreeMap::new();
        for &base in bases {
            let path = index_path(dir, base);
            if !disk.exists(&path) {
                continue;
            }
            let f = disk.open(&path, OpenMode::EXISTING)?;
            let len = f.len()? as usize;
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, 0)?;
            for chunk in buf.chunks_exact(ENTRY_BYTES) {
                match AbortedTxn::decode(chunk) {
                    Some(t) if t.last_offset >= base => {
                        by_last.insert(t.last_offset, t);
                    }
                    _ => break,
                }
            }
        }
        Ok(AbortedIndex { by_last })
    }

    /// Record `t`, whose marker sits in segment `base`.
    pub fn append(
        &mut self,
        disk: &dyn Disk,
        dir: &Path,
        base: i64,
        t: AbortedTxn,
    ) -> Result<(), LogError> {
        assert!(
            self.by_last.range(t.last_offset..).next().is_none(),
            "aborted index invariant: markers are appended in offset order"
        );
        let kept = self.by_last.range(base..).count() as u64;
        let f = disk.open(&index_path(dir, base), OpenMode::CREATE)?;
        // Write at the end of what this segment's entries fill: a torn or
        // stale tail (after a crash) is overwritten, never appended after.
        let at = kept * ENTRY_BYTES as u64;
        f.write_at(&t.encode(), at)?;
        f.set_len(at + ENTRY_BYTES as u64)?;
        self.by_last.insert(t.last_offset, t);
        Ok(())
    }

    /// Forget every transaction whose marker is at or above `offset`, and cut
    /// the index files of `bases` (every segment's base, ascending) to what
    /// remains in each.
    pub fn truncate_from(
        &mut self,
        disk: &dyn Disk,
        dir: &Path,
        bases: &[i64],
        offset: i64,
    ) -> Result<(), LogError> {
        self.by_last.split_off(&offset);
        for (i, &base) in bases.iter().enumerate() {
            let upper = bases.get(i + 1).copied().unwrap_or(i64::MAX);
            if upper <= offset {
                continue;
            }
            let path = index_path(dir, base);
            if !disk.exists(&path) {
                continue;
            }
            let kept = self.by_last.range(base..upper).count() as u64;
            let f = disk.open(&path, OpenMode::EXISTING)?;
            if f.len()? != kept * ENTRY_BYTES as u64 {
                f.set_len(kept * ENTRY_BYTES as u64)?;
            }
        }
        Ok(())
    }

    /// fsync segment `base`'s index file, if it has one (at roll and
    /// flush, with the segment's log).
    pub fn sync(&self, disk: &dyn Disk, dir: &Path, base: i64) -> Result<(), LogError> {
        let path = index_path(dir, base);
        if disk.exists(&path) {
            disk.open(&path, OpenMode::EXISTING)?.sync_data()?;
        }
        Ok(())
    }

    /// Forget the transactions whose markers were in `[base, upper)` (a
    /// segment retention or the cleaner deleted, files and all).
    pub fn forget_segment(&mut self, base: i64, upper: i64) {
        let doomed: Vec<i64> = self.by_last.range(base..upper).map(|(o, _)| *o).collect();
        for o in doomed {
            self.by_last.remove(&o);
        }
    }

    /// The transactions whose markers are in `[base, upper)`.
    pub fn in_range(&self, base: i64, upper: i64) -> Vec<AbortedTxn> {
        self.by_last.range(base..upper).map(|(_, t)| *t).collect()
    }

    /// Forget the transactions whose markers were at `offsets` (the cleaner
    /// removed them) and rewrite the index file of segment `[base, upper)`
    /// through `.tmp` and a rename, so it is whole before or after a crash.
    pub fn remove_and_rewrite(
        &mut self,
        disk: &dyn Disk,
        dir: &Path,
        base: i64,
        upper: i64,
        offsets: &[i64],
    ) -> Result<(), LogError> {
        for o in offsets {
            self.by_last.remove(o);
        }
        let path = index_path(dir, base);
        let kept: Vec<u8> = self
            .by_last
            .range(base..upper)
            .flat_map(|(_, t)| t.encode())
            .collect();
        if kept.is_empty() {
            if disk.exists(&path) {
                disk.remove_file(&path)?;
            }
            return Ok(());
        }
        let tmp = dir.join(format!("{}.tmp", segment::file_name(base, "txnindex")));
        let f = disk.open(&tmp, OpenMode::CREATE_NEW_EMPTY)?;
        f.write_at(&kept, 0)?;
        f.sync_data()?;
        drop(f);
        disk.rename(&tmp, &path)?;
        Ok(())
    }

    pub fn clear(&mut self) {
        self.by_last.clear();
    }

    /// Aborted transactions a read of `[from, upper)` may meet: those that
    /// end at or after `from` and begin before `upper`, by first offset.
    pub fn overlapping(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let mut out: Vec<AbortedTxn> = self
            .by_last
            .range(from..)
            .map(|(_, t)| *t)
            .filter(|t| t.first_offset < upper)
            .collect();
        out.sort_by_key(|t| (t.first_offset, t.producer_id));
        out
    }

    pub fn len(&self) -> usize {
        self.by_last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_last.is_empty()
    }
}

/// Whether a data batch belongs to an aborted transaction of `aborted`
/// (sorted by first offset, as [`AbortedIndex::overlapping`] returns them).
pub fn is_aborted(h: &BatchHeader, aborted: &[AbortedTxn]) -> bool {
    h.is_transactional()
        && !h.is_control()
        && aborted.iter().any(|t| {
            t.producer_id == h.producer_id
                && t.first_offset <= h.base_offset
                && h.base_offset < t.last_offset
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::RealDisk;

    #[test]
    fn markers_round_trip_in_kafkas_layout() {
        for commit in [false, true] {
            let m = TxnMarker {
                commit,
                coordinator_epoch: 7,
            };
            let b = build_marker(42, 3, m, 1_000);
            let h = batch::validate_batch(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch), (42, 3));
            assert_eq!(h.base_sequence, NO_SEQUENCE);
            assert_eq!(parse_marker(&b).unwrap(), m);
            let r = &batch::decode_records(&b).unwrap()[0];
            let kind = if commit { [0, 0, 0, 1] } else { [0, 0, 0, 0] };
            assert_eq!(r.key.as_deref(), Some(&kind[..]));
            assert_eq!(r.value.as_deref(), Some(&[0, 0, 0, 0, 0, 7][..]));
        }
        // A data batch is no marker.
        let data = batch::build_batch(&[SimpleRecord::default()], Default::default());
        assert!(parse_marker(&data).is_err());
    }

    fn t(pid: i64, first: i64, last: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: last + 1,
        }
    }

    #[test]
    fn the_index_persists_truncates_and_answers_ranges() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = RealDisk::new();
        let dir = tmp.path();
        let mut idx = AbortedIndex::default();
        idx.append(&disk, dir, 0, t(1, 2, 5)).unwrap();
        idx.append(&disk, dir, 0, t(2, 3, 8)).unwrap();
        idx.append(&disk, dir, 10, t(1, 9, 12)).unwrap();
        idx.append(&disk, dir, 10, t(3, 13, 15)).unwrap();
        let loaded = AbortedIndex::load(&disk, dir, &[0, 10]).unwrap();
        assert_eq!(loaded.len(), 4);
        // Overlap: ends at/after 6, begins before 13.
        assert_eq!(loaded.overlapping(6, 13), vec![t(2, 3, 8), t(1, 9, 12)]);
        assert_eq!(loaded.overlapping(16, 20), vec![]);
        // Cut at 12: the entry ending at 12 and everything after go.
        idx.truncate_from(&disk, dir, &[0, 10], 12).unwrap();
        assert_eq!(idx.len(), 2);
        let loaded = AbortedIndex::load(&disk, dir, &[0, 10]).unwrap();
        assert_eq!(loaded.overlapping(0, 100), vec![t(1, 2, 5), t(2, 3, 8)]);
        // A torn tail entry is ignored; the next append overwrites it.
        let f = disk.open(&index_path(dir, 10), OpenMode::EXISTING).unwrap();
        f.write_at(&[0u8; 10], 0).unwrap();
        f.set_len(10).unwrap();
        drop(f);
        let mut loaded = AbortedIndex::load(&disk, dir, &[0, 10]).unwrap();
        assert_eq!(loaded.len(), 2);
        loaded.append(&disk, dir, 10, t(4, 11, 14)).unwrap();
        let again = AbortedIndex::load(&disk, dir, &[0, 10]).unwrap();
        assert_eq!(again.overlapping(10, 20), vec![t(4, 11, 14)]);
    }

    #[test]
    fn a_batch_is_aborted_inside_its_producers_aborted_range_only() {
        let mk = |pid: i64, base: i64, transactional: bool| {
            let mut b = batch::build_batch(
                &[SimpleRecord::default()],
                batch::BatchProducer {
                    producer_id: pid,
                    producer_epoch: 0,
                    base_sequence: 0,
                    transactional,
                },
            );
            batch::set_base_offset(&mut b, base);
            BatchHeader::parse(&b).unwrap()
        };
        let aborted = [t(1, 2, 5)];
        assert!(is_aborted(&mk(1, 3, true), &aborted));
        assert!(!is_aborted(&mk(1, 6, true), &aborted), "after the marker");
        assert!(!is_aborted(&mk(1, 1, true), &aborted), "before the txn");
        assert!(!is_aborted(&mk(2, 3, true), &aborted), "another producer");
        assert!(!is_aborted(&mk(1, 3, false), &aborted), "not transactional");
    }
}

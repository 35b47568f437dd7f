//! Idempotent-producer state of one partition, and its snapshot file
//! `<offset, 20 digits>.snapshot`.
//!
//! Per producer id we keep its epoch and the metadata of its last
//! [`BATCHES_PER_PRODUCER`] batches (first/last sequence, first/last offset),
//! which is what Kafka keeps to answer a retried batch with the offsets of the
//! stored copy.
//!
//! Rules for a batch with producerId >= 0 (data batches):
//! - epoch older than the stored one: `ProducerFenced`;
//! - newer epoch: must start at sequence 0, else `OutOfOrderSequence`;
//! - same epoch: equal (first_seq, last_seq) to one of the last 5 batches is a
//!   duplicate (nothing written, stored offsets returned); first_seq ==
//!   last_seq + 1 (wrapping at i32::MAX) is accepted; anything else is
//!   `OutOfOrderSequence`;
//! - unknown producer: accepted at any sequence. This is Kafka 2.5+ behaviour:
//!   once retention (or producer-id expiry) has removed a producer's state,
//!   its next batch must not be refused forever. The cost: a gap right after
//!   a state loss is not detected. Weir never drops producer state except
//!   with the data, so in practice state is only unknown for new producers.
//!   Producer-id expiry (producer.id.expiration.ms) is not implemented yet.
//! - control batches (transaction markers) carry no sequence: a marker with
//!   an older producer epoch is fenced, one whose coordinator epoch is older
//!   than the last marker's is `TransactionCoordinatorFenced`; a marker bumps
//!   the epoch (a coordinator aborting for a fenced producer writes it at
//!   the new epoch).
//!
//! Transactions: a transactional data batch opens its producer's
//! transaction (first offset = its base offset) if none is open; a marker
//! closes it. The earliest open transaction's first offset is the log's
//! first unstable offset (the LSO is the lower of it and the high
//! watermark).
//!
//! Snapshot layout (big-endian): magic u32 `WPS2`, producer count u32, then
//! per producer: id i64, epoch i16, coordinator epoch i32, open
//! transaction's first offset i64 (-1: none), batch count u8, and per batch
//! first_seq i32, last_seq i32, first_offset i64, last_offset i64; then a
//! CRC32C u32 of everything before it. `WPS1` snapshots (no coordinator
//! epoch, no transaction) are still read. The file name is the log offset the
//! state is valid at (every batch below it is included, none above).
//!
//! Crash story: a snapshot is written to `.tmp`, fsynced and renamed into place
//! at every roll and at close, so it is whole or absent. At open the newest
//! snapshot at or below the log end that passes its CRC is loaded and the
//! batch headers after its offset are replayed; with none, all segments are
//! replayed. Snapshots above the log end (after a truncation) are deleted.
//! A retried batch after a restart is therefore still seen as a duplicate.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use super::batch::{self, BatchHeader};
use super::segment;
use super::txn::TxnMarker;
use super::LogError;
use crate::env::disk::{Disk, OpenMode};

/// How many recent batches per producer are kept for duplicate detection
/// (Kafka's max.in.flight.requests.per.connection limit for idempotence).
pub const BATCHES_PER_PRODUCER: usize = 5;

const SNAPSHOT_MAGIC: u32 = u32::from_be_bytes(*b"WPS2");
/// The layout before transactions.
const SNAPSHOT_MAGIC_V1: u32 = u32::from_be_bytes(*b"WPS1");
/// No marker seen yet.
pub const NO_COORDINATOR_EPOCH: i32 = -1;
/// Snapshots kept on disk; older ones are deleted after each write.
const SNAPSHOTS_KEPT: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first, at most [`BATCHES_PER_PRODUCER`].
    pub batches: VecDeque<BatchMetadata>,
    /// Coordinator epoch of the last marker written for this producer.
    pub coordinator_epoch: i32,
    /// First offset of its open transaction on this partition.
    pub txn_first_offset: Option<i64>,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: 0,
            batches: VecDeque::new(),
            coordinator_epoch: NO_COORDINATOR_EPOCH,
            txn_first_offset: None,
        }
    }
}

/// Verdict on one batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Store it.
    Append,
    /// A retry of a stored batch: write nothing, answer with these offsets.
    Duplicate(BatchMetadata),
}

/// Check batch `h` against a producer's current entry (None = unknown).
pub fn check_batch(
    entry: Option<&ProducerEntry>,
    h: &BatchHeader,
) -> Result<SequenceCheck, LogError> {
    assert!(h.has_producer_id(), "only idempotent batches are checked");
    if let Some(e) = entry {
        if h.producer_epoch < e.epoch {
            return Err(LogError::ProducerFenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: e.epoch,
            });
        }
    }
    if h.is_control() {
        return Ok(SequenceCheck::Append);
    }
    if h.base_sequence < 0 {
        return Err(LogError::InvalidRecord(format!(
            "producer {} sent a batch without a sequence",
            h.producer_id
        )));
    }
    let Some(e) = entry else {
        return Ok(SequenceCheck::Append);
    };
    if !h.is_transactional() && e.txn_first_offset.is_some() && h.producer_epoch == e.epoch {
        // As Kafka: a producer in a transaction writes only transactionally.
        return Err(LogError::InvalidTxnState(format!(
            "producer {} sent a non-transactional batch inside its open transaction",
            h.producer_id
        )));
    }
    let out_of_order = |expected| LogError::OutOfOrderSequence {
        producer_id: h.producer_id,
        expected,
        got: h.base_sequence,
    };
    if h.producer_epoch > e.epoch {
        return if h.base_sequence == 0 {
            Ok(SequenceCheck::Append)
        } else {
            Err(out_of_order(0))
        };
    }
    let last_seq = h.last_sequence();
    if let Some(dup) = e
        .batches
        .iter()
        .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
    {
        return Ok(SequenceCheck::Duplicate(*dup));
    }
    // A stored batch the cleaner trimmed (its first records superseded and
    // dropped) starts later than the retry, with the same last sequence and
    // last offset. Within one epoch a sequence names one record, so the
    // retry is that batch; its first offset is recovered from the length.
    if let Some(stored) = e.batches.iter().find(|b| b.last_seq == last_seq) {
        let len = h.last_offset_delta as i64;
        let trimmed = sequence_delta(h.base_sequence, stored.first_seq)
            .is_some_and(|d| d > 0 && (d as i64) <= len);
        if trimmed {
            return Ok(SequenceCheck::Duplicate(BatchMetadata {
                first_seq: h.base_sequence,
                last_seq,
                first_offset: stored.last_offset - len,
                last_offset: stored.last_offset,
            }));
        }
    }
    let expected = match e.batches.back() {
        Some(b) => batch::increment_sequence(b.last_seq, 1),
        None => 0,
    };
    if h.base_sequence == expected {
        Ok(SequenceCheck::Append)
    } else {
        Err(out_of_order(expected))
    }
}

/// How far sequence `to` is after `from` (wrapping at i32::MAX as
/// sequences do), when it is at most one batch's worth ahead.
fn sequence_delta(from: i32, to: i32) -> Option<i32> {
    let d = if to >= from {
        to - from
    } else {
        (i32::MAX - from) + to + 1
    };
    (d <= i32::MAX / 2).then_some(d)
}

/// Record a stored batch (offsets already assigned in `h`) in `entry`.
pub fn apply_batch(entry: &mut ProducerEntry, h: &BatchHeader) {
    if h.producer_epoch != entry.epoch {
        entry.epoch = h.producer_epoch;
        entry.batches.clear();
    }
    if h.is_control() || h.base_sequence < 0 {
        return;
    }
    if h.is_transactional() && entry.txn_first_offset.is_none() {
        entry.txn_first_offset = Some(h.base_offset);
    }
    entry.batches.push_back(BatchMetadata {
        first_seq: h.base_sequence,
        last_seq: h.last_sequence(),
        first_offset: h.base_offset,
        last_offset: h.last_offset(),
    });
    while entry.batches.len() > BATCHES_PER_PRODUCER {
        entry.batches.pop_front();
    }
}

/// Check a marker (control batch `h` saying `marker`) against its
/// producer's entry.
pub fn check_marker(
    entry: Option<&ProducerEntry>,
    h: &BatchHeader,
    marker: TxnMarker,
) -> Result<(), LogError> {
    let Some(e) = entry else {
        return Ok(());
    };
    if h.producer_epoch < e.epoch {
        return Err(LogError::ProducerFenced {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            current: e.epoch,
        });
    }
    if marker.coordinator_epoch < e.coordinator_epoch {
        return Err(LogError::CoordinatorFenced {
            producer_id: h.producer_id,
            coordinator_epoch: marker.coordinator_epoch,
            current: e.coordinator_epoch,
        });
    }
    Ok(())
}

/// Record a stored marker; returns the first offset of the transaction it
/// closed (None: the producer wrote nothing here in that transaction).
pub fn apply_marker(entry: &mut ProducerEntry, h: &BatchHeader, marker: TxnMarker) -> Option<i64> {
    if h.producer_epoch != entry.epoch {
        entry.epoch = h.producer_epoch;
        entry.batches.clear();
    }
    entry.coordinator_epoch = marker.coordinator_epoch;
    entry.txn_first_offset.take()
}

/// All producers of a partition, ordered by id (so snapshots are deterministic).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerStateManager {
    producers: BTreeMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Producers and their entries, by id.
    pub fn iter(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(&pid, e)| (pid, e))
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Replace entries with staged ones after a successful append.
    pub fn commit(&mut self, staged: BTreeMap<i64, ProducerEntry>) {
        self.producers.extend(staged);
    }

    /// Apply a stored data batch unconditionally (replay at open, a
    /// follower's append). Markers go through [`Self::replay_marker`].
    pub fn replay(&mut self, h: &BatchHeader) {
        if h.has_producer_id() && !h.is_control() {
            apply_batch(self.producers.entry(h.producer_id).or_default(), h);
        }
    }

    /// Apply a stored marker unconditionally; the first offset of the
    /// transaction it closed, if one was open.
    pub fn replay_marker(&mut self, h: &BatchHeader, marker: TxnMarker) -> Option<i64> {
        apply_marker(self.producers.entry(h.producer_id).or_default(), h, marker)
    }

    /// First offset of the earliest transaction still open here.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.producers
            .values()
            .filter_map(|e| e.txn_first_offset)
            .min()
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&SNAPSHOT_MAGIC.to_be_bytes());
        b.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (pid, e) in &self.producers {
            b.extend_from_slice(&pid.to_be_bytes());
            b.extend_from_slice(&e.epoch.to_be_bytes());
            b.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
            b.extend_from_slice(&e.txn_first_offset.unwrap_or(-1).to_be_bytes());
            b.push(e.batches.len() as u8);
            for m in &e.batches {
                b.extend_from_slice(&m.first_seq.to_be_bytes());
                b.extend_from_slice(&m.last_seq.to_be_bytes());
                b.extend_from_slice(&m.first_offset.to_be_bytes());
                b.extend_from_slice(&m.last_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        b
    }

    /// Decode a snapshot; None if it is damaged in any way.
    fn decode(b: &[u8]) -> Option<ProducerStateManager> {
        let body_len = b.len().checked_sub(4)?;
        let (body, crc) = b.split_at(body_len);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut r = Reader(body);
        let v2 = match r.u32()? {
            SNAPSHOT_MAGIC => true,
            SNAPSHOT_MAGIC_V1 => false,
            _ => return None,
        };
        let count = r.u32()?;
        let mut producers = BTreeMap::new();
        for _ in 0..count {
            let pid = r.i64()?;
            let epoch = r.i16()?;
            let (coordinator_epoch, txn_first_offset) = if v2 {
                let ce = r.i32()?;
                let first = r.i64()?;
                (ce, (first >= 0).then_some(first))
            } else {
                (NO_COORDINATOR_EPOCH, None)
            };
            let n = r.u8()? as usize;
            if n > BATCHES_PER_PRODUCER {
                return None;
            }
            let mut batches = VecDeque::with_capacity(n);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            producers.insert(
                pid,
                ProducerEntry {
                    epoch,
                    batches,
                    coordinator_epoch,
                    txn_first_offset,
                },
            );
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(ProducerStateManager { producers })
    }

    /// Durably write a snapshot valid at `offset`, then delete all but the
    /// newest [`SNAPSHOTS_KEPT`] snapshots.
    pub fn write_snapshot(&self, disk: &dyn Disk, dir: &Path, offset: i64) -> Result<(), LogError> {
        let name = segment::file_name(offset, "snapshot");
        let tmp = dir.join(format!("{name}.tmp"));
        let f = disk.open(&tmp, OpenMode::CREATE_NEW_EMPTY)?;
        f.write_at(&self.encode(), 0)?;
        f.sync_data()?;
        drop(f);
        disk.rename(&tmp, &dir.join(&name))?;
        let mut offsets = snapshot_offsets(disk, dir)?;
        while offsets.len() > SNAPSHOTS_KEPT {
            let old = offsets.remove(0);
            disk.remove_file(&dir.join(segment::file_name(old, "snapshot")))?;
        }
        Ok(())
    }

    /// Load the newest valid snapshot at or below `log_end`, deleting any
    /// above it. Returns the state and the offset replay must start from
    /// (None: no usable snapshot, replay everything).
    pub fn load_snapshot(
        disk: &dyn Disk,
        dir: &Path,
        log_end: i64,
    ) -> Result<(ProducerStateManager, Option<i64>), LogError> {
        let offsets = snapshot_offsets(disk, dir)?;
        for &off in offsets.iter().rev() {
            let path = dir.join(segment::file_name(off, "snapshot"));
            if off > log_end {
                disk.remove_file(&path)?;
                continue;
            }
            let f = disk.open(&path, OpenMode::EXISTING)?;
            let mut buf = vec![0u8; f.len()? as usize];
            f.read_exact_at(&mut buf, 0)?;
            match Self::decode(&buf) {
                Some(state) => return Ok((state, Some(off))),
                None => {
                    tracing::warn!(snapshot = %path.display(), "ignoring damaged producer snapshot");
                }
            }
        }
        Ok((ProducerStateManager::new(), None))
    }
}

/// Offsets of the snapshot files in `dir`, ascending.
fn snapshot_offsets(disk: &dyn Disk, dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut v: Vec<i64> = disk
        .list_dir(dir)?
        .iter()
        .filter_map(|n| match segment::parse_file_name(n) {
            Some((off, "snapshot")) => Some(off),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    Ok(v)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        if self.0.len() < N {
            return None;
        }
        let (a, rest) = self.0.split_at(N);
        self.0 = rest;
        a.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take::<1>()?[0])
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::{build_batch, BatchProducer, SimpleRecord};

    fn header(pid: i64, epoch: i16, seq: i32, n: usize, base: i64) -> BatchHeader {
        let recs = vec![SimpleRecord::default(); n];
        let mut b = build_batch(
            &recs,
            BatchProducer {
                producer_id: pid,
                producer_epoch: epoch,
                base_sequence: seq,
                transactional: false,
            },
        );
        batch::set_base_offset(&mut b, base);
        BatchHeader::parse(&b).unwrap()
    }

    #[test]
    fn sequence_rules() {
        let h0 = header(1, 0, 0, 3, 0);
        assert_eq!(check_batch(None, &h0).unwrap(), SequenceCheck::Append);
        let mut e = ProducerEntry::default();
        apply_batch(&mut e, &h0);
        // Duplicate.
        assert!(matches!(
            check_batch(Some(&e), &h0).unwrap(),
            SequenceCheck::Duplicate(BatchMetadata {
                first_offset: 0,
                last_offset: 2,
                ..
            })
        ));
        // Next in sequence.
        let h1 = header(1, 0, 3, 1, 3);
        assert_eq!(check_batch(Some(&e), &h1).unwrap(), SequenceCheck::Append);
        // Gap.
        let gap = header(1, 0, 5, 1, 3);
        assert!(matches!(
            check_batch(Some(&e), &gap),
            Err(LogError::OutOfOrderSequence {
                expected: 3,
                got: 5,
                ..
            })
        ));
        // Older epoch fenced; newer epoch must start at 0.
        apply_batch(&mut e, &header(1, 2, 0, 1, 10));
        assert!(matches!(
            check_batch(Some(&e), &header(1, 1, 1, 1, 11)),
            Err(LogError::ProducerFenced { current: 2, .. })
        ));
        assert!(check_batch(Some(&e), &header(1, 3, 4, 1, 11)).is_err());
        assert_eq!(
            check_batch(Some(&e), &header(1, 3, 0, 1, 11)).unwrap(),
            SequenceCheck::Append
        );
        // Only 5 batches remembered.
        for i in 1..=6 {
            apply_batch(&mut e, &header(1, 2, i, 1, 10 + i as i64));
        }
        assert_eq!(e.batches.len(), BATCHES_PER_PRODUCER);
        assert_eq!(e.batches.front().unwrap().first_seq, 2);
        // Wrap-around at i32::MAX.
        let mut w = ProducerEntry::default();
        apply_batch(&mut w, &header(9, 0, i32::MAX - 1, 2, 0));
        assert_eq!(w.batches.back().unwrap().last_seq, i32::MAX);
        assert_eq!(
            check_batch(Some(&w), &header(9, 0, 0, 1, 2)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn a_retry_of_a_batch_the_cleaner_trimmed_is_a_duplicate() {
        let mut e = ProducerEntry::default();
        apply_batch(&mut e, &header(1, 0, 0, 2, 0));
        // Stored: sequences 2..=5 at offsets 2..=5, its first two records
        // later cleaned away: the log holds sequences 4..=5 at 4..=5.
        apply_batch(&mut e, &header(1, 0, 4, 2, 4));
        let retry = header(1, 0, 2, 4, 0);
        assert_eq!(
            check_batch(Some(&e), &retry).unwrap(),
            SequenceCheck::Duplicate(BatchMetadata {
                first_seq: 2,
                last_seq: 5,
                first_offset: 2,
                last_offset: 5,
            })
        );
        // Same last sequence but starting after the stored copy: no retry
        // looks like that; it is out of order.
        let bogus = header(1, 0, 5, 1, 0);
        assert!(check_batch(Some(&e), &bogus).is_err());
        // Sequences wrap from i32::MAX to 0.
        assert_eq!(sequence_delta(i32::MAX - 1, 1), Some(3));
        assert_eq!(sequence_delta(5, 2), None);
    }

    #[test]
    fn a_snapshot_from_before_transactions_still_loads() {
        // WPS1: magic, count, then id, epoch, batch count, batches; CRC.
        let mut b = Vec::new();
        b.extend_from_slice(b"WPS1");
        b.extend_from_slice(&1u32.to_be_bytes());
        b.extend_from_slice(&7i64.to_be_bytes());
        b.extend_from_slice(&2i16.to_be_bytes());
        b.push(1);
        for v in [0i32, 4] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        for v in [10i64, 14] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_be_bytes());
        let m = ProducerStateManager::decode(&b).expect("a WPS1 snapshot decodes");
        let e = m.get(7).unwrap();
        assert_eq!(e.epoch, 2);
        assert_eq!(e.coordinator_epoch, NO_COORDINATOR_EPOCH);
        assert_eq!(e.txn_first_offset, None);
        assert_eq!(e.batches.back().unwrap().last_offset, 14);
        // And the current layout round-trips the transaction fields.
        let mut m = m;
        let mut e = m.get(7).unwrap().clone();
        e.coordinator_epoch = 3;
        e.txn_first_offset = Some(15);
        m.commit([(7, e.clone())].into());
        let again = ProducerStateManager::decode(&m.encode()).unwrap();
        assert_eq!(again.get(7), Some(&e));
        assert_eq!(again.first_unstable_offset(), Some(15));
    }

    #[test]
    fn snapshot_roundtrip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let disk = crate::env::RealDisk::new();
        let mut m = ProducerStateManager::new();
        m.replay(&header(1, 0, 0, 3, 0));
        m.replay(&header(2, 4, 7, 1, 3));
        m.write_snapshot(&disk, dir.path(), 4).unwrap();
        let (loaded, off) = ProducerStateManager::load_snapshot(&disk, dir.path(), 10).unwrap();
        assert_eq!(off, Some(4));
        assert_eq!(loaded, m);
        // Above the log end: deleted, not used.
        let (empty, off) = ProducerStateManager::load_snapshot(&disk, dir.path(), 3).unwrap();
        assert_eq!(off, None);
        assert!(empty.is_empty());
        assert!(snapshot_offsets(&disk, dir.path()).unwrap().is_empty());
        // Damaged: ignored.
        m.write_snapshot(&disk, dir.path(), 4).unwrap();
        let path = dir.path().join(segment::file_name(4, "snapshot"));
        let f = disk.open(&path, OpenMode::EXISTING).unwrap();
        f.write_at(&[0xff], 9).unwrap();
        let (_, off) = ProducerStateManager::load_snapshot(&disk, dir.path(), 10).unwrap();
        assert_eq!(off, None);
        // Only the newest two are kept.
        for o in [5, 6, 7] {
            m.write_snapshot(&disk, dir.path(), o).unwrap();
        }
        assert_eq!(snapshot_offsets(&disk, dir.path()).unwrap(), vec![6, 7]);
    }
}

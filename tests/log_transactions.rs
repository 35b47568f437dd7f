//! Transactions in one partition's log: transactional batches open a
//! producer's transaction, markers close it, the first unstable offset
//! follows the open ones, aborted transactions are indexed for
//! read_committed readers, and all of it survives crashes, truncation and
//! replication to a follower.

use std::path::PathBuf;
use std::sync::Arc;

use weir::env::sim_disk::{SimDisk, SimDiskOptions};
use weir::env::Disk;
use weir::log::batch::{self, build_batch, BatchProducer, SimpleRecord};
use weir::log::txn::{build_marker, AbortedTxn, TxnMarker};
use weir::log::{LogConfig, LogError, PartitionLog};

fn dir() -> PathBuf {
    PathBuf::from("/data/t-0")
}

fn open(disk: &SimDisk, config: LogConfig) -> PartitionLog {
    let disk: Arc<dyn Disk> = Arc::new(disk.clone());
    PartitionLog::open(disk, dir(), config, 0).unwrap()
}

/// `n` records from producer `pid` starting at sequence `seq`.
fn data(pid: i64, seq: i32, n: usize, transactional: bool) -> Vec<u8> {
    let recs: Vec<SimpleRecord> = (0..n)
        .map(|i| SimpleRecord {
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("p{pid}-s{}", seq + i as i32).into_bytes()),
            headers: vec![],
            timestamp: 1,
        })
        .collect();
    build_batch(&recs, producer(pid, seq, transactional))
}

/// Producer fields of a batch: none for a negative `pid`.
fn producer(pid: i64, seq: i32, transactional: bool) -> BatchProducer {
    if pid < 0 {
        return BatchProducer::default();
    }
    BatchProducer {
        producer_id: pid,
        producer_epoch: 0,
        base_sequence: seq,
        transactional,
    }
}

fn marker(commit: bool, coordinator_epoch: i32) -> TxnMarker {
    TxnMarker {
        commit,
        coordinator_epoch,
    }
}

fn aborted(pid: i64, first: i64, last: i64) -> (i64, i64, i64) {
    (pid, first, last)
}

fn aborted_list(log: &PartitionLog) -> Vec<(i64, i64, i64)> {
    log.aborted_transactions(0, log.log_end_offset())
        .iter()
        .map(|t: &AbortedTxn| (t.producer_id, t.first_offset, t.last_offset))
        .collect()
}

#[test]
fn markers_close_transactions_and_move_the_first_unstable_offset() {
    let disk = SimDisk::new(1, SimDiskOptions::default());
    let mut log = open(&disk, LogConfig::default());
    log.append(&mut data(1, 0, 2, true), 0, 1).unwrap(); // 0..=1, txn of 1
    log.append(&mut data(2, 0, 1, false), 0, 1).unwrap(); // 2, idempotent only
    log.append(&mut data(3, 0, 1, true), 0, 1).unwrap(); // 3, txn of 3
    assert_eq!(log.first_unstable_offset(), Some(0));
    // Producer 1 commits: producer 3's transaction is now the earliest.
    let c = log.append_marker(1, 0, marker(true, 0), 0, 1).unwrap();
    assert_eq!(c.first_offset, 4);
    assert_eq!(log.first_unstable_offset(), Some(3));
    // Producer 3 aborts: nothing open; its transaction is indexed.
    log.append_marker(3, 0, marker(false, 0), 0, 1).unwrap(); // 5
    assert_eq!(log.first_unstable_offset(), None);
    assert_eq!(aborted_list(&log), vec![aborted(3, 3, 5)]);
    // A marker for a producer that wrote nothing here closes nothing.
    log.append_marker(9, 0, marker(false, 0), 0, 1).unwrap(); // 6
    assert_eq!(aborted_list(&log), vec![aborted(3, 3, 5)]);
    // A later transaction of producer 1 opens at its first batch.
    log.append(&mut data(1, 2, 1, true), 0, 1).unwrap(); // 7
    assert_eq!(log.first_unstable_offset(), Some(7));
    // Ranges: an aborted transaction is returned to reads that overlap it.
    assert_eq!(log.aborted_transactions(4, 5).len(), 1);
    assert_eq!(log.aborted_transactions(6, 8).len(), 0);
    assert_eq!(log.aborted_transactions(0, 3).len(), 0);
}

#[test]
fn stale_markers_are_fenced_and_producers_cannot_write_markers() {
    let disk = SimDisk::new(2, SimDiskOptions::default());
    let mut log = open(&disk, LogConfig::default());
    log.append(&mut data(1, 0, 1, true), 0, 1).unwrap();
    log.append_marker(1, 0, marker(true, 5), 0, 1).unwrap();
    // A deposed coordinator (older coordinator epoch) is refused.
    let e = log.append_marker(1, 0, marker(false, 4), 0, 1).unwrap_err();
    assert!(matches!(e, LogError::CoordinatorFenced { .. }), "{e}");
    assert_eq!(e.error_code(), 52);
    // A marker at a newer producer epoch bumps it; the old epoch is fenced.
    log.append_marker(1, 1, marker(false, 5), 0, 1).unwrap();
    let e = log.append(&mut data(1, 1, 1, true), 0, 1).unwrap_err();
    assert!(matches!(e, LogError::ProducerFenced { .. }), "{e}");
    let e = log.append_marker(1, 0, marker(true, 6), 0, 1).unwrap_err();
    assert!(matches!(e, LogError::ProducerFenced { .. }), "{e}");
    // Inside its open transaction a producer writes only transactionally.
    let mut l2 = open(
        &SimDisk::new(20, SimDiskOptions::default()),
        LogConfig::default(),
    );
    l2.append(&mut data(4, 0, 1, true), 0, 1).unwrap();
    let e = l2.append(&mut data(4, 1, 1, false), 0, 1).unwrap_err();
    assert!(matches!(e, LogError::InvalidTxnState(_)), "{e}");
    assert_eq!(e.error_code(), 48);
    // Control batches never come from producers.
    let e = log
        .append(&mut build_marker(1, 1, marker(true, 6), 1), 0, 1)
        .unwrap_err();
    assert!(matches!(e, LogError::InvalidRecord(_)), "{e}");
    assert_eq!(log.log_end_offset(), 3, "nothing refused was written");
}

/// Small segments, so snapshots (written at every roll) sit in the middle
/// of transactions and recovery replays markers from a snapshot onwards.
fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        ..LogConfig::default()
    }
}

/// Transactions interleaved over many segments; returns the expected
/// (first unstable offset, aborted list).
fn write_transactions(log: &mut PartitionLog) -> (Option<i64>, Vec<(i64, i64, i64)>) {
    let mut seq = [0i32; 4];
    let mut expected = Vec::new();
    let mut open_first = [None::<i64>; 4];
    for round in 0..12 {
        for pid in 1..=3i64 {
            let at = log.log_end_offset();
            log.append(&mut data(pid, seq[pid as usize], 2, true), 0, 1)
                .unwrap();
            seq[pid as usize] += 2;
            open_first[pid as usize].get_or_insert(at);
        }
        // Producer (round % 3) + 1 ends its transaction, aborting on odd rounds.
        let pid = (round % 3) as i64 + 1;
        let commit = round % 2 == 0;
        let m = log.append_marker(pid, 0, marker(commit, 0), 0, 1).unwrap();
        let first = open_first[pid as usize].take().unwrap();
        if !commit {
            expected.push(aborted(pid, first, m.first_offset));
        }
    }
    let fuo = open_first.iter().flatten().min().copied();
    (fuo, expected)
}

#[test]
fn transactions_survive_a_crash_and_a_clean_restart() {
    let disk = SimDisk::new(3, SimDiskOptions::default());
    let mut log = open(&disk, small_segments());
    let (fuo, expected) = write_transactions(&mut log);
    assert!(log.segment_count() > 4, "the test needs several segments");
    assert_eq!(log.first_unstable_offset(), fuo);
    assert_eq!(aborted_list(&log), expected);
    log.flush().unwrap();
    drop(log);
    disk.crash();
    let log = open(&disk, small_segments());
    assert_eq!(log.first_unstable_offset(), fuo, "after a crash");
    assert_eq!(aborted_list(&log), expected, "after a crash");
    log.close().unwrap();
    let log = open(&disk, small_segments());
    assert_eq!(log.first_unstable_offset(), fuo, "after a clean restart");
    assert_eq!(aborted_list(&log), expected, "after a clean restart");
}

#[test]
fn a_lost_snapshot_is_rebuilt_from_the_markers_in_the_log() {
    let disk = SimDisk::new(4, SimDiskOptions::default());
    let mut log = open(&disk, small_segments());
    let (fuo, expected) = write_transactions(&mut log);
    log.close().unwrap();
    for name in disk.list_dir(&dir()).unwrap() {
        if name.ends_with(".snapshot") || name.ends_with(".txnindex") {
            disk.remove_file(&dir().join(name)).unwrap();
        }
    }
    let log = open(&disk, small_segments());
    assert_eq!(log.first_unstable_offset(), fuo);
    assert_eq!(aborted_list(&log), expected);
}

#[test]
fn truncation_forgets_the_aborts_and_reopens_the_transactions_it_cut() {
    let disk = SimDisk::new(5, SimDiskOptions::default());
    let mut log = open(&disk, small_segments());
    log.append(&mut data(1, 0, 2, true), 0, 1).unwrap(); // 0..=1
    log.append(&mut data(2, 0, 2, false), 0, 1).unwrap(); // 2..=3
    log.append_marker(1, 0, marker(false, 0), 0, 1).unwrap(); // 4
    assert_eq!(aborted_list(&log), vec![aborted(1, 0, 4)]);
    assert_eq!(log.first_unstable_offset(), None);
    // A follower whose leader never wrote the marker cuts it.
    log.truncate_to(4).unwrap();
    assert_eq!(aborted_list(&log), vec![]);
    assert_eq!(log.first_unstable_offset(), Some(0), "open again");
    log.close().unwrap();
    let log = open(&disk, small_segments());
    assert_eq!(aborted_list(&log), vec![]);
    assert_eq!(log.first_unstable_offset(), Some(0));
}

#[test]
fn a_follower_copies_markers_and_their_meaning() {
    let disk = SimDisk::new(6, SimDiskOptions::default());
    let mut leader = open(&disk, small_segments());
    let (fuo, expected) = write_transactions(&mut leader);
    let fdisk: Arc<dyn Disk> = Arc::new(SimDisk::new(7, SimDiskOptions::default()));
    let mut follower = PartitionLog::open(fdisk, dir(), small_segments(), 0).unwrap();
    while follower.log_end_offset() < leader.log_end_offset() {
        let slice = leader
            .read(follower.log_end_offset(), 1 << 20, true)
            .unwrap();
        follower.append_as_follower(&slice.records, 1).unwrap();
    }
    assert_eq!(follower.first_unstable_offset(), fuo);
    assert_eq!(aborted_list(&follower), expected);
    // The follower holds the leader's batches byte for byte, markers too.
    let all = |log: &PartitionLog| {
        let mut out = Vec::new();
        while (out.len() as i64) < log.log_end_offset() {
            let slice = log.read(out.len() as i64, 1 << 20, true).unwrap();
            for (range, h) in batch::split_batches(&slice.records).unwrap() {
                for _ in h.base_offset..=h.last_offset() {
                    out.push((h.is_control(), slice.records[range.clone()].to_vec()));
                }
            }
        }
        out
    };
    let (a, b) = (all(&leader), all(&follower));
    assert!(a == b, "the follower's log differs from the leader's");
    assert_eq!(a.iter().filter(|(control, _)| *control).count(), 12);
}

#[test]
fn a_crash_that_loses_the_unsynced_tail_leaves_no_abort_beyond_the_log() {
    for seed in 0..20 {
        let disk = SimDisk::new(100 + seed, SimDiskOptions::default());
        let mut log = open(&disk, small_segments());
        write_transactions(&mut log);
        drop(log);
        disk.crash();
        let log = open(&disk, small_segments());
        let end = log.log_end_offset();
        for (pid, first, last) in aborted_list(&log) {
            assert!(
                last < end,
                "seed {seed}: abort of {pid} at {last}, log end {end}"
            );
            let slice = log.read(last, 1 << 10, true).unwrap();
            let (_, h) = batch::split_batches(&slice.records).unwrap()[0];
            assert!(
                h.is_control() && h.base_offset == last && h.producer_id == pid,
                "seed {seed}: no marker of {pid} at {last}"
            );
            assert!(first < last);
        }
    }
}

mod cleaning {
    //! The cleaner under transactions (Kafka's rules): aborted records go,
    //! committed ones are compacted like others, markers stay while their
    //! transaction has records, nothing at or above the first open
    //! transaction is touched.

    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use weir::log::txn::parse_marker;
    use weir::log::CleanupPolicy;

    use super::*;

    fn cfg(delete_retention_ms: i64) -> LogConfig {
        LogConfig {
            segment_bytes: 400,
            index_interval_bytes: 100,
            cleanup_policy: CleanupPolicy::COMPACT,
            min_cleanable_dirty_ratio: 0.0,
            delete_retention_ms,
            ..LogConfig::default()
        }
    }

    /// One batch of (key, value) records; value None = tombstone.
    pub(super) fn batch_of(
        pid: i64,
        seq: i32,
        recs: &[(u8, Option<u32>)],
        transactional: bool,
    ) -> Vec<u8> {
        let recs: Vec<SimpleRecord> = recs
            .iter()
            .map(|&(k, v)| SimpleRecord {
                key: Some(vec![b'k', k]),
                value: v.map(|v| v.to_be_bytes().to_vec()),
                headers: vec![],
                timestamp: 1,
            })
            .collect();
        build_batch(&recs, super::producer(pid, seq, transactional))
    }

    type Rec = (i64, Vec<u8>, Option<Vec<u8>>);

    /// What a read_committed consumer reading from the log start gets, by
    /// the Java consumer's rule: a producer joins the aborted set when a
    /// batch reaches the first offset of one of its aborted transactions
    /// (as listed for the fetch), its transactional batches are skipped
    /// while it is there, and only its ABORT marker takes it out. Control
    /// batches are never returned.
    pub(super) fn read_committed(log: &PartitionLog, upper: i64) -> Vec<Rec> {
        let mut listed = log
            .aborted_transactions(log.log_start_offset(), upper)
            .into_iter()
            .peekable();
        let mut aborting = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        let mut off = log.log_start_offset();
        while off < upper {
            let slice = log.read(off, 1 << 20, true).unwrap();
            if slice.records.is_empty() {
                break;
            }
            for (range, h) in batch::split_batches(&slice.records).unwrap() {
                off = h.next_offset();
                if h.base_offset >= upper {
                    return out;
                }
                while let Some(t) = listed.next_if(|t| t.first_offset <= h.last_offset()) {
                    aborting.insert(t.producer_id);
                }
                let bytes = &slice.records[range];
                if h.is_control() {
                    if !parse_marker(bytes).unwrap().commit {
                        aborting.remove(&h.producer_id);
                    }
                    continue;
                }
                if h.is_transactional() && aborting.contains(&h.producer_id) {
                    continue;
                }
                for r in batch::decode_records(bytes).unwrap() {
                    out.push((
                        r.offset,
                        r.key.unwrap().to_vec(),
                        r.value.map(|v| v.to_vec()),
                    ));
                }
            }
        }
        out
    }

    fn latest(recs: &[Rec]) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
        recs.iter()
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Latest non-tombstone values.
    fn live(m: &BTreeMap<Vec<u8>, Option<Vec<u8>>>) -> BTreeMap<Vec<u8>, Vec<u8>> {
        m.iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect()
    }

    #[derive(Clone, Debug)]
    enum Op {
        Plain(Vec<(u8, Option<u32>)>),
        Txn(i64, Vec<(u8, Option<u32>)>),
        End(i64, bool),
        Clean,
    }

    fn op() -> impl Strategy<Value = Op> {
        let recs =
            || prop::collection::vec((0u8..8, prop::option::weighted(0.85, 0u32..1000)), 1..4);
        prop_oneof![
            3 => recs().prop_map(Op::Plain),
            5 => (1i64..4, recs()).prop_map(|(p, r)| Op::Txn(p, r)),
            2 => (1i64..4, any::<bool>()).prop_map(|(p, c)| Op::End(p, c)),
            1 => Just(Op::Clean),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn read_committed_sees_the_latest_committed_value_of_every_key(
            ops in prop::collection::vec(op(), 1..90),
            expire in any::<bool>(),
        ) {
            let disk = SimDisk::new(9, SimDiskOptions::default());
            let retention = if expire { 0 } else { i64::MAX / 4 };
            let shared: Arc<dyn Disk> = Arc::new(disk.clone());
            let mut log = PartitionLog::open(shared.clone(), dir(), cfg(retention), 0).unwrap();
            // The model: committed records in offset order, and each
            // producer's open transaction.
            let mut committed: Vec<Rec> = Vec::new();
            let mut open: BTreeMap<i64, Vec<Rec>> = BTreeMap::new();
            let mut seqs: BTreeMap<i64, i32> = BTreeMap::new();
            let mut now = 0;
            let as_recs = |first: i64, recs: &[(u8, Option<u32>)]| -> Vec<Rec> {
                recs.iter()
                    .enumerate()
                    .map(|(i, &(k, v))| (first + i as i64, vec![b'k', k], v.map(|v| v.to_be_bytes().to_vec())))
                    .collect()
            };
            for op in &ops {
                now += 10;
                match op {
                    Op::Plain(recs) => {
                        let info = log.append(&mut batch_of(-1, 0, recs, false), 0, now).unwrap();
                        committed.extend(as_recs(info.first_offset, recs));
                    }
                    Op::Txn(pid, recs) => {
                        let seq = seqs.entry(*pid).or_default();
                        let info = log.append(&mut batch_of(*pid, *seq, recs, true), 0, now).unwrap();
                        *seq += recs.len() as i32;
                        open.entry(*pid).or_default().extend(as_recs(info.first_offset, recs));
                    }
                    Op::End(pid, commit) => {
                        log.append_marker(*pid, 0, marker(*commit, 0), 0, now).unwrap();
                        let recs = open.remove(pid).unwrap_or_default();
                        if *commit {
                            committed.extend(recs);
                        }
                    }
                    Op::Clean => {
                        let end = log.log_end_offset();
                        log.clean(now, end).unwrap();
                        // Nothing of an open transaction was touched.
                        let fuo = log.first_unstable_offset();
                        let first_open = open.values().flatten().map(|r| r.0).min();
                        prop_assert_eq!(fuo, first_open);
                    }
                }
            }
            // Close what is open (aborted), clean, and judge.
            for pid in open.keys().copied().collect::<Vec<_>>() {
                now += 10;
                log.append_marker(pid, 0, marker(false, 0), 0, now).unwrap();
            }
            now += 10;
            let end = log.log_end_offset();
            log.clean(now, end).unwrap();
            log.clean(now + 10, end).unwrap();
            committed.sort();
            let got = read_committed(&log, end);
            let orig: BTreeMap<i64, &Rec> = committed.iter().map(|r| (r.0, r)).collect();
            for w in got.windows(2) {
                prop_assert!(w[0].0 < w[1].0, "offsets strictly increase");
            }
            for r in &got {
                prop_assert_eq!(orig.get(&r.0).copied(), Some(r), "only committed originals are read");
            }
            prop_assert_eq!(live(&latest(&got)), live(&latest(&committed)));
            if !expire {
                prop_assert_eq!(latest(&got), latest(&committed));
            }
            // Markers were kept where records of their transactions are:
            // rebuilt from the log alone, nothing is left open.
            log.close().unwrap();
            for name in disk.list_dir(&dir()).unwrap() {
                if name.ends_with(".snapshot") {
                    disk.remove_file(&dir().join(name)).unwrap();
                }
            }
            let log = PartitionLog::open(shared, dir(), cfg(retention), 0).unwrap();
            prop_assert_eq!(log.first_unstable_offset(), None);
            prop_assert_eq!(read_committed(&log, end), got);
        }
    }
}

#[test]
fn a_commit_marker_outlives_its_horizon_while_its_records_remain() {
    let disk = SimDisk::new(11, SimDiskOptions::default());
    let shared: Arc<dyn Disk> = Arc::new(disk.clone());
    let cfg = LogConfig {
        segment_bytes: 300,
        cleanup_policy: weir::log::CleanupPolicy::COMPACT,
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: 0,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(shared.clone(), dir(), cfg.clone(), 0).unwrap();
    // Producer 1 commits key "t" (never overwritten); producer 2 aborts.
    let batch = cleaning::batch_of;
    log.append(&mut batch(1, 0, &[(1, Some(1))], true), 0, 1)
        .unwrap();
    log.append(&mut batch(2, 0, &[(2, Some(2))], true), 0, 1)
        .unwrap();
    log.append_marker(1, 0, marker(true, 0), 0, 1).unwrap();
    log.append_marker(2, 0, marker(false, 0), 0, 1).unwrap();
    for i in 0..30 {
        log.append(&mut batch(-1, 0, &[(3, Some(i))], false), 0, 1)
            .unwrap();
    }
    let end = log.log_end_offset();
    // First pass starts the horizons, the second is past them (0 ms).
    log.clean(10, end).unwrap();
    log.clean(20, end).unwrap();
    let got = cleaning::read_committed(&log, end);
    assert!(
        got.iter().any(|r| r.0 == 0),
        "producer 1's committed record stays"
    );
    assert!(
        !got.iter().any(|r| r.0 == 1),
        "producer 2's aborted record went"
    );
    let mut markers = Vec::new();
    let mut off = log.log_start_offset();
    while off < end {
        let slice = log.read(off, 1 << 20, true).unwrap();
        for (_, h) in batch::split_batches(&slice.records).unwrap() {
            if h.is_control() {
                markers.push(h.producer_id);
            }
            off = h.next_offset();
        }
    }
    assert_eq!(
        markers,
        vec![1],
        "the commit marker stays, the abort marker went"
    );
    // Rebuilt from the log alone, no transaction is left open.
    log.close().unwrap();
    for name in disk.list_dir(&dir()).unwrap() {
        if name.ends_with(".snapshot") {
            disk.remove_file(&dir().join(name)).unwrap();
        }
    }
    let log = PartitionLog::open(shared, dir(), cfg, 0).unwrap();
    assert_eq!(log.first_unstable_offset(), None);
}

//! Crash at every I/O step of a cleaning pass or a retention deletion, on
//! SimDisk's crash model (unsynced writes kept, dropped or torn; with and
//! without lost directory operations): the reopened log serves, from its
//! start, records that are all originals at their original offsets and end
//! with every key's latest value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use weir::env::disk::OpenMode;
use weir::env::sim_disk::{SimDisk, SimDiskOptions};
use weir::env::{Disk, DiskFile};
use weir::log::batch::{self, build_batch, BatchProducer, SimpleRecord};
use weir::log::{CleanupPolicy, LogConfig, PartitionLog};

/// A disk whose every mutating operation fails once `budget` runs out: the
/// moment the node died. Reads keep working (they change nothing).
struct DyingDisk {
    inner: SimDisk,
    budget: Arc<AtomicU64>,
}

struct DyingFile {
    inner: Box<dyn DiskFile>,
    budget: Arc<AtomicU64>,
}

fn spend(budget: &AtomicU64) -> std::io::Result<()> {
    budget
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1))
        .map(|_| ())
        .map_err(|_| std::io::Error::other("node died"))
}

impl DiskFile for DyingFile {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        spend(&self.budget)?;
        self.inner.write_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        spend(&self.budget)?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        spend(&self.budget)?;
        self.inner.sync_data()
    }
}

impl Disk for DyingDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn DiskFile>> {
        if mode.create || mode.truncate {
            spend(&self.budget)?;
        }
        Ok(Box::new(DyingFile {
            inner: self.inner.open(path, mode)?,
            budget: self.budget.clone(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        spend(&self.budget)?;
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        spend(&self.budget)?;
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        spend(&self.budget)?;
        self.inner.remove_dir_all(path)
    }
}

fn cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 500,
        index_interval_bytes: 100,
        cleanup_policy: CleanupPolicy {
            compact: true,
            delete: true,
        },
        min_cleanable_dirty_ratio: 0.0,
        delete_retention_ms: i64::MAX / 4,
        retention_ms: -1,
        ..LogConfig::default()
    }
}

type Rec = (i64, Vec<u8>, Option<Vec<u8>>);

fn read_records(log: &PartitionLog) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut off = log.log_start_offset();
    while off < log.log_end_offset() {
        let slice = log.read(off, 1 << 20, true).unwrap();
        if slice.records.is_empty() {
            break;
        }
        for (range, h) in batch::split_batches(&slice.records).unwrap() {
            for r in batch::decode_records(&slice.records[range]).unwrap() {
                if r.offset >= log.log_start_offset() {
                    out.push((
                        r.offset,
                        r.key.unwrap().to_vec(),
                        r.value.map(|v| v.to_vec()),
                    ));
                }
            }
            off = h.next_offset();
        }
    }
    out
}

fn latest(recs: &[Rec]) -> BTreeMap<Vec<u8>, Option<Vec<u8>>> {
    recs.iter()
        .map(|(_, k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Fill a log on `disk` (everything synced by a clean close). With
/// `empty_first`, every key of the first segment is written again later,
/// so the pass empties it.
fn fill(disk: &SimDisk, dir: &Path, empty_first: bool) -> Vec<Rec> {
    let mut log = PartitionLog::open(Arc::new(disk.clone()), dir.to_path_buf(), cfg(), 0).unwrap();
    for i in 0..60u32 {
        let k = if i < 4 && !empty_first {
            100 + i
        } else {
            i % 6
        };
        let recs = [SimpleRecord {
            key: Some(format!("key-{k}").into_bytes()),
            value: (i % 11 != 5).then(|| format!("value-{i}").into_bytes()),
            headers: vec![],
            timestamp: i as i64,
        }];
        log.append(
            &mut build_batch(&recs, BatchProducer::default()),
            0,
            i as i64,
        )
        .unwrap();
    }
    let all = read_records(&log);
    log.close().unwrap();
    all
}

fn check(disk: &SimDisk, dir: &Path, all: &[Rec], what: &str) -> Vec<Rec> {
    let log = PartitionLog::open(Arc::new(disk.clone()), dir.to_path_buf(), cfg(), 1_000)
        .unwrap_or_else(|e| panic!("{what}: reopen failed: {e}"));
    let got = read_records(&log);
    // Only DeleteRecords (to 30) moves the log start, never the cleaner.
    let start = log.log_start_offset();
    assert!(start == 0 || start == 30, "{what}: log start {start}");
    let orig: BTreeMap<i64, &Rec> = all.iter().map(|r| (r.0, r)).collect();
    for w in got.windows(2) {
        assert!(w[0].0 < w[1].0, "{what}: offsets increase");
    }
    for r in &got {
        assert_eq!(orig.get(&r.0), Some(&r), "{what}: survivor is original");
    }
    let above: Vec<Rec> = all
        .iter()
        .filter(|r| r.0 >= log.log_start_offset())
        .cloned()
        .collect();
    assert_eq!(latest(&got), latest(&above), "{what}: latest values");
    got
}

fn run(lose_dir_ops: bool, empty_first: bool) {
    let mut finished = false;
    for budget in 0.. {
        let disk = SimDisk::new(budget, SimDiskOptions::default());
        let dir = PathBuf::from("/data/c-0");
        let all = fill(&disk, &dir, empty_first);
        disk.persist_namespace();
        disk.set_options(SimDiskOptions {
            lose_unsynced_dir_ops: lose_dir_ops,
            ..SimDiskOptions::default()
        });
        // Open on a healthy budget; the countdown starts with the pass.
        let left = Arc::new(AtomicU64::new(u64::MAX));
        let dying: Arc<dyn Disk> = Arc::new(DyingDisk {
            inner: disk.clone(),
            budget: left.clone(),
        });
        let what =
            format!("budget {budget}, lose_dir_ops {lose_dir_ops}, empty_first {empty_first}");
        let mut log = PartitionLog::open(dying, dir.clone(), cfg(), 1_000).unwrap_or_else(|e| {
            panic!("{what}: open on the dying disk: {e}");
        });
        let end = log.log_end_offset();
        left.store(budget, Ordering::SeqCst);
        let cleaned = log.clean(1_000, end);
        let retained = cleaned
            .as_ref()
            .ok()
            .map(|_| log.delete_records_before(30, end));
        let done = matches!(retained, Some(Ok(_)));
        drop(log);
        disk.crash();
        let got = check(&disk, &dir, &all, &what);
        if done {
            // A disk that loses directory operations may undo the whole
            // pass at the crash (safe, but no progress to check).
            if !lose_dir_ops {
                assert!(
                    got.len() < all.len() / 2,
                    "{what}: the pass removed records"
                );
            }
            eprintln!("{what}: the pass finished; every earlier crash point checked");
            finished = true;
            break;
        }
        assert!(budget < 10_000, "the pass never finished");
    }
    assert!(finished);
}

#[test]
fn crash_at_every_step_of_cleaning_and_deletion() {
    run(false, false);
}

#[test]
fn crash_at_every_step_with_lost_directory_operations() {
    run(true, false);
}

/// The pass empties the first segment, which is swapped for an empty file
/// (the log start stays): a crash at any step of that swap too.
#[test]
fn crash_at_every_step_of_emptying_the_first_segment() {
    run(false, true);
    run(true, true);
}

//! Several log dirs (log.dirs=/a,/b: one per disk): partitions spread over
//! them, reopen where they are, a partition in two dirs refuses the start,
//! and a failed dir takes only its own partitions offline.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use weir::broker::registry::Registry;
use weir::config::ServerConfig;
use weir::env::disk::{Disk, DiskFile, OpenMode};
use weir::env::sim_disk::{SimDisk, SimDiskOptions};
use weir::log::batch::{build_batch, SimpleRecord};

/// A disk whose writes and syncs under one directory fail with EIO once
/// `fail_under` is set (a dead disk behind one of the log dirs).
#[derive(Clone)]
struct OneBadDir {
    inner: SimDisk,
    fail_under: Arc<Mutex<Option<PathBuf>>>,
}

impl OneBadDir {
    fn fails(&self, path: &Path) -> bool {
        self.fail_under
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|d| path.starts_with(d))
    }
}

struct File {
    inner: Box<dyn DiskFile>,
    bad: bool,
    disk: OneBadDir,
}

impl File {
    fn check(&self) -> io::Result<()> {
        if self.bad && self.disk.fail_under.lock().unwrap().is_some() {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        Ok(())
    }
}

/// EIO, as Linux numbers it.
const EIO: i32 = 5;

impl DiskFile for File {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check()?;
        self.inner.write_at(buf, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.check()?;
        self.inner.sync_data()
    }
}

impl Disk for OneBadDir {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(File {
            inner: self.inner.open(path, mode)?,
            bad: path.starts_with("/b"),
            disk: self.clone(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if self.fails(path) {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        self.inner.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.inner.is_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_dir_all(path)
    }
    fn available_bytes(&self, path: &Path) -> Option<u64> {
        self.inner.available_bytes(path)
    }
}

fn config() -> Arc<ServerConfig> {
    Arc::new(
        ServerConfig::parse_properties("log.dirs=/a,/b\nlog.flush.interval.messages=1\n").unwrap(),
    )
}

fn record(v: u32) -> Vec<u8> {
    build_batch(
        &[SimpleRecord {
            key: None,
            value: Some(v.to_be_bytes().to_vec()),
            headers: vec![],
            timestamp: 1,
        }],
        Default::default(),
    )
}

fn open(registry: &Registry, index: i32) -> Arc<weir::broker::registry::PartitionState> {
    registry
        .open_partition("t", index, &BTreeMap::new(), 0)
        .unwrap()
}

fn append(registry: &Registry, index: i32, v: u32) -> Result<i64, i16> {
    open(registry, index)
        .with_log(|log| log.append(&mut record(v), 0, 1))
        .map(|info| info.first_offset)
        .map_err(|e| e.error_code())
}

#[test]
fn partitions_spread_over_the_dirs_and_reopen_where_they_are() {
    let disk = SimDisk::new(1, SimDiskOptions::default());
    let shared: Arc<dyn Disk> = Arc::new(disk.clone());
    let registry = Registry::open(shared.clone(), config()).unwrap();
    for i in 0..4 {
        append(&registry, i, i as u32).unwrap();
    }
    let in_a: Vec<bool> = (0..4)
        .map(|i| disk.exists(Path::new(&format!("/a/t-{i}"))))
        .collect();
    let in_b: Vec<bool> = (0..4)
        .map(|i| disk.exists(Path::new(&format!("/b/t-{i}"))))
        .collect();
    assert_eq!(
        in_a,
        vec![true, false, true, false],
        "fewest partitions first"
    );
    assert_eq!(in_b, vec![false, true, false, true]);
    registry.close_all().unwrap();
    // Restart: each partition reopens in its own dir with its records, and
    // the next new one goes where there are fewest.
    let registry = Registry::open(shared, config()).unwrap();
    for i in 0..4 {
        assert_eq!(
            append(&registry, i, 9),
            Ok(1),
            "partition {i} kept its record"
        );
    }
    append(&registry, 4, 0).unwrap();
    assert!(disk.exists(Path::new("/a/t-4")));
}

#[test]
fn a_partition_in_two_dirs_refuses_the_start() {
    let disk = SimDisk::new(2, SimDiskOptions::default());
    for d in ["/a/t-0", "/b/t-0", "/a/__cluster_metadata-0"] {
        disk.create_dir_all(Path::new(d)).unwrap();
    }
    let shared: Arc<dyn Disk> = Arc::new(disk.clone());
    let err = Registry::open(shared.clone(), config())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("/a") && err.contains("/b") && err.contains("t-0"),
        "{err}"
    );
    // The metadata directory is no partition; without the duplicate the
    // broker starts.
    disk.remove_dir_all(Path::new("/b/t-0")).unwrap();
    Registry::open(shared, config()).unwrap();
}

#[test]
fn a_failed_dir_takes_only_its_own_partitions_offline() {
    let disk = OneBadDir {
        inner: SimDisk::new(3, SimDiskOptions::default()),
        fail_under: Arc::new(Mutex::new(None)),
    };
    let shared: Arc<dyn Disk> = Arc::new(disk.clone());
    let registry = Registry::open(shared.clone(), config()).unwrap();
    for i in 0..4 {
        append(&registry, i, i as u32).unwrap();
    }
    // The disk behind /b dies: its partitions (1 and 3) fail and stay
    // failed; /a's go on.
    *disk.fail_under.lock().unwrap() = Some(PathBuf::from("/b"));
    assert_eq!(append(&registry, 1, 10), Err(56), "KAFKA_STORAGE_ERROR");
    assert_eq!(append(&registry, 3, 10), Err(56));
    assert!(registry.log_dirs()[1].is_offline());
    assert!(!registry.log_dirs()[0].is_offline());
    assert!(registry.any_log_dir_offline());
    assert_eq!(append(&registry, 0, 10), Ok(1));
    assert_eq!(append(&registry, 2, 10), Ok(1));
    // New partitions avoid the dead dir even where it holds fewer.
    append(&registry, 4, 0).unwrap();
    append(&registry, 5, 0).unwrap();
    assert!(disk.inner.exists(Path::new("/a/t-4")) && disk.inner.exists(Path::new("/a/t-5")));
    // Restart with the disk replaced: everything acknowledged is there.
    registry.close_all().unwrap();
    *disk.fail_under.lock().unwrap() = None;
    let registry = Registry::open(shared, config()).unwrap();
    for (i, end) in [(0, 2), (1, 1), (2, 2), (3, 1)] {
        let p = open(&registry, i);
        assert_eq!(
            p.with_log(|l| Ok(l.log_end_offset())).unwrap(),
            end,
            "t-{i}"
        );
    }
}

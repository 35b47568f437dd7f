//! Disk full: a produce that hits ENOSPC fails with KAFKA_STORAGE_ERROR and
//! takes the log dir offline (every partition in it answers produce, fetch
//! and Metadata with error 56); after space returns and the broker restarts
//! on the same disk, every acknowledged record is back. Runs on tokio over
//! SimDisk (an in-memory Disk with a capacity limit) and loopback sockets.
//!
//! The same holds when the failure lands in log maintenance instead of an
//! append, as Kafka's LogCleaner and retention take the log dir offline on
//! an IOException: a full disk, a failed operation or a power cut at each
//! mutating operation of a cleaner pass (`.cleaned` files, the swap, the
//! cleaner checkpoint) and of a retention pass (the log start and leader
//! epoch checkpoints, segment deletion, by retention.bytes or DeleteRecords)
//! takes the dir offline, or leaves the pass complete when nothing failed;
//! after the restart no `.cleaned`/`.swap` file is left, every offset
//! served holds its original record, every key's latest acknowledged value
//! is there, and the next pass completes.
#![cfg(not(madsim))]

mod broker_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use broker_support::*;
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir::broker::Server;
use weir::env::disk::OpenMode;
use weir::env::sim_disk::{SimDisk, SimDiskOptions};
use weir::env::{Disk, DiskFile};
use weir::log::checkpoint::CleanerState;

const STORAGE_ERROR: i16 = 56;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn start_on(disk: &Arc<SimDisk>) -> Server {
    let mut c = weir::config::ServerConfig::default_single_node();
    c.set("listeners", "PLAINTEXT://127.0.0.1:0").unwrap();
    c.set("log.dirs", "/data").unwrap();
    Server::start(c, disk.clone()).await.unwrap()
}

async fn create(c: &mut Client, topic: &str) {
    // Small segments so the fill crosses rolls (seal, new segment, snapshot).
    let t = CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("segment.bytes"))
            .with_value(Some(StrBytes::from_static_str("16384")))]);
    let resp = c
        .call(7, &CreateTopicsRequest::default().with_topics(vec![t]))
        .await;
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
}

/// (error code, base offset) of an acks=all produce.
async fn produce(c: &mut Client, topic: &str, records: Bytes) -> (i16, i64) {
    produce_partition0(c, topic, -1, 5000, records).await
}

async fn fetch(c: &mut Client, topic: &str, offset: i64) -> (i16, Vec<(i64, Option<Bytes>)>) {
    let (code, _, recs) = fetch_partition0(c, topic, offset).await;
    (code, recs)
}

async fn fetch_all(c: &mut Client, topic: &str) -> Vec<(i64, Option<Bytes>)> {
    let mut offset = 0;
    let mut out = Vec::new();
    loop {
        let (err, recs) = fetch(c, topic, offset).await;
        assert_eq!(err, 0);
        let Some(last) = recs.last() else {
            return out;
        };
        offset = last.0 + 1;
        out.extend(recs);
    }
}

async fn metadata_partition(c: &mut Client, topic: &str) -> (i16, i32, Vec<i32>) {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let resp = c.call(12, &req).await;
    let p = &resp.topics[0].partitions[0];
    (
        p.error_code,
        p.leader_id.0,
        p.offline_replicas.iter().map(|b| b.0).collect(),
    )
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i:06}-{}", "x".repeat(900)).into_bytes()
}

#[tokio::test]
async fn enospc_takes_the_log_dir_offline_and_a_restart_recovers_every_ack() {
    // Different room left, so the failure lands on different writes: the
    // log, an index, a roll's new segment or its producer snapshot.
    for slack in [80 * 1024, 20_011, 33_333, 47_500, 65_537, 100_003] {
        fill_then_recover(slack).await;
    }
}

async fn fill_then_recover(slack: u64) {
    let disk = Arc::new(SimDisk::new(5, SimDiskOptions::default()));
    let server = start_on(&disk).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, "fill").await;
    create(&mut c, "bystander").await;
    assert_eq!(
        produce(&mut c, "bystander", batch(&[record("b", b"before", 1)])).await,
        (0, 0)
    );

    // Leave room for a few segments' worth, then fill it.
    let mut options = disk.options();
    options.capacity_bytes_max = disk.used_bytes() + slack;
    disk.set_options(options.clone());
    let mut acked: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut failure = None;
    for i in 0..10_000 {
        let v = value(i);
        let (err, base) = produce(&mut c, "fill", batch(&[record("k", &v, i as i64)])).await;
        if err != 0 {
            failure = Some(err);
            break;
        }
        assert_eq!(base, acked.len() as i64, "offsets are dense");
        acked.push((base, v));
    }
    assert_eq!(
        failure,
        Some(STORAGE_ERROR),
        "slack {slack}: the fill must end in ENOSPC"
    );
    assert!(disk.stats().no_space_errors > 0);
    assert!(acked.len() > 10, "some records fit: {}", acked.len());

    // The whole log dir is offline: both partitions, produce and fetch.
    let (err, _) = produce(&mut c, "fill", batch(&[record("k", b"again", 1)])).await;
    assert_eq!(err, STORAGE_ERROR);
    let (err, recs) = fetch(&mut c, "fill", 0).await;
    assert_eq!(err, STORAGE_ERROR);
    assert!(recs.is_empty(), "nothing is served from an offline log");
    let (err, _) = produce(&mut c, "bystander", batch(&[record("b", b"after", 1)])).await;
    assert_eq!(err, STORAGE_ERROR);
    let (err, _) = fetch(&mut c, "bystander", 0).await;
    assert_eq!(err, STORAGE_ERROR);
    for topic in ["fill", "bystander"] {
        let (err, leader, offline) = metadata_partition(&mut c, topic).await;
        assert_eq!(err, STORAGE_ERROR, "{topic}");
        assert_eq!(leader, -1, "{topic}");
        assert_eq!(offline, vec![1], "{topic}");
    }
    // No new log opens on an offline dir. The controller does not know
    // about the failed dir (it may place the topic here), but the broker
    // opens no log for it, so nothing is written there and a produce fails.
    c.call(
        7,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(name("late"))
            .with_num_partitions(1)
            .with_replication_factor(1)]),
    )
    .await;
    let (err, _) = produce(&mut c, "late", batch(&[record("l", b"late", 1)])).await;
    assert_ne!(err, 0, "a record landed on an offline log dir");
    drop(c);
    server.shutdown().await.unwrap();

    // Space returns; the restart recovers every log.
    options.capacity_bytes_max = u64::MAX;
    disk.set_options(options);
    let server = start_on(&disk).await;
    let mut c = Client::connect(server.local_addr()).await;
    let got = fetch_all(&mut c, "fill").await;
    assert!(
        got.len() >= acked.len(),
        "lost acknowledged records: {} < {}",
        got.len(),
        acked.len()
    );
    for ((off, v), (got_off, got_v)) in acked.iter().zip(&got) {
        assert_eq!(off, got_off);
        assert_eq!(got_v.as_deref(), Some(&v[..]), "offset {off}");
    }
    // An unacknowledged tail may survive (it reached the file), never more.
    assert!(got.len() <= acked.len() + 1);
    let by = fetch_all(&mut c, "bystander").await;
    assert_eq!(by.len(), 1);
    assert_eq!(by[0].1.as_deref(), Some(&b"before"[..]));
    let (err, _, _) = metadata_partition(&mut c, "fill").await;
    assert_eq!(err, 0);
    let (err, base) = produce(&mut c, "fill", batch(&[record("k", b"after", 1)])).await;
    assert_eq!(err, 0);
    assert_eq!(base, got.len() as i64);
    drop(c);
    server.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------
// Disk full, or a failed write, inside a cleaner pass or a retention pass.
//
// Nothing but the log maintenance task writes to a partition's directory
// while no client produces to it, so the n-th mutating operation there after
// the pass is triggered is the same operation in every run: sweeping n lands
// the fault on every create, write, fsync, rename and remove of the pass.

/// What goes wrong at the chosen operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The disk fills up right there: SimDisk's capacity drops to the bytes
    /// it holds, so that operation (if it grows a file) and every later
    /// write that would grow one, anywhere on the disk, fail with ENOSPC
    /// until the space returns. Renames, removes and fsyncs still work.
    DiskFull,
    /// That one operation fails with EIO and applies nothing (a device
    /// error); the ones after it work.
    Eio,
    /// The power goes at that operation: it and everything after it fail
    /// with EIO (SimDisk's power cut); the node is then shut down and the
    /// disk crashes (unsynced writes kept, dropped or torn) before the
    /// restart.
    PowerCut,
}

/// A `Disk` over a SimDisk that, once armed, counts the mutating operations
/// (create, truncate, write, set_len, fsync, rename, remove) under one
/// directory and injects a [`Fault`] at the n-th. Reads, and everything
/// elsewhere, pass straight through.
struct TripDisk(Arc<Trip>);

struct TripFile {
    inner: Box<dyn DiskFile>,
    path: PathBuf,
    trip: Arc<Trip>,
}

struct Trip {
    sim: Arc<SimDisk>,
    state: Mutex<TripState>,
}

#[derive(Default)]
struct TripState {
    /// The directory whose operations count; None: disarmed.
    watched: Option<PathBuf>,
    /// Counted operations still to pass before the fault, and the fault.
    pending: Option<(u64, Fault)>,
    /// Every counted operation, in order.
    seen: Vec<String>,
    /// The operation the fault hit.
    fired: Option<String>,
    /// The first write that failed with ENOSPC, anywhere (armed or not).
    first_no_space: Option<String>,
}

impl Trip {
    fn new(sim: Arc<SimDisk>) -> Arc<Trip> {
        Arc::new(Trip {
            sim,
            state: Mutex::new(TripState::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TripState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count the operations under `dir` from now on; the fault goes off at
    /// the `n`-th (0: the next one).
    fn arm(&self, dir: &Path, n: u64, fault: Fault) {
        let mut s = self.state();
        s.watched = Some(dir.to_path_buf());
        s.pending = Some((n, fault));
        s.seen.clear();
        s.fired = None;
    }

    /// Stop counting and give the disk its space back.
    fn heal(&self) {
        let mut s = self.state();
        s.watched = None;
        s.pending = None;
        let mut options = self.sim.options();
        options.capacity_bytes_max = u64::MAX;
        self.sim.set_options(options);
    }

    fn fired(&self) -> Option<String> {
        self.state().fired.clone()
    }

    fn seen(&self) -> Vec<String> {
        self.state().seen.clone()
    }

    fn first_no_space(&self) -> Option<String> {
        self.state().first_no_space.clone()
    }

    /// Remember the first write to fail with ENOSPC.
    fn note<T>(&self, r: std::io::Result<T>, what: impl FnOnce() -> String) -> std::io::Result<T> {
        if let Err(e) = &r {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                self.state().first_no_space.get_or_insert_with(what);
            }
        }
        r
    }

    /// A mutating operation on `paths` is about to run: Err if the fault
    /// makes it fail before it reaches SimDisk.
    fn op(&self, paths: &[&Path], what: impl FnOnce() -> String) -> std::io::Result<()> {
        let mut s = self.state();
        let Some(dir) = &s.watched else {
            return Ok(());
        };
        if !paths.iter().any(|p| p.starts_with(dir)) {
            return Ok(());
        }
        let what = what();
        s.seen.push(what.clone());
        match s.pending {
            Some((0, fault)) => {
                s.pending = None;
                s.fired = Some(what);
                match fault {
                    Fault::DiskFull => {
                        let mut options = self.sim.options();
                        options.capacity_bytes_max = self.sim.used_bytes();
                        self.sim.set_options(options);
                        Ok(())
                    }
                    Fault::Eio => Err(std::io::Error::from_raw_os_error(libc::EIO)),
                    Fault::PowerCut => {
                        self.sim.cut_power_after(0);
                        Ok(())
                    }
                }
            }
            Some((n, fault)) => {
                s.pending = Some((n - 1, fault));
                Ok(())
            }
            None => Ok(()),
        }
    }
}

fn file_name_of(p: &Path) -> String {
    p.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

impl DiskFile for TripFile {
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        let what = || format!("write {} bytes to {}", buf.len(), file_name_of(&self.path));
        self.trip.op(&[&self.path], what)?;
        self.trip.note(self.inner.write_at(buf, offset), what)
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        let what = || format!("set_len {len} of {}", file_name_of(&self.path));
        self.trip.op(&[&self.path], what)?;
        self.trip.note(self.inner.set_len(len), what)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.trip.op(&[&self.path], || {
            format!("fsync {}", file_name_of(&self.path))
        })?;
        self.inner.sync_data()
    }
}

impl Disk for TripDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Box<dyn DiskFile>> {
        if mode.create || mode.truncate {
            self.0
                .op(&[path], || format!("create {}", file_name_of(path)))?;
        }
        Ok(Box::new(TripFile {
            inner: self.0.sim.open(path, mode)?,
            path: path.to_path_buf(),
            trip: self.0.clone(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.0.op(&[path], || format!("mkdir {}", path.display()))?;
        self.0.sim.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<String>> {
        self.0.sim.list_dir(path)
    }
    fn exists(&self, path: &Path) -> bool {
        self.0.sim.exists(path)
    }
    fn is_dir(&self, path: &Path) -> bool {
        self.0.sim.is_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.0.op(&[from, to], || {
            format!("rename {} -> {}", file_name_of(from), file_name_of(to))
        })?;
        self.0.sim.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.0
            .op(&[path], || format!("remove {}", file_name_of(path)))?;
        self.0.sim.remove_file(path)
    }
    fn remove_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.0
            .op(&[path], || format!("remove dir {}", path.display()))?;
        self.0.sim.remove_dir_all(path)
    }
    fn available_bytes(&self, path: &Path) -> Option<u64> {
        self.0.sim.available_bytes(path)
    }
}

/// Give the disk its space back and restart the broker on it (after a
/// power cut the node dies first and the disk crashes), with log
/// maintenance off, so that what the reopened logs hold is seen before the
/// cleaner or retention touch them again.
async fn restart(server: Server, trip: &Arc<Trip>, fault: Fault) -> Server {
    trip.heal();
    let r = server.shutdown().await;
    if fault == Fault::PowerCut {
        // Closing logs in a dead log dir is skipped; whatever else fails
        // to write at shutdown does not matter: the node is gone.
        trip.sim.crash();
    } else {
        r.unwrap();
    }
    start_tripped(trip, false).await
}

/// Restart with log maintenance back on.
async fn resume(server: Server, trip: &Arc<Trip>) -> Server {
    server.shutdown().await.unwrap();
    start_tripped(trip, true).await
}

/// A broker on `trip`'s disk whose cleaner and retention check run every
/// few milliseconds, or (`maintenance` false) not at all.
async fn start_tripped(trip: &Arc<Trip>, maintenance: bool) -> Server {
    let mut c = weir::config::ServerConfig::default_single_node();
    c.set("listeners", "PLAINTEXT://127.0.0.1:0").unwrap();
    c.set("log.dirs", "/data").unwrap();
    if maintenance {
        c.set("log.cleaner.backoff.ms", "5").unwrap();
        c.set("log.retention.check.interval.ms", "5").unwrap();
    } else {
        c.set("log.cleaner.enable", "false").unwrap();
        c.set("log.retention.check.interval.ms", "3600000").unwrap();
    }
    Server::start(c, Arc::new(TripDisk(trip.clone())))
        .await
        .unwrap()
}

async fn alter(c: &mut Client, topic: &str, key: &'static str, value: &'static str) {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str(key))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str(value)))]),
    ]);
    let resp = c.call(1, &req).await;
    assert_eq!(resp.responses[0].error_code, 0, "{:?}", resp.responses[0]);
}

/// ListOffsets EARLIEST: (error code, log start offset).
async fn log_start(c: &mut Client, topic: &str) -> (i16, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-2)])]);
    let resp = c.call(1, &req).await;
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset)
}

/// Every record from `from` to the end.
async fn fetch_from(c: &mut Client, topic: &str, from: i64) -> Vec<(i64, Option<Bytes>)> {
    let mut offset = from;
    let mut out = Vec::new();
    loop {
        let (err, recs) = fetch(c, topic, offset).await;
        assert_eq!(err, 0, "fetch {topic} at {offset}");
        let Some(last) = recs.last() else {
            return out;
        };
        offset = last.0 + 1;
        out.extend(recs);
    }
}

/// The segment bases of a partition directory, and the names of its files.
fn segment_files(sim: &SimDisk, dir: &Path) -> (Vec<i64>, Vec<String>) {
    let names = sim.list_dir(dir).unwrap();
    let bases = names
        .iter()
        .filter_map(|n| n.strip_suffix(".log"))
        .map(|b| b.parse().unwrap())
        .collect();
    (bases, names)
}

/// Neither a `.cleaned` nor a `.swap` file is in the directory.
fn assert_no_cleaner_leftovers(sim: &SimDisk, dir: &Path, what: &str) {
    let (_, names) = segment_files(sim, dir);
    let left: Vec<_> = names
        .iter()
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect();
    assert!(left.is_empty(), "{what}: cleaner files left: {left:?}");
}

/// The log dir of `topic` answers as an offline one: produce, fetch and
/// Metadata fail with KAFKA_STORAGE_ERROR and nothing is served.
async fn assert_offline(c: &mut Client, topic: &str, what: &str) {
    let (err, _) = produce(c, topic, batch(&[record("x", b"refused", 1)])).await;
    assert_eq!(err, STORAGE_ERROR, "{what}: produce to {topic}");
    let (err, recs) = fetch(c, topic, 0).await;
    assert_eq!(err, STORAGE_ERROR, "{what}: fetch from {topic}");
    assert!(
        recs.is_empty(),
        "{what}: {topic} served records while offline"
    );
    let (err, leader, offline) = metadata_partition(c, topic).await;
    assert_eq!(
        (err, leader, offline),
        (STORAGE_ERROR, -1, vec![1]),
        "{what}: Metadata of {topic}"
    );
}

/// One more poll of a bounded wait (a liveness bound, not a timing
/// assertion): sleeps a few milliseconds, panics with `what` after 30 s.
async fn poll_again(polls: &mut u32, what: &str) {
    *polls += 1;
    assert!(*polls < 6000, "{what}: still not done after 30 s");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
}

/// Records written to the compacted topic (about six 16 KiB segments).
const COMPACT_RECORDS: usize = 100;

/// Four keys shared by the whole log, and keys of their own (never
/// overwritten) in the second and third segments: the first pass swaps the
/// first segment for an empty file, rewrites the next two and the last
/// closed one and deletes the ones between.
fn compact_key(i: usize) -> String {
    if (20..40).contains(&i) && i % 2 == 0 {
        format!("own-{i}")
    } else {
        format!("k{}", i % 4)
    }
}

/// (offset, key, value) of every acknowledged record.
type Acked = Vec<(i64, String, Vec<u8>)>;

/// What the log must serve below `clean_to` once a pass has cleaned up to
/// it, and above it: every key's latest record below, everything above.
fn cleaned_view(acked: &Acked, clean_to: i64) -> Vec<(i64, Vec<u8>)> {
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    for (off, k, _) in acked.iter().filter(|(o, _, _)| *o < clean_to) {
        latest.insert(k, *off);
    }
    acked
        .iter()
        .filter(|(o, k, _)| *o >= clean_to || latest[k.as_str()] == *o)
        .map(|(o, _, v)| (*o, v.clone()))
        .collect()
}

/// What a compacted log may serve after any number of partial passes:
/// originals at their original offsets, in order (no offset holds two
/// values), including every key's latest acknowledged record.
fn check_compacted(got: &[(i64, Option<Bytes>)], acked: &Acked, what: &str) {
    for w in got.windows(2) {
        assert!(w[0].0 < w[1].0, "{what}: offsets out of order: {w:?}");
    }
    for (off, v) in got {
        let (_, _, want) = acked
            .get(*off as usize)
            .unwrap_or_else(|| panic!("{what}: offset {off} was never acknowledged"));
        assert_eq!(v.as_deref(), Some(&want[..]), "{what}: offset {off}");
    }
    let have: BTreeSet<i64> = got.iter().map(|(o, _)| *o).collect();
    let mut latest: BTreeMap<&str, i64> = BTreeMap::new();
    for (off, k, _) in acked {
        latest.insert(k, *off);
    }
    for (k, off) in latest {
        assert!(
            have.contains(&off),
            "{what}: key {k}'s latest record at {off} is gone"
        );
    }
}

/// One run: fill a compacted partition (with a bystander partition in the
/// same log dir), then let the cleaner's first pass run with `fault` at
/// its `n`-th operation in the partition directory. Returns the operation
/// the fault hit and whether the log dir went offline; None when the pass
/// had fewer than `n + 1` operations.
async fn clean_with_fault(fault: Fault, n: u64) -> Option<(String, bool)> {
    let sim = Arc::new(SimDisk::new(11, SimDiskOptions::default()));
    let trip = Trip::new(sim.clone());
    let dir = Path::new("/data/compacted-0");
    let server = start_tripped(&trip, true).await;
    let mut c = Client::connect(server.local_addr()).await;
    // Written under delete (nothing expires), then switched to compact, so
    // that the first pass starts only once the fault is armed.
    create_with(
        &mut c,
        "compacted",
        &[
            ("cleanup.policy", "delete"),
            ("retention.ms", "-1"),
            ("segment.bytes", "16384"),
            ("min.cleanable.dirty.ratio", "0.01"),
            // Every ack is durable, so not even the power cut may lose one.
            ("flush.messages", "1"),
        ],
    )
    .await;
    create_with(&mut c, "bystander", &[("flush.messages", "1")]).await;
    assert_eq!(
        produce(&mut c, "bystander", batch(&[record("b", b"before", 1)])).await,
        (0, 0)
    );
    let mut acked: Acked = Vec::new();
    for i in 0..COMPACT_RECORDS {
        let (k, v) = (compact_key(i), value(i));
        let (err, base) = produce(&mut c, "compacted", batch(&[record(&k, &v, i as i64)])).await;
        assert_eq!((err, base), (0, i as i64));
        acked.push((base, k, v));
    }
    let (bases, _) = segment_files(&sim, dir);
    let active = *bases.last().unwrap();
    assert!(bases.len() >= 5, "segments: {bases:?}");

    trip.arm(dir, n, fault);
    alter(&mut c, "compacted", "cleanup.policy", "compact").await;
    let what = format!("{fault:?} at cleaner operation {n}");
    // The pass ends in one of two ways: the fault took the log dir offline,
    // or the pass completed (its checkpoint covers every closed segment).
    let mut polls = 0;
    let offline = loop {
        let (err, _) = fetch(&mut c, "compacted", 0).await;
        if err == STORAGE_ERROR {
            break true;
        }
        assert_eq!(err, 0, "{what}");
        // (Unreadable once the power is off: the fetch above then fails.)
        let state = CleanerState::read(sim.as_ref(), dir).unwrap_or_default();
        if state.first_dirty_offset >= active {
            break false;
        }
        poll_again(&mut polls, &format!("{what}: neither offline nor done")).await;
    };
    let fired = trip.fired();
    let what = format!("{what} ({})", fired.as_deref().unwrap_or("not reached"));
    if offline {
        assert!(fired.is_some(), "{what}: offline with no fault");
        assert_offline(&mut c, "compacted", &what).await;
        assert_offline(&mut c, "bystander", &what).await;
    } else {
        // Still online: then the pass really completed, and what it serves
        // is the cleaned log.
        assert!(
            fault == Fault::DiskFull || fired.is_none(),
            "{what}: a failed operation of a cleaner pass left the log online"
        );
        assert_no_cleaner_leftovers(&sim, dir, &what);
        let got = fetch_from(&mut c, "compacted", 0).await;
        let got: Vec<(i64, Vec<u8>)> = got
            .into_iter()
            .map(|(o, v)| (o, v.unwrap().to_vec()))
            .collect();
        assert_eq!(
            got,
            cleaned_view(&acked, active),
            "{what}: served after the pass"
        );
    }
    let seen = trip.seen();

    // Space returns; the restart recovers the log and the cleaner goes on.
    drop(c);
    let server = restart(server, &trip, fault).await;
    let mut c = Client::connect(server.local_addr()).await;
    assert_no_cleaner_leftovers(&sim, dir, &format!("{what}, after the restart"));
    let got = fetch_from(&mut c, "compacted", 0).await;
    check_compacted(&got, &acked, &format!("{what}, after the restart"));
    let by = fetch_all(&mut c, "bystander").await;
    assert_eq!(by.len(), 1, "{what}");
    assert_eq!(by[0].1.as_deref(), Some(&b"before"[..]), "{what}");
    let (err, base) = produce(&mut c, "compacted", batch(&[record("k0", b"after", 1)])).await;
    assert_eq!((err, base), (0, COMPACT_RECORDS as i64), "{what}");
    acked.push((base, "k0".into(), b"after".to_vec()));
    drop(c);
    let server = resume(server, &trip).await;
    let mut c = Client::connect(server.local_addr()).await;
    let mut polls = 0;
    while CleanerState::read(sim.as_ref(), dir)
        .unwrap()
        .first_dirty_offset
        < active
    {
        poll_again(&mut polls, &format!("{what}: a pass after the restart")).await;
    }
    let got: Vec<(i64, Vec<u8>)> = fetch_from(&mut c, "compacted", 0)
        .await
        .into_iter()
        .map(|(o, v)| (o, v.unwrap().to_vec()))
        .collect();
    assert_eq!(
        got,
        cleaned_view(&acked, active),
        "{what}: after the next pass"
    );
    assert_no_cleaner_leftovers(&sim, dir, &what);
    drop(c);
    server.shutdown().await.unwrap();
    if fired.is_none() {
        assert_eq!(seen.len() as u64, n, "{what}: the pass did {seen:?}");
    }
    fired.map(|op| (op, offline))
}

#[tokio::test]
async fn a_full_disk_or_failed_write_in_a_cleaner_pass_takes_the_log_dir_offline_and_a_restart_recovers(
) {
    for fault in [Fault::DiskFull, Fault::Eio, Fault::PowerCut] {
        let mut n = 0;
        while let Some((op, offline)) = clean_with_fault(fault, n).await {
            let outcome = if offline { "offline" } else { "pass completed" };
            eprintln!("{fault:?} at cleaner operation {n} ({op}): {outcome}, recovered");
            n += 1;
        }
        assert!(n > 10, "a pass of {n} operations");
    }
}

/// What moves the log start in a retention run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    /// retention.bytes cut to 1: the next retention check deletes every
    /// closed segment.
    RetentionBytes,
    /// DeleteRecords up to the active segment's base: the handler moves the
    /// log start and deletes the same segments.
    DeleteRecords,
}

async fn delete_records(c: &mut Client, topic: &str, offset: i64) -> (i16, i64) {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(offset)])]);
    let resp = c.call(1, &req).await;
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

/// One run: fill a partition under `policy` (with a bystander in the same
/// log dir; under compact,delete the cleaner has cleaned it once first),
/// then let `trigger` delete every closed segment with `fault` at the
/// `n`-th operation in the partition directory (the log start checkpoint,
/// the leader epoch checkpoint, the segment files, under compact,delete the
/// cleaner checkpoint). Returns the operation the fault hit and whether the
/// log dir went offline; None when the pass had fewer than `n + 1`
/// operations.
async fn retain_with_fault(
    policy: &'static str,
    trigger: Trigger,
    fault: Fault,
    n: u64,
) -> Option<(String, bool)> {
    let sim = Arc::new(SimDisk::new(13, SimDiskOptions::default()));
    let trip = Trip::new(sim.clone());
    let dir = Path::new("/data/retained-0");
    let server = start_tripped(&trip, true).await;
    let mut c = Client::connect(server.local_addr()).await;
    create_with(
        &mut c,
        "retained",
        &[
            ("cleanup.policy", "delete"),
            ("retention.ms", "-1"),
            ("segment.bytes", "16384"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("flush.messages", "1"),
        ],
    )
    .await;
    create_with(&mut c, "bystander", &[("flush.messages", "1")]).await;
    assert_eq!(
        produce(&mut c, "bystander", batch(&[record("b", b"before", 1)])).await,
        (0, 0)
    );
    let mut acked: Acked = Vec::new();
    for i in 0..COMPACT_RECORDS {
        let (k, v) = (compact_key(i), value(i));
        let (err, base) = produce(&mut c, "retained", batch(&[record(&k, &v, i as i64)])).await;
        assert_eq!((err, base), (0, i as i64));
        acked.push((base, k, v));
    }
    let (bases, _) = segment_files(&sim, dir);
    let active = *bases.last().unwrap();
    assert!(bases.len() >= 5, "segments: {bases:?}");
    // What the log holds before the fault: everything, or after a pass.
    let compacted = policy.contains("compact");
    if compacted {
        alter(&mut c, "retained", "cleanup.policy", policy).await;
        let mut polls = 0;
        while CleanerState::read(sim.as_ref(), dir)
            .unwrap()
            .first_dirty_offset
            < active
        {
            poll_again(&mut polls, "the pass before the fault").await;
        }
    }
    let held: Vec<(i64, Vec<u8>)> = if compacted {
        cleaned_view(&acked, active)
    } else {
        acked.iter().map(|(o, _, v)| (*o, v.clone())).collect()
    };
    let served_from = |got: Vec<(i64, Option<Bytes>)>, from: i64, what: &str| {
        let got: Vec<(i64, Vec<u8>)> = got
            .into_iter()
            .map(|(o, v)| (o, v.unwrap().to_vec()))
            .collect();
        let want: Vec<_> = held.iter().filter(|(o, _)| *o >= from).cloned().collect();
        assert_eq!(got, want, "{what}: served from {from}");
    };

    trip.arm(dir, n, fault);
    let what = format!("{policy} {trigger:?}: {fault:?} at retention operation {n}");
    let answered = match trigger {
        Trigger::RetentionBytes => {
            alter(&mut c, "retained", "retention.bytes", "1").await;
            None
        }
        Trigger::DeleteRecords => Some(delete_records(&mut c, "retained", active).await),
    };
    // The pass ends with the log dir offline, or with the log start at the
    // active segment and every closed segment gone.
    let mut polls = 0;
    let offline = loop {
        let (err, start) = log_start(&mut c, "retained").await;
        if err == STORAGE_ERROR {
            break true;
        }
        assert_eq!(err, 0, "{what}");
        if start == active {
            break false;
        }
        assert_eq!(start, 0, "{what}: the log start moved part way");
        poll_again(&mut polls, &format!("{what}: neither offline nor done")).await;
    };
    let fired = trip.fired();
    let what = format!("{what} ({})", fired.as_deref().unwrap_or("not reached"));
    if let Some(answer) = answered {
        // DeleteRecords answers as the partition now stands.
        let want = if offline {
            (STORAGE_ERROR, -1)
        } else {
            (0, active)
        };
        assert_eq!(answer, want, "{what}: DeleteRecords");
    }
    if offline {
        assert!(fired.is_some(), "{what}: offline with no fault");
        assert_offline(&mut c, "retained", &what).await;
        assert_offline(&mut c, "bystander", &what).await;
    } else {
        assert!(
            fault == Fault::DiskFull || fired.is_none(),
            "{what}: a failed operation of a retention pass left the log online"
        );
        assert_eq!(segment_files(&sim, dir).0, vec![active], "{what}");
        served_from(fetch_from(&mut c, "retained", active).await, active, &what);
    }
    let seen = trip.seen();

    // Space returns; the restart serves everything from the recorded log
    // start (the old one or the new one) and retention finishes.
    drop(c);
    let server = restart(server, &trip, fault).await;
    let mut c = Client::connect(server.local_addr()).await;
    let what = format!("{what}, after the restart");
    let (err, start) = log_start(&mut c, "retained").await;
    assert_eq!(err, 0, "{what}");
    assert!(start == 0 || start == active, "{what}: log start {start}");
    served_from(fetch_from(&mut c, "retained", start).await, start, &what);
    if start > 0 {
        let (err, recs) = fetch(&mut c, "retained", 0).await;
        assert_eq!(err, 1, "{what}: below the log start is OFFSET_OUT_OF_RANGE");
        assert!(recs.is_empty(), "{what}");
    }
    let (bases, _) = segment_files(&sim, dir);
    assert!(bases[0] <= start, "{what}: segments {bases:?}");
    assert!(
        bases.get(1).is_none_or(|&b| b > start),
        "{what}: a segment wholly below the log start {start} survived: {bases:?}"
    );
    assert_no_cleaner_leftovers(&sim, dir, &what);
    let by = fetch_all(&mut c, "bystander").await;
    assert_eq!(by.len(), 1, "{what}");
    let (err, base) = produce(&mut c, "retained", batch(&[record("k0", b"after", 1)])).await;
    assert_eq!((err, base), (0, COMPACT_RECORDS as i64), "{what}");
    drop(c);
    let server = resume(server, &trip).await;
    let mut c = Client::connect(server.local_addr()).await;
    if trigger == Trigger::DeleteRecords {
        let answer = delete_records(&mut c, "retained", active).await;
        assert_eq!(answer, (0, active), "{what}: DeleteRecords again");
    }
    let mut polls = 0;
    while log_start(&mut c, "retained").await != (0, active)
        || segment_files(&sim, dir).0 != vec![active]
    {
        poll_again(&mut polls, &format!("{what}: retention after the restart")).await;
    }
    let mut got = fetch_from(&mut c, "retained", active).await;
    assert_eq!(
        got.pop(),
        Some((base, Some(Bytes::from_static(b"after")))),
        "{what}"
    );
    served_from(got, active, &what);
    drop(c);
    server.shutdown().await.unwrap();
    if fired.is_none() {
        assert_eq!(seen.len() as u64, n, "{what}: the pass did {seen:?}");
    }
    fired.map(|op| (op, offline))
}

#[tokio::test]
async fn a_full_disk_or_failed_write_in_a_retention_pass_takes_the_log_dir_offline_and_a_restart_recovers(
) {
    for (policy, trigger) in [
        ("delete", Trigger::RetentionBytes),
        ("compact,delete", Trigger::RetentionBytes),
        ("delete", Trigger::DeleteRecords),
    ] {
        for fault in [Fault::DiskFull, Fault::Eio, Fault::PowerCut] {
            let mut n = 0;
            while let Some((op, offline)) = retain_with_fault(policy, trigger, fault, n).await {
                let outcome = if offline { "offline" } else { "pass completed" };
                eprintln!(
                    "{policy} {trigger:?}: {fault:?} at retention operation {n} ({op}): {outcome}, recovered"
                );
                n += 1;
            }
            assert!(n > 10, "a pass of {n} operations");
        }
    }
}

/// No fault is aimed here: keyed records go to a compacted partition while
/// the cleaner runs, until the disk is full. Whichever write meets the full
/// disk first (an append, a roll, a `.cleaned` file, a checkpoint), the log
/// dir goes offline, and a restart after space returns serves every
/// acknowledged key's latest value.
#[tokio::test]
async fn a_disk_filling_under_a_compacted_topic_and_its_cleaner_recovers_every_ack() {
    for slack in [30_011, 47_500, 64_123, 90_001, 120_000] {
        let first = fill_compacted_then_recover(slack).await;
        eprintln!("slack {slack}: the first ENOSPC hit {first}");
    }
}

async fn fill_compacted_then_recover(slack: u64) -> String {
    let sim = Arc::new(SimDisk::new(17, SimDiskOptions::default()));
    let trip = Trip::new(sim.clone());
    let dir = Path::new("/data/compacted-0");
    let server = start_tripped(&trip, true).await;
    let mut c = Client::connect(server.local_addr()).await;
    create_with(
        &mut c,
        "compacted",
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "16384"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    )
    .await;
    create(&mut c, "bystander").await;
    assert_eq!(
        produce(&mut c, "bystander", batch(&[record("b", b"before", 1)])).await,
        (0, 0)
    );
    let mut options = sim.options();
    options.capacity_bytes_max = sim.used_bytes() + slack;
    sim.set_options(options);
    // Eight keys overwritten all along, and every third record a key of
    // its own: the cleaner reclaims space, but not as fast as it is used.
    let key = |i: usize| {
        if i % 3 == 0 {
            format!("own-{i}")
        } else {
            format!("k{}", i % 8)
        }
    };
    let mut acked: Acked = Vec::new();
    let mut refused = None;
    for i in 0..10_000 {
        let (k, v) = (key(i), value(i));
        let (err, base) = produce(&mut c, "compacted", batch(&[record(&k, &v, i as i64)])).await;
        if err != 0 {
            assert_eq!(err, STORAGE_ERROR, "slack {slack}");
            refused = Some((acked.len() as i64, k, v));
            break;
        }
        assert_eq!(base, i as i64, "slack {slack}: offsets are dense");
        acked.push((base, k, v));
        // Let the cleaner run between appends.
        tokio::task::yield_now().await;
    }
    let refused = refused.unwrap_or_else(|| panic!("slack {slack}: the disk never filled"));
    let what = format!("slack {slack}");
    assert!(acked.len() > 5, "{what}: only {} records fit", acked.len());
    let first = trip
        .first_no_space()
        .unwrap_or_else(|| panic!("{what}: no write met the full disk"));
    assert_offline(&mut c, "compacted", &what).await;
    assert_offline(&mut c, "bystander", &what).await;

    drop(c);
    let server = restart(server, &trip, Fault::DiskFull).await;
    let mut c = Client::connect(server.local_addr()).await;
    let what = format!("{what}, after the restart");
    assert_no_cleaner_leftovers(&sim, dir, &what);
    let got = fetch_from(&mut c, "compacted", 0).await;
    // The refused record may have reached the file (never acknowledged,
    // but in the log); nothing after it can have.
    if got.last().map(|(o, _)| *o) == Some(refused.0) {
        acked.push(refused);
    }
    check_compacted(&got, &acked, &what);
    let by = fetch_all(&mut c, "bystander").await;
    assert_eq!(by.len(), 1, "{what}");
    let end = acked.len() as i64;
    let (err, base) = produce(&mut c, "compacted", batch(&[record("k0", b"after", 1)])).await;
    assert_eq!((err, base), (0, end), "{what}");
    acked.push((base, "k0".into(), b"after".to_vec()));
    // The cleaner goes on: a pass covers every closed segment.
    drop(c);
    let server = resume(server, &trip).await;
    let mut c = Client::connect(server.local_addr()).await;
    let active = *segment_files(&sim, dir).0.last().unwrap();
    let mut polls = 0;
    while CleanerState::read(sim.as_ref(), dir)
        .unwrap()
        .first_dirty_offset
        < active
    {
        poll_again(&mut polls, &format!("{what}: a pass after the restart")).await;
    }
    let got: Vec<(i64, Vec<u8>)> = fetch_from(&mut c, "compacted", 0)
        .await
        .into_iter()
        .map(|(o, v)| (o, v.unwrap().to_vec()))
        .collect();
    assert_eq!(
        got,
        cleaned_view(&acked, active),
        "{what}: after the next pass"
    );
    drop(c);
    server.shutdown().await.unwrap();
    first
}

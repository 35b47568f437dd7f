//! An in-memory [`Disk`] with a crash model and injectable faults, for the
//! simulator.
//!
//! ## Fault model
//! SimDisk may inject, each decided by the seed given at construction:
//! - **Lost or torn writes on crash.** [`SimDisk::crash`] treats every write
//!   since a file's last successful `sync_data` as volatile: per file it is
//!   kept whole, dropped whole, or torn (the unsynced writes reach the disk in
//!   order and stop part way, so a prefix of the unsynced bytes survives).
//! - **Lost directory operations on crash** (`lose_unsynced_dir_ops`, off by
//!   default): a disk that ignores directory syncs. Creates, renames and
//!   removes done since the last crash point survive only as an in-order
//!   prefix, which may be empty.
//! - **Corrupted reads** (`read_corruption_probability`): a read returns its
//!   data with one bit flipped; the stored bytes are unchanged, so a retry
//!   reads clean data.
//! - **Corruption at rest**: one bit of a stored byte flips, by an explicit
//!   [`SimDisk::corrupt_at_rest`] or at random per file at a crash
//!   (`crash_corruption_probability`). Every later read sees it.
//! - **EIO** on read (`read_error_probability`) or write
//!   (`write_error_probability`); a failed write applies nothing.
//! - **ENOSPC**: a write or extension that would take the bytes held past
//!   `capacity_bytes_max` fails with raw os error 28 (`StorageFull`) and
//!   applies nothing.
//! - **Failed fsync** (`sync_error_probability`): `sync_data` returns EIO and
//!   the file's unsynced writes are dropped at once, as Linux does after
//!   fsyncgate: the caller must treat the file as lost since its last sync.
//! - **Lying fsync** (`lying_fsync`): `sync_data` acknowledges without
//!   persisting, so a crash may still lose the data. Tests that must *catch*
//!   loss use it; nothing built to the contract survives it.
//! - **Power cut at an operation** ([`SimDisk::cut_power_after`]): the
//!   n-th mutating operation from now (a write, truncate, fsync, create,
//!   mkdir, rename or remove) is where the power goes. It and everything
//!   after it fail with EIO and apply nothing (reads too), as on a machine
//!   that died at that instant; the harness then kills the node and calls
//!   [`SimDisk::crash`]. The node's own code has no await between the steps
//!   of, say, a segment swap, so a kill alone can never land inside one;
//!   this can.
//! - **Slow I/O**: the trait is synchronous, so SimDisk cannot sleep. It adds
//!   the latency each operation would have taken (drawn from the
//!   `*_latency_min..=*_latency_max` options) to a counter
//!   ([`SimDisk::pending_latency`]); the harness, or the task that did the
//!   I/O, awaits [`SimDisk::pay_pending_latency`], a tokio sleep that under
//!   madsim advances virtual time.
//!
//! **The rule that keeps a cluster recoverable:** on its own, a crash never
//! loses data that `sync_data` acknowledged, nor a namespace change that
//! returned (the [`Disk`] contract). Only the explicit faults above break
//! that, and the harness turns them on for a minority of nodes at a time, so
//! a majority always holds a good copy of every acknowledged write.
//!
//! Not modelled: reordering of unsynced writes within a file (a torn crash
//! keeps a prefix, never a subset), misdirected writes, and faults on
//! namespace operations themselves.
//!
//! ## Shape
//! One `SimDisk` per simulated node. It is a cheap handle (an `Arc` inside):
//! the harness keeps a clone across the node's kill and calls `crash()`, and
//! every file handle opened before that crash fails afterwards with `ESTALE`.
//! All state lives in `BTreeMap`s and all randomness comes from one seeded
//! [`WeirRng`], drawn in operation order, so the same seed and the same
//! sequence of calls give the same faults and the same crash outcome.

use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::disk::{Disk, DiskFile, OpenMode};
use super::rng::WeirRng;

/// Fault probabilities, limits and latencies of one [`SimDisk`]. The default
/// is a perfect, instantaneous, unbounded disk.
#[derive(Clone, Debug, PartialEq)]
pub struct SimDiskOptions {
    /// Chance that a read returns data with one bit flipped (disk unchanged).
    pub read_corruption_probability: f64,
    /// Chance that a read fails with EIO.
    pub read_error_probability: f64,
    /// Chance that a write or `set_len` fails with EIO, applying nothing.
    pub write_error_probability: f64,
    /// Chance that `sync_data` fails with EIO, dropping the file's unsynced writes.
    pub sync_error_probability: f64,
    /// Chance, per file at each crash, that one bit of its stored data flips.
    pub crash_corruption_probability: f64,
    /// `sync_data` reports success without making anything durable.
    pub lying_fsync: bool,
    /// Namespace changes since the last crash point may vanish at a crash.
    pub lose_unsynced_dir_ops: bool,
    /// Bytes the disk holds at most; writes past it fail with ENOSPC. Counts
    /// current file lengths, plus removed files kept for a possible revival
    /// while `lose_unsynced_dir_ops` is on (freed at the next crash).
    pub capacity_bytes_max: u64,
    /// Simulated latency of one read, drawn uniformly from min..=max.
    pub read_latency_min: Duration,
    pub read_latency_max: Duration,
    /// Simulated latency of one write or `set_len`.
    pub write_latency_min: Duration,
    pub write_latency_max: Duration,
    /// Simulated latency of one `sync_data` (and of each namespace change,
    /// which syncs a directory).
    pub sync_latency_min: Duration,
    pub sync_latency_max: Duration,
}

impl Default for SimDiskOptions {
    fn default() -> Self {
        SimDiskOptions {
            read_corruption_probability: 0.0,
            read_error_probability: 0.0,
            write_error_probability: 0.0,
            sync_error_probability: 0.0,
            crash_corruption_probability: 0.0,
            lying_fsync: false,
            lose_unsynced_dir_ops: false,
            capacity_bytes_max: u64::MAX,
            read_latency_min: Duration::ZERO,
            read_latency_max: Duration::ZERO,
            write_latency_min: Duration::ZERO,
            write_latency_max: Duration::ZERO,
            sync_latency_min: Duration::ZERO,
            sync_latency_max: Duration::ZERO,
        }
    }
}

/// How many faults a disk has injected so far, for the harness to print and
/// for tests to check that a fault really fired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimDiskStats {
    pub read_corruptions: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub sync_errors: u64,
    pub no_space_errors: u64,
    pub lying_syncs: u64,
    pub corruptions_at_rest: u64,
    pub crashes: u64,
}

/// What a crash did to one file's unsynced writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CrashOutcome {
    /// Every unsynced write reached the disk.
    Kept,
    /// No unsynced write reached the disk.
    Dropped,
    /// The unsynced writes reached the disk in order up to `bytes_kept` of
    /// their `bytes_unsynced` bytes (a `set_len` counts as one byte).
    Torn {
        bytes_kept: u64,
        bytes_unsynced: u64,
    },
}

/// What one [`SimDisk::crash`] did, in path order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Files that had unsynced writes, and their fate.
    pub files: Vec<(PathBuf, CrashOutcome)>,
    /// Files where a bit flipped at rest, with the byte offset.
    pub corrupted: Vec<(PathBuf, u64)>,
    /// Namespace changes since the last crash point, and how many survived
    /// (both 0 unless `lose_unsynced_dir_ops` is on).
    pub dir_ops_unsynced: usize,
    pub dir_ops_kept: usize,
}

/// An in-memory disk with a crash model; see the module docs for its faults.
#[derive(Clone)]
pub struct SimDisk {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("SimDisk")
            .field("files", &inner.files.len())
            .field("epoch", &inner.epoch)
            .field("stats", &inner.stats)
            .finish()
    }
}

/// One unsynced change to a file's bytes, kept in order so a crash can tear
/// the sequence at any byte.
#[derive(Clone, Debug)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

impl FileOp {
    /// Weight of the op when a crash tears the sequence.
    fn weight(&self) -> u64 {
        match self {
            FileOp::Write { data, .. } => data.len() as u64,
            FileOp::SetLen(_) => 1,
        }
    }
}

#[derive(Debug, Default)]
struct FileData {
    /// What reads see: durable plus every unsynced op.
    current: Vec<u8>,
    /// What survives a crash for certain.
    durable: Vec<u8>,
    /// Ops applied to `current` but not yet to `durable`, oldest first.
    unsynced: Vec<FileOp>,
    /// Open handles from the current epoch.
    handles: usize,
}

fn apply_write(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

fn apply_op(bytes: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { offset, data } => apply_write(bytes, *offset, data),
        FileOp::SetLen(len) => bytes.resize(*len as usize, 0),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entry {
    Dir,
    File(u64),
}

/// A namespace change, replayable onto an earlier namespace; validated before
/// it is recorded, so applying it cannot fail.
#[derive(Clone, Debug)]
enum NsOp {
    Mkdir(PathBuf),
    Create(PathBuf, u64),
    Rename(PathBuf, PathBuf),
    RemoveAll(PathBuf),
}

fn is_root(path: &Path) -> bool {
    path.as_os_str().is_empty() || path == Path::new("/")
}

/// Drop `.` components and trailing slashes so one file has one key.
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

#[derive(Clone, Debug, Default)]
struct Namespace(BTreeMap<PathBuf, Entry>);

impl Namespace {
    fn get(&self, path: &Path) -> Option<Entry> {
        if is_root(path) {
            return Some(Entry::Dir);
        }
        self.0.get(path).copied()
    }

    fn apply(&mut self, op: &NsOp) {
        match op {
            NsOp::Mkdir(p) => {
                self.0.insert(p.clone(), Entry::Dir);
            }
            NsOp::Create(p, inode) => {
                self.0.insert(p.clone(), Entry::File(*inode));
            }
            NsOp::Rename(from, to) => {
                // Whatever `to` held is replaced (an empty dir or a file).
                self.0.retain(|k, _| !k.starts_with(to));
                let moved: Vec<(PathBuf, Entry)> = self
                    .0
                    .iter()
                    .filter(|(k, _)| k.starts_with(from))
                    .map(|(k, e)| (k.clone(), *e))
                    .collect();
                for (k, e) in moved {
                    self.0.remove(&k);
                    let rest = k.strip_prefix(from).expect("moved key is under `from`");
                    let dest = if rest.as_os_str().is_empty() {
                        to.clone()
                    } else {
                        to.join(rest)
                    };
                    self.0.insert(dest, e);
                }
            }
            NsOp::RemoveAll(p) => self.0.retain(|k, _| !k.starts_with(p)),
        }
    }

    fn links(&self, inode: u64) -> bool {
        self.0.values().any(|e| *e == Entry::File(inode))
    }

    fn children(&self, dir: &Path) -> Vec<String> {
        self.0
            .keys()
            .filter(|k| k.parent().is_some_and(|p| p == dir))
            .filter_map(|k| k.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect()
    }
}

struct Inner {
    options: SimDiskOptions,
    rng: WeirRng,
    ns: Namespace,
    /// The namespace as of the last crash point, and the changes since, so a
    /// crash under `lose_unsynced_dir_ops` can keep only a prefix of them.
    ns_at_crash_point: Namespace,
    ns_log: Vec<NsOp>,
    files: BTreeMap<u64, FileData>,
    next_inode: u64,
    /// Bumped by every crash; handles from an older epoch are stale.
    epoch: u64,
    pending_latency: Duration,
    stats: SimDiskStats,
    power: Power,
}

/// The power supply (see [`SimDisk::cut_power_after`]).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Power {
    On,
    /// Goes off at the mutating operation this many operations from now
    /// (0: the next one).
    CutAfter(u64),
    /// Off since the operation described.
    Cut(String),
}

fn eio() -> io::Error {
    io::Error::from_raw_os_error(libc::EIO)
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

fn stale() -> io::Error {
    io::Error::from_raw_os_error(libc::ESTALE)
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file or directory", path.display()),
    )
}

impl Inner {
    fn add_latency(&mut self, min: Duration, max: Duration) {
        if max.is_zero() {
            return;
        }
        let lo = min.as_nanos() as u64;
        let hi = (max.as_nanos() as u64).max(lo);
        let ns = self.rng.range_u64(lo, hi.saturating_add(1));
        self.pending_latency += Duration::from_nanos(ns);
    }

    fn sync_latency(&mut self) {
        let (min, max) = (self.options.sync_latency_min, self.options.sync_latency_max);
        self.add_latency(min, max);
    }

    fn used_bytes(&self) -> u64 {
        self.files.values().map(|f| f.current.len() as u64).sum()
    }

    /// ENOSPC if growing a file from `old_len` to `new_len` would exceed the
    /// capacity; checked before anything is applied.
    fn check_space(&mut self, old_len: u64, new_len: u64) -> io::Result<()> {
        if new_len <= old_len || self.options.capacity_bytes_max == u64::MAX {
            return Ok(());
        }
        let used = self.used_bytes();
        if used.saturating_add(new_len - old_len) > self.options.capacity_bytes_max {
            self.stats.no_space_errors += 1;
            return Err(enospc());
        }
        Ok(())
    }

    fn record(&mut self, op: NsOp) {
        self.ns.apply(&op);
        // Only a disk that may lose directory ops needs their history.
        if self.options.lose_unsynced_dir_ops {
            self.ns_log.push(op);
        }
        self.sync_latency();
    }

    /// Free an inode nobody can reach again: no open handle, no link, and no
    /// link that a crash could bring back.
    fn maybe_free(&mut self, inode: u64) {
        let open = self.files.get(&inode).is_some_and(|f| f.handles > 0);
        if open || self.ns.links(inode) {
            return;
        }
        // A crash may undo the unlink (or replay the create) while unsynced
        // directory ops can vanish, so the data stays until the next crash.
        if self.options.lose_unsynced_dir_ops {
            return;
        }
        self.files.remove(&inode);
    }

    fn inodes_under(&self, path: &Path) -> Vec<u64> {
        self.ns
            .0
            .iter()
            .filter(|(k, _)| k.starts_with(path))
            .filter_map(|(_, e)| match e {
                Entry::File(i) => Some(*i),
                Entry::Dir => None,
            })
            .collect()
    }

    fn file(&mut self, inode: u64, epoch: u64) -> io::Result<&mut FileData> {
        if epoch != self.epoch {
            return Err(stale());
        }
        self.files.get_mut(&inode).ok_or_else(stale)
    }

    fn flip_random_bit(&mut self, bytes: &mut [u8]) -> Option<u64> {
        if bytes.is_empty() {
            return None;
        }
        let at = self.rng.range_u64(0, bytes.len() as u64);
        let bit = self.rng.range_u64(0, 8);
        bytes[at as usize] ^= 1 << bit;
        Some(at)
    }

    /// A mutating operation (`what` describes it) is about to run: Err when
    /// the power is off or goes off right here.
    fn powered(&mut self, what: impl FnOnce(&Inner) -> String) -> io::Result<()> {
        match self.power {
            Power::On => Ok(()),
            Power::Cut(_) => Err(eio()),
            Power::CutAfter(0) => {
                self.power = Power::Cut(what(self));
                Err(eio())
            }
            Power::CutAfter(n) => {
                self.power = Power::CutAfter(n - 1);
                Ok(())
            }
        }
    }

    /// A read: Err once the power is off.
    fn readable(&self) -> io::Result<()> {
        match self.power {
            Power::Cut(_) => Err(eio()),
            _ => Ok(()),
        }
    }

    /// A path of `inode`, for describing an operation on an open handle.
    fn path_of(&self, inode: u64) -> String {
        self.ns
            .0
            .iter()
            .find(|(_, e)| **e == Entry::File(inode))
            .map_or_else(
                || format!("unlinked inode {inode}"),
                |(p, _)| p.display().to_string(),
            )
    }

    fn crash(&mut self) -> CrashReport {
        let mut report = CrashReport::default();
        self.power = Power::On;
        self.epoch += 1;
        self.stats.crashes += 1;
        for f in self.files.values_mut() {
            f.handles = 0;
        }

        report.dir_ops_unsynced = self.ns_log.len();
        report.dir_ops_kept = self.ns_log.len();
        if self.options.lose_unsynced_dir_ops {
            report.dir_ops_kept = self.rng.range_u64(0, self.ns_log.len() as u64 + 1) as usize;
            let mut ns = std::mem::take(&mut self.ns_at_crash_point);
            for op in &self.ns_log[..report.dir_ops_kept] {
                ns.apply(op);
            }
            self.ns = ns;
        }
        self.ns_log.clear();
        self.ns_at_crash_point = self.ns.clone();

        let linked: Vec<(PathBuf, u64)> = self
            .ns
            .0
            .iter()
            .filter_map(|(p, e)| match e {
                Entry::File(i) => Some((p.clone(), *i)),
                Entry::Dir => None,
            })
            .collect();
        let keep: std::collections::BTreeSet<u64> = linked.iter().map(|(_, i)| *i).collect();
        self.files.retain(|i, _| keep.contains(i));
        // A link revived from the crash point whose data was already freed
        // (possible only if `lose_unsynced_dir_ops` was switched on mid-run)
        // comes back as an empty file.
        for inode in &keep {
            self.files.entry(*inode).or_default();
        }

        for (path, inode) in &linked {
            let file = self.files.get_mut(inode).expect("linked inode has data");
            if file.unsynced.is_empty() {
                continue;
            }
            let ops = std::mem::take(&mut file.unsynced);
            let total: u64 = ops.iter().map(FileOp::weight).sum();
            // Tearing needs at least two units to keep a strict, non-empty prefix.
            let choices = if total >= 2 { 3 } else { 2 };
            let outcome = match self.rng.range_u64(0, choices) {
                0 => CrashOutcome::Kept,
                1 => CrashOutcome::Dropped,
                _ => CrashOutcome::Torn {
                    bytes_kept: self.rng.range_u64(1, total),
                    bytes_unsynced: total,
                },
            };
            let file = self.files.get_mut(inode).expect("linked inode has data");
            match outcome {
                CrashOutcome::Kept => file.durable = std::mem::take(&mut file.current),
                CrashOutcome::Dropped => {}
                CrashOutcome::Torn { bytes_kept, .. } => {
                    let mut budget = bytes_kept;
                    for op in &ops {
                        if budget == 0 {
                            break;
                        }
                        let w = op.weight();
                        match op {
                            FileOp::Write { offset, data } if w > budget => {
                                apply_write(&mut file.durable, *offset, &data[..budget as usize]);
                                budget = 0;
                            }
                            _ => {
                                apply_op(&mut file.durable, op);
                                budget -= w;
                            }
                        }
                    }
                }
            }
            file.current = file.durable.clone();
            report.files.push((path.clone(), outcome));
        }

        for (path, inode) in &linked {
            if !self.rng.chance(self.options.crash_corruption_probability) {
                continue;
            }
            let mut bytes = std::mem::take(&mut self.files.get_mut(inode).expect("linked").durable);
            if let Some(at) = self.flip_random_bit(&mut bytes) {
                self.stats.corruptions_at_rest += 1;
                report.corrupted.push((path.clone(), at));
            }
            let file = self.files.get_mut(inode).expect("linked inode has data");
            file.current = bytes.clone();
            file.durable = bytes;
        }
        report
    }
}

impl SimDisk {
    /// An empty disk whose every fault and crash outcome follows from `seed`.
    pub fn new(seed: u64, options: SimDiskOptions) -> Self {
        SimDisk {
            inner: Arc::new(Mutex::new(Inner {
                options,
                rng: WeirRng::from_seed(seed),
                ns: Namespace::default(),
                ns_at_crash_point: Namespace::default(),
                ns_log: Vec::new(),
                files: BTreeMap::new(),
                next_inode: 1,
                epoch: 0,
                pending_latency: Duration::ZERO,
                stats: SimDiskStats::default(),
                power: Power::On,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock already failed the test; keep going
        // so the harness can still report.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn options(&self) -> SimDiskOptions {
        self.lock().options.clone()
    }

    /// Change faults at run time, e.g. heal them for a liveness phase.
    /// Switching `lose_unsynced_dir_ops` on starts from a crash point: the
    /// namespace as it is now is durable.
    pub fn set_options(&self, options: SimDiskOptions) {
        let mut inner = self.lock();
        if options.lose_unsynced_dir_ops && !inner.options.lose_unsynced_dir_ops {
            inner.ns_at_crash_point = inner.ns.clone();
            inner.ns_log.clear();
        }
        inner.options = options;
    }

    pub fn stats(&self) -> SimDiskStats {
        self.lock().stats.clone()
    }

    /// Bytes currently held (current lengths, including unsynced writes).
    pub fn used_bytes(&self) -> u64 {
        self.lock().used_bytes()
    }

    /// Simulated I/O latency accumulated since the last take.
    pub fn pending_latency(&self) -> Duration {
        self.lock().pending_latency
    }

    /// Return and reset the accumulated latency; the caller sleeps for it.
    pub fn take_pending_latency(&self) -> Duration {
        std::mem::take(&mut self.lock().pending_latency)
    }

    /// Sleep for the accumulated latency (virtual time under madsim), so a
    /// task that just did I/O pays for it before going on.
    pub async fn pay_pending_latency(&self) {
        let latency = self.take_pending_latency();
        if !latency.is_zero() {
            super::time::sleep(latency).await;
        }
    }

    /// The node died: apply the crash model (see the module docs) and make
    /// every open handle stale. Called by the harness when it kills the node.
    pub fn crash(&self) -> CrashReport {
        self.lock().crash()
    }

    /// Cut the power at the mutating operation `ops` operations from now (0:
    /// the next one); see the module docs. [`SimDisk::crash`] turns it back on.
    pub fn cut_power_after(&self, ops: u64) {
        self.lock().power = Power::CutAfter(ops);
    }

    /// The operation the power went off at, if it has.
    pub fn power_cut_at(&self) -> Option<String> {
        match &self.lock().power {
            Power::Cut(what) => Some(what.clone()),
            _ => None,
        }
    }

    /// Make every namespace change so far durable, as a disk that honours
    /// directory syncs would; a new crash point for `lose_unsynced_dir_ops`.
    /// The harness calls it after laying out a node's initial directories.
    pub fn persist_namespace(&self) {
        let mut inner = self.lock();
        inner.ns_at_crash_point = inner.ns.clone();
        inner.ns_log.clear();
    }

    /// Flip one (seed-chosen) bit of the byte at `offset` in `path`, in the
    /// durable copy too, so every later read and every crash sees it.
    pub fn corrupt_at_rest(&self, path: &Path, offset: u64) -> io::Result<()> {
        let path = normalize(path);
        let mut inner = self.lock();
        let inode = match inner.ns.get(&path) {
            Some(Entry::File(i)) => i,
            _ => return Err(not_found(&path)),
        };
        let bit = inner.rng.range_u64(0, 8) as u8;
        let file = inner.files.get_mut(&inode).expect("linked inode has data");
        if offset >= file.current.len() as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "corrupt_at_rest: offset past end of file",
            ));
        }
        file.current[offset as usize] ^= 1 << bit;
        if let Some(b) = file.durable.get_mut(offset as usize) {
            *b ^= 1 << bit;
        }
        inner.stats.corruptions_at_rest += 1;
        Ok(())
    }
}

impl Disk for SimDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        let path = normalize(path);
        let mut inner = self.lock();
        inner.readable()?;
        let inode = match inner.ns.get(&path) {
            Some(Entry::Dir) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{}: is a directory", path.display()),
                ))
            }
            Some(Entry::File(inode)) => inode,
            None if mode.create => {
                if inner.ns.get(&parent_of(&path)) != Some(Entry::Dir) {
                    return Err(not_found(&parent_of(&path)));
                }
                inner.powered(|_| format!("create {}", path.display()))?;
                let inode = inner.next_inode;
                inner.next_inode += 1;
                inner.files.insert(inode, FileData::default());
                inner.record(NsOp::Create(path.clone(), inode));
                inode
            }
            None => return Err(not_found(&path)),
        };
        let epoch = inner.epoch;
        if mode.truncate && !inner.files[&inode].current.is_empty() {
            inner.powered(|_| format!("truncate {}", path.display()))?;
        }
        let file = inner.files.get_mut(&inode).expect("linked inode has data");
        file.handles += 1;
        if mode.truncate && !file.current.is_empty() {
            // Truncation is a data change: volatile until the next sync.
            file.current.clear();
            file.unsynced.push(FileOp::SetLen(0));
        }
        Ok(Box::new(SimFile {
            inner: Arc::clone(&self.inner),
            inode,
            epoch,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut inner = self.lock();
        let mut missing = Vec::new();
        let mut cur = Some(path.as_path());
        while let Some(p) = cur {
            match inner.ns.get(p) {
                Some(Entry::Dir) => break,
                Some(Entry::File(_)) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        format!("{}: not a directory", p.display()),
                    ))
                }
                None => missing.push(p.to_path_buf()),
            }
            cur = p.parent();
        }
        if let Some(p) = missing.last() {
            inner.powered(|_| format!("mkdir {}", p.display()))?;
        }
        for p in missing.into_iter().rev() {
            inner.record(NsOp::Mkdir(p));
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let path = normalize(path);
        let inner = self.lock();
        match inner.ns.get(&path) {
            Some(Entry::Dir) => Ok(inner.ns.children(&path)),
            Some(Entry::File(_)) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{}: not a directory", path.display()),
            )),
            None => Err(not_found(&path)),
        }
    }

    fn exists(&self, path: &Path) -> bool {
        self.lock().ns.get(&normalize(path)).is_some()
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.lock().ns.get(&normalize(path)) == Some(Entry::Dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (normalize(from), normalize(to));
        let mut inner = self.lock();
        inner.readable()?;
        let src = inner.ns.get(&from).ok_or_else(|| not_found(&from))?;
        if is_root(&from) || from == to {
            return Ok(());
        }
        if inner.ns.get(&parent_of(&to)) != Some(Entry::Dir) {
            return Err(not_found(&parent_of(&to)));
        }
        if to.starts_with(&from) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "rename: cannot move a directory into itself",
            ));
        }
        let replaced = match (src, inner.ns.get(&to)) {
            (_, None) => Vec::new(),
            (Entry::File(_), Some(Entry::File(old))) => vec![old],
            (Entry::Dir, Some(Entry::Dir)) if inner.ns.children(&to).is_empty() => Vec::new(),
            (Entry::File(_), Some(Entry::Dir)) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "rename: target is a directory",
                ))
            }
            (Entry::Dir, Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::DirectoryNotEmpty,
                    "rename: target exists and is not an empty directory",
                ))
            }
        };
        inner.powered(|_| format!("rename {} -> {}", from.display(), to.display()))?;
        inner.record(NsOp::Rename(from, to));
        for inode in replaced {
            inner.maybe_free(inode);
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut inner = self.lock();
        match inner.ns.get(&path) {
            Some(Entry::File(inode)) => {
                inner.powered(|_| format!("remove {}", path.display()))?;
                inner.record(NsOp::RemoveAll(path));
                inner.maybe_free(inode);
                Ok(())
            }
            Some(Entry::Dir) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{}: is a directory", path.display()),
            )),
            None => Err(not_found(&path)),
        }
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut inner = self.lock();
        match inner.ns.get(&path) {
            Some(Entry::Dir) if !is_root(&path) => {
                inner.powered(|_| format!("remove dir {}", path.display()))?;
                let inodes = inner.inodes_under(&path);
                inner.record(NsOp::RemoveAll(path));
                for inode in inodes {
                    inner.maybe_free(inode);
                }
                Ok(())
            }
            Some(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a removable directory", path.display()),
            )),
            None => Err(not_found(&path)),
        }
    }

    fn available_bytes(&self, _path: &Path) -> Option<u64> {
        let inner = self.lock();
        Some(
            inner
                .options
                .capacity_bytes_max
                .saturating_sub(inner.used_bytes()),
        )
    }
}

/// A handle on one inode, valid until the disk's next crash.
struct SimFile {
    inner: Arc<Mutex<Inner>>,
    inode: u64,
    epoch: u64,
}

impl SimFile {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut inner = self.lock();
        if inner.epoch != self.epoch {
            return;
        }
        if let Some(f) = inner.files.get_mut(&self.inode) {
            assert!(f.handles > 0, "SimDisk: open handle count underflow");
            f.handles -= 1;
        }
        inner.maybe_free(self.inode);
    }
}

impl DiskFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        let mut inner = self.lock();
        inner.readable()?;
        Ok(inner.file(self.inode, self.epoch)?.current.len() as u64)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut inner = self.lock();
        inner.file(self.inode, self.epoch)?;
        inner.readable()?;
        let (min, max) = (
            inner.options.read_latency_min,
            inner.options.read_latency_max,
        );
        inner.add_latency(min, max);
        let p = inner.options.read_error_probability;
        if inner.rng.chance(p) {
            inner.stats.read_errors += 1;
            return Err(eio());
        }
        let file = inner.file(self.inode, self.epoch)?;
        let len = file.current.len() as u64;
        if offset >= len {
            return Ok(0);
        }
        let n = buf.len().min((len - offset) as usize);
        let start = offset as usize;
        buf[..n].copy_from_slice(&file.current[start..start + n]);
        let p = inner.options.read_corruption_probability;
        if n > 0 && inner.rng.chance(p) {
            inner.flip_random_bit(&mut buf[..n]);
            inner.stats.read_corruptions += 1;
        }
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut inner = self.lock();
        let old_len = inner.file(self.inode, self.epoch)?.current.len() as u64;
        let inode = self.inode;
        inner.powered(|i| {
            format!(
                "write {} bytes at {offset} of {}",
                buf.len(),
                i.path_of(inode)
            )
        })?;
        let (min, max) = (
            inner.options.write_latency_min,
            inner.options.write_latency_max,
        );
        inner.add_latency(min, max);
        let p = inner.options.write_error_probability;
        if inner.rng.chance(p) {
            inner.stats.write_errors += 1;
            return Err(eio());
        }
        let end = offset
            .checked_add(buf.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "write past u64 offsets"))?;
        inner.check_space(old_len, end)?;
        let file = inner.file(self.inode, self.epoch)?;
        apply_write(&mut file.current, offset, buf);
        file.unsynced.push(FileOp::Write {
            offset,
            data: buf.to_vec(),
        });
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut inner = self.lock();
        let old_len = inner.file(self.inode, self.epoch)?.current.len() as u64;
        let inode = self.inode;
        inner.powered(|i| format!("set_len {len} of {}", i.path_of(inode)))?;
        let (min, max) = (
            inner.options.write_latency_min,
            inner.options.write_latency_max,
        );
        inner.add_latency(min, max);
        let p = inner.options.write_error_probability;
        if inner.rng.chance(p) {
            inner.stats.write_errors += 1;
            return Err(eio());
        }
        inner.check_space(old_len, len)?;
        let file = inner.file(self.inode, self.epoch)?;
        file.current.resize(len as usize, 0);
        file.unsynced.push(FileOp::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut inner = self.lock();
        inner.file(self.inode, self.epoch)?;
        let inode = self.inode;
        inner.powered(|i| format!("fsync {}", i.path_of(inode)))?;
        inner.sync_latency();
        let p = inner.options.sync_error_probability;
        if inner.rng.chance(p) {
            inner.stats.sync_errors += 1;
            // fsyncgate: the kernel forgets the dirty pages; the data is gone.
            let file = inner.file(self.inode, self.epoch)?;
            file.unsynced.clear();
            file.current = file.durable.clone();
            return Err(eio());
        }
        if inner.options.lying_fsync {
            inner.stats.lying_syncs += 1;
            return Ok(());
        }
        let file = inner.file(self.inode, self.epoch)?;
        for op in std::mem::take(&mut file.unsynced) {
            apply_op(&mut file.durable, &op);
        }
        assert!(
            file.durable.len() == file.current.len(),
            "SimDisk: after a sync the durable bytes equal what reads see"
        );
        debug_assert!(file.durable == file.current);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(seed: u64, options: SimDiskOptions) -> SimDisk {
        let d = SimDisk::new(seed, options);
        d.create_dir_all(Path::new("/data")).unwrap();
        d
    }

    fn read_all(d: &SimDisk, path: &str) -> Vec<u8> {
        let f = d.open(Path::new(path), OpenMode::EXISTING).unwrap();
        let mut buf = vec![0u8; f.len().unwrap() as usize];
        f.read_exact_at(&mut buf, 0).unwrap();
        buf
    }

    fn p(s: &str) -> &Path {
        Path::new(s)
    }

    #[test]
    fn behaves_like_a_filesystem() {
        let d = disk(1, SimDiskOptions::default());
        let f = d.open(p("/data/a.log"), OpenMode::CREATE).unwrap();
        f.write_at(b"hello", 0).unwrap();
        f.write_at(b" world", 5).unwrap();
        assert_eq!(f.len().unwrap(), 11);
        let mut buf = [0u8; 11];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello world");
        f.set_len(5).unwrap();
        let mut big = [0u8; 10];
        assert!(f.read_exact_at(&mut big, 0).is_err());
        f.write_at(b"!", 7).unwrap();
        assert_eq!(read_all(&d, "/data/a.log"), b"hello\0\0!");

        d.create_dir_all(p("/data/x/y")).unwrap();
        for name in ["b", "a", "c"] {
            d.open(&p("/data/x/y").join(name), OpenMode::CREATE)
                .unwrap();
        }
        assert_eq!(d.list_dir(p("/data/x/y")).unwrap(), vec!["a", "b", "c"]);
        assert_eq!(d.list_dir(p("/data")).unwrap(), vec!["a.log", "x"]);
        d.rename(p("/data/x/y/a"), p("/data/x/y/d")).unwrap();
        assert!(!d.exists(p("/data/x/y/a")));
        assert!(d.exists(p("/data/x/y/d")));
        d.remove_file(p("/data/x/y/d")).unwrap();
        assert_eq!(d.list_dir(p("/data/x/y")).unwrap(), vec!["b", "c"]);
        assert!(d.open(p("/data/x/y/zz"), OpenMode::EXISTING).is_err());
        assert!(d.open(p("/nodir/f"), OpenMode::CREATE).is_err());
        d.rename(p("/data/x"), p("/data/z")).unwrap();
        assert!(d.is_dir(p("/data/z/y")));
        assert!(d.exists(p("/data/z/y/b")));
        d.remove_dir_all(p("/data/z")).unwrap();
        assert!(!d.exists(p("/data/z/y/b")));
        assert_eq!(d.list_dir(p("/data")).unwrap(), vec!["a.log"]);
        // Relative paths and `.` components name the same file.
        d.create_dir_all(p("rel")).unwrap();
        d.open(p("./rel/f"), OpenMode::CREATE).unwrap();
        assert!(d.exists(p("rel/f")));
    }

    #[test]
    fn rename_replaces_atomically_and_truncate_works() {
        let d = disk(1, SimDiskOptions::default());
        let a = d.open(p("/data/a"), OpenMode::CREATE).unwrap();
        a.write_at(b"new", 0).unwrap();
        a.sync_data().unwrap();
        let b = d.open(p("/data/b"), OpenMode::CREATE).unwrap();
        b.write_at(b"old", 0).unwrap();
        b.sync_data().unwrap();
        d.rename(p("/data/a"), p("/data/b")).unwrap();
        assert_eq!(read_all(&d, "/data/b"), b"new");
        assert_eq!(d.list_dir(p("/data")).unwrap(), vec!["b"]);
        let t = d.open(p("/data/b"), OpenMode::CREATE_NEW_EMPTY).unwrap();
        assert_eq!(t.len().unwrap(), 0);
    }

    /// Write `synced` and sync, then write `unsynced` without syncing.
    fn file_with_tail(d: &SimDisk, path: &str, synced: &[u8], unsynced: &[u8]) {
        let f = d.open(p(path), OpenMode::CREATE).unwrap();
        f.write_at(synced, 0).unwrap();
        f.sync_data().unwrap();
        // Two writes, so a torn crash can stop inside either.
        let half = unsynced.len() / 2;
        f.write_at(&unsynced[..half], synced.len() as u64).unwrap();
        f.write_at(&unsynced[half..], (synced.len() + half) as u64)
            .unwrap();
    }

    #[test]
    fn crash_keeps_drops_or_tears_unsynced_writes_and_never_synced_ones() {
        let synced = b"durable-".to_vec();
        let tail = b"0123456789abcdef".to_vec();
        let (mut kept, mut dropped, mut torn) = (0, 0, 0);
        for seed in 0..200 {
            let d = disk(seed, SimDiskOptions::default());
            file_with_tail(&d, "/data/seg", &synced, &tail);
            let report = d.crash();
            let after = read_all(&d, "/data/seg");
            assert!(after.starts_with(&synced), "seed {seed}: synced data lost");
            assert_eq!(report.files.len(), 1);
            match &report.files[0].1 {
                CrashOutcome::Kept => {
                    kept += 1;
                    assert_eq!(after[synced.len()..], tail[..]);
                }
                CrashOutcome::Dropped => {
                    dropped += 1;
                    assert_eq!(after, synced);
                }
                CrashOutcome::Torn {
                    bytes_kept,
                    bytes_unsynced,
                } => {
                    torn += 1;
                    assert_eq!(*bytes_unsynced, tail.len() as u64);
                    assert!(*bytes_kept > 0 && *bytes_kept < *bytes_unsynced);
                    assert_eq!(after[synced.len()..], tail[..*bytes_kept as usize]);
                }
            }
        }
        assert!(
            kept > 0 && dropped > 0 && torn > 0,
            "{kept} {dropped} {torn}"
        );
    }

    /// A log-like workload: appends with syncs at random points. After any
    /// crash the file is the synced prefix followed by a prefix of what was
    /// appended after it, never anything else.
    #[test]
    fn appends_survive_as_synced_prefix_plus_a_prefix_of_the_rest() {
        for seed in 0..100u64 {
            let d = disk(seed, SimDiskOptions::default());
            let mut rng = WeirRng::from_seed(seed ^ 0x5eed);
            let f = d.open(p("/data/log"), OpenMode::CREATE).unwrap();
            let mut written: Vec<u8> = Vec::new();
            let mut synced_len = 0;
            for _ in 0..rng.range_u64(1, 20) {
                let n = rng.range_u64(1, 50) as usize;
                let chunk: Vec<u8> = (0..n).map(|_| rng.next_u32() as u8).collect();
                f.write_at(&chunk, written.len() as u64).unwrap();
                written.extend_from_slice(&chunk);
                if rng.chance(0.3) {
                    f.sync_data().unwrap();
                    synced_len = written.len();
                }
            }
            d.crash();
            let after = read_all(&d, "/data/log");
            assert!(after.len() >= synced_len, "seed {seed}: synced bytes lost");
            assert_eq!(after[..], written[..after.len()], "seed {seed}");
        }
    }

    #[test]
    fn same_seed_same_faults() {
        let run = |seed| {
            let d = disk(
                seed,
                SimDiskOptions {
                    read_corruption_probability: 0.2,
                    read_error_probability: 0.1,
                    write_error_probability: 0.1,
                    sync_error_probability: 0.1,
                    ..Default::default()
                },
            );
            let f = d.open(p("/data/a"), OpenMode::CREATE).unwrap();
            let mut reads = Vec::new();
            for i in 0..200u64 {
                let _ = f.write_at(&i.to_le_bytes(), i * 8);
                if i % 7 == 0 {
                    let _ = f.sync_data();
                }
                let mut buf = [0u8; 8];
                reads.push(f.read_at(&mut buf, i * 4).map(|n| buf[..n].to_vec()).ok());
            }
            let report = d.crash();
            d.set_options(SimDiskOptions::default());
            (d.stats(), reads, report, read_all(&d, "/data/a"))
        };
        let a = run(9);
        assert_eq!(a, run(9));
        assert!(a.0.read_corruptions > 0 && a.0.read_errors > 0);
        assert!(a.0.write_errors > 0 && a.0.sync_errors > 0);
        assert_ne!(a, run(10));
    }

    #[test]
    fn same_seed_same_crash() {
        let run = |seed| {
            let d = disk(
                seed,
                SimDiskOptions {
                    lose_unsynced_dir_ops: true,
                    crash_corruption_probability: 0.5,
                    ..Default::default()
                },
            );
            for i in 0..8 {
                file_with_tail(&d, &format!("/data/f{i}"), b"abc", b"defghijk");
            }
            let report = d.crash();
            let contents: Vec<Vec<u8>> = d
                .list_dir(p("/data"))
                .unwrap()
                .iter()
                .map(|n| read_all(&d, &format!("/data/{n}")))
                .collect();
            (report, contents)
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn a_power_cut_stops_the_disk_at_one_operation() {
        let d = disk(3, SimDiskOptions::default());
        d.create_dir_all(p("/d")).unwrap();
        let f = d.open(p("/d/a.log"), OpenMode::CREATE).unwrap();
        f.write_at(b"one", 0).unwrap();
        f.sync_data().unwrap();
        d.cut_power_after(2);
        f.write_at(b"two", 3).unwrap();
        f.sync_data().unwrap();
        assert_eq!(d.power_cut_at(), None);
        // The third mutating operation is where the power goes: it and
        // everything after fail and apply nothing, reads included.
        assert!(d.rename(p("/d/a.log"), p("/d/b.log")).is_err());
        assert_eq!(
            d.power_cut_at().as_deref(),
            Some("rename /d/a.log -> /d/b.log")
        );
        assert!(f.write_at(b"three", 6).is_err());
        assert!(f.read_at(&mut [0u8; 3], 0).is_err());
        assert!(d.open(p("/d/c.log"), OpenMode::CREATE).is_err());
        d.crash();
        assert_eq!(d.power_cut_at(), None);
        assert!(d.exists(p("/d/a.log")) && !d.exists(p("/d/b.log")));
        assert_eq!(read_all(&d, "/d/a.log"), b"onetwo");
    }

    #[test]
    fn handles_from_before_a_crash_are_stale() {
        let d = disk(3, SimDiskOptions::default());
        let f = d.open(p("/data/a"), OpenMode::CREATE).unwrap();
        f.write_at(b"x", 0).unwrap();
        f.sync_data().unwrap();
        d.crash();
        let err = f.read_at(&mut [0u8; 1], 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESTALE));
        assert!(f.write_at(b"y", 0).is_err());
        assert!(f.sync_data().is_err());
        assert!(f.len().is_err());
        drop(f);
        let g = d.open(p("/data/a"), OpenMode::EXISTING).unwrap();
        assert_eq!(g.len().unwrap(), 1);
    }

    #[test]
    fn namespace_changes_survive_a_crash_by_default() {
        let d = disk(4, SimDiskOptions::default());
        d.create_dir_all(p("/data/t-0")).unwrap();
        d.open(p("/data/t-0/new"), OpenMode::CREATE).unwrap();
        d.open(p("/data/t-0/gone"), OpenMode::CREATE).unwrap();
        d.remove_file(p("/data/t-0/gone")).unwrap();
        d.rename(p("/data/t-0/new"), p("/data/t-0/renamed"))
            .unwrap();
        let report = d.crash();
        assert_eq!(report.dir_ops_kept, report.dir_ops_unsynced);
        assert_eq!(d.list_dir(p("/data/t-0")).unwrap(), vec!["renamed"]);
    }

    #[test]
    fn unsynced_dir_ops_may_vanish_as_a_prefix_when_enabled() {
        let opts = SimDiskOptions {
            lose_unsynced_dir_ops: true,
            ..Default::default()
        };
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..100 {
            let d = SimDisk::new(seed, opts.clone());
            d.create_dir_all(p("/data")).unwrap();
            d.persist_namespace(); // /data is durable from here on
            let f = d.open(p("/data/a"), OpenMode::CREATE).unwrap(); // op 1
            f.write_at(b"v", 0).unwrap();
            f.sync_data().unwrap();
            d.rename(p("/data/a"), p("/data/b")).unwrap(); // op 2
            d.remove_file(p("/data/b")).unwrap(); // op 3
            drop(f);
            let report = d.crash();
            assert_eq!(report.dir_ops_unsynced, 3);
            let names = d.list_dir(p("/data")).unwrap();
            let expected: Vec<&str> = match report.dir_ops_kept {
                0 | 3 => vec![],
                1 => vec!["a"],
                2 => vec!["b"],
                n => panic!("kept {n} of 3"),
            };
            assert_eq!(names, expected, "seed {seed}");
            for n in &names {
                // The revived file still holds its synced data.
                assert_eq!(read_all(&d, &format!("/data/{n}")), b"v");
            }
            seen.insert(report.dir_ops_kept);
        }
        assert_eq!(seen.len(), 4, "every prefix length occurs: {seen:?}");
    }

    #[test]
    fn switching_dir_op_loss_on_makes_the_namespace_so_far_durable() {
        for seed in 0..30 {
            let d = disk(seed, SimDiskOptions::default());
            d.open(p("/data/before"), OpenMode::CREATE).unwrap();
            d.set_options(SimDiskOptions {
                lose_unsynced_dir_ops: true,
                ..Default::default()
            });
            d.open(p("/data/after"), OpenMode::CREATE).unwrap();
            let report = d.crash();
            assert_eq!(report.dir_ops_unsynced, 1);
            assert!(d.exists(p("/data/before")), "seed {seed}");
            assert_eq!(d.exists(p("/data/after")), report.dir_ops_kept == 1);
        }
    }

    #[test]
    fn corrupted_reads_flip_one_bit_and_leave_the_disk_alone() {
        let d = disk(5, SimDiskOptions::default());
        let f = d.open(p("/data/a"), OpenMode::CREATE).unwrap();
        let data = vec![0u8; 64];
        f.write_at(&data, 0).unwrap();
        d.set_options(SimDiskOptions {
            read_corruption_probability: 1.0,
            ..Default::default()
        });
        let mut buf = vec![0u8; 64];
        f.read_exact_at(&mut buf, 0).unwrap();
        let flipped: u32 = buf.iter().map(|b| b.count_ones()).sum();
        assert_eq!(flipped, 1);
        d.set_options(SimDiskOptions::default());
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(buf, data);
        assert_eq!(d.stats().read_corruptions, 1);
    }

    #[test]
    fn corruption_at_rest_is_seen_by_every_read_and_survives_crash() {
        let d = disk(6, SimDiskOptions::default());
        let f = d.open(p("/data/a"), OpenMode::CREATE).unwrap();
        f.write_at(&[0u8; 16], 0).unwrap();
        f.sync_data().unwrap();
        d.corrupt_at_rest(p("/data/a"), 3).unwrap();
        let got = read_all(&d, "/data/a");
        assert_eq!(got[3].count_ones(), 1);
        assert_eq!(got.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
        d.crash();
        assert_eq!(read_all(&d, "/data/a"), got);
        assert!(d.corrupt_at_rest(p("/data/a"), 16).is_err());
        assert!(d.corrupt_at_rest(p("/data/none"), 0).is_err());
    }

    #[test]
    fn random_corruption_at_crash() {
        let d = disk(
            7,
            SimDiskOptions {
                crash_corruption_probability: 1.0,
                ..Default::default()
            },
        );
        let f = d.open(p("/data/a"), OpenMode::CREATE).unwrap();
        f.write_at(&[0u8; 32], 0).unwrap();
        f.sync_data().unwrap();
        let report = d.crash();
        assert_eq!(report.corrupted.len(), 1);
        let after = read_all(&d, "/data/a");
        assert_eq!(after.iter().map(|b| b.count_ones()).sum::<u32>(), 1);
        assert_eq!(after[report.corrupted[0].1 as usize].count_ones(), 1);
    }

    #[test]
    fn eio_on_read_and_write_applies_nothing() {
        let d = disk(8, SimDiskOptions::default());
        let f = d.open(p("/data/a"), OpenMode::CREATE).unwrap();
        f.write_at(b"abc", 0).unwrap();
        d.set_options(SimDiskOptions {
            read_error_probability: 1.0,
            write_error_probability: 1.0,
            ..Default::default()
        });
        let err = f.read_at(&mut [0u8; 3], 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        assert_eq!(
            f.write_at(b"zzzz", 0).unwrap_err().raw_os_error(),
            Some(libc::EIO)
        );
        assert!(f.set_len(0).is_err());
        d.set_options(SimDiskOptions::default());
        assert_eq!(read_all(&d, "/data/a"), b"abc");
        let s = d.stats();
        assert_eq!((s.read_errors, s.write_errors), (1, 2));
    }

    #[test]
    fn enospc_at_capacity_applies_nothing() {
        let d = disk(
            9,
            SimDiskOptions {
                capacity_bytes_max: 10,
                ..Default::default()
            },
        );
        let f = d.open(p("/data/a"), OpenMode::CREATE).unwrap();
        f.write_at(b"12345678", 0).unwrap();
        let err = f.write_at(b"abc", 8).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(f.set_len(11).is_err());
        assert_eq!(read_all(&d, "/data/a"), b"12345678");
        // Overwriting in place needs no space; removing a file frees its space.
        f.write_at(b"AB", 0).unwrap();
        assert_eq!(d.available_bytes(p("/data")), Some(2));
        drop(f);
        d.remove_file(p("/data/a")).unwrap();
        assert_eq!(d.used_bytes(), 0);
        let g = d.open(p("/data/b"), OpenMode::CREATE).unwrap();
        g.write_at(b"0123456789", 0).unwrap();
        assert_eq!(d.stats().no_space_errors, 2);
    }

    #[test]
    fn failed_fsync_drops_the_unsynced_data() {
        let d = disk(10, SimDiskOptions::default());
        file_with_tail(&d, "/data/a", b"safe", b"lost");
        d.set_options(SimDiskOptions {
            sync_error_probability: 1.0,
            ..Default::default()
        });
        let f = d.open(p("/data/a"), OpenMode::EXISTING).unwrap();
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
        assert_eq!(read_all(&d, "/data/a"), b"safe");
        let report = d.crash();
        assert!(report.files.is_empty());
        assert_eq!(read_all(&d, "/data/a"), b"safe");
    }

    #[test]
    fn lying_fsync_lets_a_crash_lose_acknowledged_data() {
        let mut lost = false;
        for seed in 0..20 {
            let d = disk(
                seed,
                SimDiskOptions {
                    lying_fsync: true,
                    ..Default::default()
                },
            );
            let f = d.open(p("/data/a"), OpenMode::CREATE).unwrap();
            f.write_at(b"acked", 0).unwrap();
            f.sync_data().unwrap();
            d.crash();
            lost |= read_all(&d, "/data/a") != b"acked";
        }
        assert!(lost, "a lying fsync must be able to lose acked data");
    }

    #[test]
    fn latency_accumulates_for_the_harness_to_await() {
        let d = disk(
            11,
            SimDiskOptions {
                write_latency_min: Duration::from_micros(10),
                write_latency_max: Duration::from_micros(20),
                sync_latency_min: Duration::from_millis(1),
                sync_latency_max: Duration::from_millis(1),
                ..Default::default()
            },
        );
        let _ = d.take_pending_latency(); // create_dir_all's directory sync
        let f = d.open(p("/data/a"), OpenMode::CREATE).unwrap();
        assert_eq!(d.take_pending_latency(), Duration::from_millis(1));
        f.write_at(b"x", 0).unwrap();
        f.write_at(b"y", 1).unwrap();
        let w = d.pending_latency();
        assert!(w >= Duration::from_micros(20) && w <= Duration::from_micros(40));
        f.sync_data().unwrap();
        assert_eq!(d.take_pending_latency(), w + Duration::from_millis(1));
        assert_eq!(d.pending_latency(), Duration::ZERO);
    }

    #[tokio::test]
    async fn pending_latency_is_paid_in_tokio_time() {
        let d = disk(
            13,
            SimDiskOptions {
                read_latency_min: Duration::from_millis(2),
                read_latency_max: Duration::from_millis(2),
                ..Default::default()
            },
        );
        let f = d.open(p("/data/a"), OpenMode::CREATE).unwrap();
        f.write_at(b"x", 0).unwrap();
        f.read_at(&mut [0u8; 1], 0).unwrap();
        let start = super::super::time::now();
        d.pay_pending_latency().await;
        assert!(start.elapsed() >= Duration::from_millis(2));
        assert_eq!(d.pending_latency(), Duration::ZERO);
    }

    #[test]
    fn usable_as_a_shared_disk_trait_object() {
        let d = disk(12, SimDiskOptions::default());
        let shared: Arc<dyn Disk> = Arc::new(d.clone());
        let f = shared.open(p("/data/a"), OpenMode::CREATE).unwrap();
        f.write_at(b"z", 0).unwrap();
        f.sync_data().unwrap();
        d.crash(); // the harness's clone crashes the node's disk
        assert!(f.len().is_err());
        assert_eq!(read_all(&d, "/data/a"), b"z");
    }
}

//! The metadata quorum's raft log on disk: raft-rs's [`raft::Storage`] over
//! the [`Disk`] seam, in `<first log dir>/__cluster_metadata-0/`.
//!
//! ## Files
//! - `raft-state`: the hard state (term, vote, commit) and the conf state.
//!   Layout: `[u32 crc32c of the rest][u32 len][HardState protobuf][u32 len]
//!   [ConfState protobuf]`, little endian. Replaced atomically.
//! - `raft-snapshot`: the last snapshot (index, term, conf state, state
//!   machine data). Layout: `[u32 crc32c of the rest][Snapshot protobuf]`.
//!   Replaced atomically. Absent until the first snapshot.
//! - `raft-entries.log`: the entries after the snapshot, as records
//!   `[u32 len][u32 crc32c of payload][Entry protobuf]`, appended in index
//!   order. A conflicting suffix is cut (`set_len`) and rewritten; a
//!   compaction rewrites the whole file atomically.
//!
//! "Replaced atomically" = write `<name>.tmp`, sync it, rename it over the
//! old file (rename is atomic and durable, see `env::disk`).
//!
//! ## Crash story
//! Every mutation syncs before it returns, and the driver persists a Ready
//! before it sends messages that depend on it. A crash can therefore leave:
//! - a torn last record in `raft-entries.log` (cut at open, together with
//!   anything after the first record that fails its CRC, breaks the index
//!   sequence or goes back in term: a suffix that was being rewritten);
//! - a new snapshot with the old entries file (compaction or an installed
//!   snapshot interrupted before the entries rewrite): open drops entries at
//!   or below the snapshot index, and the whole file if it does not continue
//!   the snapshot (a different term at the snapshot index, or a gap);
//! - a stale `.tmp` file, deleted at open.
//!
//! The commit index in `raft-state` is only persisted together with a term or
//! vote change (raft does not need it durable: a restarted node relearns it
//! from the leader), so appending entries costs one fsync, not two.
//!
//! **Invariants:** the in-memory entries are contiguous, start at
//! `snapshot index + 1`, and are exactly the records on disk; the snapshot's
//! index is the last compacted index.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::env::disk::{Disk, DiskFile, OpenMode};

/// The hard state + conf state file.
pub const STATE_FILE: &str = "raft-state";
/// The snapshot file.
pub const SNAPSHOT_FILE: &str = "raft-snapshot";
/// The entries file.
pub const ENTRIES_FILE: &str = "raft-entries.log";

/// Bytes of one entry record's header: length and CRC.
const RECORD_HEADER_BYTES: usize = 8;
/// An entry record larger than this is damage, not data.
const RECORD_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Why the raft storage failed.
#[derive(Debug, thiserror::Error)]
pub enum RaftStorageError {
    #[error("raft storage I/O: {0}")]
    Io(#[from] io::Error),
    #[error("raft storage is damaged: {0}")]
    Corrupt(String),
}

/// The raft log of one controller: snapshot, entries and hard state, cached in
/// memory (the metadata log is small and compaction bounds it) and written
/// through to disk.
pub struct RaftStorage {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    hard_state: HardState,
    /// The hard state as last written to disk.
    durable_hard_state: HardState,
    conf_state: ConfState,
    snapshot: Snapshot,
    entries: Vec<Entry>,
    /// File offset where the record of `entries[i]` starts.
    offsets: Vec<u64>,
    file: Box<dyn DiskFile>,
    file_len: u64,
}

impl std::fmt::Debug for RaftStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStorage")
            .field("dir", &self.dir)
            .field("hard_state", &self.hard_state)
            .field("snapshot_index", &self.snapshot_index())
            .field("first_index", &self.first())
            .field("last_index", &self.last())
            .finish()
    }
}

fn corrupt(what: impl Into<String>) -> RaftStorageError {
    RaftStorageError::Corrupt(what.into())
}

fn read_all(disk: &dyn Disk, path: &Path) -> io::Result<Vec<u8>> {
    let f = disk.open(path, OpenMode::EXISTING)?;
    let mut buf = vec![0u8; f.len()? as usize];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Durably replace `path` with `bytes` (temp file, sync, rename).
fn write_atomic(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let f = disk.open(&tmp, OpenMode::CREATE_NEW_EMPTY)?;
    f.write_at(bytes, 0)?;
    f.sync_data()?;
    drop(f);
    disk.rename(&tmp, path)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

fn encode_msg(m: &dyn protobuf::Message) -> Vec<u8> {
    // Encoding a well-formed message into a Vec cannot fail.
    m.write_to_bytes().expect("protobuf encode to memory")
}

fn encode_state(hs: &HardState, cs: &ConfState) -> Vec<u8> {
    let hs = encode_msg(hs);
    let cs = encode_msg(cs);
    let mut body = Vec::with_capacity(8 + hs.len() + cs.len());
    body.extend_from_slice(&(hs.len() as u32).to_le_bytes());
    body.extend_from_slice(&hs);
    body.extend_from_slice(&(cs.len() as u32).to_le_bytes());
    body.extend_from_slice(&cs);
    let mut out = crc32c::crc32c(&body).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn decode_state(buf: &[u8]) -> Option<(HardState, ConfState)> {
    let crc = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?);
    let body = &buf[4..];
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let hs_len = u32::from_le_bytes(body.get(..4)?.try_into().ok()?) as usize;
    let hs = HardState::parse_from_bytes(body.get(4..4 + hs_len)?).ok()?;
    let rest = &body[4 + hs_len..];
    let cs_len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let cs = ConfState::parse_from_bytes(rest.get(4..4 + cs_len)?).ok()?;
    Some((hs, cs))
}

fn encode_snapshot(s: &Snapshot) -> Vec<u8> {
    let body = encode_msg(s);
    let mut out = crc32c::crc32c(&body).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn decode_snapshot(buf: &[u8]) -> Option<Snapshot> {
    let crc = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?);
    if crc32c::crc32c(&buf[4..]) != crc {
        return None;
    }
    Snapshot::parse_from_bytes(&buf[4..]).ok()
}

fn encode_record(e: &Entry, out: &mut Vec<u8>) {
    let payload = encode_msg(e);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Parse the records of an entries file: the longest valid prefix, as
/// (entry, record offset) pairs, and the byte length of that prefix.
fn scan_records(buf: &[u8]) -> (Vec<(Entry, u64)>, u64) {
    let mut out: Vec<(Entry, u64)> = Vec::new();
    let mut pos = 0usize;
    while buf.len() - pos >= RECORD_HEADER_BYTES {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes")) as u64;
        let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().expect("4 bytes"));
        if len > RECORD_BYTES_MAX || len > (buf.len() - pos - RECORD_HEADER_BYTES) as u64 {
            break;
        }
        let payload = &buf[pos + RECORD_HEADER_BYTES..pos + RECORD_HEADER_BYTES + len as usize];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Ok(entry) = Entry::parse_from_bytes(payload) else {
            break;
        };
        // A record that does not continue the sequence is the leftover of a
        // suffix rewrite whose truncation was lost: the log ends before it.
        if let Some((prev, _)) = out.last() {
            if entry.index != prev.index + 1 || entry.term < prev.term {
                break;
            }
        }
        out.push((entry, pos as u64));
        pos += RECORD_HEADER_BYTES + len as usize;
    }
    (out, pos as u64)
}

impl RaftStorage {
    /// Open (creating if needed) the raft storage in `dir`, recovering a
    /// consistent state after a crash. A fresh storage starts with `voters`
    /// (raft ids) as its configuration; an existing one keeps its own.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        voters: &[u64],
    ) -> Result<RaftStorage, RaftStorageError> {
        disk.create_dir_all(dir)?;
        for name in [STATE_FILE, SNAPSHOT_FILE, ENTRIES_FILE] {
            let tmp = tmp_path(&dir.join(name));
            if disk.exists(&tmp) {
                disk.remove_file(&tmp)?;
            }
        }

        let state_path = dir.join(STATE_FILE);
        let (mut hard_state, conf_state, fresh) = if disk.exists(&state_path) {
            let buf = read_all(disk.as_ref(), &state_path)?;
            let (hs, cs) = decode_state(&buf)
                .ok_or_else(|| corrupt(format!("{} fails its checksum", state_path.display())))?;
            (hs, cs, false)
        } else {
            let cs = ConfState {
                voters: voters.to_vec(),
                ..Default::default()
            };
            (HardState::default(), cs, true)
        };

        let snap_path = dir.join(SNAPSHOT_FILE);
        let snapshot = if disk.exists(&snap_path) {
            let buf = read_all(disk.as_ref(), &snap_path)?;
            decode_snapshot(&buf)
                .ok_or_else(|| corrupt(format!("{} fails its checksum", snap_path.display())))?
        } else {
            Snapshot::default()
        };
        let snap_index = snapshot.get_metadata().index;
        let snap_term = snapshot.get_metadata().term;
        // The snapshot's configuration is newer than a state file written
        // before it (installing a snapshot writes the snapshot first).
        let conf_state = if snap_index > 0 && fresh {
            snapshot.get_metadata().get_conf_state().clone()
        } else {
            conf_state
        };

        let entries_path = dir.join(ENTRIES_FILE);
        let file = disk.open(&entries_path, OpenMode::CREATE)?;
        let mut buf = vec![0u8; file.len()? as usize];
        file.read_exact_at(&mut buf, 0)?;
        let (records, valid_len) = scan_records(&buf);
        let records_count = records.len();
        if valid_len < buf.len() as u64 {
            tracing::warn!(
                file = %entries_path.display(),
                kept = valid_len,
                cut = buf.len() as u64 - valid_len,
                "cutting a torn or stale tail off the raft log"
            );
        }
        // Keep only entries that continue the snapshot.
        let continues = match records.first() {
            None => true,
            Some((first, _)) if first.index > snap_index + 1 => false,
            Some((first, _)) if first.index <= snap_index && snap_index > 0 => {
                let at = (snap_index - first.index) as usize;
                records.get(at).is_some_and(|(e, _)| e.term == snap_term)
            }
            Some(_) => true,
        };
        let kept: Vec<Entry> = if continues {
            records
                .into_iter()
                .map(|(e, _)| e)
                .filter(|e| e.index > snap_index)
                .collect()
        } else {
            tracing::warn!(
                file = %entries_path.display(),
                snap_index,
                "raft log does not continue the snapshot: dropping it"
            );
            Vec::new()
        };

        let mut storage = RaftStorage {
            disk,
            dir: dir.to_path_buf(),
            durable_hard_state: hard_state.clone(),
            hard_state: HardState::default(),
            conf_state,
            snapshot,
            entries: Vec::new(),
            offsets: Vec::new(),
            file,
            file_len: valid_len,
        };
        if kept.len() == records_count && valid_len == buf.len() as u64 {
            // The file is exactly the kept entries: reuse it as is.
            storage.entries = kept;
            storage.rebuild_offsets();
        } else {
            storage.rewrite_entries(kept)?;
        }

        // The commit index is persisted lazily (see the module docs); a
        // snapshot is always committed.
        if hard_state.commit < snap_index {
            hard_state.commit = snap_index;
        }
        if hard_state.term < snap_term {
            hard_state.term = snap_term;
        }
        if hard_state.commit > storage.last() {
            return Err(corrupt(format!(
                "commit index {} is past the last entry {} (acknowledged writes lost)",
                hard_state.commit,
                storage.last()
            )));
        }
        storage.hard_state = hard_state;
        if fresh {
            storage.persist_state()?;
        }
        Ok(storage)
    }

    fn rebuild_offsets(&mut self) {
        self.offsets.clear();
        let mut pos = 0u64;
        for e in &self.entries {
            self.offsets.push(pos);
            pos += RECORD_HEADER_BYTES as u64 + e.compute_size() as u64;
        }
        assert_eq!(
            pos, self.file_len,
            "raft log invariant: the cached entries are exactly the records on disk"
        );
    }

    /// Atomically replace the entries file with `entries`.
    fn rewrite_entries(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        let mut bytes = Vec::new();
        for e in &entries {
            encode_record(e, &mut bytes);
        }
        let path = self.dir.join(ENTRIES_FILE);
        write_atomic(self.disk.as_ref(), &path, &bytes)?;
        self.file = self.disk.open(&path, OpenMode::EXISTING)?;
        self.file_len = bytes.len() as u64;
        self.entries = entries;
        self.rebuild_offsets();
        Ok(())
    }

    fn persist_state(&mut self) -> io::Result<()> {
        write_atomic(
            self.disk.as_ref(),
            &self.dir.join(STATE_FILE),
            &encode_state(&self.hard_state, &self.conf_state),
        )?;
        self.durable_hard_state = self.hard_state.clone();
        Ok(())
    }

    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn first(&self) -> u64 {
        self.snapshot_index() + 1
    }

    fn last(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot_index(), |e| e.index)
    }

    /// The current hard state (the commit index may be ahead of disk).
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The current configuration.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// The last snapshot (empty metadata if none was taken or received).
    pub fn stored_snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Durably append `ents`, first cutting any suffix they overwrite.
    pub fn append(&mut self, ents: &[Entry]) -> Result<(), RaftStorageError> {
        let Some(first_new) = ents.first() else {
            return Ok(());
        };
        let first_new = first_new.index;
        if first_new < self.first() || first_new > self.last() + 1 {
            return Err(corrupt(format!(
                "append at {first_new} outside [{}, {}]",
                self.first(),
                self.last() + 1
            )));
        }
        if first_new <= self.last() {
            let at = (first_new - self.first()) as usize;
            self.file_len = self.offsets[at];
            self.file.set_len(self.file_len)?;
            self.entries.truncate(at);
            self.offsets.truncate(at);
        }
        let mut bytes = Vec::new();
        for e in ents {
            self.offsets.push(self.file_len + bytes.len() as u64);
            encode_record(e, &mut bytes);
        }
        self.file.write_at(&bytes, self.file_len)?;
        self.file.sync_data()?;
        self.file_len += bytes.len() as u64;
        self.entries.extend_from_slice(ents);
        Ok(())
    }

    /// Record a new hard state; written to disk (synced) when the term or
    /// vote changed, otherwise kept in memory (only the commit moved).
    pub fn set_hard_state(&mut self, hs: HardState) -> Result<(), RaftStorageError> {
        let must_persist =
            hs.term != self.durable_hard_state.term || hs.vote != self.durable_hard_state.vote;
        self.hard_state = hs;
        if must_persist {
            self.persist_state()?;
        }
        Ok(())
    }

    /// Raise the commit index (in memory, see the module docs).
    pub fn set_commit(&mut self, commit: u64) {
        assert!(
            commit <= self.last(),
            "raft log invariant: commit {commit} <= last index {}",
            self.last()
        );
        self.hard_state.commit = commit;
    }

    /// Install a snapshot received from the leader: it replaces the whole
    /// log. Snapshot first, then the entries, then the state, so a crash in
    /// between leaves the snapshot with a log that open() reconciles.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<(), RaftStorageError> {
        let meta = snapshot.get_metadata();
        let index = meta.index;
        if index < self.snapshot_index() {
            return Err(corrupt(format!(
                "snapshot at {index} is older than the stored one at {}",
                self.snapshot_index()
            )));
        }
        write_atomic(
            self.disk.as_ref(),
            &self.dir.join(SNAPSHOT_FILE),
            &encode_snapshot(&snapshot),
        )?;
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.hard_state.commit = index;
        self.conf_state = meta.get_conf_state().clone();
        self.snapshot = snapshot;
        self.rewrite_entries(Vec::new())?;
        self.persist_state()?;
        Ok(())
    }

    /// Compact the log up to `index` (applied, so committed and persisted),
    /// with `data` the state machine as of `index`.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<(), RaftStorageError> {
        if index <= self.snapshot_index() {
            return Ok(());
        }
        assert!(
            index <= self.hard_state.commit,
            "raft log invariant: compaction index {index} <= commit {}",
            self.hard_state.commit
        );
        let term = raft::Storage::term(self, index)
            .map_err(|e| corrupt(format!("term of compaction index {index}: {e}")))?;
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        meta.set_conf_state(self.conf_state.clone());
        let mut snapshot = Snapshot::default();
        snapshot.set_metadata(meta);
        snapshot.data = data.into();
        write_atomic(
            self.disk.as_ref(),
            &self.dir.join(SNAPSHOT_FILE),
            &encode_snapshot(&snapshot),
        )?;
        self.snapshot = snapshot;
        let keep: Vec<Entry> = self
            .entries
            .iter()
            .filter(|e| e.index > index)
            .cloned()
            .collect();
        self.rewrite_entries(keep)?;
        Ok(())
    }
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.first()) as usize;
        let hi = (high - self.first()) as usize;
        let mut out = self.entries[lo..hi].to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.snapshot_index() {
            return Ok(self.snapshot.get_metadata().term);
        }
        if idx < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(self.entries[(idx - self.first()) as usize].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if self.snapshot_index() < request_index || self.snapshot_index() == 0 {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use raft::Storage as _;

    use super::*;
    use crate::env::sim_disk::SimDisk;

    const DIR: &str = "/meta/__cluster_metadata-0";

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 1 + (index % 7) as usize].into(),
            ..Default::default()
        }
    }

    fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range.map(|i| entry(i, term)).collect()
    }

    fn hs(term: u64, vote: u64, commit: u64) -> HardState {
        HardState {
            term,
            vote,
            commit,
            ..Default::default()
        }
    }

    /// A disk that fails every mutation once its budget is spent: a crash
    /// point in the middle of any storage operation.
    struct BudgetDisk {
        inner: SimDisk,
        left: Arc<AtomicI64>,
    }

    struct BudgetFile {
        inner: Box<dyn DiskFile>,
        left: Arc<AtomicI64>,
    }

    fn spend(left: &AtomicI64) -> io::Result<()> {
        if left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            Err(io::Error::other("crash point"))
        } else {
            Ok(())
        }
    }

    impl Disk for BudgetDisk {
        fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
            if mode.create {
                spend(&self.left)?;
            }
            Ok(Box::new(BudgetFile {
                inner: self.inner.open(path, mode)?,
                left: self.left.clone(),
            }))
        }
        fn create_dir_all(&self, path: &Path) -> io::Result<()> {
            spend(&self.left)?;
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
            spend(&self.left)?;
            self.inner.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            spend(&self.left)?;
            self.inner.remove_file(path)
        }
        fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
            spend(&self.left)?;
            self.inner.remove_dir_all(path)
        }
    }

    impl DiskFile for BudgetFile {
        fn len(&self) -> io::Result<u64> {
            self.inner.len()
        }
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            self.inner.read_at(buf, offset)
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            spend(&self.left)?;
            self.inner.write_at(buf, offset)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            spend(&self.left)?;
            self.inner.set_len(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            spend(&self.left)?;
            self.inner.sync_data()
        }
    }

    #[derive(Clone, Debug)]
    enum Op {
        Append(Vec<Entry>),
        HardState(HardState),
        Compact(u64),
        InstallSnapshot(u64, u64),
    }

    /// What a reader of the storage sees: snapshot (index, term), entries
    /// (index, term), and the durable part of the hard state (term, vote).
    #[derive(Clone, Debug, PartialEq, Eq, Default)]
    struct View {
        snap: (u64, u64),
        entries: Vec<(u64, u64)>,
        term_vote: (u64, u64),
    }

    fn view(s: &RaftStorage) -> View {
        let m = s.stored_snapshot().get_metadata();
        View {
            snap: (m.index, m.term),
            entries: s.entries.iter().map(|e| (e.index, e.term)).collect(),
            term_vote: (s.hard_state().term, s.hard_state().vote),
        }
    }

    fn snapshot_at(index: u64, term: u64) -> Snapshot {
        let mut meta = SnapshotMetadata {
            index,
            term,
            ..Default::default()
        };
        meta.mut_conf_state().voters = vec![1, 2, 3];
        Snapshot {
            data: format!("state@{index}").into_bytes().into(),
            metadata: protobuf::SingularPtrField::some(meta),
            ..Default::default()
        }
    }

    fn run(s: &mut RaftStorage, op: &Op) -> Result<(), RaftStorageError> {
        match op {
            Op::Append(ents) => s.append(ents),
            Op::HardState(h) => {
                s.set_hard_state(h.clone())?;
                s.set_commit(h.commit);
                Ok(())
            }
            Op::Compact(i) => s.compact(*i, format!("state@{i}").into_bytes()),
            Op::InstallSnapshot(i, t) => s.apply_snapshot(snapshot_at(*i, *t)),
        }
    }

    fn script() -> Vec<Op> {
        vec![
            Op::Append(entries(1..=5, 1)),
            Op::HardState(hs(1, 1, 3)),
            // A new leader overwrites 4..=5.
            Op::Append(entries(4..=6, 2)),
            Op::HardState(hs(2, 2, 5)),
            Op::Compact(4),
            Op::Append(entries(7..=8, 2)),
            Op::HardState(hs(2, 2, 8)),
            Op::Compact(8),
            Op::Append(entries(9..=9, 2)),
            Op::InstallSnapshot(12, 3),
            Op::Append(entries(13..=14, 3)),
            Op::HardState(hs(4, 0, 14)),
        ]
    }

    fn open(disk: Arc<dyn Disk>) -> Result<RaftStorage, RaftStorageError> {
        RaftStorage::open(disk, Path::new(DIR), &[1, 2, 3])
    }

    fn new_disk(seed: u64) -> SimDisk {
        let d = SimDisk::new(seed, Default::default());
        d.create_dir_all(Path::new("/meta")).unwrap();
        d
    }

    /// The views after each prefix of the script, on a disk without faults.
    fn model_views() -> Vec<View> {
        let disk = new_disk(0);
        let mut s = open(Arc::new(disk)).unwrap();
        let mut out = vec![view(&s)];
        for op in script() {
            run(&mut s, &op).unwrap();
            out.push(view(&s));
        }
        out
    }

    fn common_prefix(a: &[(u64, u64)], b: &[(u64, u64)]) -> usize {
        a.iter().zip(b).take_while(|(x, y)| x == y).count()
    }

    #[test]
    fn a_crash_at_any_point_recovers_a_consistent_state() {
        let models = model_views();
        let mut crash_points = 0;
        for budget in 0i64.. {
            let mut finished = false;
            for seed in 0..6u64 {
                let disk = new_disk(seed);
                let left = Arc::new(AtomicI64::new(budget));
                let faulty = Arc::new(BudgetDisk {
                    inner: disk.clone(),
                    left: left.clone(),
                });
                // Ops fully done before the crash point.
                let mut done = 0usize;
                if let Ok(mut s) = open(faulty) {
                    for op in script() {
                        if run(&mut s, &op).is_err() {
                            break;
                        }
                        done += 1;
                    }
                    if done == script().len() && left.load(Ordering::SeqCst) > 0 {
                        finished = true;
                    }
                }
                disk.crash();
                let mut s = open(Arc::new(disk.clone()))
                    .unwrap_or_else(|e| panic!("budget {budget} seed {seed}: reopen: {e}"));
                let got = view(&s);
                let before = &models[done];
                let after = models.get(done + 1).unwrap_or(before);
                let torn_append = matches!(script().get(done), Some(Op::Append(_)))
                    && got.snap == before.snap
                    && got.term_vote == before.term_vote
                    && after.entries.starts_with(&got.entries)
                    && got.entries.len() >= common_prefix(&before.entries, &after.entries);
                assert!(
                    got == *before || got == *after || torn_append,
                    "budget {budget} seed {seed}: after {done} ops recovered {got:?}, \
                     expected {before:?} or {after:?}"
                );
                // The recovered storage keeps working and reopens the same.
                let next = s.last() + 1;
                let last_term = got.entries.last().map_or(got.snap.1, |e| e.1);
                s.append(&[entry(next, last_term.max(got.term_vote.0))])
                    .unwrap();
                let again = view(&s);
                drop(s);
                disk.crash();
                assert_eq!(view(&open(Arc::new(disk)).unwrap()), again);
                crash_points += 1;
            }
            if finished {
                break;
            }
        }
        assert!(crash_points > 50, "the script has many crash points");
    }

    #[test]
    fn a_torn_or_garbage_tail_is_cut() {
        let disk = new_disk(1);
        let mut s = open(Arc::new(disk.clone())).unwrap();
        s.append(&entries(1..=4, 1)).unwrap();
        s.set_hard_state(hs(1, 1, 0)).unwrap();
        drop(s);
        let path = Path::new(DIR).join(ENTRIES_FILE);
        let f = disk.open(&path, OpenMode::EXISTING).unwrap();
        let len = f.len().unwrap();
        // Half a record header, then a full record with a bad CRC.
        let mut rec = Vec::new();
        encode_record(&entry(5, 1), &mut rec);
        f.write_at(&rec[..5], len).unwrap();
        f.sync_data().unwrap();
        drop(f);
        let s = open(Arc::new(disk.clone())).unwrap();
        assert_eq!(s.last(), 4);
        assert_eq!(
            disk.open(&path, OpenMode::EXISTING).unwrap().len().unwrap(),
            len
        );
        drop(s);

        let f = disk.open(&path, OpenMode::EXISTING).unwrap();
        rec[RECORD_HEADER_BYTES] ^= 0xff;
        f.write_at(&rec, len).unwrap();
        f.sync_data().unwrap();
        drop(f);
        let mut s = open(Arc::new(disk.clone())).unwrap();
        assert_eq!(s.last(), 4);
        s.append(&entries(5..=6, 1)).unwrap();
        drop(s);
        let s = open(Arc::new(disk)).unwrap();
        assert_eq!(s.last(), 6);
        assert_eq!(
            s.entries(1, 7, None, GetEntriesContext::empty(false))
                .unwrap()
                .iter()
                .map(|e| e.index)
                .collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5, 6]
        );
        assert_eq!(s.hard_state().term, 1);
        assert_eq!(s.hard_state().vote, 1);
    }

    #[test]
    fn a_leftover_suffix_from_a_lost_truncation_is_cut() {
        // Records 1..=3 of term 2 followed by stale records of term 1 (what a
        // suffix rewrite leaves if its set_len is lost): the log ends at 3.
        let disk = new_disk(2);
        let path = Path::new(DIR);
        disk.create_dir_all(path).unwrap();
        let mut bytes = Vec::new();
        for e in entries(1..=3, 2).iter().chain(&entries(4..=5, 1)) {
            encode_record(e, &mut bytes);
        }
        let f = disk
            .open(&path.join(ENTRIES_FILE), OpenMode::CREATE)
            .unwrap();
        f.write_at(&bytes, 0).unwrap();
        f.sync_data().unwrap();
        drop(f);
        let s = open(Arc::new(disk)).unwrap();
        assert_eq!(s.last(), 3);
    }

    #[test]
    fn compaction_and_snapshots_serve_raft() {
        let disk = new_disk(3);
        let mut s = open(Arc::new(disk.clone())).unwrap();
        assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1, 2, 3]);
        assert!(s.snapshot(0, 2).is_err(), "no snapshot yet");
        s.append(&entries(1..=10, 1)).unwrap();
        s.set_hard_state(hs(1, 2, 8)).unwrap();
        s.compact(6, b"six".to_vec()).unwrap();
        assert_eq!(s.first_index().unwrap(), 7);
        assert_eq!(s.term(6).unwrap(), 1);
        assert!(matches!(
            s.entries(5, 8, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        drop(s);
        disk.crash();

        let mut s = open(Arc::new(disk.clone())).unwrap();
        let snap = s.snapshot(0, 2).unwrap();
        assert_eq!(snap.get_metadata().index, 6);
        assert_eq!(&snap.data[..], b"six");
        assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (7, 10));
        let st = s.initial_state().unwrap();
        assert_eq!((st.hard_state.term, st.hard_state.vote), (1, 2));
        assert!(st.hard_state.commit >= 6, "a snapshot is committed");

        // A leader's snapshot replaces the whole log.
        s.apply_snapshot(snapshot_at(20, 3)).unwrap();
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (21, 20)
        );
        assert_eq!(s.term(20).unwrap(), 3);
        s.append(&entries(21..=22, 3)).unwrap();
        drop(s);
        disk.crash();
        let s = open(Arc::new(disk)).unwrap();
        assert_eq!(
            (s.first_index().unwrap(), s.last_index().unwrap()),
            (21, 22)
        );
        assert_eq!(&s.snapshot(0, 1).unwrap().data[..], b"state@20");
        assert_eq!(s.hard_state().commit, 20);
        assert_eq!(s.hard_state().term, 3);
    }

    #[test]
    fn a_damaged_state_file_is_an_error_not_a_panic() {
        let disk = new_disk(4);
        let s = open(Arc::new(disk.clone())).unwrap();
        drop(s);
        disk.corrupt_at_rest(&Path::new(DIR).join(STATE_FILE), 5)
            .unwrap();
        assert!(matches!(
            open(Arc::new(disk)),
            Err(RaftStorageError::Corrupt(_))
        ));
    }
}

//! The disk seam: every byte Weir persists goes through [`Disk`].
//!
//! The log, producer state, topic metadata and (later) the raft storage take an
//! `Arc<dyn Disk>` as a parameter. Production passes [`RealDisk`] (std files,
//! fdatasync); the simulator passes an in-memory disk with a crash model, owned
//! by the harness so it survives the node's kill.
//!
//! ## Contract (what callers may rely on, and what a crash may do)
//! - `DiskFile::write_at` / `append` land in a volatile cache: a crash may drop
//!   or tear (keep a prefix of) anything written since the file's last
//!   `sync_data`. Callers that need durability call `sync_data`.
//! - `sync_data` returning `Ok` makes every earlier write to that file durable.
//!   When it fails, the unsynced data must be assumed gone (fsyncgate): callers
//!   treat a failed sync as fatal for that file and recover from disk.
//! - Namespace changes (`create_dir_all`, `open` with `create`, `rename`,
//!   `remove_file`, `remove_dir_all`) are durable when they return: the
//!   implementation syncs the parent directory. `rename` is atomic.
//! - Paths are plain relative or absolute paths; implementations don't resolve
//!   symlinks or `..` specially.
//!
//! The trait is synchronous on purpose: appends land in the page cache in
//! microseconds, and a synchronous log is far simpler to reason about and to
//! property-test. The cost is that an fsync blocks the calling task's worker
//! for its duration, as Kafka's own request threads do on roll.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// How to open a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenMode {
    /// Create the file if it does not exist (durably: the directory is synced).
    pub create: bool,
    /// Truncate an existing file to zero length.
    pub truncate: bool,
}

impl OpenMode {
    /// Open an existing file; `NotFound` if it is absent.
    pub const EXISTING: OpenMode = OpenMode {
        create: false,
        truncate: false,
    };
    /// Open, creating the file if needed, keeping existing contents.
    pub const CREATE: OpenMode = OpenMode {
        create: true,
        truncate: false,
    };
    /// Create or truncate to empty.
    pub const CREATE_NEW_EMPTY: OpenMode = OpenMode {
        create: true,
        truncate: true,
    };
}

/// A filesystem: a tree of directories holding byte files.
pub trait Disk: Send + Sync + 'static {
    /// Open a file for reading and writing.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>>;
    /// Create a directory and its parents (durable on return).
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names (not paths) of the entries of a directory, sorted bytewise, so
    /// callers never depend on the order a filesystem happens to return.
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>>;
    /// Whether a file or directory exists.
    fn exists(&self, path: &Path) -> bool;
    /// Whether `path` is a directory.
    fn is_dir(&self, path: &Path) -> bool;
    /// Atomically replace `to` with `from` (durable on return).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Remove a file (durable on return).
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Remove a directory and everything under it (durable on return).
    fn remove_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Bytes free on the device holding `path`, where known.
    fn available_bytes(&self, _path: &Path) -> Option<u64> {
        None
    }
}

/// An open file. Positioned reads and writes take `&self`, so one handle can
/// serve concurrent readers while a single writer appends.
pub trait DiskFile: Send + Sync {
    /// Current length in bytes (including unsynced writes).
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Read up to `buf.len()` bytes at `offset`; returns how many were read
    /// (fewer only at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Write all of `buf` at `offset`, extending the file if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Truncate or extend (with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Make every earlier write to this file durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;

    /// Read exactly `buf.len()` bytes at `offset`, or `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "read past end of file",
                ));
            }
            done += n;
        }
        Ok(())
    }
}

/// The production disk: std files, fdatasync for data, fsync of the parent
/// directory after every namespace change.
#[derive(Clone, Debug, Default)]
pub struct RealDisk;

impl RealDisk {
    pub fn new() -> Self {
        RealDisk
    }
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsync a directory so that entries created, renamed or removed in it survive
/// a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Disk for RealDisk {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn DiskFile>> {
        let existed = mode.create && path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(mode.create)
            .truncate(mode.truncate)
            .open(path)?;
        if mode.create && !existed {
            sync_dir(&parent_of(path))?;
        }
        Ok(Box::new(RealFile { file }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        if path.is_dir() {
            return Ok(());
        }
        // Sync each newly made level's parent, from the top down.
        let mut missing = Vec::new();
        let mut cur = Some(path);
        while let Some(p) = cur {
            if p.as_os_str().is_empty() || p.is_dir() {
                break;
            }
            missing.push(p.to_path_buf());
            cur = p.parent();
        }
        fs::create_dir_all(path)?;
        for p in missing.iter().rev() {
            sync_dir(&parent_of(p))?;
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)?;
        sync_dir(&parent_of(to))?;
        let from_parent = parent_of(from);
        if from_parent != parent_of(to) {
            sync_dir(&from_parent)?;
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)?;
        sync_dir(&parent_of(path))
    }

    fn remove_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir_all(path)?;
        sync_dir(&parent_of(path))
    }

    fn available_bytes(&self, path: &Path) -> Option<u64> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let c = CString::new(path.as_os_str().as_bytes()).ok()?;
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out-pointer.
        let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
        if rc != 0 {
            return None;
        }
        Some(st.f_bavail as u64 * st.f_frsize as u64)
    }
}

struct RealFile {
    file: File,
}

impl DiskFile for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    #[test]
    fn write_read_roundtrip_and_len() {
        let dir = scratch();
        let disk = RealDisk::new();
        let f = disk
            .open(&dir.path().join("a.log"), OpenMode::CREATE)
            .unwrap();
        f.write_at(b"hello", 0).unwrap();
        f.write_at(b" world", 5).unwrap();
        assert_eq!(f.len().unwrap(), 11);
        let mut buf = [0u8; 11];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"hello world");
        f.sync_data().unwrap();
        f.set_len(5).unwrap();
        assert_eq!(f.len().unwrap(), 5);
        let mut big = [0u8; 10];
        assert!(f.read_exact_at(&mut big, 0).is_err());
    }

    #[test]
    fn namespace_operations() {
        let dir = scratch();
        let disk = RealDisk::new();
        let sub = dir.path().join("x/y");
        disk.create_dir_all(&sub).unwrap();
        assert!(disk.is_dir(&sub));
        for name in ["b", "a", "c"] {
            disk.open(&sub.join(name), OpenMode::CREATE).unwrap();
        }
        assert_eq!(disk.list_dir(&sub).unwrap(), vec!["a", "b", "c"]);
        disk.rename(&sub.join("a"), &sub.join("d")).unwrap();
        assert!(!disk.exists(&sub.join("a")));
        assert!(disk.exists(&sub.join("d")));
        disk.remove_file(&sub.join("d")).unwrap();
        assert_eq!(disk.list_dir(&sub).unwrap(), vec!["b", "c"]);
        assert!(disk.open(&sub.join("zz"), OpenMode::EXISTING).is_err());
        disk.remove_dir_all(&dir.path().join("x")).unwrap();
        assert!(!disk.exists(&sub));
        assert!(disk.available_bytes(dir.path()).unwrap() > 0);
    }
}

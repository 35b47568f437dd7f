//! Small durable state files of one partition log: the log start offset and
//! the cleaner's progress.
//!
//! Layout (text, one value per line): a format line `0`, the values, and a
//! last line `crc <CRC32C of everything before it, hex>`.
//! - `log-start-offset.checkpoint`: `0`, the log start offset.
//! - `cleaner-offset.checkpoint`: `0`, the first dirty offset, then one line
//!   `<segment base> <first cleaned ms>` per segment the cleaner has touched.
//!
//! Crash story: a checkpoint is written to `<name>.tmp`, fsynced, then
//! renamed over the old one (rename is atomic and durable, see env::disk), so
//! a reader sees the old or the new file, never a mix. A leftover `.tmp` is
//! deleted at open. A file that fails its CRC is ignored with a warning and
//! the log falls back to what the segments alone say (log start = first
//! segment's base; cleaner starts over), which is always safe.

use std::collections::BTreeMap;
use std::path::Path;

use super::LogError;
use crate::env::disk::{Disk, OpenMode};

/// File holding the log start offset.
pub const LOG_START_FILE: &str = "log-start-offset.checkpoint";
/// File holding the cleaner's state.
pub const CLEANER_FILE: &str = "cleaner-offset.checkpoint";

/// Format version written on the first line.
const FORMAT_VERSION: &str = "0";

/// Durably replace `dir/name` with `lines` (temp file, fsync, rename).
pub fn write_lines(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
    lines: &[String],
) -> Result<(), LogError> {
    let mut body = String::new();
    body.push_str(FORMAT_VERSION);
    body.push('\n');
    for l in lines {
        body.push_str(l);
        body.push('\n');
    }
    let crc = crc32c::crc32c(body.as_bytes());
    body.push_str(&format!("crc {crc:08x}\n"));
    let tmp = dir.join(format!("{name}.tmp"));
    let f = disk.open(&tmp, OpenMode::CREATE_NEW_EMPTY)?;
    f.write_at(body.as_bytes(), 0)?;
    f.sync_data()?;
    drop(f);
    disk.rename(&tmp, &dir.join(name))?;
    Ok(())
}

/// The value lines of `dir/name`; None if it is absent or damaged.
pub fn read_lines(
    disk: &dyn Disk,
    dir: &Path,
    name: &str,
) -> Result<Option<Vec<String>>, LogError> {
    let path = dir.join(name);
    if !disk.exists(&path) {
        return Ok(None);
    }
    let f = disk.open(&path, OpenMode::EXISTING)?;
    let mut buf = vec![0u8; f.len()? as usize];
    f.read_exact_at(&mut buf, 0)?;
    let parsed = parse(&buf);
    if parsed.is_none() {
        tracing::warn!(file = %path.display(), "ignoring damaged checkpoint");
    }
    Ok(parsed)
}

fn parse(buf: &[u8]) -> Option<Vec<String>> {
    let text = std::str::from_utf8(buf).ok()?;
    let body_end = text.trim_end_matches('\n').rfind('\n')? + 1;
    let (body, crc_line) = text.split_at(body_end);
    let crc = u32::from_str_radix(crc_line.trim_end().strip_prefix("crc ")?, 16).ok()?;
    if crc != crc32c::crc32c(body.as_bytes()) {
        return None;
    }
    let mut lines = body.lines();
    if lines.next()? != FORMAT_VERSION {
        return None;
    }
    Some(lines.map(str::to_owned).collect())
}

/// Durably record the log start offset.
pub fn write_log_start(disk: &dyn Disk, dir: &Path, offset: i64) -> Result<(), LogError> {
    write_lines(disk, dir, LOG_START_FILE, &[offset.to_string()])
}

/// The recorded log start offset, if a valid checkpoint exists.
pub fn read_log_start(disk: &dyn Disk, dir: &Path) -> Result<Option<i64>, LogError> {
    Ok(read_lines(disk, dir, LOG_START_FILE)?.and_then(|l| l.first().and_then(|v| v.parse().ok())))
}

/// What the cleaner has done to a log, persisted across restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanerState {
    /// Everything below this offset has been cleaned at least once.
    pub first_dirty_offset: i64,
    /// Segment base -> now_ms of the first time the cleaner rewrote it (or
    /// was about to: the entry is written before the swap). Two uses: the
    /// tombstone horizon (tombstones in the segment are kept until
    /// first-cleaned + delete.retention.ms) and recovery (a listed segment
    /// may have offset gaps).
    pub first_cleaned_ms: BTreeMap<i64, i64>,
}

impl CleanerState {
    /// Whether segment `base` may hold offset gaps (it was cleaned).
    pub fn may_have_gaps(&self, base: i64) -> bool {
        self.first_cleaned_ms.contains_key(&base)
    }

    pub fn write(&self, disk: &dyn Disk, dir: &Path) -> Result<(), LogError> {
        let mut lines = vec![self.first_dirty_offset.to_string()];
        for (base, ms) in &self.first_cleaned_ms {
            lines.push(format!("{base} {ms}"));
        }
        write_lines(disk, dir, CLEANER_FILE, &lines)
    }

    /// The stored state; default (nothing cleaned) if absent or damaged.
    pub fn read(disk: &dyn Disk, dir: &Path) -> Result<CleanerState, LogError> {
        let Some(lines) = read_lines(disk, dir, CLEANER_FILE)? else {
            return Ok(CleanerState::default());
        };
        let parse = || -> Option<CleanerState> {
            let mut it = lines.iter();
            let first_dirty_offset = it.next()?.parse().ok()?;
            let mut first_cleaned_ms = BTreeMap::new();
            for l in it {
                let (b, ms) = l.split_once(' ')?;
                first_cleaned_ms.insert(b.parse().ok()?, ms.parse().ok()?);
            }
            Some(CleanerState {
                first_dirty_offset,
                first_cleaned_ms,
            })
        };
        Ok(parse().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::RealDisk;

    #[test]
    fn roundtrip_and_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let disk = RealDisk::new();
        assert_eq!(read_log_start(&disk, tmp.path()).unwrap(), None);
        write_log_start(&disk, tmp.path(), 42).unwrap();
        assert_eq!(read_log_start(&disk, tmp.path()).unwrap(), Some(42));
        let mut st = CleanerState {
            first_dirty_offset: 7,
            ..Default::default()
        };
        st.first_cleaned_ms.insert(0, 100);
        st.first_cleaned_ms.insert(5, 200);
        st.write(&disk, tmp.path()).unwrap();
        assert_eq!(CleanerState::read(&disk, tmp.path()).unwrap(), st);
        // Flip a digit: the CRC catches it and the file is ignored.
        let path = tmp.path().join(LOG_START_FILE);
        let f = disk.open(&path, OpenMode::EXISTING).unwrap();
        f.write_at(b"9", 2).unwrap();
        assert_eq!(read_log_start(&disk, tmp.path()).unwrap(), None);
        assert!(parse(b"").is_none());
        assert!(parse(b"garbage").is_none());
    }
}

//! `replication-offset-checkpoint`: the high watermark of every partition
//! hosted in a log dir, written periodically and at shutdown (Kafka's
//! replica.high.watermark.checkpoint.interval.ms).
//!
//! Layout: a checkpoint file (log/checkpoint.rs: format line, values, CRC
//! line) with one `<topic> <partition> <high watermark>` line per partition.
//!
//! Crash story: replaced atomically (temp, fsync, rename). A stale value is
//! safe: on restart HW = min(checkpoint, LEO) and followers relearn the HW
//! from the leader; a leader's HW only lags, so consumers may briefly see
//! less, never more.

use std::collections::BTreeMap;
use std::path::Path;

use crate::env::Disk;
use crate::log::checkpoint;
use crate::log::LogError;

pub const HW_FILE: &str = "replication-offset-checkpoint";

/// The checkpointed HWs by (topic, partition); empty if absent or damaged.
pub fn read(disk: &dyn Disk, dir: &Path) -> Result<BTreeMap<(String, i32), i64>, LogError> {
    let mut out = BTreeMap::new();
    let Some(lines) = checkpoint::read_lines(disk, dir, HW_FILE)? else {
        return Ok(out);
    };
    for line in lines {
        let mut parts = line.rsplitn(3, ' ');
        let hw = parts.next().and_then(|v| v.parse::<i64>().ok());
        let partition = parts.next().and_then(|v| v.parse::<i32>().ok());
        let topic = parts.next();
        match (topic, partition, hw) {
            (Some(t), Some(p), Some(hw)) => {
                out.insert((t.to_string(), p), hw);
            }
            _ => {
                tracing::warn!(line, "ignoring a damaged high watermark checkpoint line");
            }
        }
    }
    Ok(out)
}

/// Durably replace the checkpoint with `hws`.
pub fn write(
    disk: &dyn Disk,
    dir: &Path,
    hws: &BTreeMap<(String, i32), i64>,
) -> Result<(), LogError> {
    let lines: Vec<String> = hws
        .iter()
        .map(|((t, p), hw)| format!("{t} {p} {hw}"))
        .collect();
    checkpoint::write_lines(disk, dir, HW_FILE, &lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::sim_disk::{SimDisk, SimDiskOptions};

    #[test]
    fn round_trip() {
        let disk = SimDisk::new(3, SimDiskOptions::default());
        let dir = Path::new("/d");
        disk.create_dir_all(dir).unwrap();
        assert!(read(&disk, dir).unwrap().is_empty());
        let mut hws = BTreeMap::new();
        hws.insert(("a.b-c".to_string(), 0), 10);
        hws.insert(("x".to_string(), 7), 0);
        write(&disk, dir, &hws).unwrap();
        assert_eq!(read(&disk, dir).unwrap(), hws);
    }
}

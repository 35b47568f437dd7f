//! Broker metadata on disk, beside the partition logs (through `env::Disk`):
//!
//! - `<data>/.weir/topics/<topic>`: one small text file per topic (`id=`,
//!   `partitions=`, `config.<key>=` lines). The leading dot keeps the
//!   directory from ever looking like a `<topic>-<partition>` log dir.
//! - `<data>/.weir/producer_ids`: the end of the last reserved producer-id block.
//!
//! Crash story: every file is replaced atomically (write `<name>.tmp`, sync,
//! rename), so a reader sees the old or the new content, never a mix; stale
//! `.tmp` files are removed on load.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use crate::env::disk::OpenMode;
use crate::env::Disk;

/// Directory (under the data dir) holding broker metadata.
pub const META_DIR: &str = ".weir";
const TMP_SUFFIX: &str = ".tmp";

/// One topic as persisted.
#[derive(Clone, Debug, PartialEq)]
pub struct TopicRecord {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

impl TopicRecord {
    fn encode(&self) -> String {
        let mut s = format!(
            "version=1\nname={}\nid={}\npartitions={}\n",
            self.name,
            self.id.simple(),
            self.partitions
        );
        for (k, v) in &self.configs {
            s.push_str(&format!("config.{k}={v}\n"));
        }
        s
    }

    fn decode(text: &str) -> Result<TopicRecord, String> {
        let mut name = None;
        let mut id = None;
        let mut partitions = None;
        let mut configs = BTreeMap::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("bad line {line:?}"))?;
            match k {
                "version" => {}
                "name" => name = Some(v.to_string()),
                "id" => id = Some(Uuid::parse_str(v).map_err(|e| e.to_string())?),
                "partitions" => partitions = Some(v.parse::<i32>().map_err(|e| e.to_string())?),
                _ => match k.strip_prefix("config.") {
                    Some(key) => {
                        configs.insert(key.to_string(), v.to_string());
                    }
                    None => return Err(format!("unknown key {k:?}")),
                },
            }
        }
        Ok(TopicRecord {
            name: name.ok_or("missing name")?,
            id: id.ok_or("missing id")?,
            partitions: partitions.ok_or("missing partitions")?,
            configs,
        })
    }
}

/// Reads and writes the broker's metadata files.
pub struct MetaStore {
    disk: Arc<dyn Disk>,
    topics_dir: PathBuf,
    producer_ids_path: PathBuf,
}

impl MetaStore {
    pub fn open(disk: Arc<dyn Disk>, data_dir: &Path) -> io::Result<MetaStore> {
        let meta = data_dir.join(META_DIR);
        let topics_dir = meta.join("topics");
        disk.create_dir_all(&topics_dir)?;
        Ok(MetaStore {
            disk,
            producer_ids_path: meta.join("producer_ids"),
            topics_dir,
        })
    }

    /// Every persisted topic, sorted by name.
    pub fn load_topics(&self) -> io::Result<Vec<TopicRecord>> {
        let mut out = Vec::new();
        for name in self.disk.list_dir(&self.topics_dir)? {
            let path = self.topics_dir.join(&name);
            if name.ends_with(TMP_SUFFIX) {
                // A write that never reached its rename: the old file (if any) is current.
                self.disk.remove_file(&path)?;
                continue;
            }
            let text = read_all(self.disk.as_ref(), &path)?;
            let record = TopicRecord::decode(&String::from_utf8_lossy(&text)).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            out.push(record);
        }
        Ok(out)
    }

    pub fn save_topic(&self, record: &TopicRecord) -> io::Result<()> {
        write_atomic(
            self.disk.as_ref(),
            &self.topics_dir.join(&record.name),
            record.encode().as_bytes(),
        )
    }

    pub fn remove_topic(&self, name: &str) -> io::Result<()> {
        let path = self.topics_dir.join(name);
        if self.disk.exists(&path) {
            self.disk.remove_file(&path)?;
        }
        Ok(())
    }

    /// The first producer id not yet reserved (0 on a fresh disk).
    pub fn load_producer_id_block_end(&self) -> io::Result<i64> {
        if !self.disk.exists(&self.producer_ids_path) {
            return Ok(0);
        }
        let text = read_all(self.disk.as_ref(), &self.producer_ids_path)?;
        String::from_utf8_lossy(&text)
            .trim()
            .strip_prefix("next=")
            .and_then(|v| v.parse::<i64>().ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad producer_ids file"))
    }

    pub fn save_producer_id_block_end(&self, end: i64) -> io::Result<()> {
        write_atomic(
            self.disk.as_ref(),
            &self.producer_ids_path,
            format!("next={end}\n").as_bytes(),
        )
    }
}

fn read_all(disk: &dyn Disk, path: &Path) -> io::Result<Vec<u8>> {
    let f = disk.open(path, OpenMode::EXISTING)?;
    let mut buf = vec![0u8; f.len()? as usize];
    f.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Replace `path` with `bytes` atomically and durably.
fn write_atomic(disk: &dyn Disk, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp);
    let f = disk.open(&tmp, OpenMode::CREATE_NEW_EMPTY)?;
    f.write_at(bytes, 0)?;
    f.sync_data()?;
    drop(f);
    disk.rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::RealDisk;

    #[test]
    fn topic_roundtrip_and_producer_ids() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(Arc::new(RealDisk::new()), dir.path()).unwrap();
        let mut configs = BTreeMap::new();
        configs.insert("retention.ms".to_string(), "1000".to_string());
        let rec = TopicRecord {
            name: "a.b-c_d".into(),
            id: Uuid::from_u64_pair(1, 2),
            partitions: 3,
            configs,
        };
        store.save_topic(&rec).unwrap();
        store.save_topic(&rec).unwrap();
        assert_eq!(store.load_topics().unwrap(), vec![rec]);
        store.remove_topic("a.b-c_d").unwrap();
        assert!(store.load_topics().unwrap().is_empty());
        assert_eq!(store.load_producer_id_block_end().unwrap(), 0);
        store.save_producer_id_block_end(2000).unwrap();
        assert_eq!(store.load_producer_id_block_end().unwrap(), 2000);
    }
}

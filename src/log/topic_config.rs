//! Kafka's names for the log settings: topic configs (`retention.ms`, ...)
//! as accepted by CreateTopics / IncrementalAlterConfigs and shown by
//! DescribeConfigs. (The broker defaults they fall back to,
//! `log.retention.ms` and friends in server.properties, are parsed by
//! `config::ServerConfig`.)
//!
//! Parsing is strict: an unknown key or a bad value is an error naming it
//! (the broker answers INVALID_CONFIG, code 40, with that message), and a
//! config is applied whole or not at all.

use super::{CleanupPolicy, CompressionType, LogConfig};

/// A topic config that could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown topic config {0}")]
    UnknownKey(String),
    #[error("invalid value {value:?} for {key}: {why}")]
    InvalidValue {
        key: String,
        value: String,
        why: String,
    },
}

impl ConfigError {
    /// INVALID_CONFIG.
    pub fn error_code(&self) -> i16 {
        40
    }
}

/// Topic config keys this log understands, in DescribeConfigs order.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.index.bytes",
    "segment.ms",
];

/// Broker-wide settings of the log maintenance task (not per topic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MaintenanceConfig {
    /// log.retention.check.interval.ms (default 300000).
    pub retention_check_interval_ms: i64,
    /// log.cleaner.backoff.ms (default 15000): sleep between cleaner scans
    /// that found nothing to clean.
    pub cleaner_backoff_ms: i64,
    /// log.cleaner.enable (default true).
    pub cleaner_enable: bool,
}

impl Default for MaintenanceConfig {
    fn default() -> Self {
        MaintenanceConfig {
            retention_check_interval_ms: 300_000,
            cleaner_backoff_ms: 15_000,
            cleaner_enable: true,
        }
    }
}

fn invalid(key: &str, value: &str, why: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        why: why.into(),
    }
}

fn int(key: &str, value: &str, min: i64) -> Result<i64, ConfigError> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "not an integer"))?;
    if v < min {
        return Err(invalid(key, value, format!("must be >= {min}")));
    }
    Ok(v)
}

fn fits_u32(key: &str, value: &str, v: i64) -> Result<u32, ConfigError> {
    u32::try_from(v).map_err(|_| invalid(key, value, "too large"))
}

impl LogConfig {
    /// Apply one topic config (Kafka name and string value).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "cleanup.policy" => {
                self.cleanup_policy = CleanupPolicy::parse(value)
                    .ok_or_else(|| invalid(key, value, "expected delete, compact or both"))?
            }
            "compression.type" => {
                self.compression_type = CompressionType::parse(value).ok_or_else(|| {
                    invalid(
                        key,
                        value,
                        "expected producer, uncompressed, gzip, snappy, lz4 or zstd",
                    )
                })?
            }
            "delete.retention.ms" => self.delete_retention_ms = int(key, value, 0)?,
            "flush.messages" => {
                // Kafka's "never" is Long.MAX_VALUE; ours is u64::MAX.
                let n = int(key, value, 1)?;
                self.flush_messages = if n == i64::MAX { u64::MAX } else { n as u64 };
            }
            "flush.ms" => self.flush_ms = int(key, value, 0)?,
            "index.interval.bytes" => {
                self.index_interval_bytes = fits_u32(key, value, int(key, value, 0)?)?
            }
            "max.message.bytes" => {
                self.max_message_bytes = fits_u32(key, value, int(key, value, 0)?)?
            }
            "message.timestamp.type" => {
                self.log_append_time = match value {
                    "CreateTime" => false,
                    "LogAppendTime" => true,
                    _ => return Err(invalid(key, value, "expected CreateTime or LogAppendTime")),
                }
            }
            "min.cleanable.dirty.ratio" => {
                let r: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| invalid(key, value, "not a number"))?;
                if !(0.0..=1.0).contains(&r) {
                    return Err(invalid(key, value, "must be in [0, 1]"));
                }
                self.min_cleanable_dirty_ratio = r;
            }
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = int(key, value, 0)?,
            "retention.bytes" => self.retention_bytes = int(key, value, -1)?,
            "retention.ms" => self.retention_ms = int(key, value, -1)?,
            "segment.bytes" => self.segment_bytes = int(key, value, 14)? as u64,
            "segment.index.bytes" => {
                self.segment_index_bytes = fits_u32(key, value, int(key, value, 8)?)?
            }
            "segment.ms" => self.segment_ms = int(key, value, 1)?,
            _ => return Err(ConfigError::UnknownKey(key.to_owned())),
        }
        Ok(())
    }

    /// A copy with every `(key, value)` applied, or the first error (self
    /// unchanged): a config is applied whole or not at all.
    pub fn with_overrides<'a>(
        &self,
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<LogConfig, ConfigError> {
        let mut c = self.clone();
        for (k, v) in overrides {
            c.set(k, v)?;
        }
        Ok(c)
    }

    /// The value of a topic config as DescribeConfigs shows it.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "cleanup.policy" => self.cleanup_policy.to_string(),
            "compression.type" => self.compression_type.to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "flush.messages" => (self.flush_messages.min(i64::MAX as u64)).to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => if self.log_append_time {
                "LogAppendTime"
            } else {
                "CreateTime"
            }
            .to_owned(),
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            _ => return None,
        })
    }

    /// Every topic config with its value, in [`TOPIC_CONFIG_KEYS`] order.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        TOPIC_CONFIG_KEYS
            .iter()
            .map(|&k| (k, self.get(k).expect("every listed key has a value")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_roundtrip_for_every_key() {
        let c = LogConfig::default();
        for (k, v) in c.entries() {
            let mut d = LogConfig::default();
            d.set(k, &v).unwrap_or_else(|e| panic!("{k}={v}: {e}"));
            assert_eq!(d, c, "{k}");
        }
        assert_eq!(c.get("retention.ms").unwrap(), "604800000");
        assert_eq!(c.get("retention.bytes").unwrap(), "-1");
        assert_eq!(c.get("cleanup.policy").unwrap(), "delete");
        assert_eq!(c.get("compression.type").unwrap(), "producer");
        assert_eq!(c.get("delete.retention.ms").unwrap(), "86400000");
        assert_eq!(c.get("min.cleanable.dirty.ratio").unwrap(), "0.5");
    }

    #[test]
    fn overrides_apply_whole_or_not_at_all() {
        let base = LogConfig::default();
        let c = base
            .with_overrides([
                ("cleanup.policy", "compact,delete"),
                ("retention.ms", "1000"),
                ("compression.type", "zstd"),
                ("min.cleanable.dirty.ratio", "0.1"),
            ])
            .unwrap();
        assert!(c.cleanup_policy.compact && c.cleanup_policy.delete);
        assert_eq!(c.get("cleanup.policy").unwrap(), "compact,delete");
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.compression_type, CompressionType::Zstd);
        let e = base
            .with_overrides([("retention.ms", "5"), ("retention.bytes", "-2")])
            .unwrap_err();
        assert_eq!(e.error_code(), 40);
        assert!(e.to_string().contains("retention.bytes"), "{e}");
        assert!(matches!(
            base.with_overrides([("no.such", "1")]),
            Err(ConfigError::UnknownKey(_))
        ));
        for (k, v) in [
            ("cleanup.policy", "shred"),
            ("compression.type", "brotli"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("retention.ms", "soon"),
            ("message.timestamp.type", "Now"),
        ] {
            assert!(base.with_overrides([(k, v)]).is_err(), "{k}={v}");
        }
    }
}

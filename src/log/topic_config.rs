//! Kafka's names for the log settings: topic configs (`retention.ms`, ...)
//! as accepted by CreateTopics / IncrementalAlterConfigs and shown by
//! DescribeConfigs, and the broker defaults they fall back to
//! (`log.retention.ms`, `log.retention.hours`, ... in server.properties).
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

    /// The broker's default topic config from server.properties keys
    /// (`lookup` returns a property's value). As in Kafka,
    /// log.retention.ms beats log.retention.minutes beats
    /// log.retention.hours, and log.roll.ms beats log.roll.hours.
    pub fn from_broker_properties(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<LogConfig, ConfigError> {
        let mut c = LogConfig::default();
        let mut retention_set = false;
        if let Some(v) = lookup("log.retention.ms") {
            c.set("retention.ms", &v)?;
            retention_set = true;
        }
        for (key, unit) in [
            ("log.retention.minutes", 60_000i64),
            ("log.retention.hours", 3_600_000),
        ] {
            if retention_set {
                break;
            }
            if let Some(v) = lookup(key) {
                let n = int(key, &v, -1)?;
                c.retention_ms = if n < 0 { -1 } else { n.saturating_mul(unit) };
                retention_set = true;
            }
        }
        if let Some(v) = lookup("log.roll.ms") {
            c.set("segment.ms", &v)?;
        } else if let Some(v) = lookup("log.roll.hours") {
            let n = int("log.roll.hours", &v, 1)?;
            c.segment_ms = n.saturating_mul(3_600_000);
        }
        for (broker_key, topic_key) in [
            ("log.retention.bytes", "retention.bytes"),
            ("log.cleanup.policy", "cleanup.policy"),
            ("log.cleaner.delete.retention.ms", "delete.retention.ms"),
            (
                "log.cleaner.min.cleanable.ratio",
                "min.cleanable.dirty.ratio",
            ),
            ("log.cleaner.min.compaction.lag.ms", "min.compaction.lag.ms"),
            ("compression.type", "compression.type"),
            ("log.segment.bytes", "segment.bytes"),
            ("log.index.interval.bytes", "index.interval.bytes"),
            ("log.index.size.max.bytes", "segment.index.bytes"),
            ("log.flush.interval.messages", "flush.messages"),
            ("log.flush.interval.ms", "flush.ms"),
            ("message.max.bytes", "max.message.bytes"),
            ("log.message.timestamp.type", "message.timestamp.type"),
        ] {
            if let Some(v) = lookup(broker_key) {
                c.set(topic_key, &v).map_err(|e| match e {
                    ConfigError::InvalidValue { value, why, .. } => ConfigError::InvalidValue {
                        key: broker_key.to_owned(),
                        value,
                        why,
                    },
                    other => other,
                })?;
            }
        }
        Ok(c)
    }
}

impl MaintenanceConfig {
    /// From server.properties keys (`lookup` returns a property's value).
    pub fn from_broker_properties(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<MaintenanceConfig, ConfigError> {
        let mut m = MaintenanceConfig::default();
        if let Some(v) = lookup("log.retention.check.interval.ms") {
            m.retention_check_interval_ms = int("log.retention.check.interval.ms", &v, 1)?;
        }
        if let Some(v) = lookup("log.cleaner.backoff.ms") {
            m.cleaner_backoff_ms = int("log.cleaner.backoff.ms", &v, 0)?;
        }
        if let Some(v) = lookup("log.cleaner.enable") {
            m.cleaner_enable = match v.trim() {
                "true" => true,
                "false" => false,
                _ => return Err(invalid("log.cleaner.enable", &v, "expected true or false")),
            };
        }
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

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

    #[test]
    fn broker_defaults_follow_kafka_precedence() {
        let props: BTreeMap<&str, &str> = [
            ("log.retention.hours", "1"),
            ("log.retention.minutes", "2"),
            ("log.retention.bytes", "1000"),
            ("log.cleanup.policy", "compact"),
            ("log.roll.hours", "2"),
            ("log.retention.check.interval.ms", "1000"),
            ("log.cleaner.backoff.ms", "50"),
        ]
        .into_iter()
        .collect();
        let lookup = |k: &str| props.get(k).map(|v| v.to_string());
        let c = LogConfig::from_broker_properties(lookup).unwrap();
        assert_eq!(c.retention_ms, 120_000, "minutes beat hours");
        assert_eq!(c.retention_bytes, 1000);
        assert_eq!(c.cleanup_policy, CleanupPolicy::COMPACT);
        assert_eq!(c.segment_ms, 7_200_000);
        let m = MaintenanceConfig::from_broker_properties(lookup).unwrap();
        assert_eq!(m.retention_check_interval_ms, 1000);
        assert_eq!(m.cleaner_backoff_ms, 50);
        let c = LogConfig::from_broker_properties(|k| {
            (k == "log.retention.ms").then(|| "-1".to_owned())
        })
        .unwrap();
        assert_eq!(c.retention_ms, -1);
        let e = LogConfig::from_broker_properties(|k| {
            (k == "log.cleanup.policy").then(|| "nope".to_owned())
        })
        .unwrap_err();
        assert!(e.to_string().contains("log.cleanup.policy"), "{e}");
        assert_eq!(
            LogConfig::from_broker_properties(|_| None).unwrap(),
            LogConfig::default()
        );
    }
}

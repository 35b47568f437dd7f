//! Kafka's names for the log settings: topic configs (`retention.ms`, ...)
//! as accepted by CreateTopics / IncrementalAlterConfigs and shown by
//! DescribeConfigs. (The broker defaults they fall back to,
//! `log.retention.ms` and friends in server.properties, are parsed by
//! `config::ServerConfig`.)
//!
//! [`parse`] is the single judge of a topic config value: [`TOPIC_CONFIGS`]
//! holds every key with Kafka's type and bounds, and everything that accepts
//! a topic config (CreateTopics and IncrementalAlterConfigs through
//! `ServerConfig::validate_topic_config`, `LogConfig::set`, the broker's
//! `log.*` defaults) asks it. Parsing is strict: an unknown key or a bad
//! value is an error naming it (the broker answers INVALID_CONFIG, code 40,
//! with that message), and a config is applied whole or not at all.

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

/// How Kafka types and bounds a topic config: its `ConfigDef` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Java INT (at most `i32::MAX`), at least `min`.
    Int { min: i32 },
    /// Java LONG, at least `min`.
    Long { min: i64 },
    /// DOUBLE in [0, 1].
    Ratio,
    /// BOOLEAN: `true` or `false`, any case.
    Bool,
    /// A comma list of `delete` and `compact`.
    CleanupPolicy,
    /// One of Kafka's broker compression names.
    Compression,
    /// `CreateTime` or `LogAppendTime`.
    TimestampType,
}

/// Every topic config Weir accepts, with Kafka's type and bounds (its
/// `LogConfig` ConfigDef), in DescribeConfigs order. The one table both
/// topic overrides and the broker's `log.*` defaults are checked against.
///
/// segment.bytes keeps Kafka 3's minimum (14, one legacy record's
/// overhead): Kafka 4 raised it to 1 MiB with an internal override for
/// tests, which Weir's tests and simulator would need too.
pub const TOPIC_CONFIGS: &[(&str, Kind)] = &[
    ("cleanup.policy", Kind::CleanupPolicy),
    ("compression.type", Kind::Compression),
    ("delete.retention.ms", Kind::Long { min: 0 }),
    ("flush.messages", Kind::Long { min: 1 }),
    ("flush.ms", Kind::Long { min: 0 }),
    ("index.interval.bytes", Kind::Int { min: 0 }),
    ("max.message.bytes", Kind::Int { min: 0 }),
    ("message.timestamp.type", Kind::TimestampType),
    ("min.cleanable.dirty.ratio", Kind::Ratio),
    ("min.compaction.lag.ms", Kind::Long { min: 0 }),
    ("min.insync.replicas", Kind::Int { min: 1 }),
    // Any long: a negative retention.bytes means unlimited.
    ("retention.bytes", Kind::Long { min: i64::MIN }),
    ("retention.ms", Kind::Long { min: -1 }),
    ("segment.bytes", Kind::Int { min: 14 }),
    // Below one 8-byte entry every append rolls, as in Kafka.
    ("segment.index.bytes", Kind::Int { min: 4 }),
    ("segment.ms", Kind::Long { min: 1 }),
    ("unclean.leader.election.enable", Kind::Bool),
];

/// Kafka's `BrokerCompressionType` names (not the producer's `none`).
const COMPRESSION_NAMES: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

/// A topic config value that passed [`parse`]: typed and within bounds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TopicConfigValue {
    /// An INT or LONG config.
    Number(i64),
    Ratio(f64),
    Bool(bool),
    CleanupPolicy(CleanupPolicy),
    Compression(CompressionType),
    /// message.timestamp.type: true for LogAppendTime.
    LogAppendTime(bool),
}

impl TopicConfigValue {
    /// The number of an INT or LONG config; a caller asking a non-numeric
    /// key for one is a bug.
    pub fn number(self) -> i64 {
        match self {
            TopicConfigValue::Number(n) => n,
            other => panic!("topic config table: {other:?} is not a number"),
        }
    }

    /// The flag of a BOOLEAN config; a caller asking another key is a bug.
    pub fn flag(self) -> bool {
        match self {
            TopicConfigValue::Bool(b) => b,
            other => panic!("topic config table: {other:?} is not a boolean"),
        }
    }
}

/// The Kafka type and bounds of a topic config, None for an unknown key.
pub fn kind_of(key: &str) -> Option<Kind> {
    TOPIC_CONFIGS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|&(_, kind)| kind)
}

/// Check one topic config value against Kafka's type and bounds for its key
/// and return it typed. This is the only place a topic config value is
/// judged: `LogConfig::set`, topic creation and IncrementalAlterConfigs
/// (through `ServerConfig::validate_topic_config`) and the broker's `log.*`
/// defaults all come here. As Kafka's ConfigDef, surrounding whitespace is
/// ignored.
pub fn parse(key: &str, value: &str) -> Result<TopicConfigValue, ConfigError> {
    let kind = kind_of(key).ok_or_else(|| ConfigError::UnknownKey(key.to_owned()))?;
    let v = value.trim();
    let bad = |why: String| invalid(key, value, why);
    Ok(match kind {
        Kind::Int { min } => {
            let n: i32 = v.parse().map_err(|_| bad("not a 32-bit integer".into()))?;
            if n < min {
                return Err(bad(format!("must be >= {min}")));
            }
            TopicConfigValue::Number(n.into())
        }
        Kind::Long { min } => {
            let n: i64 = v.parse().map_err(|_| bad("not a 64-bit integer".into()))?;
            if n < min {
                return Err(bad(format!("must be >= {min}")));
            }
            TopicConfigValue::Number(n)
        }
        Kind::Ratio => {
            let r: f64 = v.parse().map_err(|_| bad("not a number".into()))?;
            // NaN is outside too.
            if !(0.0..=1.0).contains(&r) {
                return Err(bad("must be in [0, 1]".into()));
            }
            TopicConfigValue::Ratio(r)
        }
        Kind::Bool => TopicConfigValue::Bool(if v.eq_ignore_ascii_case("true") {
            true
        } else if v.eq_ignore_ascii_case("false") {
            false
        } else {
            return Err(bad("expected true or false".into()));
        }),
        Kind::CleanupPolicy => TopicConfigValue::CleanupPolicy(
            CleanupPolicy::parse(v)
                .ok_or_else(|| bad("expected delete, compact or both".into()))?,
        ),
        Kind::Compression => {
            let codec = COMPRESSION_NAMES
                .contains(&v)
                .then(|| CompressionType::parse(v))
                .flatten()
                .ok_or_else(|| {
                    bad("expected producer, uncompressed, gzip, snappy, lz4 or zstd".into())
                })?;
            TopicConfigValue::Compression(codec)
        }
        Kind::TimestampType => TopicConfigValue::LogAppendTime(match v {
            "CreateTime" => false,
            "LogAppendTime" => true,
            _ => return Err(bad("expected CreateTime or LogAppendTime".into())),
        }),
    })
}

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

impl LogConfig {
    /// Apply one topic config (Kafka name and string value), checked by
    /// [`parse`]. min.insync.replicas and unclean.leader.election.enable are
    /// checked and otherwise ignored: they are not log settings (the replica
    /// and the controller read them from the topic's configs).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        use TopicConfigValue as V;
        // INT bounds make these casts exact; see TOPIC_CONFIGS.
        let int = |n: i64| u32::try_from(n).expect("a non-negative INT config fits u32");
        match (key, parse(key, value)?) {
            ("cleanup.policy", V::CleanupPolicy(p)) => self.cleanup_policy = p,
            ("compression.type", V::Compression(c)) => self.compression_type = c,
            ("delete.retention.ms", V::Number(n)) => self.delete_retention_ms = n,
            // Kafka's "never" is Long.MAX_VALUE; ours is u64::MAX.
            ("flush.messages", V::Number(n)) => {
                self.flush_messages = if n == i64::MAX { u64::MAX } else { n as u64 }
            }
            ("flush.ms", V::Number(n)) => self.flush_ms = n,
            ("index.interval.bytes", V::Number(n)) => self.index_interval_bytes = int(n),
            ("max.message.bytes", V::Number(n)) => self.max_message_bytes = int(n),
            ("message.timestamp.type", V::LogAppendTime(b)) => self.log_append_time = b,
            ("min.cleanable.dirty.ratio", V::Ratio(r)) => self.min_cleanable_dirty_ratio = r,
            ("min.compaction.lag.ms", V::Number(n)) => self.min_compaction_lag_ms = n,
            ("retention.bytes", V::Number(n)) => self.retention_bytes = n,
            ("retention.ms", V::Number(n)) => self.retention_ms = n,
            ("segment.bytes", V::Number(n)) => self.segment_bytes = int(n).into(),
            ("segment.index.bytes", V::Number(n)) => self.segment_index_bytes = int(n),
            ("segment.ms", V::Number(n)) => self.segment_ms = n,
            ("min.insync.replicas" | "unclean.leader.election.enable", _) => {}
            (key, value) => {
                unreachable!("topic config table and LogConfig::set disagree: {key}={value:?}")
            }
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

    /// Every topic config the log holds with its value, in
    /// [`TOPIC_CONFIGS`] order (min.insync.replicas and
    /// unclean.leader.election.enable are not log settings).
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        TOPIC_CONFIGS
            .iter()
            .filter_map(|&(k, _)| Some((k, self.get(k)?)))
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
            .with_overrides([("retention.ms", "5"), ("retention.ms", "-2")])
            .unwrap_err();
        assert_eq!(e.error_code(), 40);
        assert!(e.to_string().contains("retention.ms"), "{e}");
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

    /// Kafka's bounds, key by key: the smallest accepted value, the largest
    /// refused one below it, and values of the wrong type or range.
    #[test]
    fn every_key_has_kafkas_bounds() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "segment.bytes",
                &["14", "2147483647", " 1048576 "],
                &["13", "2147483648", "1k", ""],
            ),
            ("segment.ms", &["1"], &["0", "-1", "1.5"]),
            (
                "segment.index.bytes",
                &["4", "10485760"],
                &["3", "2147483648"],
            ),
            (
                "index.interval.bytes",
                &["0", "4096"],
                &["-1", "2147483648"],
            ),
            (
                "flush.messages",
                &["1", "9223372036854775807"],
                &["0", "-1", "9223372036854775808"],
            ),
            ("flush.ms", &["0", "9223372036854775807"], &["-1"]),
            (
                "max.message.bytes",
                &["0", "2147483647"],
                &["-1", "2147483648"],
            ),
            (
                "retention.ms",
                &["-1", "0", "9223372036854775807"],
                &["-2", "soon"],
            ),
            // Any long: negative means unlimited.
            (
                "retention.bytes",
                &["-1", "-5", "0", "9223372036854775807"],
                &["1e6", "9223372036854775808"],
            ),
            ("delete.retention.ms", &["0"], &["-1"]),
            ("min.compaction.lag.ms", &["0"], &["-1"]),
            (
                "min.cleanable.dirty.ratio",
                &["0", "1", "0.01"],
                &["-0.1", "1.01", "NaN", "half"],
            ),
            (
                "min.insync.replicas",
                &["1", "2147483647"],
                &["0", "-1", "2147483648"],
            ),
            (
                "unclean.leader.election.enable",
                &["true", "false", "TRUE", " False "],
                &["yes", "1", ""],
            ),
            (
                "cleanup.policy",
                &["delete", "compact", "compact,delete", "delete, compact"],
                &["shred", "compact,", ""],
            ),
            (
                "compression.type",
                &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"],
                &["none", "brotli", "GZIP"],
            ),
            (
                "message.timestamp.type",
                &["CreateTime", "LogAppendTime"],
                &["createtime", "Now"],
            ),
        ];
        let listed: Vec<&str> = TOPIC_CONFIGS.iter().map(|(k, _)| *k).collect();
        let mut covered: Vec<&str> = cases.iter().map(|(k, _, _)| *k).collect();
        covered.sort();
        assert_eq!(covered, listed, "every topic config has bound cases");
        for (key, ok, bad) in cases {
            for v in *ok {
                parse(key, v).unwrap_or_else(|e| panic!("{key}={v:?} refused: {e}"));
                // LogConfig::set agrees with the table.
                LogConfig::default()
                    .set(key, v)
                    .unwrap_or_else(|e| panic!("set {key}={v:?}: {e}"));
            }
            for v in *bad {
                let e = parse(key, v).expect_err(&format!("{key}={v:?} accepted"));
                assert!(
                    matches!(e, ConfigError::InvalidValue { .. }),
                    "{key}={v:?}: {e}"
                );
                assert_eq!(e.error_code(), 40);
                let mut c = LogConfig::default();
                assert!(c.set(key, v).is_err(), "set {key}={v:?}");
                assert_eq!(c, LogConfig::default(), "a refused value changes nothing");
            }
        }
        assert!(matches!(
            parse("no.such", "1"),
            Err(ConfigError::UnknownKey(_))
        ));
    }

    #[test]
    fn typed_values() {
        assert_eq!(
            parse("flush.messages", "9223372036854775807")
                .unwrap()
                .number(),
            i64::MAX
        );
        let mut c = LogConfig::default();
        c.set("flush.messages", "9223372036854775807").unwrap();
        assert_eq!(c.flush_messages, u64::MAX, "Kafka's never");
        c.set("segment.index.bytes", "4").unwrap();
        assert_eq!(c.segment_index_bytes, 4);
        assert!(parse("unclean.leader.election.enable", "TRUE")
            .unwrap()
            .flag());
        assert_eq!(
            parse("message.timestamp.type", "LogAppendTime").unwrap(),
            TopicConfigValue::LogAppendTime(true)
        );
        // Not log settings: accepted, and the log config is unchanged.
        let mut d = LogConfig::default();
        d.set("min.insync.replicas", "2").unwrap();
        d.set("unclean.leader.election.enable", "true").unwrap();
        assert_eq!(d, LogConfig::default());
    }
}

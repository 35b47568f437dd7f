//! Server configuration, keyed by Kafka's own property names.
//!
//! A `server.properties`-style file (`key=value`, `#` comments) or single
//! `set(key, value)` calls fill a [`ServerConfig`]; with no file,
//! [`ServerConfig::default_single_node`] runs a one-node cluster.
//!
//! Topic-level configs (`segment.bytes`, `flush.ms`, ...) take their defaults
//! from the broker's `log.*` keys, as in Kafka; [`ServerConfig::topic_defaults`]
//! and [`ServerConfig::log_config_for`] derive them. This module judges no
//! topic config value itself: a topic override and the `log.*` key that
//! defaults it are both checked by `log::topic_config::parse`, so the broker
//! cannot start with a default a topic would be refused.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::log::topic_config::{self, TopicConfigValue};
use crate::log::LogConfig;

/// Why a configuration key or value was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("line {line}: expected key=value, got {text:?}")]
    Syntax { line: usize, text: String },
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("unknown topic config {0}")]
    UnknownTopicConfig(String),
}

/// The broker's settings. Field docs name the Kafka key each one holds.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// node.id (also accepted: broker.id)
    pub node_id: i32,
    /// listeners: `PLAINTEXT://host:port` or `host:port` (first listener is used)
    pub listeners: String,
    /// advertised.listeners: what Metadata tells clients; None = the bound address
    pub advertised_listeners: Option<String>,
    /// log.dirs (also accepted: log.dir); the first directory holds everything
    pub log_dirs: Vec<PathBuf>,
    /// cluster.id: reported in Metadata and DescribeCluster
    pub cluster_id: String,
    /// num.partitions: partitions of an auto-created topic or of CreateTopics with -1
    pub num_partitions: i32,
    /// default.replication.factor
    pub default_replication_factor: i16,
    /// auto.create.topics.enable
    pub auto_create_topics_enable: bool,
    /// message.max.bytes: the largest record batch accepted (topic: max.message.bytes)
    pub message_max_bytes: u32,
    /// log.segment.bytes (topic: segment.bytes)
    pub log_segment_bytes: u64,
    /// log.roll.ms (also log.roll.hours) (topic: segment.ms)
    pub log_roll_ms: i64,
    /// log.index.interval.bytes (topic: index.interval.bytes)
    pub log_index_interval_bytes: u32,
    /// log.index.size.max.bytes (topic: segment.index.bytes)
    pub log_index_size_max_bytes: u32,
    /// log.flush.interval.messages (topic: flush.messages); u64::MAX = never
    pub log_flush_interval_messages: u64,
    /// log.flush.interval.ms (topic: flush.ms); i64::MAX = never
    pub log_flush_interval_ms: i64,
    /// log.flush.scheduler.interval.ms: how often the flush task checks every log
    pub log_flush_scheduler_interval_ms: i64,
    /// log.retention.ms (also log.retention.minutes / .hours) (topic: retention.ms)
    pub log_retention_ms: i64,
    /// log.retention.bytes (topic: retention.bytes); -1 = unlimited
    pub log_retention_bytes: i64,
    /// log.cleanup.policy (topic: cleanup.policy)
    pub log_cleanup_policy: String,
    /// log.message.timestamp.type (topic: message.timestamp.type)
    pub log_message_timestamp_type: String,
    /// log.retention.check.interval.ms: how often retention runs over every log
    pub log_retention_check_interval_ms: i64,
    /// log.cleaner.enable: run the cleaner for compacted topics
    pub log_cleaner_enable: bool,
    /// log.cleaner.backoff.ms: the cleaner's sleep after a scan with nothing to clean
    pub log_cleaner_backoff_ms: i64,
    /// log.cleaner.delete.retention.ms (topic: delete.retention.ms)
    pub log_cleaner_delete_retention_ms: i64,
    /// log.cleaner.min.cleanable.ratio (topic: min.cleanable.dirty.ratio)
    pub log_cleaner_min_cleanable_ratio: f64,
    /// log.cleaner.min.compaction.lag.ms (topic: min.compaction.lag.ms)
    pub log_cleaner_min_compaction_lag_ms: i64,
    /// compression.type (topic: compression.type)
    pub compression_type: String,
    /// min.insync.replicas
    pub min_insync_replicas: i32,
    /// socket.request.max.bytes: a larger request frame closes the connection
    pub socket_request_max_bytes: usize,
    /// process.roles: `broker`, `controller` or both (the default)
    pub process_roles: ProcessRoles,
    /// controller.quorum.voters: `id@host:port,...`, the controller listener
    /// of every voter; empty = single-node mode (this node is the only voter)
    pub controller_quorum_voters: Vec<(i32, String)>,
    /// controller.listener.names: the listener (in `listeners`) controllers serve on
    pub controller_listener_names: String,
    /// broker.rack: spreads a partition's replicas over racks
    pub broker_rack: Option<String>,
    /// broker.session.timeout.ms: a broker silent this long is fenced
    pub broker_session_timeout_ms: i64,
    /// broker.heartbeat.interval.ms
    pub broker_heartbeat_interval_ms: i64,
    /// replica.lag.time.max.ms: a follower not caught up for this long leaves the ISR
    pub replica_lag_time_max_ms: i64,
    /// replica.fetch.wait.max.ms: how long a follower's fetch waits for data
    pub replica_fetch_wait_max_ms: i64,
    /// replica.fetch.max.bytes: bytes per partition per follower fetch
    pub replica_fetch_max_bytes: i32,
    /// replica.socket.timeout.ms: a follower's fetch gives up after this long
    pub replica_socket_timeout_ms: i64,
    /// replica.fetch.response.max.bytes: bytes per follower fetch response
    pub replica_fetch_response_max_bytes: i32,
    /// replica.fetch.backoff.ms: a follower's pause after a failed fetch
    pub replica_fetch_backoff_ms: i64,
    /// replica.high.watermark.checkpoint.interval.ms
    pub replica_high_watermark_checkpoint_interval_ms: i64,
    /// unclean.leader.election.enable (topic: the same key)
    pub unclean_leader_election_enable: bool,
    /// offsets.topic.replication.factor (capped at the live brokers)
    pub offsets_topic_replication_factor: i16,
    /// offsets.topic.segment.bytes: segment.bytes of `__consumer_offsets`
    /// (small segments let the cleaner compact it sooner)
    pub offsets_topic_segment_bytes: u64,
    /// Keys this struct does not model, kept verbatim (a warning is logged).
    pub extra: BTreeMap<String, String>,
    /// Keys set explicitly (file or `set`), so DescribeConfigs can tell a
    /// static broker config from a default.
    pub explicit: BTreeSet<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self::default_single_node()
    }
}

const DAY_MS: i64 = 24 * 3600 * 1000;

impl ServerConfig {
    /// One node (node.id 1) listening on 127.0.0.1:9092 with data in ./weir-data.
    pub fn default_single_node() -> Self {
        ServerConfig {
            node_id: 1,
            listeners: "PLAINTEXT://127.0.0.1:9092".to_string(),
            advertised_listeners: None,
            log_dirs: vec![PathBuf::from("./weir-data")],
            cluster_id: "weir-cluster".to_string(),
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics_enable: true,
            message_max_bytes: 1_048_588,
            log_segment_bytes: 1 << 30,
            log_roll_ms: 7 * DAY_MS,
            log_index_interval_bytes: 4096,
            log_index_size_max_bytes: 10 << 20,
            log_flush_interval_messages: u64::MAX,
            log_flush_interval_ms: i64::MAX,
            log_flush_scheduler_interval_ms: 1000,
            log_retention_ms: 7 * DAY_MS,
            log_retention_bytes: -1,
            log_cleanup_policy: "delete".to_string(),
            log_message_timestamp_type: "CreateTime".to_string(),
            log_retention_check_interval_ms: 300_000,
            log_cleaner_enable: true,
            log_cleaner_backoff_ms: 15_000,
            log_cleaner_delete_retention_ms: DAY_MS,
            log_cleaner_min_cleanable_ratio: 0.5,
            log_cleaner_min_compaction_lag_ms: 0,
            compression_type: "producer".to_string(),
            min_insync_replicas: 1,
            socket_request_max_bytes: 104_857_600,
            process_roles: ProcessRoles::BOTH,
            controller_quorum_voters: Vec::new(),
            controller_listener_names: "CONTROLLER".to_string(),
            broker_rack: None,
            broker_session_timeout_ms: 9000,
            broker_heartbeat_interval_ms: 2000,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1_048_576,
            replica_socket_timeout_ms: 30_000,
            replica_fetch_response_max_bytes: 10 << 20,
            replica_fetch_backoff_ms: 1000,
            replica_high_watermark_checkpoint_interval_ms: 5000,
            unclean_leader_election_enable: false,
            offsets_topic_replication_factor: 3,
            offsets_topic_segment_bytes: 104_857_600,
            extra: BTreeMap::new(),
            explicit: BTreeSet::new(),
        }
    }

    /// Parse a `server.properties` text: `key=value` (or `key: value`) lines,
    /// `#`/`!` comments, blank lines ignored. Unknown keys are kept in `extra`
    /// with a warning, as Kafka does.
    pub fn parse_properties(text: &str) -> Result<Self, ConfigError> {
        let mut config = Self::default_single_node();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some(pos) = line.find(['=', ':']) else {
                return Err(ConfigError::Syntax {
                    line: i + 1,
                    text: raw.to_string(),
                });
            };
            // `listeners=PLAINTEXT://...` contains ':' after '=': split on the first separator only.
            let (key, value) = (line[..pos].trim(), line[pos + 1..].trim());
            config.set(key, value)?;
        }
        Ok(config)
    }

    /// Set one Kafka key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let v = value.trim();
        match key {
            "node.id" | "broker.id" => self.node_id = parse_min(key, v, 0)?,
            "listeners" => {
                for l in v.split(',').filter(|l| !l.trim().is_empty()) {
                    listener_host_port(l)
                        .ok_or_else(|| invalid(key, v, "expected [NAME://]host:port,..."))?;
                }
                self.listeners = v.to_string();
            }
            "process.roles" => {
                self.process_roles = ProcessRoles::parse(v).ok_or_else(|| {
                    invalid(key, v, "expected broker, controller or broker,controller")
                })?
            }
            "controller.quorum.voters" => {
                self.controller_quorum_voters =
                    parse_voters(v).map_err(|why| invalid(key, v, why))?
            }
            "controller.listener.names" => self.controller_listener_names = v.to_string(),
            "broker.rack" => self.broker_rack = Some(v.to_string()).filter(|r| !r.is_empty()),
            "broker.session.timeout.ms" => self.broker_session_timeout_ms = parse_min(key, v, 1)?,
            "broker.heartbeat.interval.ms" => {
                self.broker_heartbeat_interval_ms = parse_min(key, v, 1)?
            }
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms = parse_min(key, v, 1)?,
            "replica.fetch.wait.max.ms" => self.replica_fetch_wait_max_ms = parse_min(key, v, 0)?,
            "replica.fetch.max.bytes" => self.replica_fetch_max_bytes = parse_min(key, v, 1)?,
            "replica.socket.timeout.ms" => self.replica_socket_timeout_ms = parse_min(key, v, 1)?,
            "replica.fetch.response.max.bytes" => {
                self.replica_fetch_response_max_bytes = parse_min(key, v, 1)?
            }
            "replica.fetch.backoff.ms" => self.replica_fetch_backoff_ms = parse_min(key, v, 0)?,
            "replica.high.watermark.checkpoint.interval.ms" => {
                self.replica_high_watermark_checkpoint_interval_ms = parse_min(key, v, 1)?
            }
            "unclean.leader.election.enable" => {
                self.unclean_leader_election_enable = topic_value(key, v, key)?.flag()
            }
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = parse_min(key, v, 1)?
            }
            // Kafka's own check is atLeast(1); this one is the topic's
            // segment.bytes check, since the value becomes that override and
            // a smaller one would fail the topic's creation.
            "offsets.topic.segment.bytes" => {
                self.offsets_topic_segment_bytes = log_key(key, v, "segment.bytes")?.segment_bytes
            }
            // Kafka keys that name listeners' protocols: every Weir listener is PLAINTEXT.
            "listener.security.protocol.map" | "inter.broker.listener.name" => {
                self.extra.insert(key.to_string(), v.to_string());
            }
            "advertised.listeners" => {
                listener_host_port(v).ok_or_else(|| invalid(key, v, "expected host:port"))?;
                self.advertised_listeners = Some(v.to_string());
            }
            "log.dirs" | "log.dir" => {
                let dirs: Vec<PathBuf> = v
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect();
                if dirs.is_empty() {
                    return Err(invalid(key, v, "empty"));
                }
                self.log_dirs = dirs;
            }
            "cluster.id" => self.cluster_id = v.to_string(),
            "num.partitions" => self.num_partitions = parse_min(key, v, 1)?,
            "default.replication.factor" => {
                self.default_replication_factor = parse_min::<i16>(key, v, 1)?
            }
            "auto.create.topics.enable" => self.auto_create_topics_enable = parse_bool(key, v)?,
            // The broker defaults of topic configs are checked as the topic
            // configs they default (`log::topic_config::parse`).
            "message.max.bytes" => {
                self.message_max_bytes = log_key(key, v, "max.message.bytes")?.max_message_bytes
            }
            "log.segment.bytes" => {
                self.log_segment_bytes = log_key(key, v, "segment.bytes")?.segment_bytes
            }
            "log.roll.ms" => self.log_roll_ms = log_key(key, v, "segment.ms")?.segment_ms,
            "log.roll.hours" => {
                self.log_roll_ms = i64::from(parse_min::<i32>(key, v, 1)?) * 3_600_000
            }
            "log.index.interval.bytes" => {
                self.log_index_interval_bytes =
                    log_key(key, v, "index.interval.bytes")?.index_interval_bytes
            }
            "log.index.size.max.bytes" => {
                self.log_index_size_max_bytes =
                    log_key(key, v, "segment.index.bytes")?.segment_index_bytes
            }
            "log.flush.interval.messages" => {
                self.log_flush_interval_messages = log_key(key, v, "flush.messages")?.flush_messages
            }
            "log.flush.interval.ms" => {
                self.log_flush_interval_ms = log_key(key, v, "flush.ms")?.flush_ms
            }
            "log.flush.scheduler.interval.ms" => {
                self.log_flush_scheduler_interval_ms = parse_min(key, v, 1)?
            }
            // Kafka takes any negative retention time as unlimited (-1).
            "log.retention.ms" => self.log_retention_ms = parse::<i64>(key, v)?.max(-1),
            "log.retention.minutes" => {
                self.log_retention_ms = (i64::from(parse::<i32>(key, v)?) * 60_000).max(-1)
            }
            "log.retention.hours" => {
                self.log_retention_ms = (i64::from(parse::<i32>(key, v)?) * 3_600_000).max(-1)
            }
            "log.retention.bytes" => {
                self.log_retention_bytes = log_key(key, v, "retention.bytes")?.retention_bytes
            }
            "log.cleanup.policy" => {
                topic_value(key, v, "cleanup.policy")?;
                self.log_cleanup_policy = v.to_string();
            }
            "log.message.timestamp.type" => {
                topic_value(key, v, "message.timestamp.type")?;
                self.log_message_timestamp_type = v.to_string();
            }
            "min.insync.replicas" => {
                self.min_insync_replicas =
                    i32::try_from(topic_value(key, v, "min.insync.replicas")?.number())
                        .expect("an INT config fits i32")
            }
            "log.retention.check.interval.ms" => {
                self.log_retention_check_interval_ms = parse_min(key, v, 1)?
            }
            "log.cleaner.enable" => self.log_cleaner_enable = parse_bool(key, v)?,
            "log.cleaner.backoff.ms" => self.log_cleaner_backoff_ms = parse_min(key, v, 0)?,
            "log.cleaner.delete.retention.ms" => {
                self.log_cleaner_delete_retention_ms =
                    log_key(key, v, "delete.retention.ms")?.delete_retention_ms
            }
            "log.cleaner.min.cleanable.ratio" => {
                self.log_cleaner_min_cleanable_ratio =
                    log_key(key, v, "min.cleanable.dirty.ratio")?.min_cleanable_dirty_ratio
            }
            "log.cleaner.min.compaction.lag.ms" => {
                self.log_cleaner_min_compaction_lag_ms =
                    log_key(key, v, "min.compaction.lag.ms")?.min_compaction_lag_ms
            }
            "compression.type" => {
                log_key(key, v, "compression.type")?;
                self.compression_type = v.to_string();
            }
            "socket.request.max.bytes" => self.socket_request_max_bytes = parse_min(key, v, 1)?,
            _ => {
                tracing::warn!(key, value = v, "unknown config key kept as is");
                self.extra.insert(key.to_string(), v.to_string());
            }
        }
        // Record the canonical key, so an alias (log.retention.hours) marks the
        // config DescribeConfigs reports (log.retention.ms) as statically set.
        let canonical = match key {
            "broker.id" => "node.id",
            "log.dir" => "log.dirs",
            "log.roll.hours" => "log.roll.ms",
            "log.retention.minutes" | "log.retention.hours" => "log.retention.ms",
            other => other,
        };
        self.explicit.insert(canonical.to_string());
        Ok(())
    }

    /// The address the broker binds for clients, e.g. "127.0.0.1:9092": the
    /// first listener that is not a controller listener.
    pub fn listen_addr(&self) -> String {
        self.listener_entries()
            .into_iter()
            .find(|(name, _)| !self.is_controller_listener(name))
            .map(|(_, hp)| hp)
            .unwrap_or_else(|| "127.0.0.1:9092".to_string())
    }

    /// The controller listener's `host:port` from `listeners`, if there is one.
    pub fn controller_listen_addr(&self) -> Option<String> {
        self.listener_entries()
            .into_iter()
            .find(|(name, _)| self.is_controller_listener(name))
            .map(|(_, hp)| hp)
    }

    /// `listeners` as (name, host:port); an unnamed entry is PLAINTEXT.
    fn listener_entries(&self) -> Vec<(String, String)> {
        self.listeners
            .split(',')
            .filter_map(|l| {
                let l = l.trim();
                let name = l.split_once("://").map_or("PLAINTEXT", |(n, _)| n);
                Some((name.to_string(), listener_host_port(l)?))
            })
            .collect()
    }

    fn is_controller_listener(&self, name: &str) -> bool {
        self.controller_listener_names
            .split(',')
            .any(|n| n.trim().eq_ignore_ascii_case(name))
    }

    /// The controller quorum: every voter's node id and controller address;
    /// in single-node mode this node alone, with no address (it never dials).
    pub fn voters(&self) -> Vec<(i32, String)> {
        if self.controller_quorum_voters.is_empty() {
            vec![(self.node_id, String::new())]
        } else {
            self.controller_quorum_voters.clone()
        }
    }

    /// Whether this node is a voter of the controller quorum.
    pub fn is_controller(&self) -> bool {
        self.process_roles.controller
    }

    /// Whether this node hosts partitions and serves clients.
    pub fn is_broker(&self) -> bool {
        self.process_roles.broker
    }

    /// The advertised `host:port`, if configured.
    pub fn advertised_addr(&self) -> Option<String> {
        self.advertised_listeners
            .as_deref()
            .and_then(listener_host_port)
    }

    /// Where logs and broker metadata live (the first of log.dirs).
    pub fn data_dir(&self) -> PathBuf {
        self.log_dirs
            .first()
            .cloned()
            .unwrap_or_else(|| PathBuf::from("./weir-data"))
    }

    /// Every broker config this server reports through DescribeConfigs:
    /// (key, value, explicitly set).
    pub fn broker_configs(&self) -> Vec<(String, String, bool)> {
        let mut out: Vec<(String, String)> = vec![
            ("node.id".into(), self.node_id.to_string()),
            ("broker.id".into(), self.node_id.to_string()),
            ("listeners".into(), self.listeners.clone()),
            (
                "advertised.listeners".into(),
                self.advertised_listeners.clone().unwrap_or_default(),
            ),
            (
                "log.dirs".into(),
                self.log_dirs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("num.partitions".into(), self.num_partitions.to_string()),
            (
                "default.replication.factor".into(),
                self.default_replication_factor.to_string(),
            ),
            (
                "auto.create.topics.enable".into(),
                self.auto_create_topics_enable.to_string(),
            ),
            (
                "message.max.bytes".into(),
                self.message_max_bytes.to_string(),
            ),
            (
                "log.segment.bytes".into(),
                self.log_segment_bytes.to_string(),
            ),
            ("log.roll.ms".into(), self.log_roll_ms.to_string()),
            (
                "log.index.interval.bytes".into(),
                self.log_index_interval_bytes.to_string(),
            ),
            (
                "log.index.size.max.bytes".into(),
                self.log_index_size_max_bytes.to_string(),
            ),
            (
                "log.flush.interval.messages".into(),
                never_u64(self.log_flush_interval_messages),
            ),
            (
                "log.flush.interval.ms".into(),
                never_i64(self.log_flush_interval_ms),
            ),
            (
                "log.flush.scheduler.interval.ms".into(),
                self.log_flush_scheduler_interval_ms.to_string(),
            ),
            ("log.retention.ms".into(), self.log_retention_ms.to_string()),
            (
                "log.retention.bytes".into(),
                self.log_retention_bytes.to_string(),
            ),
            ("log.cleanup.policy".into(), self.log_cleanup_policy.clone()),
            (
                "log.message.timestamp.type".into(),
                self.log_message_timestamp_type.clone(),
            ),
            (
                "min.insync.replicas".into(),
                self.min_insync_replicas.to_string(),
            ),
            (
                "log.retention.check.interval.ms".into(),
                self.log_retention_check_interval_ms.to_string(),
            ),
            (
                "log.cleaner.enable".into(),
                self.log_cleaner_enable.to_string(),
            ),
            (
                "log.cleaner.backoff.ms".into(),
                self.log_cleaner_backoff_ms.to_string(),
            ),
            (
                "log.cleaner.delete.retention.ms".into(),
                self.log_cleaner_delete_retention_ms.to_string(),
            ),
            (
                "log.cleaner.min.cleanable.ratio".into(),
                self.log_cleaner_min_cleanable_ratio.to_string(),
            ),
            (
                "log.cleaner.min.compaction.lag.ms".into(),
                self.log_cleaner_min_compaction_lag_ms.to_string(),
            ),
            ("compression.type".into(), self.compression_type.clone()),
            (
                "socket.request.max.bytes".into(),
                self.socket_request_max_bytes.to_string(),
            ),
            ("process.roles".into(), self.process_roles.to_string()),
            (
                "controller.quorum.voters".into(),
                self.controller_quorum_voters
                    .iter()
                    .map(|(id, hp)| format!("{id}@{hp}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            (
                "controller.listener.names".into(),
                self.controller_listener_names.clone(),
            ),
            (
                "broker.rack".into(),
                self.broker_rack.clone().unwrap_or_default(),
            ),
            (
                "broker.session.timeout.ms".into(),
                self.broker_session_timeout_ms.to_string(),
            ),
            (
                "broker.heartbeat.interval.ms".into(),
                self.broker_heartbeat_interval_ms.to_string(),
            ),
            (
                "replica.lag.time.max.ms".into(),
                self.replica_lag_time_max_ms.to_string(),
            ),
            (
                "replica.fetch.wait.max.ms".into(),
                self.replica_fetch_wait_max_ms.to_string(),
            ),
            (
                "replica.fetch.max.bytes".into(),
                self.replica_fetch_max_bytes.to_string(),
            ),
            (
                "replica.socket.timeout.ms".into(),
                self.replica_socket_timeout_ms.to_string(),
            ),
            (
                "replica.fetch.response.max.bytes".into(),
                self.replica_fetch_response_max_bytes.to_string(),
            ),
            (
                "replica.fetch.backoff.ms".into(),
                self.replica_fetch_backoff_ms.to_string(),
            ),
            (
                "replica.high.watermark.checkpoint.interval.ms".into(),
                self.replica_high_watermark_checkpoint_interval_ms
                    .to_string(),
            ),
            (
                "unclean.leader.election.enable".into(),
                self.unclean_leader_election_enable.to_string(),
            ),
            (
                "offsets.topic.replication.factor".into(),
                self.offsets_topic_replication_factor.to_string(),
            ),
            (
                "offsets.topic.segment.bytes".into(),
                self.offsets_topic_segment_bytes.to_string(),
            ),
        ];
        for (k, v) in &self.extra {
            out.push((k.clone(), v.clone()));
        }
        out.sort();
        out.into_iter()
            .map(|(k, v)| {
                let explicit = self.explicit.contains(&k)
                    || (k == "broker.id" && self.explicit.contains("node.id"))
                    || (k == "node.id" && self.explicit.contains("broker.id"));
                (k, v, explicit)
            })
            .collect()
    }

    /// Every topic config with its broker-derived default: (topic key,
    /// default value, broker key it comes from).
    pub fn topic_defaults(&self) -> Vec<(&'static str, String, &'static str)> {
        let mut out = vec![
            (
                "cleanup.policy",
                self.log_cleanup_policy.clone(),
                "log.cleanup.policy",
            ),
            (
                "compression.type",
                self.compression_type.clone(),
                "compression.type",
            ),
            (
                "delete.retention.ms",
                self.log_cleaner_delete_retention_ms.to_string(),
                "log.cleaner.delete.retention.ms",
            ),
            (
                "min.cleanable.dirty.ratio",
                self.log_cleaner_min_cleanable_ratio.to_string(),
                "log.cleaner.min.cleanable.ratio",
            ),
            (
                "min.compaction.lag.ms",
                self.log_cleaner_min_compaction_lag_ms.to_string(),
                "log.cleaner.min.compaction.lag.ms",
            ),
            (
                "flush.messages",
                never_u64(self.log_flush_interval_messages),
                "log.flush.interval.messages",
            ),
            (
                "flush.ms",
                never_i64(self.log_flush_interval_ms),
                "log.flush.interval.ms",
            ),
            (
                "index.interval.bytes",
                self.log_index_interval_bytes.to_string(),
                "log.index.interval.bytes",
            ),
            (
                "max.message.bytes",
                self.message_max_bytes.to_string(),
                "message.max.bytes",
            ),
            (
                "message.timestamp.type",
                self.log_message_timestamp_type.clone(),
                "log.message.timestamp.type",
            ),
            (
                "min.insync.replicas",
                self.min_insync_replicas.to_string(),
                "min.insync.replicas",
            ),
            (
                "retention.bytes",
                self.log_retention_bytes.to_string(),
                "log.retention.bytes",
            ),
            (
                "retention.ms",
                self.log_retention_ms.to_string(),
                "log.retention.ms",
            ),
            (
                "segment.bytes",
                self.log_segment_bytes.to_string(),
                "log.segment.bytes",
            ),
            (
                "segment.index.bytes",
                self.log_index_size_max_bytes.to_string(),
                "log.index.size.max.bytes",
            ),
            ("segment.ms", self.log_roll_ms.to_string(), "log.roll.ms"),
            (
                "unclean.leader.election.enable",
                self.unclean_leader_election_enable.to_string(),
                "unclean.leader.election.enable",
            ),
        ];
        out.sort_by(|a, b| a.0.cmp(b.0));
        out
    }

    /// Check one topic config override against Kafka's type and bounds for
    /// its key (`log::topic_config::parse`, the one validator).
    pub fn validate_topic_config(&self, key: &str, value: &str) -> Result<(), ConfigError> {
        topic_config::parse(key, value)?;
        Ok(())
    }

    /// The log settings for a topic: broker defaults, then the topic's overrides.
    pub fn log_config_for(
        &self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<LogConfig, ConfigError> {
        let mut config = LogConfig {
            segment_bytes: self.log_segment_bytes,
            segment_ms: self.log_roll_ms,
            index_interval_bytes: self.log_index_interval_bytes,
            segment_index_bytes: self.log_index_size_max_bytes,
            flush_messages: self.log_flush_interval_messages,
            flush_ms: self.log_flush_interval_ms,
            max_message_bytes: self.message_max_bytes,
            log_append_time: self.log_message_timestamp_type == "LogAppendTime",
            retention_ms: self.log_retention_ms,
            retention_bytes: self.log_retention_bytes,
            delete_retention_ms: self.log_cleaner_delete_retention_ms,
            min_cleanable_dirty_ratio: self.log_cleaner_min_cleanable_ratio,
            min_compaction_lag_ms: self.log_cleaner_min_compaction_lag_ms,
            ..LogConfig::default()
        };
        // Validated when set: these parse.
        config.set("cleanup.policy", &self.log_cleanup_policy)?;
        config.set("compression.type", &self.compression_type)?;
        // Overrides come from the metadata log, where an older version's
        // validation may have let through what today's refuses (topic
        // compression.type=none, flush.messages=0). Refusing them here would
        // keep the partition from opening at all; as Kafka does with a
        // stored config it cannot parse, the broker's value stands instead.
        for (k, v) in overrides {
            if let Err(e) = config.set(k, v) {
                tracing::warn!(key = %k, value = %v, error = %e, "ignoring an invalid stored topic config; the broker default applies");
            }
        }
        Ok(config)
    }
}

/// Which parts of Weir a node runs (process.roles).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcessRoles {
    pub broker: bool,
    pub controller: bool,
}

impl ProcessRoles {
    pub const BOTH: ProcessRoles = ProcessRoles {
        broker: true,
        controller: true,
    };

    fn parse(v: &str) -> Option<ProcessRoles> {
        let mut roles = ProcessRoles {
            broker: false,
            controller: false,
        };
        for r in v.split(',').map(str::trim) {
            match r {
                "broker" => roles.broker = true,
                "controller" => roles.controller = true,
                _ => return None,
            }
        }
        (roles.broker || roles.controller).then_some(roles)
    }
}

/// `1@host:9093,2@host:9093`: distinct node ids, each with a host:port.
fn parse_voters(v: &str) -> Result<Vec<(i32, String)>, &'static str> {
    let mut voters: Vec<(i32, String)> = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, hp) = entry.split_once('@').ok_or("expected id@host:port")?;
        let id: i32 = id
            .trim()
            .parse()
            .map_err(|_| "a voter id is not a number")?;
        if id < 0 {
            return Err("voter ids are non-negative");
        }
        let (host, port) = hp.rsplit_once(':').ok_or("expected id@host:port")?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err("expected id@host:port");
        }
        if voters.iter().any(|(v, _)| *v == id) {
            return Err("a voter id appears twice");
        }
        voters.push((id, hp.to_string()));
    }
    if voters.is_empty() {
        return Err("no voters");
    }
    voters.sort();
    Ok(voters)
}

/// `PLAINTEXT://host:port`, `host:port` or a comma list of them -> the first `host:port`.
impl std::fmt::Display for ProcessRoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.broker, self.controller) {
            (true, true) => f.write_str("broker,controller"),
            (true, false) => f.write_str("broker"),
            _ => f.write_str("controller"),
        }
    }
}

fn listener_host_port(v: &str) -> Option<String> {
    let first = v.split(',').next()?.trim();
    let hp = match first.find("://") {
        Some(i) => &first[i + 3..],
        None => first,
    };
    let (host, port) = hp.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    // Kafka's `PLAINTEXT://:9092` means every interface.
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Some(format!("{host}:{port}"))
}

/// Parse a broker key through the topic key it defaults, into a LogConfig
/// whose `topic_key` field holds it (one place converts each value).
fn log_key(key: &str, v: &str, topic_key: &str) -> Result<LogConfig, ConfigError> {
    let mut c = LogConfig::default();
    c.set(topic_key, v)
        .map_err(|e| broker_key_error(key, v, e))?;
    Ok(c)
}

/// Check a broker key as the topic key it defaults (`topic_config::parse`).
fn topic_value(key: &str, v: &str, topic_key: &str) -> Result<TopicConfigValue, ConfigError> {
    topic_config::parse(topic_key, v).map_err(|e| broker_key_error(key, v, e))
}

/// A topic config's complaint, told about the broker key that was set.
fn broker_key_error(key: &str, v: &str, e: topic_config::ConfigError) -> ConfigError {
    match e {
        topic_config::ConfigError::InvalidValue { why, .. } => invalid(key, v, &why),
        other => invalid(key, v, &other.to_string()),
    }
}

impl From<topic_config::ConfigError> for ConfigError {
    fn from(e: topic_config::ConfigError) -> Self {
        match e {
            topic_config::ConfigError::UnknownKey(k) => ConfigError::UnknownTopicConfig(k),
            topic_config::ConfigError::InvalidValue { key, value, why } => {
                ConfigError::InvalidValue {
                    key,
                    value,
                    reason: why,
                }
            }
        }
    }
}

fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn parse<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    v.parse::<T>().map_err(|e| invalid(key, v, &e.to_string()))
}

fn parse_min<T>(key: &str, v: &str, min: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    T::Err: std::fmt::Display,
{
    let x: T = parse(key, v)?;
    if x < min {
        return Err(invalid(key, v, &format!("must be at least {min}")));
    }
    Ok(x)
}

fn never_u64(v: u64) -> String {
    if v == u64::MAX {
        i64::MAX.to_string()
    } else {
        v.to_string()
    }
}

fn never_i64(v: i64) -> String {
    v.to_string()
}

fn parse_bool(key: &str, v: &str) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, v, "expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_properties_and_listener_forms() {
        let c = ServerConfig::parse_properties(
            "# comment\nnode.id=3\nlisteners=PLAINTEXT://0.0.0.0:19092\nlog.dirs=/tmp/a,/tmp/b\n\
             num.partitions = 4\nlog.retention.hours=1\nsome.unknown=x\n",
        )
        .unwrap();
        assert_eq!(c.node_id, 3);
        assert_eq!(c.listen_addr(), "0.0.0.0:19092");
        assert_eq!(c.data_dir(), PathBuf::from("/tmp/a"));
        assert_eq!(c.num_partitions, 4);
        assert_eq!(c.log_retention_ms, 3_600_000);
        assert_eq!(c.extra.get("some.unknown").map(String::as_str), Some("x"));
        let mut d = ServerConfig::default_single_node();
        d.set("listeners", "127.0.0.1:0").unwrap();
        assert_eq!(d.listen_addr(), "127.0.0.1:0");
        assert_eq!(
            ServerConfig::default_single_node().listen_addr(),
            "127.0.0.1:9092"
        );
    }

    #[test]
    fn rejects_bad_values() {
        let mut c = ServerConfig::default_single_node();
        assert!(c.set("num.partitions", "0").is_err());
        assert!(c.set("auto.create.topics.enable", "maybe").is_err());
        assert!(c.set("listeners", "nope").is_err());
        assert!(ServerConfig::parse_properties("justakey").is_err());
        assert!(c.set("replica.fetch.backoff.ms", "-1").is_err());
        assert!(c.set("replica.fetch.response.max.bytes", "big").is_err());
    }

    #[test]
    fn replica_fetch_keys_are_typed() {
        let mut c = ServerConfig::default_single_node();
        c.set("replica.fetch.backoff.ms", "20").unwrap();
        c.set("replica.fetch.response.max.bytes", "4096").unwrap();
        c.set("replica.high.watermark.checkpoint.interval.ms", "250")
            .unwrap();
        assert!(c.extra.is_empty(), "known keys are not kept as unknown");
        let r = crate::replica::ReplicaSettings::from_config(&c);
        assert_eq!(r.fetch_backoff_ms, 20);
        assert_eq!(r.fetch_response_max_bytes, 4096);
        assert_eq!(r.hw_checkpoint_interval_ms, 250);
    }

    #[test]
    fn topic_overrides_apply_over_broker_defaults() {
        let mut c = ServerConfig::default_single_node();
        c.set("log.segment.bytes", "1000").unwrap();
        let mut o = BTreeMap::new();
        o.insert("flush.messages".to_string(), "1".to_string());
        let lc = c.log_config_for(&o).unwrap();
        assert_eq!(lc.segment_bytes, 1000);
        assert_eq!(lc.flush_messages, 1);
        assert!(c.validate_topic_config("nope", "1").is_err());
        assert!(c.validate_topic_config("retention.ms", "abc").is_err());
        assert!(c.validate_topic_config("retention.ms", "1000").is_ok());
    }

    /// A stored override today's validator refuses (an older version let it
    /// into the metadata log) does not keep the partition from opening: the
    /// broker's value stands, the valid overrides still apply.
    #[test]
    fn invalid_stored_overrides_fall_back_to_the_broker_value() {
        let mut c = ServerConfig::default_single_node();
        c.set("log.flush.interval.messages", "7").unwrap();
        let defaults = c.log_config_for(&BTreeMap::new()).unwrap();
        let o = BTreeMap::from([
            ("flush.messages".to_string(), "0".to_string()),
            ("compression.type".to_string(), "none".to_string()),
            ("retention.ms".to_string(), "1000".to_string()),
        ]);
        let lc = c.log_config_for(&o).unwrap();
        assert_eq!(lc.flush_messages, 7);
        assert_eq!(lc.compression_type, defaults.compression_type);
        assert_eq!(lc.retention_ms, 1000);
    }

    /// DescribeConfigs, IncrementalAlterConfigs and the validator know the
    /// same keys, and every broker-derived default is a valid topic value.
    #[test]
    fn topic_defaults_cover_the_validators_keys() {
        let c = ServerConfig::default_single_node();
        let defaults = c.topic_defaults();
        let keys: Vec<&str> = defaults.iter().map(|(k, _, _)| *k).collect();
        let table: Vec<&str> = topic_config::TOPIC_CONFIGS
            .iter()
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(keys, table);
        for (k, v, _) in &defaults {
            c.validate_topic_config(k, v)
                .unwrap_or_else(|e| panic!("default {k}={v}: {e}"));
        }
    }

    /// One validator: a topic override and the broker key that defaults it
    /// accept and refuse the same values (Kafka's bounds).
    #[test]
    fn broker_defaults_and_topic_overrides_share_bounds() {
        let pairs = [
            ("log.flush.interval.messages", "flush.messages", "0", "1"),
            ("log.index.size.max.bytes", "segment.index.bytes", "3", "4"),
            (
                "log.index.interval.bytes",
                "index.interval.bytes",
                "-1",
                "0",
            ),
            ("log.segment.bytes", "segment.bytes", "13", "14"),
            (
                "message.max.bytes",
                "max.message.bytes",
                "2147483648",
                "2147483647",
            ),
            ("log.roll.ms", "segment.ms", "0", "1"),
            ("log.flush.interval.ms", "flush.ms", "-1", "0"),
            ("log.cleanup.policy", "cleanup.policy", "shred", "compact"),
            (
                "log.message.timestamp.type",
                "message.timestamp.type",
                "Now",
                "LogAppendTime",
            ),
            ("min.insync.replicas", "min.insync.replicas", "0", "1"),
            ("compression.type", "compression.type", "none", "zstd"),
            (
                "unclean.leader.election.enable",
                "unclean.leader.election.enable",
                "maybe",
                "TRUE",
            ),
            (
                "log.cleaner.delete.retention.ms",
                "delete.retention.ms",
                "-1",
                "0",
            ),
            (
                "log.cleaner.min.cleanable.ratio",
                "min.cleanable.dirty.ratio",
                "1.5",
                "1",
            ),
            (
                "log.cleaner.min.compaction.lag.ms",
                "min.compaction.lag.ms",
                "-1",
                "0",
            ),
        ];
        for (broker_key, topic_key, bad, good) in pairs {
            let c = ServerConfig::default_single_node();
            assert!(
                c.validate_topic_config(topic_key, bad).is_err(),
                "{topic_key}={bad}"
            );
            assert!(
                c.validate_topic_config(topic_key, good).is_ok(),
                "{topic_key}={good}"
            );
            let mut b = ServerConfig::default_single_node();
            let e = b.set(broker_key, bad).expect_err(broker_key);
            assert!(e.to_string().contains(broker_key), "{e}");
            b.set(broker_key, good)
                .unwrap_or_else(|e| panic!("{broker_key}={good}: {e}"));
            // What the broker took becomes a valid topic default.
            b.log_config_for(&BTreeMap::new())
                .unwrap_or_else(|e| panic!("{broker_key}={good}: {e}"));
        }
        let mut b = ServerConfig::default_single_node();
        b.set("unclean.leader.election.enable", "TRUE").unwrap();
        assert!(b.unclean_leader_election_enable);
        b.set("log.flush.interval.messages", "9223372036854775807")
            .unwrap();
        assert_eq!(b.log_flush_interval_messages, u64::MAX);
        b.set("log.index.size.max.bytes", "4").unwrap();
        assert_eq!(
            b.log_config_for(&BTreeMap::new())
                .unwrap()
                .segment_index_bytes,
            4
        );
        // Negative retention times are unlimited, as Kafka reads them.
        b.set("log.retention.hours", "-1").unwrap();
        assert_eq!(b.log_retention_ms, -1);
        b.set("log.retention.minutes", "2").unwrap();
        assert_eq!(b.log_retention_ms, 120_000);
        assert!(b.set("log.retention.hours", "2147483648").is_err());
    }

    #[test]
    fn offsets_topic_segment_bytes_is_typed_and_described() {
        let mut c = ServerConfig::default_single_node();
        assert_eq!(
            c.offsets_topic_segment_bytes, 104_857_600,
            "Kafka's default"
        );
        assert!(c.set("offsets.topic.segment.bytes", "13").is_err());
        assert!(c.set("offsets.topic.segment.bytes", "lots").is_err());
        c.set("offsets.topic.segment.bytes", "4096").unwrap();
        assert_eq!(c.offsets_topic_segment_bytes, 4096);
        assert!(c.extra.is_empty(), "a typed key is not kept as unknown");
        let described = c
            .broker_configs()
            .into_iter()
            .find(|(k, _, _)| k == "offsets.topic.segment.bytes")
            .expect("described");
        assert_eq!(
            described,
            ("offsets.topic.segment.bytes".into(), "4096".into(), true)
        );
    }
}

#[cfg(test)]
mod cluster_tests {
    use super::*;

    #[test]
    fn a_three_node_cluster_file() {
        let c = ServerConfig::parse_properties(
            "process.roles=broker,controller\n\
             node.id=2\n\
             listeners=PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093\n\
             controller.listener.names=CONTROLLER\n\
             controller.quorum.voters=3@127.0.0.1:29093,1@127.0.0.1:9093,2@127.0.0.1:19093\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             broker.rack=r1\n\
             unclean.leader.election.enable=true\n",
        )
        .unwrap();
        assert_eq!(c.listen_addr(), "127.0.0.1:19092");
        assert_eq!(
            c.controller_listen_addr().as_deref(),
            Some("127.0.0.1:19093")
        );
        assert_eq!(
            c.voters(),
            vec![
                (1, "127.0.0.1:9093".to_string()),
                (2, "127.0.0.1:19093".to_string()),
                (3, "127.0.0.1:29093".to_string())
            ]
        );
        assert!(c.is_broker() && c.is_controller());
        assert_eq!(c.broker_rack.as_deref(), Some("r1"));
        assert!(c.unclean_leader_election_enable);
    }

    #[test]
    fn single_node_defaults_and_bad_values() {
        let c = ServerConfig::default_single_node();
        assert_eq!(c.voters(), vec![(1, String::new())]);
        assert_eq!(c.controller_listen_addr(), None);
        let mut c = ServerConfig::default_single_node();
        for (k, v) in [
            ("controller.quorum.voters", "1@a"),
            ("controller.quorum.voters", "1@a:1,1@b:2"),
            ("controller.quorum.voters", "x@a:1"),
            ("process.roles", "leader"),
            ("listeners", "PLAINTEXT://a:1,CONTROLLER://b"),
            ("unclean.leader.election.enable", "maybe"),
        ] {
            assert!(c.set(k, v).is_err(), "{k}={v} must be refused");
        }
        c.set("process.roles", "controller").unwrap();
        assert!(c.is_controller() && !c.is_broker());
    }
}

//! Group consumer settings, under Kafka's names: `group.id`,
//! `partition.assignment.strategy`, `enable.auto.commit`,
//! `auto.commit.interval.ms`, `auto.offset.reset`, `session.timeout.ms`,
//! `heartbeat.interval.ms`, `max.poll.interval.ms` (the rebalance timeout)
//! and `group.instance.id`. Anything else goes to the fetcher's
//! [`ConsumerConfig`].

use std::sync::Arc;

use crate::client::assignor::{self, Assignor, RebalanceProtocol};
use crate::client::consumer::{ConsumerConfig, OffsetReset};
use crate::client::error::ClientError;
use crate::env::time::Duration;

#[derive(Clone)]
pub struct GroupConfig {
    /// group.id
    pub group_id: String,
    /// partition.assignment.strategy: the assignors offered in JoinGroup, in
    /// preference order; the coordinator picks one every member offers.
    pub assignors: Vec<Arc<dyn Assignor>>,
    /// enable.auto.commit (Kafka's default: true).
    pub enable_auto_commit: bool,
    /// auto.commit.interval.ms (Kafka's default: 5 s).
    pub auto_commit_interval: Duration,
    /// auto.offset.reset: where to start a partition the group never
    /// committed; `None` makes that an error.
    pub auto_offset_reset: OffsetReset,
    /// session.timeout.ms
    pub session_timeout: Duration,
    /// heartbeat.interval.ms
    pub heartbeat_interval: Duration,
    /// max.poll.interval.ms, sent as the rebalance timeout.
    pub rebalance_timeout: Duration,
    /// group.instance.id (static membership).
    pub group_instance_id: Option<String>,
    /// Fetch settings for the partitions the member is assigned.
    pub consumer: ConsumerConfig,
}

impl std::fmt::Debug for GroupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupConfig")
            .field("group_id", &self.group_id)
            .field(
                "assignors",
                &self.assignors.iter().map(|a| a.name()).collect::<Vec<_>>(),
            )
            .field("enable_auto_commit", &self.enable_auto_commit)
            .field("auto_commit_interval", &self.auto_commit_interval)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("session_timeout", &self.session_timeout)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("rebalance_timeout", &self.rebalance_timeout)
            .field("group_instance_id", &self.group_instance_id)
            .finish()
    }
}

/// Auto-commit interval limit: commits less often than this are a mistake.
const AUTO_COMMIT_INTERVAL_MS_MAX: u64 = 24 * 3600 * 1000;

impl GroupConfig {
    /// Kafka's consumer defaults (assignors `range, cooperative-sticky`,
    /// auto-commit every 5 s, `latest`), with a 10 s session.
    pub fn new(group_id: &str) -> GroupConfig {
        GroupConfig {
            group_id: group_id.to_string(),
            assignors: vec![
                Arc::new(assignor::RangeAssignor),
                Arc::new(assignor::CooperativeStickyAssignor),
            ],
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_millis(5_000),
            auto_offset_reset: OffsetReset::Latest,
            session_timeout: Duration::from_millis(10_000),
            heartbeat_interval: Duration::from_millis(2_000),
            rebalance_timeout: Duration::from_millis(60_000),
            group_instance_id: None,
            consumer: ConsumerConfig::default(),
        }
    }

    /// The rebalance protocol the configured assignors allow.
    pub fn rebalance_protocol(&self) -> RebalanceProtocol {
        assignor::rebalance_protocol(&self.assignors)
    }

    /// Parse a `partition.assignment.strategy` list (comma separated).
    pub fn set_assignors(&mut self, list: &str) -> Result<(), ClientError> {
        let mut out: Vec<Arc<dyn Assignor>> = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let a = assignor::by_name(name).ok_or_else(|| {
                ClientError::Config(format!(
                    "unknown assignor '{name}' (range, roundrobin, sticky, cooperative-sticky)"
                ))
            })?;
            if !out.iter().any(|o| o.name() == a.name()) {
                out.push(a);
            }
        }
        if out.is_empty() {
            return Err(ClientError::Config(
                "partition.assignment.strategy names no assignor".to_string(),
            ));
        }
        self.assignors = out;
        Ok(())
    }

    /// Apply one Kafka-named property.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ClientError> {
        let ms = |v: &str| -> Result<Duration, ClientError> {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| {
                    ClientError::Config(format!("{key} must be a non-negative integer, got '{v}'"))
                })
        };
        match key {
            "group.id" => self.group_id = value.to_string(),
            "partition.assignment.strategy" => self.set_assignors(value)?,
            "enable.auto.commit" => {
                self.enable_auto_commit = match value.trim() {
                    "true" => true,
                    "false" => false,
                    v => {
                        return Err(ClientError::Config(format!(
                            "enable.auto.commit must be true or false, got '{v}'"
                        )))
                    }
                }
            }
            "auto.commit.interval.ms" => {
                let d = ms(value)?;
                if d.is_zero() || d.as_millis() as u64 > AUTO_COMMIT_INTERVAL_MS_MAX {
                    return Err(ClientError::Config(format!(
                        "auto.commit.interval.ms must be 1..={AUTO_COMMIT_INTERVAL_MS_MAX}"
                    )));
                }
                self.auto_commit_interval = d;
            }
            "auto.offset.reset" => {
                self.consumer.set(key, value)?;
                self.auto_offset_reset = self.consumer.auto_offset_reset;
            }
            "session.timeout.ms" => self.session_timeout = ms(value)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = ms(value)?,
            "max.poll.interval.ms" => self.rebalance_timeout = ms(value)?,
            "group.instance.id" => {
                self.group_instance_id = (!value.is_empty()).then(|| value.to_string())
            }
            _ => self.consumer.set(key, value)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_and_defaults() {
        let mut c = GroupConfig::new("g");
        assert_eq!(c.rebalance_protocol(), RebalanceProtocol::Eager);
        c.set(
            "partition.assignment.strategy",
            "org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
        )
        .unwrap();
        assert_eq!(c.rebalance_protocol(), RebalanceProtocol::Cooperative);
        c.set("partition.assignment.strategy", "roundrobin, sticky")
            .unwrap();
        let names: Vec<&str> = c.assignors.iter().map(|a| a.name()).collect();
        assert_eq!(names, vec!["roundrobin", "sticky"]);
        assert!(c.set("partition.assignment.strategy", "nope").is_err());
        c.set("enable.auto.commit", "false").unwrap();
        assert!(!c.enable_auto_commit);
        c.set("auto.offset.reset", "none").unwrap();
        assert_eq!(c.auto_offset_reset, OffsetReset::None);
        c.set("fetch.max.wait.ms", "100").unwrap();
        assert_eq!(c.consumer.fetch_max_wait, Duration::from_millis(100));
        assert!(c.set("auto.commit.interval.ms", "0").is_err());
        assert!(c.set("bogus", "1").is_err());
    }
}

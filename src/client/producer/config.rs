//! Producer settings, by their Kafka names.

use kafka_protocol::records::Compression;

use crate::client::error::ClientError;
use crate::client::records::parse_compression;
use crate::env::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// acks=0: fire and forget, no offsets come back.
    None,
    /// acks=1: the leader appended.
    Leader,
    /// acks=all (-1): every in-sync replica appended.
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }

    pub fn parse(s: &str) -> Result<Acks, ClientError> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(ClientError::Config(format!(
                "acks must be 0, 1 or all, got '{other}'"
            ))),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    /// How long a partial batch waits for more records (linger.ms).
    pub linger: Duration,
    /// Close a batch at this many bytes (batch.size). Weir's default is
    /// 256 KiB, larger than Kafka's 16 KiB: a produce request carries one
    /// batch per partition, so small batches cap single-partition throughput.
    pub batch_size: usize,
    /// Bytes of records buffered before send() waits (buffer.memory).
    pub buffer_memory: usize,
    /// Largest request (and record) we send (max.request.size).
    pub max_request_size: usize,
    pub retries: u32,
    pub retry_backoff: Duration,
    /// Give up on a record this long after send() (delivery.timeout.ms).
    pub delivery_timeout: Duration,
    pub request_timeout: Duration,
    /// Batches in flight per partition (max.in.flight.requests.per.connection).
    pub max_in_flight: usize,
    /// `None`: on when acks=all and the broker supports InitProducerId.
    pub enable_idempotence: Option<bool>,
    pub compression: Compression,
    pub client_id: String,
    pub allow_auto_topic_creation: bool,
    /// transactional.id: makes the producer transactional (and idempotent).
    pub transactional_id: Option<String>,
    /// transaction.timeout.ms: the coordinator aborts a transaction open
    /// this long.
    pub transaction_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 256 * 1024,
            buffer_memory: 64 * 1024 * 1024,
            max_request_size: 1024 * 1024,
            retries: i32::MAX as u32,
            retry_backoff: Duration::from_millis(100),
            delivery_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
            max_in_flight: 5,
            enable_idempotence: None,
            compression: Compression::None,
            client_id: "weir-producer".to_string(),
            allow_auto_topic_creation: true,
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
        }
    }
}

impl ProducerConfig {
    /// Apply one Kafka-named property. Unknown keys are an error so a typo
    /// does not silently fall back to a default.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ClientError> {
        let num = |v: &str| -> Result<u64, ClientError> {
            v.trim().parse::<u64>().map_err(|_| {
                ClientError::Config(format!("{key} must be a non-negative integer, got '{v}'"))
            })
        };
        let ms = |v: &str| num(v).map(Duration::from_millis);
        match key {
            "acks" => self.acks = Acks::parse(value)?,
            "linger.ms" => self.linger = ms(value)?,
            "batch.size" => self.batch_size = num(value)?.max(1) as usize,
            "buffer.memory" => self.buffer_memory = num(value)? as usize,
            "max.request.size" => self.max_request_size = num(value)? as usize,
            "retries" => self.retries = num(value)?.min(u32::MAX as u64) as u32,
            "retry.backoff.ms" => self.retry_backoff = ms(value)?,
            "delivery.timeout.ms" => self.delivery_timeout = ms(value)?,
            "request.timeout.ms" => self.request_timeout = ms(value)?,
            "max.in.flight.requests.per.connection" => {
                self.max_in_flight = num(value)?.max(1) as usize
            }
            "enable.idempotence" => {
                self.enable_idempotence = Some(match value {
                    "true" => true,
                    "false" => false,
                    v => {
                        return Err(ClientError::Config(format!(
                            "enable.idempotence must be true or false, got '{v}'"
                        )))
                    }
                })
            }
            "transactional.id" => {
                self.transactional_id = Some(value.to_string()).filter(|v| !v.is_empty())
            }
            "transaction.timeout.ms" => self.transaction_timeout = ms(value)?,
            "compression.type" => self.compression = parse_compression(value)?,
            "client.id" => self.client_id = value.to_string(),
            "allow.auto.create.topics" => self.allow_auto_topic_creation = value == "true",
            // Accepted for compatibility with Kafka tool invocations; no effect here.
            "bootstrap.servers" | "key.serializer" | "value.serializer" | "partitioner.class" => {}
            other => {
                return Err(ClientError::Config(format!(
                    "unknown producer property '{other}'"
                )))
            }
        }
        Ok(())
    }

    /// Check combinations Kafka also rejects.
    pub fn validate(&self) -> Result<(), ClientError> {
        if self.transactional_id.is_some() && self.enable_idempotence == Some(false) {
            return Err(ClientError::Config(
                "transactional.id requires enable.idempotence".to_string(),
            ));
        }
        if self.transactional_id.is_some() && self.acks != Acks::All {
            return Err(ClientError::Config(
                "transactional.id requires acks=all".to_string(),
            ));
        }
        if self.enable_idempotence == Some(true) {
            if self.acks != Acks::All {
                return Err(ClientError::Config(
                    "enable.idempotence=true requires acks=all".to_string(),
                ));
            }
            if self.max_in_flight > 5 {
                return Err(ClientError::Config(
                    "enable.idempotence=true requires max.in.flight.requests.per.connection <= 5"
                        .to_string(),
                ));
            }
        }
        if self.batch_size > self.max_request_size {
            return Err(ClientError::Config(format!(
                "batch.size {} exceeds max.request.size {}",
                self.batch_size, self.max_request_size
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_names() {
        let mut c = ProducerConfig::default();
        c.set("acks", "1").unwrap();
        c.set("linger.ms", "20").unwrap();
        c.set("compression.type", "zstd").unwrap();
        assert_eq!(c.acks, Acks::Leader);
        assert_eq!(c.linger, Duration::from_millis(20));
        assert_eq!(c.compression, Compression::Zstd);
        assert!(c.set("acks", "2").is_err());
        assert!(c.set("no.such.key", "1").is_err());
        assert!(c.set("linger.ms", "-1").is_err());
        c.set("enable.idempotence", "true").unwrap();
        assert!(c.validate().is_err(), "idempotence needs acks=all");
    }

    #[test]
    fn transactional_keys() {
        let mut c = ProducerConfig::default();
        c.set("transactional.id", "tx-1").unwrap();
        c.set("transaction.timeout.ms", "5000").unwrap();
        assert_eq!(c.transactional_id.as_deref(), Some("tx-1"));
        assert_eq!(c.transaction_timeout, Duration::from_millis(5000));
        c.validate().unwrap();
        c.set("enable.idempotence", "false").unwrap();
        assert!(c.validate().is_err(), "transactions need idempotence");
    }
}

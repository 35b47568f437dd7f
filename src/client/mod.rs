//! The Weir client: producer, consumer and admin, the Rust API the CLI, the
//! perf tools and the simulator use. Speaks the Kafka protocol (codecs from
//! kafka-protocol) over `tokio::net`, reads time only through `env::time`,
//! so the same code runs on real tokio and inside madsim.
//!
//! Layers: `connection` (one TCP connection, pipelined requests) <- `cluster`
//! (connections per broker, metadata cache) <- `producer` / `consumer` /
//! `admin`.

pub mod admin;
pub mod assignor;
pub mod cluster;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod group;
pub mod offsets;
pub mod partitioner;
pub mod producer;
pub mod records;
pub mod versions;

pub use admin::Admin;
pub use cluster::{ClientConfig, Cluster};
pub use consumer::{Consumer, ConsumerConfig};
pub use error::ClientError;
pub use kafka_protocol::records::Compression;
pub use producer::{Acks, DeliveryFuture, Producer, ProducerConfig, RecordMetadata};
pub use records::{ConsumerRecord, ProducerRecord};

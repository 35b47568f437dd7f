//! What brokers ask the active controller, and its answers.
//!
//! These travel between Weir nodes only (the controller listener), never to
//! Kafka clients, so they are Weir's own messages; `codec` encodes them.
//! Every answer to a node that is not the active controller is
//! `NotController` with the leader it knows of, and the client retries there.

use std::collections::BTreeMap;

use crate::metadata::PartitionRegistration;

/// One topic of a CreateTopics request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateTopicSpec {
    pub name: String,
    /// -1: the controller's num.partitions.
    pub partitions: i32,
    /// -1: the controller's default.replication.factor.
    pub replication_factor: i16,
    /// Explicit replica assignment per partition; empty for automatic placement.
    pub assignments: Vec<Vec<i32>>,
    pub configs: BTreeMap<String, String>,
}

/// The outcome of one item of a request: 0 or a Kafka error code and message.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ItemResult {
    pub error_code: i16,
    pub message: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControllerRequest {
    /// A broker starting (or restarting: a new incarnation).
    RegisterBroker {
        id: i32,
        incarnation: uuid::Uuid,
        host: String,
        port: i32,
        rack: Option<String>,
    },
    /// Sent every broker.heartbeat.interval.ms. `metadata_offset` is the
    /// image offset the broker has applied: it is unfenced once that reaches
    /// its registration. `want_shutdown` starts a controlled shutdown.
    Heartbeat {
        id: i32,
        epoch: i64,
        metadata_offset: u64,
        want_shutdown: bool,
    },
    /// The committed image, once it is newer than `have_offset`, waiting up
    /// to `max_wait_ms` for a change.
    FetchImage {
        have_offset: u64,
        max_wait_ms: u32,
    },
    CreateTopics {
        topics: Vec<CreateTopicSpec>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        topic: String,
        count: i32,
        validate_only: bool,
    },
    /// Replace a topic's dynamic config overrides.
    SetTopicConfigs {
        topic: String,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    },
    /// A leader asks to change its partition's ISR (KIP-497 AlterPartition).
    AlterPartition {
        broker: i32,
        broker_epoch: i64,
        topic: String,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<i32>,
    },
    AllocateProducerIds {
        broker: i32,
        broker_epoch: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControllerResponse {
    /// This node is not the active controller; `leader` is the node id of
    /// the one it believes is (None while an election runs).
    NotController {
        leader: Option<i32>,
    },
    /// The request was understood but refused as a whole.
    Error(ItemResult),
    Registered {
        epoch: i64,
    },
    Heartbeat {
        fenced: bool,
        /// The controller agrees the broker may stop (no leaderships left).
        shutdown_ready: bool,
    },
    /// The encoded `MetadataImage`, or None when nothing changed in the wait.
    Image(Option<Vec<u8>>),
    /// Per item of CreateTopics / DeleteTopics, in request order.
    Items(Vec<ItemResult>),
    /// The partition's state after an accepted AlterPartition.
    Partition(PartitionRegistration),
    ProducerIds {
        first: i64,
        count: i64,
    },
}

//! Cluster metadata: the records the controller quorum commits to its raft
//! log and the image every broker builds from them.
//!
//! The controller is the only writer: it decides (`control`), proposes a
//! batch of records as one raft entry, and once the entry commits every
//! controller applies it to its `MetadataImage`; brokers receive the image
//! and act on it (which partitions they host, lead or follow). Nothing here
//! does I/O or reads a clock, so the same image is built bit for bit on
//! every node and in the simulator.
//!
//! Every collection is a `BTreeMap` or a `Vec` in a defined order: two nodes
//! that applied the same records hold equal images (`PartialEq`), and
//! encoding an image is deterministic.

pub mod codec;
pub mod control;
pub mod image;
pub mod placement;

pub use image::{
    BrokerRegistration, MetadataImage, MetadataRecord, PartitionRegistration, TopicImage, NO_LEADER,
};

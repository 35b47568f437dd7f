//! The metadata image and the records that change it.
//!
//! A record is a fact the controller decided; `MetadataImage::apply` folds
//! one in. Records carry whole new states (a partition's full replica set,
//! ISR, leader and epochs) rather than diffs, so applying is trivial and a
//! broker that sees an image never reasons about how it got there.
//!
//! Epochs, as in KRaft:
//! - a broker's `epoch` is the metadata offset of its registration: a
//!   restarted broker registers again and gets a larger one, so requests
//!   from its previous incarnation are recognised and refused;
//! - a partition's `leader_epoch` grows with every leader change (and is
//!   stamped on every batch the leader appends);
//! - its `partition_epoch` grows with every change at all (leader, ISR,
//!   replicas), so an AlterPartition built on a stale view is refused.

use std::collections::BTreeMap;

use uuid::Uuid;

/// `leader` of a partition that has none (offline).
pub const NO_LEADER: i32 = -1;

/// A broker as the controller knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub id: i32,
    /// Random per process start; a registration with a new incarnation is a
    /// restart, the same one a retried request.
    pub incarnation: Uuid,
    /// The metadata offset of the registration record (see module doc).
    pub epoch: i64,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is in no ISR. Brokers register
    /// fenced and are unfenced once they have caught up with the metadata
    /// log; a broker whose heartbeats lapse is fenced again.
    pub fenced: bool,
    /// The broker asked to shut down: leaderships move away first.
    pub in_controlled_shutdown: bool,
}

/// One partition's replica set and leadership.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PartitionRegistration {
    /// Broker ids in preference order; the first is the preferred leader.
    pub replicas: Vec<i32>,
    /// The in-sync replicas, a subset of `replicas` (in `replicas` order).
    pub isr: Vec<i32>,
    /// The leader's broker id or `NO_LEADER`. Unless chosen by unclean
    /// election, the leader is in the ISR.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

impl PartitionRegistration {
    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }
}

/// A topic with its partitions (index = partition id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    /// Dynamic topic-level config overrides only.
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionRegistration>,
}

/// One committed fact. A raft entry carries a `Vec<MetadataRecord>` that is
/// applied atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataRecord {
    /// A broker (re)registered; replaces any earlier registration of its id.
    /// `registration.epoch` is ignored on apply: the image sets it to the
    /// offset of the entry holding this record.
    RegisterBroker(BrokerRegistration),
    FenceBroker {
        id: i32,
        epoch: i64,
    },
    UnfenceBroker {
        id: i32,
        epoch: i64,
    },
    BeginControlledShutdown {
        id: i32,
        epoch: i64,
    },
    CreateTopic {
        name: String,
        id: Uuid,
        configs: BTreeMap<String, String>,
        partitions: Vec<PartitionRegistration>,
    },
    /// New partitions appended after the topic's existing ones.
    CreatePartitions {
        topic_id: Uuid,
        partitions: Vec<PartitionRegistration>,
    },
    DeleteTopic {
        id: Uuid,
    },
    /// The partition's whole new state.
    ChangePartition {
        topic_id: Uuid,
        partition: i32,
        state: PartitionRegistration,
    },
    /// Replace the topic's dynamic overrides.
    SetTopicConfigs {
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// A block of producer ids handed to a broker: ids below
    /// `first + count` are never handed out again.
    AllocateProducerIds {
        broker: i32,
        first: i64,
        count: i64,
    },
}

/// Everything the controller has committed, as of `offset`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct MetadataImage {
    /// Raft index of the last entry applied (0: nothing yet).
    pub offset: u64,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicImage>,
    /// The next producer id the controller will allocate.
    pub next_producer_id: i64,
}

impl MetadataImage {
    /// Apply one committed entry (its records, in order) at raft `index`.
    ///
    /// Records that refer to something no longer there (a topic deleted by
    /// an earlier entry) are skipped: the controller decided on the image
    /// it had, and deletion wins. Entries at or below `offset` were applied
    /// already (a replay after restoring a snapshot) and are skipped whole.
    pub fn apply_entry(&mut self, index: u64, records: &[MetadataRecord]) {
        if index <= self.offset {
            return;
        }
        for r in records {
            self.apply(index, r);
        }
        self.offset = index;
    }

    fn apply(&mut self, index: u64, record: &MetadataRecord) {
        match record {
            MetadataRecord::RegisterBroker(reg) => {
                let mut reg = reg.clone();
                reg.epoch = index as i64;
                self.brokers.insert(reg.id, reg);
            }
            MetadataRecord::FenceBroker { id, epoch } => {
                if let Some(b) = self.broker_at_epoch(*id, *epoch) {
                    b.fenced = true;
                }
            }
            MetadataRecord::UnfenceBroker { id, epoch } => {
                if let Some(b) = self.broker_at_epoch(*id, *epoch) {
                    b.fenced = false;
                }
            }
            MetadataRecord::BeginControlledShutdown { id, epoch } => {
                if let Some(b) = self.broker_at_epoch(*id, *epoch) {
                    b.in_controlled_shutdown = true;
                }
            }
            MetadataRecord::CreateTopic {
                name,
                id,
                configs,
                partitions,
            } => {
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        id: *id,
                        configs: configs.clone(),
                        partitions: partitions.clone(),
                    },
                );
            }
            MetadataRecord::CreatePartitions {
                topic_id,
                partitions,
            } => {
                if let Some(t) = self.topic_by_id_mut(*topic_id) {
                    t.partitions.extend(partitions.iter().cloned());
                }
            }
            MetadataRecord::DeleteTopic { id } => {
                self.topics.retain(|_, t| t.id != *id);
            }
            MetadataRecord::ChangePartition {
                topic_id,
                partition,
                state,
            } => {
                if let Some(t) = self.topic_by_id_mut(*topic_id) {
                    if let Some(p) = usize::try_from(*partition)
                        .ok()
                        .and_then(|i| t.partitions.get_mut(i))
                    {
                        assert!(
                            state.leader_epoch >= p.leader_epoch
                                && state.partition_epoch > p.partition_epoch,
                            "metadata invariant: leader epochs never go back and every partition change bumps the partition epoch \
                             (entry {index}, {}-{partition}: {p:?} -> {state:?})",
                            t.name
                        );
                        *p = state.clone();
                    }
                }
            }
            MetadataRecord::SetTopicConfigs { topic_id, configs } => {
                if let Some(t) = self.topic_by_id_mut(*topic_id) {
                    t.configs = configs.clone();
                }
            }
            MetadataRecord::AllocateProducerIds { first, count, .. } => {
                assert!(
                    *first >= self.next_producer_id,
                    "metadata invariant: producer id blocks never overlap"
                );
                self.next_producer_id = first + count;
            }
        }
    }

    fn broker_at_epoch(&mut self, id: i32, epoch: i64) -> Option<&mut BrokerRegistration> {
        // A record about an older incarnation of the broker is stale.
        self.brokers.get_mut(&id).filter(|b| b.epoch == epoch)
    }

    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<&TopicImage> {
        self.topics.values().find(|t| t.id == id)
    }

    fn topic_by_id_mut(&mut self, id: Uuid) -> Option<&mut TopicImage> {
        self.topics.values_mut().find(|t| t.id == id)
    }

    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionRegistration> {
        let t = self.topics.get(topic)?;
        usize::try_from(partition)
            .ok()
            .and_then(|i| t.partitions.get(i))
    }

    /// Brokers that are registered and not fenced.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32) -> BrokerRegistration {
        BrokerRegistration {
            id,
            incarnation: Uuid::from_u128(id as u128 + 100),
            epoch: 0,
            host: "127.0.0.1".into(),
            port: 9092 + id,
            rack: None,
            fenced: true,
            in_controlled_shutdown: false,
        }
    }

    #[test]
    fn broker_epoch_is_its_registration_offset_and_stale_records_are_ignored() {
        let mut img = MetadataImage::default();
        img.apply_entry(3, &[MetadataRecord::RegisterBroker(broker(1))]);
        assert_eq!(img.brokers[&1].epoch, 3);
        img.apply_entry(4, &[MetadataRecord::UnfenceBroker { id: 1, epoch: 3 }]);
        assert!(!img.brokers[&1].fenced);
        // Re-registration (a restart) starts fenced with a new epoch...
        img.apply_entry(9, &[MetadataRecord::RegisterBroker(broker(1))]);
        assert_eq!(img.brokers[&1].epoch, 9);
        // ...and an unfence meant for the old incarnation does nothing.
        img.apply_entry(10, &[MetadataRecord::UnfenceBroker { id: 1, epoch: 3 }]);
        assert!(img.brokers[&1].fenced);
        // Replayed entries are skipped.
        img.apply_entry(4, &[MetadataRecord::UnfenceBroker { id: 1, epoch: 9 }]);
        assert!(img.brokers[&1].fenced);
        assert_eq!(img.offset, 10);
    }

    #[test]
    fn partition_changes_replace_state_and_deleted_topics_swallow_later_records() {
        let id = Uuid::from_u128(7);
        let p0 = PartitionRegistration {
            replicas: vec![1, 2, 3],
            isr: vec![1, 2, 3],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
        };
        let mut img = MetadataImage::default();
        img.apply_entry(
            1,
            &[MetadataRecord::CreateTopic {
                name: "t".into(),
                id,
                configs: BTreeMap::new(),
                partitions: vec![p0.clone()],
            }],
        );
        let moved = PartitionRegistration {
            isr: vec![2, 3],
            leader: 2,
            leader_epoch: 1,
            partition_epoch: 1,
            ..p0
        };
        img.apply_entry(
            2,
            &[MetadataRecord::ChangePartition {
                topic_id: id,
                partition: 0,
                state: moved.clone(),
            }],
        );
        assert_eq!(img.partition("t", 0), Some(&moved));
        img.apply_entry(3, &[MetadataRecord::DeleteTopic { id }]);
        img.apply_entry(
            4,
            &[MetadataRecord::ChangePartition {
                topic_id: id,
                partition: 0,
                state: moved,
            }],
        );
        assert!(img.topics.is_empty());
    }
}

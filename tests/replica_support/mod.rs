//! Shared by the replica_* tests: a fake controller holding the image,
//! applying AlterPartition and feeding every node each new image.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};

use uuid::Uuid;
use weir::controller::api::{ControllerRequest, ControllerResponse};
use weir::metadata::{BrokerRegistration, MetadataImage, MetadataRecord, PartitionRegistration};
use weir::replica::{IsrChannel, ReplicaManager};

pub const TOPIC: &str = "t";

/// The controller's half: the image, and who to tell about changes.
pub struct FakeController {
    pub image: Mutex<MetadataImage>,
    pub nodes: Mutex<Vec<Weak<ReplicaManager>>>,
    pub topic_id: Uuid,
}

impl FakeController {
    pub fn commit(&self, records: Vec<MetadataRecord>) -> MetadataImage {
        let img = {
            let mut img = self.image.lock().unwrap();
            let next = img.offset + 1;
            img.apply_entry(next, &records);
            img.clone()
        };
        let nodes: Vec<Arc<ReplicaManager>> = self
            .nodes
            .lock()
            .unwrap()
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        for n in nodes {
            n.apply_image(&img, 1);
        }
        img
    }

    pub fn partition(&self) -> PartitionRegistration {
        self.image
            .lock()
            .unwrap()
            .partition(TOPIC, 0)
            .unwrap()
            .clone()
    }

    pub fn change(&self, f: impl FnOnce(&mut PartitionRegistration)) -> PartitionRegistration {
        let mut p = self.partition();
        f(&mut p);
        p.partition_epoch += 1;
        self.commit(vec![MetadataRecord::ChangePartition {
            topic_id: self.topic_id,
            partition: 0,
            state: p.clone(),
        }]);
        p
    }
}

pub struct Isr(pub Arc<FakeController>);

impl IsrChannel for Isr {
    fn alter_partition(
        &self,
        req: ControllerRequest,
    ) -> Pin<Box<dyn Future<Output = Option<ControllerResponse>> + Send>> {
        let ctl = self.0.clone();
        Box::pin(async move {
            let ControllerRequest::AlterPartition {
                leader_epoch,
                partition_epoch,
                new_isr,
                ..
            } = req
            else {
                return None;
            };
            let cur = ctl.partition();
            if cur.leader_epoch != leader_epoch || cur.partition_epoch != partition_epoch {
                return Some(ControllerResponse::Error(Default::default()));
            }
            let p = ctl.change(|p| p.isr = new_isr);
            Some(ControllerResponse::Partition(p))
        })
    }
}

impl FakeController {
    pub fn new(topic_id: Uuid) -> Arc<FakeController> {
        Arc::new(FakeController {
            image: Mutex::new(MetadataImage::default()),
            nodes: Mutex::new(Vec::new()),
            topic_id,
        })
    }

    /// Register brokers (host, port) and create TOPIC with one partition.
    pub fn create(
        &self,
        brokers: &[(i32, u16)],
        configs: BTreeMap<String, String>,
        replicas: Vec<i32>,
    ) {
        let mut records: Vec<MetadataRecord> = brokers
            .iter()
            .map(|&(id, port)| {
                MetadataRecord::RegisterBroker(BrokerRegistration {
                    id,
                    incarnation: Uuid::from_u128(id as u128),
                    epoch: 0,
                    host: "127.0.0.1".into(),
                    port: port as i32,
                    rack: None,
                    fenced: false,
                    in_controlled_shutdown: false,
                })
            })
            .collect();
        records.push(MetadataRecord::CreateTopic {
            name: TOPIC.into(),
            id: self.topic_id,
            configs,
            partitions: vec![PartitionRegistration {
                isr: replicas.clone(),
                leader: replicas[0],
                replicas,
                leader_epoch: 0,
                partition_epoch: 0,
            }],
        });
        self.commit(records);
    }
}

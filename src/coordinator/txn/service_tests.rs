//! The async shell on one in-memory node with a fake marker sender:
//! EndTxn sends a marker to every partition then completes, and a
//! coordinator that reloads the partition finishes a Prepare* transaction.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::codes as ec;
use super::service::{BoxFuture, Marker, MarkerSender, TxnService};
use super::state::TxnState;
use super::TXN_STATE_TOPIC;
use crate::broker::registry::Registry;
use crate::config::ServerConfig;
use crate::env::sim_disk::{SimDisk, SimDiskOptions};
use crate::env::time::{sleep, Duration};
use crate::env::Disk;
use crate::metadata::image::{
    BrokerRegistration, MetadataImage, MetadataRecord, PartitionRegistration,
};
use crate::replica::endpoint::InProcessNetwork;
use crate::replica::{NoIsrChannel, ReplicaManager, ReplicaSettings};

/// Records every marker; answers `fail_first` errors before NONE.
#[derive(Default)]
struct FakeSender {
    sent: Mutex<Vec<Marker>>,
    fail_first: Mutex<usize>,
}

impl MarkerSender for FakeSender {
    fn send(&self, marker: Marker) -> BoxFuture<'_, i16> {
        Box::pin(async move {
            let mut fail = self.fail_first.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return 6; // NOT_LEADER_OR_FOLLOWER: retried
            }
            self.sent.lock().unwrap().push(marker);
            ec::NONE
        })
    }
}

fn image(leader_epoch: i32) -> MetadataImage {
    let mut img = MetadataImage::default();
    img.apply_entry(
        1,
        &[
            MetadataRecord::RegisterBroker(BrokerRegistration {
                id: 1,
                incarnation: Uuid::from_u128(1),
                epoch: 0,
                host: "127.0.0.1".into(),
                port: 9092,
                rack: None,
                fenced: false,
                in_controlled_shutdown: false,
            }),
            MetadataRecord::CreateTopic {
                name: TXN_STATE_TOPIC.into(),
                id: Uuid::from_u128(7),
                configs: BTreeMap::new(),
                partitions: vec![PartitionRegistration {
                    isr: vec![1],
                    leader: 1,
                    replicas: vec![1],
                    leader_epoch,
                    partition_epoch: 0,
                }],
            },
        ],
    );
    img
}

fn node(disk: Arc<SimDisk>) -> (ServerConfig, Arc<ReplicaManager>, Arc<Registry>) {
    let mut config = ServerConfig::default_single_node();
    config.log_dirs = vec![PathBuf::from("/data")];
    config
        .set("transaction.state.log.num.partitions", "1")
        .unwrap();
    let settings = ReplicaSettings::from_config(&config);
    let disk: Arc<dyn Disk> = disk;
    let registry = Arc::new(Registry::open(disk, Arc::new(config.clone())).unwrap());
    let replicas = Arc::new(ReplicaManager::new(
        settings,
        registry.clone(),
        Arc::new(NoIsrChannel),
        Arc::new(InProcessNetwork::new()),
    ));
    (config, replicas, registry)
}

async fn until(mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held");
}

#[tokio::test]
async fn end_txn_sends_markers_then_completes_and_reload_finishes_prepare() {
    let disk = Arc::new(SimDisk::new(1, SimDiskOptions::default()));
    let (config, replicas, registry) = node(disk.clone());
    let img = image(3);
    replicas.apply_image(&img, 1);
    let sender = Arc::new(FakeSender::default());
    *sender.fail_first.lock().unwrap() = 2;
    let svc = TxnService::open(&config, replicas.clone(), sender.clone());
    svc.on_image(&img, 1);
    let id = "t";
    assert!(svc.owns(id));
    let (pid, epoch) = svc
        .init_producer_id(id, 10_000, None, || async { Ok(1000) })
        .await
        .unwrap();
    assert_eq!((pid, epoch), (1000, 0));
    let parts = vec![("a".to_string(), 0), ("b".to_string(), 2)];
    assert_eq!(svc.add_partitions(id, pid, epoch, &parts).await, ec::NONE);
    assert_eq!(svc.end_txn(id, pid, epoch, true).await, ec::NONE);
    let state = |svc: &Arc<TxnService>| {
        svc.snapshot()
            .into_iter()
            .find(|m| m.transactional_id == id)
            .map(|m| m.state)
    };
    until(|| state(&svc) == Some(TxnState::CompleteCommit)).await;
    let sent = sender.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "one marker per partition: {sent:?}");
    for m in &sent {
        assert!(m.commit);
        assert_eq!((m.producer_id, m.producer_epoch), (pid, epoch));
        assert_eq!(m.coordinator_epoch, 3, "the txn partition's leader epoch");
    }

    // A second transaction reaches PrepareAbort, but its markers cannot be
    // written (the sender fails) before this coordinator goes away.
    assert_eq!(
        svc.add_partitions(id, pid, epoch, &parts[..1]).await,
        ec::NONE
    );
    *sender.fail_first.lock().unwrap() = usize::MAX;
    assert_eq!(svc.end_txn(id, pid, epoch, false).await, ec::NONE);
    sleep(Duration::from_millis(50)).await;
    assert_eq!(state(&svc), Some(TxnState::PrepareAbort));
    drop(svc);

    // A new coordinator on the same log (after a restart) finishes it.
    registry.close_all().unwrap();
    drop(replicas);
    let (config, replicas, _registry) = node(disk);
    let img = image(5);
    replicas.apply_image(&img, 2);
    let sender2 = Arc::new(FakeSender::default());
    let svc = TxnService::open(&config, replicas, sender2.clone());
    svc.on_image(&img, 1);
    until(|| state(&svc) == Some(TxnState::CompleteAbort)).await;
    let sent = sender2.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert!(!sent[0].commit);
    assert_eq!(sent[0].coordinator_epoch, 5);
    assert_eq!((sent[0].topic.as_str(), sent[0].partition), ("a", 0));
}

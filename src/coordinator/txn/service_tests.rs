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
    txn_image(leader_epoch, 0, &[1], 1)
}

/// `__transaction_state` with one partition led by broker 1 (brokers 1 and
/// 2 registered): its replicas, ISR [1] plus broker 2 when a replica, and
/// min.insync.replicas.
fn txn_image(leader_epoch: i32, partition_epoch: i32, isr: &[i32], min_isr: u8) -> MetadataImage {
    let broker = |id: i32| {
        MetadataRecord::RegisterBroker(BrokerRegistration {
            id,
            incarnation: Uuid::from_u128(id as u128),
            epoch: 0,
            host: "127.0.0.1".into(),
            port: 9090 + id,
            rack: None,
            fenced: false,
            in_controlled_shutdown: false,
        })
    };
    let mut img = MetadataImage::default();
    img.apply_entry(
        1,
        &[
            broker(1),
            broker(2),
            MetadataRecord::CreateTopic {
                name: TXN_STATE_TOPIC.into(),
                id: Uuid::from_u128(7),
                configs: BTreeMap::from([("min.insync.replicas".into(), min_isr.to_string())]),
                partitions: vec![PartitionRegistration {
                    isr: isr.to_vec(),
                    leader: 1,
                    replicas: if isr.len() > 1 { vec![1, 2] } else { vec![1] },
                    leader_epoch,
                    partition_epoch,
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

fn state_of(svc: &Arc<TxnService>, id: &str) -> Option<TxnState> {
    svc.snapshot()
        .into_iter()
        .find(|m| m.transactional_id == id)
        .map(|m| m.state)
}

/// An EndTxn whose Prepare* record the log refuses (the ISR below
/// min.insync.replicas) leaves the transaction as it was, so the client's
/// retry commits it once the partition takes writes again. (It used to stay
/// in PrepareCommit with no record and no markers: every retry answered
/// CONCURRENT_TRANSACTIONS while this broker led.)
#[tokio::test]
async fn a_refused_prepare_append_leaves_the_transaction_ongoing() {
    let disk = Arc::new(SimDisk::new(1, SimDiskOptions::default()));
    let (config, replicas, _registry) = node(disk);
    let healthy = txn_image(3, 0, &[1], 1);
    replicas.apply_image(&healthy, 1);
    let sender = Arc::new(FakeSender::default());
    let svc = TxnService::open(&config, replicas.clone(), sender.clone());
    svc.on_image(&healthy, 1);
    let id = "t";
    let (pid, epoch) = svc
        .init_producer_id(id, 10_000, None, || async { Ok(1000) })
        .await
        .unwrap();
    let parts = vec![("a".to_string(), 0)];
    assert_eq!(svc.add_partitions(id, pid, epoch, &parts).await, ec::NONE);

    let refusing = txn_image(3, 1, &[1], 2);
    replicas.apply_image(&refusing, 1);
    svc.on_image(&refusing, 1);
    assert_eq!(
        svc.end_txn(id, pid, epoch, true).await,
        ec::COORDINATOR_NOT_AVAILABLE
    );
    assert_eq!(state_of(&svc, id), Some(TxnState::Ongoing));

    let healed = txn_image(3, 2, &[1], 1);
    replicas.apply_image(&healed, 1);
    svc.on_image(&healed, 1);
    assert_eq!(svc.end_txn(id, pid, epoch, true).await, ec::NONE);
    until(|| state_of(&svc, id) == Some(TxnState::CompleteCommit)).await;
    let sent = sender.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(sent[0].commit);
}

/// A Prepare* record appended while the ISR was whole, which then shrank
/// below min.insync.replicas before the record committed: the client's
/// EndTxn fails, but the decision stands in the log, so its markers go out
/// once the record commits (here: min.insync.replicas lowered) instead of
/// never (the transaction stranded in PrepareCommit).
#[tokio::test]
async fn markers_wait_for_a_prepare_record_the_isr_lost_and_then_go_out() {
    let disk = Arc::new(SimDisk::new(1, SimDiskOptions::default()));
    let (config, replicas, _registry) = node(disk);
    let whole = txn_image(3, 0, &[1], 1);
    replicas.apply_image(&whole, 1);
    let sender = Arc::new(FakeSender::default());
    let svc = TxnService::open(&config, replicas.clone(), sender.clone());
    svc.on_image(&whole, 1);
    let id = "t";
    let (pid, epoch) = svc
        .init_producer_id(id, 10_000, None, || async { Ok(1000) })
        .await
        .unwrap();
    let parts = vec![("a".to_string(), 0)];
    assert_eq!(svc.add_partitions(id, pid, epoch, &parts).await, ec::NONE);

    // Broker 2 joins the ISR (it never fetches, so nothing commits now).
    let two = txn_image(3, 1, &[1, 2], 2);
    replicas.apply_image(&two, 1);
    svc.on_image(&two, 1);
    let end = {
        let svc = svc.clone();
        tokio::spawn(async move { svc.end_txn(id, pid, epoch, true).await })
    };
    until(|| state_of(&svc, id) == Some(TxnState::PrepareCommit)).await;
    // The ISR shrinks to the leader alone, below min.insync.replicas.
    let shrunk = txn_image(3, 2, &[1], 2);
    replicas.apply_image(&shrunk, 1);
    svc.on_image(&shrunk, 1);
    assert_eq!(end.await.unwrap(), ec::COORDINATOR_NOT_AVAILABLE);
    sleep(Duration::from_millis(200)).await;
    assert_eq!(state_of(&svc, id), Some(TxnState::PrepareCommit));
    assert!(
        sender.sent.lock().unwrap().is_empty(),
        "no marker before the record commits"
    );

    let lowered = txn_image(3, 3, &[1], 1);
    replicas.apply_image(&lowered, 1);
    svc.on_image(&lowered, 1);
    until(|| state_of(&svc, id) == Some(TxnState::CompleteCommit)).await;
    assert_eq!(
        svc.end_txn(id, pid, epoch, true).await,
        ec::NONE,
        "a retry sees the commit"
    );
    let sent = sender.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
}

/// A request for an id whose last record is not in the ISR yet is answered
/// CONCURRENT_TRANSACTIONS, never from that unsettled state: a retried
/// AddPartitionsToTxn used to get NONE from the first attempt's in-memory
/// change, which a failover then lost, and the commit wrote no marker to
/// that partition (txn-cluster seed 74: a committed record read as aborted).
#[tokio::test]
async fn requests_wait_until_the_last_record_of_their_id_is_in_the_isr() {
    let disk = Arc::new(SimDisk::new(1, SimDiskOptions::default()));
    let (config, replicas, _registry) = node(disk);
    let whole = txn_image(3, 0, &[1], 1);
    replicas.apply_image(&whole, 1);
    let sender = Arc::new(FakeSender::default());
    let svc = TxnService::open(&config, replicas.clone(), sender.clone());
    svc.on_image(&whole, 1);
    let id = "t";
    let (pid, epoch) = svc
        .init_producer_id(id, 10_000, None, || async { Ok(1000) })
        .await
        .unwrap();
    let a = vec![("a".to_string(), 0)];
    assert_eq!(svc.add_partitions(id, pid, epoch, &a).await, ec::NONE);

    // Broker 2 joins the ISR and never fetches: nothing commits now.
    let two = txn_image(3, 1, &[1, 2], 2);
    replicas.apply_image(&two, 1);
    svc.on_image(&two, 1);
    let b = vec![("b".to_string(), 1)];
    let first = {
        let svc = svc.clone();
        let b = b.clone();
        tokio::spawn(async move { svc.add_partitions(id, pid, epoch, &b).await })
    };
    sleep(Duration::from_millis(50)).await;
    assert_eq!(
        svc.add_partitions(id, pid, epoch, &b).await,
        ec::CONCURRENT_TRANSACTIONS,
        "a retry is not answered from the unreplicated first attempt"
    );
    assert_eq!(
        svc.end_txn(id, pid, epoch, true).await,
        ec::CONCURRENT_TRANSACTIONS
    );

    // The follower drops out and min.insync.replicas is 1: the record commits.
    let alone = txn_image(3, 2, &[1], 1);
    replicas.apply_image(&alone, 1);
    svc.on_image(&alone, 1);
    assert_eq!(first.await.unwrap(), ec::NONE);
    assert_eq!(svc.add_partitions(id, pid, epoch, &b).await, ec::NONE);
    assert_eq!(svc.end_txn(id, pid, epoch, true).await, ec::NONE);
    until(|| state_of(&svc, id) == Some(TxnState::CompleteCommit)).await;
    let mut sent: Vec<(String, i32)> = sender
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|m| (m.topic.clone(), m.partition))
        .collect();
    sent.sort();
    assert_eq!(sent, vec![("a".to_string(), 0), ("b".to_string(), 1)]);
}

//! Three ReplicaManagers in one process on SimDisks, wired by the
//! in-process endpoint, with a fake controller that applies AlterPartition
//! and feeds every node the new image. Runs on real tokio (short real
//! waits) and under madsim (virtual time).

mod replica_support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use replica_support::{FakeController, Isr, TOPIC};
use uuid::Uuid;
use weir::broker::registry::Registry;
use weir::config::ServerConfig;
use weir::env::sim_disk::{SimDisk, SimDiskOptions};
use weir::env::time::{now_ms, sleep, Duration};
use weir::env::Disk;
use weir::log::batch::{build_batch, BatchProducer, SimpleRecord};
use weir::metadata::NO_LEADER;
use weir::replica::endpoint::InProcessNetwork;
use weir::replica::partition::{Partition, Role};
use weir::replica::{codes, ReplicaManager, ReplicaSettings};

const LAG_MS: i64 = 400;

struct Cluster {
    ctl: Arc<FakeController>,
    net: InProcessNetwork,
    nodes: Vec<Arc<ReplicaManager>>,
    registries: Vec<Arc<Registry>>,
    disks: Vec<Arc<SimDisk>>,
}

fn start(configs: BTreeMap<String, String>) -> Cluster {
    let ctl = FakeController::new(Uuid::from_u128(42));
    let net = InProcessNetwork::new();
    let mut c = Cluster {
        ctl,
        net,
        nodes: Vec::new(),
        registries: Vec::new(),
        disks: Vec::new(),
    };
    for id in 1..=3 {
        let disk = Arc::new(SimDisk::new(id as u64, SimDiskOptions::default()));
        c.disks.push(disk.clone());
        let (m, r) = c.boot(id);
        c.nodes.push(m);
        c.registries.push(r);
    }
    c.ctl
        .create(&[(1, 9001), (2, 9002), (3, 9003)], configs, vec![1, 2, 3]);
    c
}

impl Cluster {
    /// Open node `id`'s registry and replica manager on its disk.
    fn boot(&self, id: i32) -> (Arc<ReplicaManager>, Arc<Registry>) {
        let disk: Arc<dyn Disk> = self.disks[(id - 1) as usize].clone();
        let mut config = ServerConfig::default_single_node();
        config.node_id = id;
        config.log_dirs = vec![PathBuf::from("/data")];
        for (k, v) in [
            ("replica.lag.time.max.ms", LAG_MS.to_string()),
            ("replica.fetch.wait.max.ms", "50".to_string()),
            ("replica.fetch.backoff.ms", "20".to_string()),
        ] {
            config.set(k, &v).unwrap();
        }
        let settings = ReplicaSettings::from_config(&config);
        let registry = Arc::new(Registry::open(disk, Arc::new(config)).unwrap());
        let m = Arc::new(ReplicaManager::new(
            settings,
            registry.clone(),
            Arc::new(Isr(self.ctl.clone())),
            Arc::new(self.net.clone()),
        ));
        m.join_network(&self.net);
        self.ctl.nodes.lock().unwrap().push(Arc::downgrade(&m));
        (m, registry)
    }

    /// Stop node `id` (cleanly, or by a crash that loses unsynced writes)
    /// and start it again with the current image.
    async fn restart(&mut self, id: i32, crash: bool) {
        let i = (id - 1) as usize;
        self.nodes[i].shutdown().await;
        if crash {
            self.disks[i].crash();
        } else {
            self.registries[i].close_all().unwrap();
        }
        let (m, r) = self.boot(id);
        self.nodes[i] = m;
        self.registries[i] = r;
        let img = self.ctl.image.lock().unwrap().clone();
        self.nodes[i].apply_image(&img, 2);
    }

    fn part(&self, node: i32) -> Arc<Partition> {
        self.nodes[(node - 1) as usize].get(TOPIC, 0).unwrap()
    }

    fn leo(&self, node: i32) -> i64 {
        self.part(node)
            .log
            .with_log(|l| Ok(l.log_end_offset()))
            .unwrap()
    }

    /// Every record below `upto` on `node`, as stored.
    fn bytes(&self, node: i32, upto: i64) -> Vec<u8> {
        self.part(node)
            .log
            .with_log(|l| {
                Ok(l.read_below(0, upto, usize::MAX / 2, true)?
                    .records
                    .to_vec())
            })
            .unwrap()
    }

    async fn produce(&self, node: i32, n: usize, acks_all: bool) -> (i64, i32) {
        let recs: Vec<SimpleRecord> = (0..n)
            .map(|i| SimpleRecord {
                value: Some(format!("v{i}").into_bytes()),
                timestamp: 1000,
                ..Default::default()
            })
            .collect();
        let mut b = build_batch(&recs, BatchProducer::default());
        let (info, epoch) = self
            .part(node)
            .append_as_leader(&mut b, acks_all, now_ms())
            .unwrap();
        (info.last_offset, epoch)
    }

    async fn wait_until(&self, what: &str, mut f: impl FnMut(&Cluster) -> bool) {
        for _ in 0..400 {
            if f(self) {
                return;
            }
            sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }
}

#[tokio::test]
async fn followers_replicate_and_acks_all_waits_for_the_isr() {
    let c = start(BTreeMap::new());
    let (last, epoch) = c.produce(1, 5, true).await;
    assert_eq!(last, 4);
    let leader = c.part(1);
    assert!(leader.high_watermark() <= 5);
    let code = leader
        .wait_for_hw(last, epoch, Duration::from_secs(5))
        .await;
    assert_eq!(code, codes::NONE);
    assert_eq!(leader.high_watermark(), 5);
    c.wait_until("followers at the leader's LEO and HW", |c| {
        (2..=3).all(|n| c.leo(n) == 5 && c.part(n).high_watermark() == 5)
    })
    .await;
    for n in 2..=3 {
        assert_eq!(c.bytes(n, 5), c.bytes(1, 5));
        let entries = c
            .part(n)
            .log
            .with_log(|l| Ok(l.epoch_entries().to_vec()))
            .unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!((entries[0].epoch, entries[0].start_offset), (0, 0));
    }
    // Consumers read only below the HW; followers refuse consumers.
    let read = leader
        .read_for_consumer(0, 0, 1 << 20, true, false)
        .unwrap();
    let (hw, recs) = (read.high_watermark, read.records);
    assert_eq!(hw, 5);
    assert!(!recs.is_empty());
    assert_eq!(
        c.part(2)
            .read_for_consumer(0, -1, 1 << 20, true, false)
            .unwrap_err(),
        codes::NOT_LEADER_OR_FOLLOWER
    );
    assert_eq!(
        leader
            .read_for_consumer(0, 1, 1 << 20, true, false)
            .unwrap_err(),
        codes::UNKNOWN_LEADER_EPOCH
    );
}

#[tokio::test]
async fn a_lagging_follower_leaves_the_isr_and_rejoins() {
    let c = start(BTreeMap::new());
    c.produce(1, 3, false).await;
    c.wait_until("replication", |c| c.leo(3) == 3).await;
    c.net.cut(3);
    c.wait_until("ISR shrink", |c| c.ctl.partition().isr == vec![1, 2])
        .await;
    // With 3 out, acks=all completes on the ISR {1, 2}.
    let (last, epoch) = c.produce(1, 4, true).await;
    let code = c
        .part(1)
        .wait_for_hw(last, epoch, Duration::from_secs(5))
        .await;
    assert_eq!(code, codes::NONE);
    assert_eq!(c.leo(3), 3);
    c.net.heal(3);
    c.wait_until("ISR expand", |c| c.ctl.partition().isr == vec![1, 2, 3])
        .await;
    assert_eq!(c.leo(3), 7);
    assert_eq!(c.bytes(3, 7), c.bytes(1, 7));
}

#[tokio::test]
async fn leader_change_truncates_a_divergent_suffix() {
    let c = start(BTreeMap::new());
    c.produce(1, 4, true).await;
    c.wait_until("replication", |c| c.leo(2) == 4 && c.leo(3) == 4)
        .await;
    // Followers cut off: the leader appends a suffix nobody else has.
    c.net.cut(2);
    c.net.cut(3);
    sleep(Duration::from_millis(100)).await;
    c.produce(1, 3, false).await;
    assert_eq!(c.leo(1), 7);
    // The controller moves leadership to 2 (epoch 1), which writes its own.
    c.ctl.change(|p| {
        p.leader = 2;
        p.leader_epoch = 1;
        p.isr = vec![2, 3];
    });
    assert!(c.part(2).is_leader());
    c.net.heal(2);
    c.net.heal(3);
    let (last, epoch) = c.produce(2, 2, false).await;
    assert_eq!((last, epoch), (5, 1));
    c.wait_until("everyone at the new leader's log", |c| {
        (1..=3).all(|n| c.leo(n) == 6) && c.part(2).high_watermark() == 6
    })
    .await;
    let hw = c.part(2).high_watermark();
    for n in [1, 3] {
        assert_eq!(c.bytes(n, hw), c.bytes(2, hw), "node {n}");
        let entries = c
            .part(n)
            .log
            .with_log(|l| Ok(l.epoch_entries().to_vec()))
            .unwrap();
        let pairs: Vec<(i32, i64)> = entries.iter().map(|e| (e.epoch, e.start_offset)).collect();
        assert_eq!(pairs, vec![(0, 0), (1, 4)], "node {n}");
    }
    // The old leader rejoins the ISR.
    c.wait_until("ISR expand", |c| c.ctl.partition().isr == vec![1, 2, 3])
        .await;
    assert_eq!(c.part(1).snapshot().0, Role::Follower { leader: 2 });
}

#[tokio::test]
async fn min_insync_replicas_rejects_and_fails_waiting_produces() {
    let mut configs = BTreeMap::new();
    configs.insert("min.insync.replicas".to_string(), "2".to_string());
    let c = start(configs);
    c.produce(1, 1, true).await;
    c.net.cut(2);
    c.net.cut(3);
    // A produce waiting while the ISR shrinks below 2 fails after the append.
    let (last, epoch) = c.produce(1, 1, true).await;
    let code = c
        .part(1)
        .wait_for_hw(last, epoch, Duration::from_secs(5))
        .await;
    assert_eq!(code, codes::NOT_ENOUGH_REPLICAS_AFTER_APPEND);
    assert_eq!(c.ctl.partition().isr, vec![1]);
    // Now refused before the append.
    let mut b = build_batch(&[SimpleRecord::default()], BatchProducer::default());
    let err = c
        .part(1)
        .append_as_leader(&mut b, true, now_ms())
        .unwrap_err();
    assert_eq!(err.0, codes::NOT_ENOUGH_REPLICAS);
    // acks=1 still works.
    let mut b = build_batch(&[SimpleRecord::default()], BatchProducer::default());
    assert!(c.part(1).append_as_leader(&mut b, false, now_ms()).is_ok());
    // Timeouts: with the ISR {1, 2} back... cut again, a short wait times out.
    c.net.heal(2);
    c.wait_until("ISR expand", |c| c.ctl.partition().isr == vec![1, 2])
        .await;
    c.net.cut(2);
    let (last, epoch) = c.produce(1, 1, true).await;
    let code = c
        .part(1)
        .wait_for_hw(last, epoch, Duration::from_millis(30))
        .await;
    assert_eq!(code, codes::REQUEST_TIMED_OUT);
    // Leadership lost while waiting.
    let (last, epoch) = c.produce(1, 1, true).await;
    let p1 = c.part(1);
    let waiter =
        tokio::spawn(async move { p1.wait_for_hw(last, epoch, Duration::from_secs(5)).await });
    sleep(Duration::from_millis(10)).await;
    c.ctl.change(|p| {
        p.leader = NO_LEADER;
        p.leader_epoch += 1;
    });
    assert_eq!(waiter.await.unwrap(), codes::NOT_LEADER_OR_FOLLOWER);
}

#[tokio::test]
async fn restarts_keep_the_checkpointed_high_watermark_bounded_by_the_log() {
    let mut c = start(BTreeMap::new());
    let (last, epoch) = c.produce(1, 4, true).await;
    assert_eq!(
        c.part(1)
            .wait_for_hw(last, epoch, Duration::from_secs(5))
            .await,
        codes::NONE
    );
    c.wait_until("followers know the HW", |c| {
        (2..=3).all(|n| c.part(n).high_watermark() == 4)
    })
    .await;
    // Clean restart of a cut-off follower: HW = checkpoint (its log has it all).
    c.net.cut(2);
    c.restart(2, false).await;
    assert_eq!(c.leo(2), 4);
    assert_eq!(c.part(2).high_watermark(), 4);
    c.net.heal(2);
    // A crash loses the follower's unsynced log: HW = min(checkpoint, LEO).
    c.net.cut(3);
    c.restart(3, true).await;
    assert!(c.part(3).high_watermark() <= c.leo(3));
    c.net.heal(3);
    c.produce(1, 1, false).await;
    c.wait_until("the crashed follower caught up", |c| {
        c.leo(3) == 5 && c.part(3).high_watermark() == 5
    })
    .await;
    assert_eq!(c.bytes(3, 5), c.bytes(1, 5));
}

#[tokio::test]
async fn a_follower_behind_the_leaders_log_start_restarts_there() {
    let c = start(BTreeMap::new());
    c.produce(1, 3, true).await;
    c.wait_until("replication", |c| c.leo(3) == 3).await;
    c.net.cut(3);
    c.wait_until("ISR shrink", |c| c.ctl.partition().isr == vec![1, 2])
        .await;
    let (last, epoch) = c.produce(1, 4, true).await;
    assert_eq!(
        c.part(1)
            .wait_for_hw(last, epoch, Duration::from_secs(5))
            .await,
        codes::NONE
    );
    // DeleteRecords beyond the cut follower's log end.
    assert_eq!(c.part(1).delete_records(5).unwrap(), 5);
    assert_eq!(
        c.part(1).delete_records(8).unwrap_err(),
        codes::OFFSET_OUT_OF_RANGE
    );
    // The in-sync follower moves its log start on its next fetch.
    c.produce(1, 1, false).await;
    c.wait_until("follower log start", |c| {
        c.part(2)
            .log
            .with_log(|l| Ok(l.log_start_offset()))
            .unwrap()
            == 5
    })
    .await;
    c.net.heal(3);
    c.wait_until(
        "the lagging follower restarted at the leader's start",
        |c| c.leo(3) == 8,
    )
    .await;
    let start3 = c
        .part(3)
        .log
        .with_log(|l| Ok(l.log_start_offset()))
        .unwrap();
    assert_eq!(start3, 5);
    c.wait_until("ISR expand", |c| c.ctl.partition().isr == vec![1, 2, 3])
        .await;
}

#[tokio::test]
async fn a_leader_that_never_wrote_in_its_epoch_follows_the_next_one() {
    let c = start(BTreeMap::new());
    c.produce(1, 4, true).await;
    c.wait_until("replication", |c| c.leo(2) == 4 && c.leo(3) == 4)
        .await;
    // Only 2 keeps fetching: it gets a suffix 3 never sees.
    c.net.cut(3);
    c.produce(1, 2, false).await;
    c.wait_until("2 has the suffix", |c| c.leo(2) == 6).await;
    c.net.cut(2);
    // 3 leads epoch 1 and writes nothing; then 2 leads epoch 2.
    c.ctl.change(|p| {
        p.leader = 3;
        p.leader_epoch = 1;
        p.isr = vec![3];
    });
    c.ctl.change(|p| {
        p.leader = 2;
        p.leader_epoch = 2;
        p.isr = vec![2];
    });
    c.net.heal(2);
    c.net.heal(3);
    c.produce(2, 1, false).await;
    c.wait_until("everyone at the new leader's log", |c| {
        (1..=3).all(|n| c.leo(n) == 7)
    })
    .await;
    for n in [1, 3] {
        assert_eq!(c.bytes(n, 7), c.bytes(2, 7), "node {n}");
        let pairs: Vec<(i32, i64)> = c
            .part(n)
            .log
            .with_log(|l| Ok(l.epoch_entries().to_vec()))
            .unwrap()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect();
        assert_eq!(pairs, vec![(0, 0), (2, 6)], "node {n}");
    }
}

/// Transactions across replicas: read_committed stops below an open
/// transaction (the last stable offset), followers learn which transactions
/// are open from the batches they copy, and an abort marker written by the
/// leader reaches them with its meaning.
#[tokio::test]
async fn read_committed_stops_at_an_open_transaction_on_every_replica() {
    use weir::log::txn::TxnMarker;
    let c = start(BTreeMap::new());
    let leader = c.part(1);
    let hw_past = |last: i64, epoch: i32| {
        let leader = leader.clone();
        async move {
            leader
                .wait_for_hw(last, epoch, Duration::from_secs(5))
                .await
        }
    };
    let (last, epoch) = c.produce(1, 2, true).await; // 0..=1
    assert_eq!(hw_past(last, epoch).await, codes::NONE);
    let mut txn = build_batch(
        &[SimpleRecord {
            value: Some(b"in a transaction".to_vec()),
            timestamp: 1000,
            ..Default::default()
        }],
        BatchProducer {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: 0,
            transactional: true,
        },
    );
    let (info, epoch) = leader.append_as_leader(&mut txn, true, now_ms()).unwrap();
    assert_eq!(info.first_offset, 2);
    assert_eq!(hw_past(info.last_offset, epoch).await, codes::NONE);
    let (last, epoch) = c.produce(1, 1, true).await; // 3, after the transaction
    assert_eq!(hw_past(last, epoch).await, codes::NONE);

    let committed = leader
        .read_for_consumer(0, -1, 1 << 20, true, true)
        .unwrap();
    assert_eq!(committed.high_watermark, 4);
    assert_eq!(committed.last_stable_offset, 2);
    let last_read = weir::log::batch::split_batches(&committed.records)
        .unwrap()
        .last()
        .map(|(_, h)| h.last_offset());
    assert_eq!(
        last_read,
        Some(1),
        "read_committed stops below the open transaction"
    );
    let uncommitted = leader
        .read_for_consumer(0, -1, 1 << 20, true, false)
        .unwrap();
    assert_eq!(uncommitted.last_stable_offset, 2);
    assert!(uncommitted.records.len() > committed.records.len());
    assert_eq!(leader.list_offset(-1, -1, true).unwrap().unwrap().0, 2);
    assert_eq!(leader.list_offset(-1, -1, false).unwrap().unwrap().0, 4);
    let open_on = |n: i32| {
        c.part(n)
            .log
            .with_log(|l| Ok(l.first_unstable_offset()))
            .unwrap()
    };
    c.wait_until("followers copy the open transaction", |c| {
        (2..=3).all(|n| c.leo(n) == 4 && open_on(n) == Some(2))
    })
    .await;

    // The coordinator aborts: everything is stable, the aborted transaction
    // is listed for read_committed readers, on the followers too.
    let abort = TxnMarker {
        commit: false,
        coordinator_epoch: 0,
    };
    let (m, epoch) = leader.append_marker(7, 0, abort, now_ms()).unwrap();
    assert_eq!(m.first_offset, 4);
    assert_eq!(hw_past(m.last_offset, epoch).await, codes::NONE);
    let committed = leader
        .read_for_consumer(0, -1, 1 << 20, true, true)
        .unwrap();
    assert_eq!(committed.last_stable_offset, 5);
    let aborted: Vec<(i64, i64)> = committed
        .aborted
        .iter()
        .map(|a| (a.producer_id, a.first_offset))
        .collect();
    assert_eq!(aborted, vec![(7, 2)]);
    let aborted_on = |n: i32| {
        c.part(n)
            .log
            .with_log(|l| Ok(l.aborted_transactions(0, 5).len()))
            .unwrap()
    };
    c.wait_until("followers copy the abort", |c| {
        (2..=3).all(|n| c.leo(n) == 5 && open_on(n).is_none() && aborted_on(n) == 1)
    })
    .await;
    // A follower never writes markers.
    assert_eq!(
        c.part(2)
            .append_marker(7, 0, abort, now_ms())
            .unwrap_err()
            .0,
        codes::NOT_LEADER_OR_FOLLOWER
    );
}

//! The group consumer inside the simulator: three cooperative-sticky
//! members on their own nodes split a topic; one node dies mid-stream, the
//! survivors take its partitions over after its session expires and every
//! record is read at least once (auto-commit: only records after the dead
//! member's last commit may be read twice).
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::broker::Server;
use weir::client::admin::NewTopic;
use weir::client::group::{GroupConfig, GroupConsumer};
use weir::client::{Admin, ClientConfig, Cluster, Producer, ProducerConfig, ProducerRecord};
use weir::config::ServerConfig;
use weir::env::sim_disk::{SimDisk, SimDiskOptions};

const PARTITIONS: i32 = 6;
const PER_PARTITION: i64 = 200;

#[madsim::test]
async fn members_split_and_survive_a_member_crash() {
    let handle = madsim::runtime::Handle::current();
    let broker_addr: SocketAddr = "10.0.0.1:9092".parse().unwrap();
    let broker = handle
        .create_node()
        .name("broker")
        .ip(broker_addr.ip())
        .build();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    broker.spawn(async move {
        let mut config = ServerConfig::default_single_node();
        config
            .set("listeners", "PLAINTEXT://10.0.0.1:9092")
            .unwrap();
        config.set("log.dirs", "/data").unwrap();
        config.set("group.initial.rebalance.delay.ms", "0").unwrap();
        config.set("group.min.session.timeout.ms", "100").unwrap();
        let disk = Arc::new(SimDisk::new(7, SimDiskOptions::default()));
        let server = Server::start(config, disk).await.unwrap();
        let _ = ready_tx.send(());
        std::future::pending::<()>().await;
        drop(server);
    });
    ready_rx.await.unwrap();
    let bootstrap = "10.0.0.1:9092";

    let setup = handle
        .create_node()
        .name("producer")
        .ip("10.0.0.2".parse().unwrap())
        .build();
    setup
        .spawn(async move {
            let admin = Admin::connect(bootstrap).await.unwrap();
            admin
                .create_topic(NewTopic {
                    name: "g".into(),
                    partitions: PARTITIONS,
                    replication_factor: 1,
                    configs: vec![],
                })
                .await
                .unwrap();
            let producer = Producer::connect(bootstrap, ProducerConfig::default())
                .await
                .unwrap();
            let mut futures = Vec::new();
            for p in 0..PARTITIONS {
                for i in 0..PER_PARTITION {
                    let r = ProducerRecord::new("g", format!("{p}-{i}")).with_partition(p);
                    futures.push(producer.send(r).await.unwrap());
                }
            }
            for f in futures {
                f.await.unwrap();
            }
            producer.close().await;
        })
        .await
        .unwrap();

    // (partition, offset) -> times read, over all members.
    let reads: Arc<Mutex<BTreeMap<(i32, i64), u32>>> = Arc::default();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let node = handle
            .create_node()
            .name(format!("member{i}"))
            .ip(format!("10.0.1.{i}").parse().unwrap())
            .build();
        let reads = reads.clone();
        node.spawn(async move {
            let mut cfg = GroupConfig::new("sim-group");
            cfg.set("partition.assignment.strategy", "cooperative-sticky")
                .unwrap();
            cfg.set("auto.offset.reset", "earliest").unwrap();
            cfg.set("auto.commit.interval.ms", "200").unwrap();
            cfg.set("session.timeout.ms", "1000").unwrap();
            cfg.set("heartbeat.interval.ms", "100").unwrap();
            cfg.set("max.poll.records", "5").unwrap();
            cfg.set("fetch.max.wait.ms", "50").unwrap();
            let cluster = Cluster::connect(ClientConfig::new(bootstrap))
                .await
                .unwrap();
            let mut c = GroupConsumer::subscribe(cluster, cfg, &["g".to_string()])
                .await
                .unwrap();
            loop {
                let records = c.poll(Duration::from_millis(100)).await.unwrap();
                {
                    let mut reads = reads.lock().unwrap();
                    for r in &records {
                        *reads.entry((r.partition, r.offset)).or_default() += 1;
                    }
                }
                // Slow processing, so the crash lands mid-stream.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        nodes.push(node);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before_crash = reads.lock().unwrap().len();
    assert!(
        before_crash > 0 && (before_crash as i64) < PER_PARTITION * PARTITIONS as i64,
        "the crash lands mid-stream: {before_crash} read"
    );
    handle.kill(nodes[2].id());
    // Session expiry (1 s) plus a rebalance, then the rest of the log.
    let total = (PER_PARTITION * PARTITIONS as i64) as usize;
    for _ in 0..600 {
        if reads.lock().unwrap().len() == total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reads = reads.lock().unwrap();
    assert_eq!(reads.len(), total, "every record read at least once");
    let twice = reads.values().filter(|&&n| n > 1).count();
    eprintln!("read {before_crash} before the crash; {twice} read twice");
    // At most one auto-commit interval of the dead member's records, read
    // by it and again by its successor (5 records per 50 ms poll, 200 ms
    // interval, plus one poll: 25 per partition it held, at most 2 of them).
    assert!(twice <= 50, "{twice} records read twice");
}

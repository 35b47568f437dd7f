//! Two brokers on loopback, each a real `Broker` serving Kafka over TCP,
//! replicating one partition through Fetch v12 (TcpEndpoint), with the fake
//! controller of replica_support standing in for the quorum. Clients talk
//! raw Kafka: produce acks=all, consumer fetches, ListOffsets,
//! OffsetForLeaderEpoch, NOT_LEADER_OR_FOLLOWER with the leader's id.
#![cfg(not(madsim))]

mod broker_support;
mod replica_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use broker_support::{batch, fetch_partition0, produce_partition0, record, Client};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    FetchRequest, ListOffsetsRequest, OffsetForLeaderEpochRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use replica_support::{FakeController, Isr, TOPIC};
use tokio::net::TcpListener;
use tokio::sync::watch;
use uuid::Uuid;
use weir::broker::cluster_link::{BrokerIdentity, ClusterLink};
use weir::broker::producer_ids::ProducerIdBlock;
use weir::broker::registry::Registry;
use weir::broker::{connection, Broker};
use weir::config::ServerConfig;
use weir::controller::client::ControllerClient;
use weir::coordinator::group::GroupService;
use weir::env::sim_disk::{SimDisk, SimDiskOptions};
use weir::env::time::{sleep, Duration};
use weir::env::Disk;
use weir::replica::endpoint::TcpEndpoints;
use weir::replica::{ReplicaManager, ReplicaSettings};

struct Node {
    broker: Arc<Broker>,
    addr: std::net::SocketAddr,
    _shutdown: watch::Sender<bool>,
}

async fn node(id: i32, ctl: &Arc<FakeController>) -> Node {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(SimDisk::new(id as u64, SimDiskOptions::default()));
    let mut config = ServerConfig::default_single_node();
    config.node_id = id;
    config.log_dirs = vec!["/data".into()];
    for (k, v) in [
        ("replica.fetch.wait.max.ms", "100"),
        ("replica.fetch.backoff.ms", "20"),
    ] {
        config.set(k, v).unwrap();
    }
    let config = Arc::new(config);
    let registry = Arc::new(Registry::open(disk, config.clone()).unwrap());
    let replicas = Arc::new(ReplicaManager::new(
        ReplicaSettings::from_config(&config),
        registry.clone(),
        Arc::new(Isr(ctl.clone())),
        Arc::new(TcpEndpoints::default()),
    ));
    ctl.nodes.lock().unwrap().push(Arc::downgrade(&replicas));
    let (tx, rx) = watch::channel(false);
    // The fake controller feeds images to the replica managers directly;
    // this link to a controller that does not exist is never called.
    let cluster = Arc::new(ClusterLink::new(
        BrokerIdentity {
            node_id: id,
            host: "127.0.0.1".into(),
            port: addr.port() as i32,
            rack: None,
        },
        Uuid::from_u128(id as u128),
        ControllerClient::new(Vec::new(), None),
    ));
    let broker = Arc::new(Broker {
        config: config.clone(),
        producer_ids: Mutex::new(ProducerIdBlock::default()),
        groups: GroupService::open(&config, replicas.clone()),
        txns: weir::coordinator::txn::service::TxnService::open(&config, replicas.clone(), {
            let c = cluster.clone();
            Arc::new(weir::coordinator::txn::service::TcpMarkerSender::new(
                move || c.image(),
            ))
        }),
        cluster,
        registry,
        replicas,
        advertised_host: "127.0.0.1".into(),
        advertised_port: addr.port() as i32,
        shutdown: rx,
    });
    let b = broker.clone();
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            tokio::spawn(connection::serve(b.clone(), stream, peer));
        }
    });
    Node {
        broker,
        addr,
        _shutdown: tx,
    }
}

fn recs(n: usize) -> bytes::Bytes {
    let r: Vec<_> = (0..n)
        .map(|i| record(&format!("k{i}"), b"value", 1000 + i as i64))
        .collect();
    batch(&r)
}

fn name() -> TopicName {
    TopicName(StrBytes::from_static_str(TOPIC))
}

#[tokio::test]
async fn two_brokers_replicate_over_kafka_fetch() {
    let ctl = FakeController::new(Uuid::from_u128(7));
    let n1 = node(1, &ctl).await;
    let n2 = node(2, &ctl).await;
    let mut configs = BTreeMap::new();
    configs.insert("min.insync.replicas".to_string(), "2".to_string());
    ctl.create(
        &[(1, n1.addr.port()), (2, n2.addr.port())],
        configs,
        vec![1, 2],
    );
    let mut c1 = Client::connect(n1.addr).await;
    let mut c2 = Client::connect(n2.addr).await;

    // acks=all returns once the follower fetched the batch over TCP.
    let (code, base) = produce_partition0(&mut c1, TOPIC, -1, 10_000, recs(3)).await;
    assert_eq!((code, base), (0, 0));
    let hw = n1.broker.replicas.get(TOPIC, 0).unwrap().high_watermark();
    assert_eq!(hw, 3);
    let follower = n2.broker.replicas.get(TOPIC, 0).unwrap();
    assert_eq!(
        follower.log.with_log(|l| Ok(l.log_end_offset())).unwrap(),
        3
    );

    // Consumers read from the leader; the follower names the leader.
    let (code, _, got) = fetch_partition0(&mut c1, TOPIC, 0).await;
    assert_eq!((code, got.len()), (0, 3));
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(-1)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = c2.call(12, &req).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 6);
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (1, 0)
    );
    // Produce to the follower: NOT_LEADER_OR_FOLLOWER.
    let (code, _) = produce_partition0(&mut c2, TOPIC, -1, 1000, recs(1)).await;
    assert_eq!(code, 6);

    // ListOffsets latest = HW; OffsetForLeaderEpoch from the epoch cache.
    let lo = ListOffsetsRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name())
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(0)
                .with_timestamp(-1)])]);
    let resp = c1.call(7, &lo).await;
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.offset, p.leader_epoch), (0, 3, 0));
    let ofle = OffsetForLeaderEpochRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(name())
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_current_leader_epoch(0)
                .with_leader_epoch(0)])]);
    let resp = c1.call(4, &ofle).await;
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, 0, 3));

    // Leadership moves to 2 (epoch 1): it takes writes, 1 follows.
    ctl.change(|p| {
        p.leader = 2;
        p.leader_epoch = 1;
    });
    let (code, base) = produce_partition0(&mut c2, TOPIC, -1, 10_000, recs(2)).await;
    assert_eq!((code, base), (0, 3));
    // The epoch is checked first (KIP-320): a stale one is fenced, even
    // by a replica that no longer leads; the current one is refused there.
    let resp = c1.call(4, &ofle).await;
    assert_eq!(resp.topics[0].partitions[0].error_code, 74);
    let resp = c2.call(4, &ofle).await;
    assert_eq!(resp.topics[0].partitions[0].error_code, 74);
    let mut current = ofle.clone();
    current.topics[0].partitions[0].current_leader_epoch = 1;
    let resp = c1.call(4, &current).await;
    assert_eq!(resp.topics[0].partitions[0].error_code, 6);
    let resp = c2.call(4, &current).await;
    let p = &resp.topics[0].partitions[0];
    assert_eq!((p.error_code, p.leader_epoch, p.end_offset), (0, 0, 3));
    for _ in 0..200 {
        let hw = n1.broker.replicas.get(TOPIC, 0).unwrap().high_watermark();
        if hw == 5 {
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        n1.broker.replicas.get(TOPIC, 0).unwrap().high_watermark(),
        5
    );
}

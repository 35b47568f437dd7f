//! Multi-node clusters in one process on loopback: a controller-only node
//! with a broker-only node (process.roles split), and three combined nodes
//! whose partition leader shuts down cleanly (controlled shutdown moves the
//! leadership first, and acknowledged acks=all writes stay readable).
#![cfg(not(madsim))]

mod broker_support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use broker_support::{batch, fetch_partition0, produce_partition0, record, Client};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{CreateTopicsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use weir::broker::Server;
use weir::config::ServerConfig;
use weir::env::RealDisk;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node_config(dir: &Path, id: i32, roles: &str, listeners: &str, voters: &str) -> ServerConfig {
    let mut c = ServerConfig::default_single_node();
    for (k, v) in [
        ("node.id", id.to_string()),
        ("process.roles", roles.to_string()),
        ("listeners", listeners.to_string()),
        ("controller.quorum.voters", voters.to_string()),
        (
            "log.dirs",
            dir.join(format!("node{id}")).display().to_string(),
        ),
        ("broker.heartbeat.interval.ms", "100".to_string()),
        ("broker.session.timeout.ms", "2000".to_string()),
        ("replica.fetch.wait.max.ms", "50".to_string()),
    ] {
        c.set(k, &v).unwrap();
    }
    c
}

async fn start(c: ServerConfig) -> Server {
    Server::start(c, Arc::new(RealDisk::new())).await.unwrap()
}

async fn create(addr: SocketAddr, topic: &str, rf: i16, min_isr: &str) {
    let mut c = Client::connect(addr).await;
    let req = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.into())))
        .with_num_partitions(1)
        .with_replication_factor(rf)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("min.insync.replicas"))
            .with_value(Some(StrBytes::from_string(min_isr.into())))])]);
    let r = c.call(5, &req).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

/// (leader, isr) of partition 0 as `addr` reports it.
async fn leader_isr(addr: SocketAddr, topic: &str) -> (i32, Vec<i32>) {
    let mut c = Client::connect(addr).await;
    let req = MetadataRequest::default().with_topics(Some(vec![
        kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.into())))),
    ]));
    let r = c.call(9, &req).await;
    let p = &r.topics[0].partitions[0];
    (p.leader_id.0, p.isr_nodes.iter().map(|b| b.0).collect())
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn a_broker_only_node_serves_topics_of_a_controller_only_node() {
    let dir = tempfile::tempdir().unwrap();
    let cport = free_port();
    let voters = format!("1@127.0.0.1:{cport}");
    let controller = start(node_config(
        dir.path(),
        1,
        "controller",
        &format!("CONTROLLER://127.0.0.1:{cport}"),
        &voters,
    ))
    .await;
    let broker = start(node_config(
        dir.path(),
        2,
        "broker",
        "PLAINTEXT://127.0.0.1:0",
        &voters,
    ))
    .await;
    assert!(broker.wait_until_serving(Duration::from_secs(20)).await);
    let addr = broker.local_addr();
    create(addr, "split", 1, "1").await;
    let mut c = Client::connect(addr).await;
    let (code, base) =
        produce_partition0(&mut c, "split", -1, 5000, batch(&[record("k", b"v", 1)])).await;
    assert_eq!((code, base), (0, 0));
    let (code, _, recs) = fetch_partition0(&mut c, "split", 0).await;
    assert_eq!((code, recs.len()), (0, 1));
    assert_eq!(leader_isr(addr, "split").await, (2, vec![2]));
    // The controller node hosts no partition: its data dir has no log.
    assert!(!dir.path().join("node1").join("split-0").exists());
    broker.shutdown().await.unwrap();
    controller.shutdown().await.unwrap();
}

#[tokio::test]
async fn controlled_shutdown_moves_the_leader_and_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let voters = (1..=3)
        .map(|i| format!("{i}@127.0.0.1:{}", ports[i - 1]))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let listeners = format!(
            "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:{}",
            ports[i - 1]
        );
        nodes.push(Some(
            start(node_config(
                dir.path(),
                i as i32,
                "broker,controller",
                &listeners,
                &voters,
            ))
            .await,
        ));
    }
    for n in nodes.iter().flatten() {
        assert!(n.wait_until_serving(Duration::from_secs(30)).await);
    }
    let addrs: Vec<SocketAddr> = nodes.iter().flatten().map(|n| n.local_addr()).collect();
    create(addrs[0], "moved", 3, "2").await;
    eventually("all three replicas are in sync", || async {
        leader_isr(addrs[0], "moved").await.1.len() == 3
    })
    .await;
    let (leader, _) = leader_isr(addrs[0], "moved").await;
    let leader_addr = addrs[(leader - 1) as usize];
    let mut c = Client::connect(leader_addr).await;
    for i in 0..20 {
        let (code, base) = produce_partition0(
            &mut c,
            "moved",
            -1,
            5000,
            batch(&[record("k", format!("v{i}").as_bytes(), i)]),
        )
        .await;
        assert_eq!((code, base), (0, i), "acks=all produce {i}");
    }
    // SIGTERM's path: the leader hands its partitions over before it stops.
    let old = nodes[(leader - 1) as usize].take().unwrap();
    old.shutdown().await.unwrap();
    let other = addrs[(leader % 3) as usize];
    eventually("a new leader is elected", || async {
        let (l, _) = leader_isr(other, "moved").await;
        l > 0 && l != leader
    })
    .await;
    let (new_leader, isr) = leader_isr(other, "moved").await;
    assert!(
        !isr.contains(&leader),
        "the stopped broker left the ISR: {isr:?}"
    );
    let mut c = Client::connect(addrs[(new_leader - 1) as usize]).await;
    let (code, _, recs) = fetch_partition0(&mut c, "moved", 0).await;
    assert_eq!(code, 0);
    let values: Vec<_> = recs.iter().map(|(_, v)| v.clone().unwrap()).collect();
    let want: Vec<_> = (0..20).map(|i| format!("v{i}")).collect();
    assert_eq!(
        values,
        want.iter()
            .map(|v| bytes::Bytes::from(v.clone()))
            .collect::<Vec<_>>()
    );
    // Still writable with two of three in sync (min.insync.replicas=2).
    let (code, base) = produce_partition0(
        &mut c,
        "moved",
        -1,
        5000,
        batch(&[record("k", b"after", 99)]),
    )
    .await;
    assert_eq!((code, base), (0, 20));
    for n in nodes.into_iter().flatten() {
        n.shutdown().await.unwrap();
    }
}

//! Groups inside madsim: a member joins, syncs and commits over simulated
//! TCP; a second member's JoinGroup is still waiting when the broker shuts
//! down (shutdown must not hang on it); after a restart on the same SimDisk
//! the committed offsets and the group's generation are back.
#![cfg(madsim)]

mod broker_support;

use std::net::SocketAddr;
use std::sync::Arc;

use broker_support::*;
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir::broker::Server;
use weir::config::ServerConfig;
use weir::env::sim_disk::{SimDisk, SimDiskOptions};

const BROKER_IP: &str = "10.0.0.1";

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join_req(member: &str) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(GroupId(s("g")))
        .with_member_id(s(member))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(60_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"sub"))])
}

/// Start a broker on `node` over `disk`; returns its address and a stopper.
async fn start_broker(
    node: &madsim::runtime::NodeHandle,
    disk: Arc<SimDisk>,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    madsim::task::JoinHandle<()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<SocketAddr>();
    let task = node.spawn(async move {
        let mut cfg = ServerConfig::default_single_node();
        cfg.set("listeners", &format!("PLAINTEXT://{BROKER_IP}:9092"))
            .unwrap();
        cfg.set("log.dirs", "/data").unwrap();
        cfg.set("group.initial.rebalance.delay.ms", "0").unwrap();
        let server = Server::start(cfg, disk).await.unwrap();
        ready_tx.send(server.local_addr()).unwrap();
        let _ = stop_rx.await;
        server.shutdown().await.unwrap();
    });
    (ready_rx.await.unwrap(), stop_tx, task)
}

#[tokio::test]
async fn offsets_and_group_survive_a_restart_and_waiting_joins_end_at_shutdown() {
    let handle = madsim::runtime::Handle::current();
    let broker_node = handle
        .create_node()
        .name("broker")
        .ip(BROKER_IP.parse().unwrap())
        .build();
    let client_node = handle
        .create_node()
        .name("client")
        .ip("10.0.0.2".parse().unwrap())
        .build();
    let disk = Arc::new(SimDisk::new(11, SimDiskOptions::default()));

    let (addr, stop, task) = start_broker(&broker_node, disk.clone()).await;
    let (member, waiting) = client_node
        .spawn(async move {
            let mut c = Client::connect(addr).await;
            let r = c
                .call(
                    7,
                    &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                        .with_name(TopicName(s("t")))
                        .with_num_partitions(2)
                        .with_replication_factor(1)]),
                )
                .await;
            assert_eq!(r.topics[0].error_code, 0);
            // The lookup creates __consumer_offsets; this broker leads it.
            let f = c
                .call(3, &FindCoordinatorRequest::default().with_key(s("g")))
                .await;
            assert_eq!(f.error_code, 0);
            let r = c.call(9, &join_req("")).await;
            assert_eq!(r.error_code, 79);
            let j = c.call(9, &join_req(r.member_id.as_str())).await;
            assert_eq!(j.error_code, 0);
            let id = j.member_id.to_string();
            let sr = c
                .call(
                    5,
                    &SyncGroupRequest::default()
                        .with_group_id(GroupId(s("g")))
                        .with_member_id(s(&id))
                        .with_generation_id(j.generation_id)
                        .with_assignments(vec![SyncGroupRequestAssignment::default()
                            .with_member_id(s(&id))
                            .with_assignment(Bytes::from_static(b"both"))]),
                )
                .await;
            assert_eq!(sr.error_code, 0);
            let oc = c
                .call(
                    9,
                    &OffsetCommitRequest::default()
                        .with_group_id(GroupId(s("g")))
                        .with_member_id(s(&id))
                        .with_generation_id_or_member_epoch(j.generation_id)
                        .with_topics(vec![OffsetCommitRequestTopic::default()
                            .with_name(TopicName(s("t")))
                            .with_partitions(vec![OffsetCommitRequestPartition::default()
                                .with_partition_index(1)
                                .with_committed_offset(42)])]),
                )
                .await;
            assert_eq!(oc.topics[0].partitions[0].error_code, 0);
            // A second member: its JoinGroup waits for the first to rejoin.
            let mut w = Client::connect(addr).await;
            let r = w.call(9, &join_req("")).await;
            w.send(9, &join_req(r.member_id.as_str())).await;
            (id, w)
        })
        .await
        .unwrap();
    // Shutdown completes although a JoinGroup is parked in the coordinator.
    stop.send(()).unwrap();
    task.await.unwrap();
    drop(waiting);

    let (addr, stop, task) = start_broker(&broker_node, disk).await;
    client_node
        .spawn(async move {
            let mut c = Client::connect(addr).await;
            let f = c
                .call(
                    7,
                    &OffsetFetchRequest::default()
                        .with_group_id(GroupId(s("g")))
                        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                            .with_name(TopicName(s("t")))
                            .with_partition_indexes(vec![0, 1])])),
                )
                .await;
            let offsets: Vec<i64> = f.topics[0]
                .partitions
                .iter()
                .map(|p| p.committed_offset)
                .collect();
            assert_eq!(offsets, vec![-1, 42]);
            let d = c
                .call(
                    5,
                    &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("g"))]),
                )
                .await;
            assert_eq!(d.groups[0].group_state.as_str(), "Stable");
            assert_eq!(d.groups[0].members.len(), 1);
            assert_eq!(d.groups[0].members[0].member_id.as_str(), member);
        })
        .await
        .unwrap();
    stop.send(()).unwrap();
    task.await.unwrap();
}

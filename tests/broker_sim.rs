//! The broker inside madsim: a server node and a client node talking over
//! simulated TCP (ApiVersions, CreateTopics, Produce, Fetch).
#![cfg(madsim)]

mod broker_support;

use std::net::SocketAddr;
use std::sync::Arc;

use broker_support::*;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir::broker::Server;
use weir::config::ServerConfig;
use weir::env::sim_disk::{SimDisk, SimDiskOptions};

const BROKER_IP: &str = "10.0.0.1";

#[tokio::test]
async fn broker_serves_a_client_on_another_node() {
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
    // The simulator's in-memory disk (no faults here): the broker's files never touch the host.
    let disk = Arc::new(SimDisk::new(7, SimDiskOptions::default()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<SocketAddr>();
    let server_task = broker_node.spawn(async move {
        let mut cfg = ServerConfig::default_single_node();
        cfg.set("listeners", &format!("PLAINTEXT://{BROKER_IP}:9092"))
            .unwrap();
        cfg.set("log.dirs", "/data").unwrap();
        let server = Server::start(cfg, disk).await.unwrap();
        ready_tx.send(server.local_addr()).unwrap();
        let _ = stop_rx.await;
        server.shutdown().await.unwrap();
    });
    let addr = ready_rx.await.unwrap();
    assert_eq!(addr.to_string(), format!("{BROKER_IP}:9092"));

    client_node
        .spawn(async move {
            let mut c = Client::connect(addr).await;
            let v = c.call(3, &ApiVersionsRequest::default()).await;
            assert_eq!(v.error_code, 0);
            let md = c.call(12, &MetadataRequest::default()).await;
            assert_eq!(md.brokers[0].host.as_str(), BROKER_IP);
            let topic = TopicName(StrBytes::from_static_str("sim"));
            let r = c
                .call(
                    7,
                    &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                        .with_name(topic.clone())
                        .with_num_partitions(1)
                        .with_replication_factor(1)]),
                )
                .await;
            assert_eq!(r.topics[0].error_code, 0);
            let records = batch(&[record("k", b"simulated", 1)]);
            let p = c
                .call(
                    9,
                    &ProduceRequest::default()
                        .with_transactional_id(None)
                        .with_acks(-1)
                        .with_timeout_ms(1000)
                        .with_topic_data(vec![TopicProduceData::default()
                            .with_name(topic.clone())
                            .with_partition_data(vec![PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(records))])]),
                )
                .await;
            assert_eq!(p.responses[0].partition_responses[0].error_code, 0);
            let f = c
                .call(
                    11,
                    &FetchRequest::default()
                        .with_max_wait_ms(100)
                        .with_min_bytes(1)
                        .with_max_bytes(1 << 20)
                        .with_topics(vec![FetchTopic::default()
                            .with_topic(topic)
                            .with_partitions(vec![FetchPartition::default()
                                .with_partition(0)
                                .with_fetch_offset(0)
                                .with_partition_max_bytes(1 << 20)])]),
                )
                .await;
            let got = decode_records(f.responses[0].partitions[0].records.clone().unwrap());
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].value.as_deref(), Some(&b"simulated"[..]));
        })
        .await
        .unwrap();
    stop_tx.send(()).unwrap();
    server_task.await.unwrap();
}

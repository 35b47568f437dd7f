//! Disk full: a produce that hits ENOSPC fails with KAFKA_STORAGE_ERROR and
//! takes the log dir offline (every partition in it answers produce, fetch
//! and Metadata with error 56); after space returns and the broker restarts
//! on the same disk, every acknowledged record is back. Runs on tokio over
//! SimDisk (an in-memory Disk with a capacity limit) and loopback sockets.
#![cfg(not(madsim))]

mod broker_support;

use std::sync::Arc;

use broker_support::*;
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir::broker::Server;
use weir::env::sim_disk::{SimDisk, SimDiskOptions};

const STORAGE_ERROR: i16 = 56;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn start_on(disk: &Arc<SimDisk>) -> Server {
    let mut c = weir::config::ServerConfig::default_single_node();
    c.set("listeners", "PLAINTEXT://127.0.0.1:0").unwrap();
    c.set("log.dirs", "/data").unwrap();
    Server::start(c, disk.clone()).await.unwrap()
}

async fn create(c: &mut Client, topic: &str) {
    // Small segments so the fill crosses rolls (seal, new segment, snapshot).
    let t = CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str("segment.bytes"))
            .with_value(Some(StrBytes::from_static_str("16384")))]);
    let resp = c
        .call(7, &CreateTopicsRequest::default().with_topics(vec![t]))
        .await;
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
}

/// (error code, base offset) of an acks=all produce.
async fn produce(c: &mut Client, topic: &str, records: Bytes) -> (i16, i64) {
    produce_partition0(c, topic, -1, 5000, records).await
}

async fn fetch(c: &mut Client, topic: &str, offset: i64) -> (i16, Vec<(i64, Option<Bytes>)>) {
    let (code, _, recs) = fetch_partition0(c, topic, offset).await;
    (code, recs)
}

async fn fetch_all(c: &mut Client, topic: &str) -> Vec<(i64, Option<Bytes>)> {
    let mut offset = 0;
    let mut out = Vec::new();
    loop {
        let (err, recs) = fetch(c, topic, offset).await;
        assert_eq!(err, 0);
        let Some(last) = recs.last() else {
            return out;
        };
        offset = last.0 + 1;
        out.extend(recs);
    }
}

async fn metadata_partition(c: &mut Client, topic: &str) -> (i16, i32, Vec<i32>) {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let resp = c.call(12, &req).await;
    let p = &resp.topics[0].partitions[0];
    (
        p.error_code,
        p.leader_id.0,
        p.offline_replicas.iter().map(|b| b.0).collect(),
    )
}

fn value(i: usize) -> Vec<u8> {
    format!("value-{i:06}-{}", "x".repeat(900)).into_bytes()
}

#[tokio::test]
async fn enospc_takes_the_log_dir_offline_and_a_restart_recovers_every_ack() {
    // Different room left, so the failure lands on different writes: the
    // log, an index, a roll's new segment or its producer snapshot.
    for slack in [80 * 1024, 20_011, 33_333, 47_500, 65_537, 100_003] {
        fill_then_recover(slack).await;
    }
}

async fn fill_then_recover(slack: u64) {
    let disk = Arc::new(SimDisk::new(5, SimDiskOptions::default()));
    let server = start_on(&disk).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, "fill").await;
    create(&mut c, "bystander").await;
    assert_eq!(
        produce(&mut c, "bystander", batch(&[record("b", b"before", 1)])).await,
        (0, 0)
    );

    // Leave room for a few segments' worth, then fill it.
    let mut options = disk.options();
    options.capacity_bytes_max = disk.used_bytes() + slack;
    disk.set_options(options.clone());
    let mut acked: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut failure = None;
    for i in 0..10_000 {
        let v = value(i);
        let (err, base) = produce(&mut c, "fill", batch(&[record("k", &v, i as i64)])).await;
        if err != 0 {
            failure = Some(err);
            break;
        }
        assert_eq!(base, acked.len() as i64, "offsets are dense");
        acked.push((base, v));
    }
    assert_eq!(
        failure,
        Some(STORAGE_ERROR),
        "slack {slack}: the fill must end in ENOSPC"
    );
    assert!(disk.stats().no_space_errors > 0);
    assert!(acked.len() > 10, "some records fit: {}", acked.len());

    // The whole log dir is offline: both partitions, produce and fetch.
    let (err, _) = produce(&mut c, "fill", batch(&[record("k", b"again", 1)])).await;
    assert_eq!(err, STORAGE_ERROR);
    let (err, recs) = fetch(&mut c, "fill", 0).await;
    assert_eq!(err, STORAGE_ERROR);
    assert!(recs.is_empty(), "nothing is served from an offline log");
    let (err, _) = produce(&mut c, "bystander", batch(&[record("b", b"after", 1)])).await;
    assert_eq!(err, STORAGE_ERROR);
    let (err, _) = fetch(&mut c, "bystander", 0).await;
    assert_eq!(err, STORAGE_ERROR);
    for topic in ["fill", "bystander"] {
        let (err, leader, offline) = metadata_partition(&mut c, topic).await;
        assert_eq!(err, STORAGE_ERROR, "{topic}");
        assert_eq!(leader, -1, "{topic}");
        assert_eq!(offline, vec![1], "{topic}");
    }
    // No new log opens on an offline dir. The controller does not know
    // about the failed dir (it may place the topic here), but the broker
    // opens no log for it, so nothing is written there and a produce fails.
    c.call(
        7,
        &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
            .with_name(name("late"))
            .with_num_partitions(1)
            .with_replication_factor(1)]),
    )
    .await;
    let (err, _) = produce(&mut c, "late", batch(&[record("l", b"late", 1)])).await;
    assert_ne!(err, 0, "a record landed on an offline log dir");
    drop(c);
    server.shutdown().await.unwrap();

    // Space returns; the restart recovers every log.
    options.capacity_bytes_max = u64::MAX;
    disk.set_options(options);
    let server = start_on(&disk).await;
    let mut c = Client::connect(server.local_addr()).await;
    let got = fetch_all(&mut c, "fill").await;
    assert!(
        got.len() >= acked.len(),
        "lost acknowledged records: {} < {}",
        got.len(),
        acked.len()
    );
    for ((off, v), (got_off, got_v)) in acked.iter().zip(&got) {
        assert_eq!(off, got_off);
        assert_eq!(got_v.as_deref(), Some(&v[..]), "offset {off}");
    }
    // An unacknowledged tail may survive (it reached the file), never more.
    assert!(got.len() <= acked.len() + 1);
    let by = fetch_all(&mut c, "bystander").await;
    assert_eq!(by.len(), 1);
    assert_eq!(by[0].1.as_deref(), Some(&b"before"[..]));
    let (err, _, _) = metadata_partition(&mut c, "fill").await;
    assert_eq!(err, 0);
    let (err, base) = produce(&mut c, "fill", batch(&[record("k", b"after", 1)])).await;
    assert_eq!(err, 0);
    assert_eq!(base, got.len() as i64);
    drop(c);
    server.shutdown().await.unwrap();
}

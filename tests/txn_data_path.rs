//! Transactions on the data path, over real connections: transactional
//! Produce, WriteTxnMarkers, read_committed Fetch (LSO, aborted list) and
//! ListOffsets, long-poll wake-up on COMMIT, and state across a restart.
#![cfg(not(madsim))]

mod broker_support;

use std::time::Duration;

use broker_support::*;
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir::log::batch::{build_batch, BatchProducer, SimpleRecord};
use weir::log::txn::{build_marker, TxnMarker as Marker};

const TOPIC: &str = "tx";

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn create(c: &mut Client, topic: &str) {
    let r = c
        .call(
            7,
            &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
        )
        .await;
    assert_eq!(r.topics[0].error_code, 0);
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    let recs: Vec<SimpleRecord> = values
        .iter()
        .map(|v| SimpleRecord {
            key: Some(b"k".to_vec()),
            value: Some(v.as_bytes().to_vec()),
            headers: Vec::new(),
            timestamp: 1000,
        })
        .collect();
    Bytes::from(build_batch(
        &recs,
        BatchProducer {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            transactional: true,
        },
    ))
}

async fn produce(c: &mut Client, txn_id: Option<&str>, records: Bytes) -> (i16, i64) {
    let req = ProduceRequest::default()
        .with_transactional_id(txn_id.map(|t| TransactionalId(StrBytes::from_string(t.into()))))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let r = c.call(9, &req).await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// WriteTxnMarkers (v1, the one version served) for one producer on
/// `topic` partitions: the error codes.
async fn marker(
    c: &mut Client,
    topic: &str,
    partitions: Vec<i32>,
    pid: i64,
    epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
) -> Vec<i16> {
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_transaction_result(commit)
        .with_coordinator_epoch(coordinator_epoch)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(name(topic))
            .with_partition_indexes(partitions)])]);
    let r = c.call(1, &req).await;
    assert_eq!(r.markers.len(), 1);
    assert_eq!(r.markers[0].producer_id.0, pid);
    r.markers[0].topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect()
}

fn fetch_req(offset: i64, isolation: i8, wait_ms: i32, min_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(TOPIC))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

struct Fetched {
    hw: i64,
    lso: i64,
    /// (offset, control) of every record returned.
    offsets: Vec<(i64, bool)>,
    aborted: Vec<(i64, i64)>,
}

async fn fetch(c: &mut Client, offset: i64, isolation: i8) -> Fetched {
    let r = c.call(11, &fetch_req(offset, isolation, 0, 0)).await;
    fetched(&r)
}

fn fetched(r: &FetchResponse) -> Fetched {
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    Fetched {
        hw: p.high_watermark,
        lso: p.last_stable_offset,
        offsets: p
            .records
            .clone()
            .map(decode_records)
            .unwrap_or_default()
            .iter()
            .map(|r| (r.offset, r.control))
            .collect(),
        aborted: p
            .aborted_transactions
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect(),
    }
}

async fn latest(c: &mut Client, isolation: i8) -> i64 {
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(TOPIC))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let r = c.call(7, &req).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

fn offsets(f: &Fetched) -> Vec<i64> {
    f.offsets.iter().map(|&(o, _)| o).collect()
}

#[tokio::test]
async fn commit_abort_lso_and_aborted_list() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, TOPIC).await;
    let pid = c
        .call(
            4,
            &InitProducerIdRequest::default().with_transactional_id(None),
        )
        .await
        .producer_id
        .0;

    // A plain record, then an open transaction of two records at 1..=2.
    assert_eq!(
        produce(&mut c, None, batch(&[record("a", b"plain", 1)])).await,
        (0, 0)
    );
    assert_eq!(
        produce(&mut c, Some("t"), txn_batch(pid, 0, 0, &["x", "y"])).await,
        (0, 1)
    );

    // read_committed stops at the LSO; read_uncommitted sees up to the HW.
    let rc = fetch(&mut c, 0, 1).await;
    assert_eq!((rc.hw, rc.lso), (3, 1));
    assert_eq!(offsets(&rc), vec![0]);
    let ru = fetch(&mut c, 0, 0).await;
    assert_eq!((ru.hw, ru.lso), (3, 1), "both levels report the real LSO");
    assert_eq!(offsets(&ru), vec![0, 1, 2]);
    assert!(ru.aborted.is_empty());
    assert_eq!(latest(&mut c, 1).await, 1);
    assert_eq!(latest(&mut c, 0).await, 3);
    // At the LSO a read_committed fetch reads nothing (not out of range).
    assert!(fetch(&mut c, 1, 1).await.offsets.is_empty());

    // COMMIT: marker at 3; everything visible, no aborted transaction.
    assert_eq!(
        marker(&mut c, TOPIC, vec![0], pid, 0, 5, true).await,
        vec![0]
    );
    let rc = fetch(&mut c, 0, 1).await;
    assert_eq!((rc.hw, rc.lso), (4, 4));
    assert_eq!(
        rc.offsets,
        vec![(0, false), (1, false), (2, false), (3, true)]
    );
    assert!(rc.aborted.is_empty());
    assert_eq!(latest(&mut c, 1).await, 4);

    // A second transaction at 4, aborted by a marker at 5.
    assert_eq!(
        produce(&mut c, Some("t"), txn_batch(pid, 0, 2, &["z"])).await,
        (0, 4)
    );
    assert_eq!(latest(&mut c, 1).await, 4);
    assert_eq!(
        marker(&mut c, TOPIC, vec![0], pid, 0, 5, false).await,
        vec![0]
    );
    let rc = fetch(&mut c, 0, 1).await;
    assert_eq!((rc.hw, rc.lso), (6, 6));
    assert_eq!(rc.aborted, vec![(pid, 4)]);
    assert_eq!(fetch(&mut c, 5, 1).await.aborted, vec![(pid, 4)]);
    assert!(fetch(&mut c, 6, 1).await.aborted.is_empty());
    assert!(
        fetch(&mut c, 0, 0).await.aborted.is_empty(),
        "read_uncommitted lists none"
    );

    // Fencing and bad input, each per partition.
    assert_eq!(
        marker(&mut c, TOPIC, vec![0], pid, 0, 4, true).await,
        vec![52]
    );
    assert_eq!(
        marker(&mut c, TOPIC, vec![9], pid, 0, 5, true).await,
        vec![3]
    );
    assert_eq!(
        marker(&mut c, "nope", vec![0], pid, 0, 5, true).await,
        vec![3]
    );
    // Clients never write control batches; transactional bit and id must agree.
    let m = Marker {
        commit: true,
        coordinator_epoch: 5,
    };
    let control = Bytes::from(build_marker(pid, 0, m, 1));
    assert_eq!(produce(&mut c, Some("t"), control).await.0, 87);
    assert_eq!(
        produce(&mut c, None, txn_batch(pid, 0, 3, &["w"])).await.0,
        87
    );
    assert_eq!(latest(&mut c, 0).await, 6, "nothing refused was stored");

    // A transaction left open across a restart keeps the LSO down, and the
    // aborted list survives (txn index and producer snapshot on disk).
    assert_eq!(
        produce(&mut c, Some("t"), txn_batch(pid, 0, 3, &["open"])).await,
        (0, 6)
    );
    server.shutdown().await.unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    let rc = fetch(&mut c, 0, 1).await;
    assert_eq!((rc.hw, rc.lso), (7, 6));
    assert_eq!(rc.aborted, vec![(pid, 4)]);
    assert_eq!(latest(&mut c, 1).await, 6);
    assert_eq!(
        marker(&mut c, TOPIC, vec![0], pid, 0, 5, true).await,
        vec![0]
    );
    assert_eq!(fetch(&mut c, 0, 1).await.lso, 8);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn commit_wakes_a_read_committed_long_poll() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, TOPIC).await;
    let pid = c
        .call(
            4,
            &InitProducerIdRequest::default().with_transactional_id(None),
        )
        .await
        .producer_id
        .0;
    assert_eq!(
        produce(&mut c, Some("t"), txn_batch(pid, 0, 0, &["x"])).await,
        (0, 0)
    );
    let mut poller = Client::connect(server.local_addr()).await;
    let started = std::time::Instant::now();
    let poll = tokio::spawn(async move {
        let r = poller.call(11, &fetch_req(0, 1, 20_000, 1)).await;
        fetched(&r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!poll.is_finished(), "nothing is committed yet");
    assert_eq!(
        marker(&mut c, TOPIC, vec![0], pid, 0, 0, true).await,
        vec![0]
    );
    let got = tokio::time::timeout(Duration::from_secs(10), poll)
        .await
        .expect("the commit woke the fetch")
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(got.lso, 2);
    assert_eq!(got.offsets, vec![(0, false), (1, true)]);
    server.shutdown().await.unwrap();
}

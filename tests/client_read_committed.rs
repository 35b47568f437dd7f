//! Weir's consumer against a real broker's transactional data path: a
//! read_committed consumer skips an aborted transaction interleaved with a
//! committed one and never sees a marker; read_uncommitted sees the aborted
//! records but no markers either. Markers are written with WriteTxnMarkers
//! directly (no transaction coordinator needed).
#![cfg(not(madsim))]

mod broker_support;

use std::time::Duration;

use broker_support::*;
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir::client::consumer::{Consumer, ConsumerConfig};
use weir::log::batch::{build_batch, BatchProducer, SimpleRecord};

const TOPIC: &str = "rc";

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn txn_batch(pid: i64, seq: i32, value: &str) -> Bytes {
    Bytes::from(build_batch(
        &[SimpleRecord {
            value: Some(value.as_bytes().to_vec()),
            timestamp: 1000,
            ..SimpleRecord::default()
        }],
        BatchProducer {
            producer_id: pid,
            producer_epoch: 0,
            base_sequence: seq,
            transactional: true,
        },
    ))
}

async fn produce(c: &mut Client, txn_id: &str, records: Bytes) {
    let req = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(StrBytes::from_string(txn_id.into()))))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let r = c.call(9, &req).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
}

async fn marker(c: &mut Client, pid: i64, commit: bool) {
    let req = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(0)
        .with_transaction_result(commit)
        .with_coordinator_epoch(0)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(name(TOPIC))
            .with_partition_indexes(vec![0])])]);
    let r = c.call(1, &req).await;
    assert_eq!(r.markers[0].topics[0].partitions[0].error_code, 0);
}

async fn read_all(addr: &str, isolation: &str, want: usize) -> Vec<(i64, String)> {
    let mut cfg = ConsumerConfig::default();
    cfg.set("isolation.level", isolation).unwrap();
    cfg.set("auto.offset.reset", "earliest").unwrap();
    let mut consumer = Consumer::connect(addr, cfg).await.unwrap();
    consumer.assign(&[(TOPIC.to_string(), 0)]);
    let mut out = Vec::new();
    for _ in 0..50 {
        for r in consumer.poll(Duration::from_millis(100)).await.unwrap() {
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
            out.push((r.offset, v));
        }
        if out.len() >= want {
            break;
        }
    }
    // Nothing more (no marker) comes after the expected records.
    for r in consumer.poll(Duration::from_millis(200)).await.unwrap() {
        out.push((r.offset, format!("{:?}", r.value)));
    }
    out
}

#[tokio::test]
async fn read_committed_skips_aborted_transactions_and_markers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    let r = c
        .call(
            7,
            &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                .with_name(name(TOPIC))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
        )
        .await;
    assert_eq!(r.topics[0].error_code, 0);
    let req = InitProducerIdRequest::default().with_transactional_id(None);
    let p1 = c.call(4, &req).await.producer_id.0;
    let p2 = c.call(4, &req).await.producer_id.0;
    assert_ne!(p1, p2);
    // p1 aborts a@0 b@2 (ABORT@4), p2 commits x@1 y@3 (COMMIT@5), then p1
    // commits c@6 (COMMIT@7).
    produce(&mut c, "t1", txn_batch(p1, 0, "a")).await;
    produce(&mut c, "t2", txn_batch(p2, 0, "x")).await;
    produce(&mut c, "t1", txn_batch(p1, 1, "b")).await;
    produce(&mut c, "t2", txn_batch(p2, 1, "y")).await;
    marker(&mut c, p1, false).await;
    marker(&mut c, p2, true).await;
    produce(&mut c, "t1", txn_batch(p1, 2, "c")).await;
    marker(&mut c, p1, true).await;

    let addr = server.local_addr().to_string();
    let committed = read_all(&addr, "read_committed", 3).await;
    assert_eq!(
        committed,
        vec![(1, "x".into()), (3, "y".into()), (6, "c".into())]
    );
    let all = read_all(&addr, "read_uncommitted", 5).await;
    assert_eq!(
        all,
        vec![
            (0, "a".into()),
            (1, "x".into()),
            (2, "b".into()),
            (3, "y".into()),
            (6, "c".into())
        ]
    );
}

//! Produce throughput over loopback: 1 KiB records, acks=1, one partition,
//! 1 MiB batches, 8 requests in flight. Prints MB/s and the ratio to the
//! machine's ~1.5 GB/s buffered write bandwidth; never asserts on time.
//! Run: cargo test --release --test broker_perf -- --ignored --nocapture
#![cfg(not(madsim))]

mod broker_support;

use broker_support::*;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 1024;
const BATCHES: usize = 2048; // 2 GiB of records
const IN_FLIGHT_MAX: usize = 8;
const DISK_BUFFERED_WRITE_BYTES_PER_SEC: f64 = 1.5e9;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn produce_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    let topic = TopicName(StrBytes::from_static_str("perf"));
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
    let value = vec![0x5au8; RECORD_BYTES];
    let records: Vec<_> = (0..RECORDS_PER_BATCH)
        .map(|i| record(&format!("{i:08}"), &value, 1))
        .collect();
    let records = batch(&records);
    let req = ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic)
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records.clone()))])]);
    let started = std::time::Instant::now();
    let mut in_flight = 0;
    for _ in 0..BATCHES {
        if in_flight == IN_FLIGHT_MAX {
            let (_, r) = c.recv::<ProduceRequest>(9).await;
            assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
            in_flight -= 1;
        }
        c.send(9, &req).await;
        in_flight += 1;
    }
    for _ in 0..in_flight {
        let (_, r) = c.recv::<ProduceRequest>(9).await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes = (records.len() * BATCHES) as f64;
    let rate = bytes / secs;
    println!(
        "produce: {:.0} MB/s ({:.0} records/s), {:.2}x of 1.5 GB/s buffered disk writes",
        rate / 1e6,
        (RECORDS_PER_BATCH * BATCHES) as f64 / secs,
        rate / DISK_BUFFERED_WRITE_BYTES_PER_SEC
    );
    server.shutdown().await.unwrap();
}

//! Produce, Fetch and ListOffsets through the wire against real logs.
#![cfg(not(madsim))]

mod broker_support;

use std::time::Duration;

use broker_support::*;
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn create(c: &mut Client, topic: &str, partitions: i32, configs: &[(&str, &str)]) {
    let r = c
        .call(
            7,
            &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(1)
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(StrBytes::from_string(k.to_string()))
                                .with_value(Some(StrBytes::from_string(v.to_string())))
                        })
                        .collect(),
                )]),
        )
        .await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

fn produce_req(topic: &str, partition: i32, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// (error code, base offset)
async fn produce(c: &mut Client, topic: &str, partition: i32, records: Bytes) -> (i16, i64) {
    let r = c.call(9, &produce_req(topic, partition, 1, records)).await;
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn fetch_req(
    topic: &str,
    partition: i32,
    offset: i64,
    wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(50 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

fn list_offsets(topic: &str, ts: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(ts)])])
}

#[tokio::test]
async fn produce_then_fetch_returns_identical_records() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, "data", 2, &[]).await;
    let b1 = batch(&[record("a", b"one", 1000), record("b", b"two", 1001)]);
    let b2 = batch(&[record("c", &[7u8; 1024], 1002)]);
    assert_eq!(produce(&mut c, "data", 0, b1.clone()).await, (0, 0));
    assert_eq!(produce(&mut c, "data", 0, b2.clone()).await, (0, 2));
    assert_eq!(produce(&mut c, "data", 1, b2.clone()).await, (0, 0));
    assert_eq!(produce(&mut c, "nope", 0, b1.clone()).await.0, 3);
    assert_eq!(produce(&mut c, "data", 7, b1.clone()).await.0, 3);

    for version in [4, 11, 12] {
        let f = c.call(version, &fetch_req("data", 0, 0, 0, 0)).await;
        assert_eq!(f.error_code, 0);
        let p = &f.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert_eq!(p.high_watermark, 3);
        assert_eq!(p.last_stable_offset, 3);
        if version >= 5 {
            assert_eq!(p.log_start_offset, 0);
        }
        let got = decode_records(p.records.clone().unwrap());
        let values: Vec<Bytes> = got.iter().map(|r| r.value.clone().unwrap()).collect();
        assert_eq!(values[0], Bytes::from_static(b"one"));
        assert_eq!(values[2], Bytes::from(vec![7u8; 1024]));
        assert_eq!(
            got.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        // Byte-identical apart from the base offset the broker assigned.
        let raw = p.records.clone().unwrap();
        assert_eq!(&raw[12..b1.len()], &b1[12..]);
    }
    // Fetch by topic id (v13+).
    let md = c
        .call(
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("data"))),
            ])),
        )
        .await;
    let id = md.topics[0].topic_id;
    let mut req = fetch_req("data", 1, 0, 0, 0);
    req.topics[0].topic_id = id;
    let f = c.call(16, &req).await;
    assert_eq!(f.responses[0].topic_id, id);
    assert_eq!(
        decode_records(f.responses[0].partitions[0].records.clone().unwrap()).len(),
        1
    );

    // Out of range.
    let f = c.call(11, &fetch_req("data", 0, 99, 0, 0)).await;
    assert_eq!(f.responses[0].partitions[0].error_code, 1);
    // Unknown topic.
    let f = c.call(11, &fetch_req("zzz", 0, 0, 0, 0)).await;
    assert_eq!(f.responses[0].partitions[0].error_code, 3);
    server.shutdown().await.unwrap();

    // After a clean restart the data is all there.
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    let f = c.call(11, &fetch_req("data", 0, 2, 0, 0)).await;
    let got = decode_records(f.responses[0].partitions[0].records.clone().unwrap());
    assert_eq!(got[0].offset, 2);
    assert_eq!(produce(&mut c, "data", 0, b1).await, (0, 3));
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn multi_partition_produce_appends_in_place_without_copying_the_frame() {
    use std::sync::atomic::Ordering;
    use weir::broker::handlers::produce::FRAME_COPIES;
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, "multi", 3, &[]).await;
    let before = FRAME_COPIES.load(Ordering::Relaxed);
    let parts = (0..3)
        .map(|p| {
            PartitionProduceData::default()
                .with_index(p)
                .with_records(Some(batch(&[record("k", &[p as u8; 2000], 1)])))
        })
        .collect();
    let r = c
        .call(
            9,
            &ProduceRequest::default()
                .with_transactional_id(None)
                .with_acks(1)
                .with_topic_data(vec![TopicProduceData::default()
                    .with_name(name("multi"))
                    .with_partition_data(parts)]),
        )
        .await;
    for p in &r.responses[0].partition_responses {
        assert_eq!((p.error_code, p.base_offset), (0, 0));
    }
    assert_eq!(
        FRAME_COPIES.load(Ordering::Relaxed),
        before,
        "produce frame was copied"
    );
    for p in 0..3 {
        let f = c.call(11, &fetch_req("multi", p, 0, 0, 0)).await;
        let got = decode_records(f.responses[0].partitions[0].records.clone().unwrap());
        assert_eq!(got[0].value.as_deref(), Some(&[p as u8; 2000][..]));
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn acks_zero_gets_no_response() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, "quiet", 1, &[]).await;
    c.send(
        9,
        &produce_req("quiet", 0, 0, batch(&[record("k", b"v", 1)])),
    )
    .await;
    // The next response on the wire belongs to the next request.
    let cid = c.send(3, &ApiVersionsRequest::default()).await;
    let (got, _) = c.recv::<ApiVersionsRequest>(3).await;
    assert_eq!(got, cid);
    let r = c.call(7, &list_offsets("quiet", -1)).await;
    assert_eq!(r.topics[0].partitions[0].offset, 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn fetch_long_poll_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let addr = server.local_addr();
    let mut c = Client::connect(addr).await;
    create(&mut c, "poll", 1, &[]).await;

    // Empty log, min_bytes 1, 10 s wait: must return as soon as data lands.
    let mut fetcher = Client::connect(addr).await;
    let started = std::time::Instant::now();
    let cid = fetcher.send(11, &fetch_req("poll", 0, 0, 10_000, 1)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        produce(&mut c, "poll", 0, batch(&[record("k", b"v", 5)])).await,
        (0, 0)
    );
    let (got, f) = fetcher.recv::<FetchRequest>(11).await;
    assert_eq!(got, cid);
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(5),
        "long poll not woken: {elapsed:?}"
    );
    assert_eq!(
        decode_records(f.responses[0].partitions[0].records.clone().unwrap()).len(),
        1
    );

    // Nothing arrives: returns empty after max_wait_ms.
    let started = std::time::Instant::now();
    let f = fetcher.call(11, &fetch_req("poll", 0, 1, 300, 1)).await;
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(f.responses[0].partitions[0]
        .records
        .as_ref()
        .unwrap()
        .is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn fetch_honours_limits_but_returns_one_oversized_batch() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, "lim", 1, &[]).await;
    for i in 0..3 {
        let b = batch(&[record("k", &[i as u8; 4000], i)]);
        produce(&mut c, "lim", 0, b).await;
    }
    let mut req = fetch_req("lim", 0, 0, 0, 0);
    req.topics[0].partitions[0].partition_max_bytes = 100;
    let f = c.call(11, &req).await;
    assert_eq!(
        decode_records(f.responses[0].partitions[0].records.clone().unwrap()).len(),
        1
    );
    let mut req = fetch_req("lim", 0, 0, 0, 0);
    req.max_bytes = 9000;
    let f = c.call(11, &req).await;
    let n = decode_records(f.responses[0].partitions[0].records.clone().unwrap()).len();
    assert!((1..=2).contains(&n), "{n}");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn list_offsets_earliest_latest_and_by_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, "lo", 1, &[]).await;
    produce(
        &mut c,
        "lo",
        0,
        batch(&[record("a", b"1", 1000), record("b", b"2", 2000)]),
    )
    .await;
    produce(&mut c, "lo", 0, batch(&[record("c", b"3", 3000)])).await;
    let off = |r: &ListOffsetsResponse| {
        let p = &r.topics[0].partitions[0];
        (p.error_code, p.offset, p.timestamp)
    };
    assert_eq!(off(&c.call(7, &list_offsets("lo", -2)).await).1, 0);
    assert_eq!(off(&c.call(7, &list_offsets("lo", -1)).await).1, 3);
    assert_eq!(off(&c.call(1, &list_offsets("lo", -1)).await).1, 3);
    assert_eq!(
        off(&c.call(7, &list_offsets("lo", 1500)).await),
        (0, 1, 2000)
    );
    assert_eq!(
        off(&c.call(7, &list_offsets("lo", 3000)).await),
        (0, 2, 3000)
    );
    assert_eq!(
        off(&c.call(7, &list_offsets("lo", 9999)).await),
        (0, -1, -1)
    );
    assert_eq!(off(&c.call(7, &list_offsets("lo", -3)).await), (0, 2, 3000));
    assert_eq!(off(&c.call(7, &list_offsets("nope", -1)).await).0, 3);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_and_corrupt_batches_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, "strict", 1, &[("max.message.bytes", "2000")]).await;
    let big = batch(&[record("k", &[1u8; 5000], 1)]);
    assert_eq!(produce(&mut c, "strict", 0, big).await.0, 10);
    let mut bad = BytesMut::from(&batch(&[record("k", b"v", 1)])[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert_eq!(produce(&mut c, "strict", 0, bad.freeze()).await.0, 2);
    // Nothing was stored; a good batch still goes to offset 0.
    assert_eq!(
        produce(&mut c, "strict", 0, batch(&[record("k", b"v", 1)])).await,
        (0, 0)
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn idempotent_retry_is_stored_once_even_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, "idem", 1, &[]).await;
    let pid = c
        .call(
            4,
            &InitProducerIdRequest::default().with_transactional_id(None),
        )
        .await
        .producer_id
        .0;
    let b0 = idempotent_batch(pid, 0, 0, 3);
    let b1 = idempotent_batch(pid, 0, 3, 2);
    assert_eq!(produce(&mut c, "idem", 0, b0.clone()).await, (0, 0));
    assert_eq!(
        produce(&mut c, "idem", 0, b0.clone()).await,
        (0, 0),
        "retry answers with the stored offsets"
    );
    assert_eq!(produce(&mut c, "idem", 0, b1.clone()).await, (0, 3));
    server.shutdown().await.unwrap();

    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    assert_eq!(produce(&mut c, "idem", 0, b1).await, (0, 3));
    let r = c.call(7, &list_offsets("idem", -1)).await;
    assert_eq!(r.topics[0].partitions[0].offset, 5);
    // A request with a transactional id carrying a non-transactional batch
    // is refused as Kafka does (INVALID_RECORD).
    let r = c
        .call(
            9,
            &produce_req("idem", 0, 1, idempotent_batch(pid, 0, 5, 1))
                .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx")))),
        )
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 87);
    server.shutdown().await.unwrap();
}

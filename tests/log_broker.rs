//! Log management through the broker: DeleteRecords, the retention and
//! cleaner task, and the topic configs (create, IncrementalAlterConfigs,
//! DescribeConfigs). The tokio tests use real sockets and files; the
//! simulator test runs the maintenance task on virtual time and SimDisk.
#![allow(dead_code, unused_imports)] // helpers and imports shared by both builds

mod broker_support;

use std::time::Duration;

use broker_support::*;
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn create(c: &mut Client, topic: &str, configs: &[(&str, &str)]) {
    let t = CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(1)
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
        );
    let resp = c
        .call(7, &CreateTopicsRequest::default().with_topics(vec![t]))
        .await;
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
}

async fn produce(c: &mut Client, topic: &str, records: Bytes) -> i64 {
    let (code, base) = produce_partition0(c, topic, 1, 5000, records).await;
    assert_eq!(code, 0);
    base
}

/// (error code, log start, records) of a fetch at `offset`.
async fn fetch(c: &mut Client, topic: &str, offset: i64) -> (i16, i64, Vec<(i64, Option<Bytes>)>) {
    fetch_partition0(c, topic, offset).await
}

async fn earliest(c: &mut Client, topic: &str) -> i64 {
    let req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(name(topic))
        .with_partitions(vec![ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(-2)])]);
    let resp = c.call(7, &req).await;
    resp.topics[0].partitions[0].offset
}

async fn delete_records(c: &mut Client, topic: &str, offset: i64) -> (i16, i64) {
    let req = DeleteRecordsRequest::default()
        .with_timeout_ms(1000)
        .with_topics(vec![DeleteRecordsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![DeleteRecordsPartition::default()
                .with_partition_index(0)
                .with_offset(offset)])]);
    let resp = c.call(2, &req).await;
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.low_watermark)
}

/// Every record from the log start on, fetch after fetch (a fetch stops at
/// a segment's end); None if the log start moved under the reader.
async fn fetch_all(c: &mut Client, topic: &str) -> Option<Vec<(i64, Option<Bytes>)>> {
    let mut offset = earliest(c, topic).await;
    let mut out = Vec::new();
    loop {
        let (err, _, recs) = fetch(c, topic, offset).await;
        if err == 1 {
            return None;
        }
        assert_eq!(err, 0);
        let Some(last) = recs.last() else {
            return Some(out);
        };
        offset = last.0 + 1;
        out.extend(recs);
    }
}

fn keyed(key: &str, value: &str) -> Bytes {
    batch(&[record(key, value.as_bytes(), 1000)])
}

#[cfg(not(madsim))]
#[tokio::test]
async fn delete_records_moves_the_low_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    let versions = c.call(3, &ApiVersionsRequest::default()).await;
    let dr = versions
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::DeleteRecords as i16)
        .expect("DeleteRecords advertised");
    assert_eq!((dr.min_version, dr.max_version), (0, 2));
    create(&mut c, "dr", &[]).await;
    for i in 0..5 {
        produce(&mut c, "dr", keyed("k", &format!("v{i}"))).await;
    }
    assert_eq!(delete_records(&mut c, "dr", 2).await, (0, 2));
    assert_eq!(earliest(&mut c, "dr").await, 2);
    let (err, _, _) = fetch(&mut c, "dr", 0).await;
    assert_eq!(err, 1, "OFFSET_OUT_OF_RANGE below the log start");
    let (err, log_start, recs) = fetch(&mut c, "dr", 2).await;
    assert_eq!((err, log_start), (0, 2));
    assert_eq!(recs.first().unwrap().0, 2);
    assert_eq!(delete_records(&mut c, "dr", 99).await.0, 1);
    assert_eq!(delete_records(&mut c, "dr", -1).await, (0, 5));
    assert_eq!(delete_records(&mut c, "nope", 1).await.0, 3);
    // Survives a restart.
    server.shutdown().await.unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    assert_eq!(earliest(&mut c, "dr").await, 5);
    server.shutdown().await.unwrap();
}

/// IncrementalAlterConfigs on one topic: (key, operation 0 SET / 1 DELETE,
/// value). Returns the resource's error code.
async fn alter(c: &mut Client, topic: &str, ops: &[(&str, i8, Option<&str>)]) -> i16 {
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(
                ops.iter()
                    .map(|(k, op, v)| {
                        AlterableConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_config_operation(*op)
                            .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ]);
    c.call(1, &req).await.responses[0].error_code
}

async fn set_config(c: &mut Client, topic: &str, key: &str, value: &str) {
    assert_eq!(
        alter(c, topic, &[(key, 0, Some(value))]).await,
        0,
        "{key}={value}"
    );
}

/// DeleteRecords needs `delete` in cleanup.policy, as in Kafka: a
/// compact-only topic answers POLICY_VIOLATION (44) and keeps every record;
/// compact,delete moves the log start; an IncrementalAlterConfigs of the
/// policy decides it for the live partition.
#[cfg(not(madsim))]
#[tokio::test]
async fn delete_records_needs_the_delete_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, "kv", &[("cleanup.policy", "compact")]).await;
    create(&mut c, "both", &[("cleanup.policy", "compact,delete")]).await;
    for i in 0..5 {
        produce(&mut c, "kv", keyed(&format!("k{i}"), "v")).await;
        produce(&mut c, "both", keyed(&format!("k{i}"), "v")).await;
    }
    assert_eq!(delete_records(&mut c, "kv", 2).await, (44, -1));
    assert_eq!(delete_records(&mut c, "kv", -1).await, (44, -1));
    assert_eq!(earliest(&mut c, "kv").await, 0, "nothing deleted");
    let all: Vec<i64> = fetch_all(&mut c, "kv")
        .await
        .unwrap()
        .iter()
        .map(|r| r.0)
        .collect();
    assert_eq!(all, vec![0, 1, 2, 3, 4]);

    assert_eq!(delete_records(&mut c, "both", 2).await, (0, 2));
    assert_eq!(earliest(&mut c, "both").await, 2);

    // The policy of the live partition decides.
    set_config(&mut c, "both", "cleanup.policy", "compact").await;
    assert_eq!(delete_records(&mut c, "both", 3).await, (44, -1));
    assert_eq!(earliest(&mut c, "both").await, 2);
    set_config(&mut c, "kv", "cleanup.policy", "delete").await;
    assert_eq!(delete_records(&mut c, "kv", 3).await, (0, 3));
    assert_eq!(earliest(&mut c, "kv").await, 3);
    server.shutdown().await.unwrap();
}

/// One RecordBatch v2 of `records` compressed with `compression`.
fn batch_with(records: &[kafka_protocol::records::Record], compression: Compression) -> Bytes {
    let records: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(i, r)| kafka_protocol::records::Record {
            offset: i as i64,
            ..r.clone()
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    kafka_protocol::records::RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &kafka_protocol::records::RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.freeze()
}

/// Produce one request to partition 0: its partition response.
async fn produce_with(
    c: &mut Client,
    topic: &str,
    acks: i16,
    records: Bytes,
) -> produce_response::PartitionProduceResponse {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let resp = c.call(9, &req).await;
    resp.responses[0].partition_responses[0].clone()
}

/// The stored batch holding `offset`, as Fetch returns it: (attributes, max
/// timestamp, codec). The batch must decode (its CRC checks out).
async fn stored_batch(c: &mut Client, topic: &str, offset: i64) -> (i16, i64, i16) {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = c.call(12, &req).await;
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let raw = p.records.clone().expect("records");
    // Batch header: base offset 0..8, length 8..12, attributes 21..23, max
    // timestamp 35..43.
    let len = i32::from_be_bytes(raw[8..12].try_into().unwrap()) as usize;
    let first = raw.slice(0..12 + len);
    let base = i64::from_be_bytes(first[0..8].try_into().unwrap());
    let last_delta = i32::from_be_bytes(first[23..27].try_into().unwrap());
    assert!(base <= offset && offset <= base + last_delta as i64);
    let recs = decode_records(first.clone());
    assert!(!recs.is_empty(), "decodes, CRC included");
    let attributes = i16::from_be_bytes(first[21..23].try_into().unwrap());
    let max_ts = i64::from_be_bytes(first[35..43].try_into().unwrap());
    (attributes, max_ts, attributes & 0x07)
}

const ATTR_LOG_APPEND_TIME: i16 = 0x08;

/// IncrementalAlterConfigs reaches the open log of a live partition:
/// max.message.bytes refuses a batch it accepted before, LogAppendTime
/// restamps batches, min.insync.replicas above the ISR refuses acks=all,
/// and compression.type recompresses (producer keeps the client's codec).
#[cfg(not(madsim))]
#[tokio::test]
async fn altered_configs_take_effect_on_a_live_partition() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, "live", &[]).await;
    let big = || batch(&[record("k", &[b'x'; 3000], 1)]);
    let small = || batch(&[record("k", b"v", 1)]);

    // max.message.bytes
    assert_eq!(produce_with(&mut c, "live", 1, big()).await.error_code, 0);
    set_config(&mut c, "live", "max.message.bytes", "1000").await;
    let r = produce_with(&mut c, "live", 1, big()).await;
    assert_eq!(r.error_code, 10, "MESSAGE_TOO_LARGE");
    assert_eq!(produce_with(&mut c, "live", 1, small()).await.error_code, 0);
    assert_eq!(
        alter(&mut c, "live", &[("max.message.bytes", 1, None)]).await,
        0
    );
    assert_eq!(produce_with(&mut c, "live", 1, big()).await.error_code, 0);

    // message.timestamp.type
    let r = produce_with(&mut c, "live", 1, small()).await;
    assert_eq!((r.error_code, r.log_append_time_ms), (0, -1), "CreateTime");
    let (attrs, max_ts, _) = stored_batch(&mut c, "live", r.base_offset).await;
    assert_eq!(attrs & ATTR_LOG_APPEND_TIME, 0);
    assert_eq!(max_ts, 1, "the producer's timestamp");
    set_config(&mut c, "live", "message.timestamp.type", "LogAppendTime").await;
    let r = produce_with(&mut c, "live", 1, small()).await;
    assert_eq!(r.error_code, 0);
    assert_ne!(r.log_append_time_ms, -1, "the append time is reported");
    assert!(r.log_append_time_ms > 1);
    let (attrs, max_ts, _) = stored_batch(&mut c, "live", r.base_offset).await;
    assert_ne!(attrs & ATTR_LOG_APPEND_TIME, 0, "attribute bit 3");
    assert_eq!(max_ts, r.log_append_time_ms, "stamped with the append time");

    // min.insync.replicas above the ISR (one replica)
    let r = produce_with(&mut c, "live", -1, small()).await;
    assert_eq!(r.error_code, 0);
    let next = r.base_offset + 1;
    set_config(&mut c, "live", "min.insync.replicas", "2").await;
    let r = produce_with(&mut c, "live", -1, small()).await;
    assert_eq!(r.error_code, 19, "NOT_ENOUGH_REPLICAS");
    let r = produce_with(&mut c, "live", 1, small()).await;
    assert_eq!(
        (r.error_code, r.base_offset),
        (0, next),
        "acks=1 works; the refused batch was not appended"
    );
    set_config(&mut c, "live", "min.insync.replicas", "1").await;
    assert_eq!(
        produce_with(&mut c, "live", -1, small()).await.error_code,
        0
    );

    // compression.type: producer keeps the client's codec, lz4 recompresses.
    let gz = || {
        batch_with(
            &[record("k", b"v", 1), record("k2", b"v2", 1)],
            Compression::Gzip,
        )
    };
    let r = produce_with(&mut c, "live", 1, gz()).await;
    assert_eq!(
        stored_batch(&mut c, "live", r.base_offset).await.2,
        1,
        "gzip kept"
    );
    let r = produce_with(&mut c, "live", 1, small()).await;
    assert_eq!(
        stored_batch(&mut c, "live", r.base_offset).await.2,
        0,
        "uncompressed kept"
    );
    set_config(&mut c, "live", "compression.type", "lz4").await;
    let r = produce_with(&mut c, "live", 1, gz()).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(
        stored_batch(&mut c, "live", r.base_offset).await.2,
        3,
        "gzip stored as lz4"
    );
    let r = produce_with(&mut c, "live", 1, small()).await;
    assert_eq!(
        stored_batch(&mut c, "live", r.base_offset).await.2,
        3,
        "plain stored as lz4"
    );
    set_config(&mut c, "live", "compression.type", "producer").await;
    let r = produce_with(&mut c, "live", 1, gz()).await;
    assert_eq!(
        stored_batch(&mut c, "live", r.base_offset).await.2,
        1,
        "gzip kept again"
    );
    server.shutdown().await.unwrap();
}

/// message.timestamp.type=LogAppendTime given at create time: the first
/// batch is already stamped with the broker's append time.
#[cfg(not(madsim))]
#[tokio::test]
async fn log_append_time_from_create() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(
        &mut c,
        "lat",
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let r = produce_with(&mut c, "lat", 1, batch(&[record("k", b"v", 1)])).await;
    assert_eq!((r.error_code, r.base_offset), (0, 0));
    assert_ne!(r.log_append_time_ms, -1);
    let (attrs, max_ts, _) = stored_batch(&mut c, "lat", 0).await;
    assert_ne!(attrs & ATTR_LOG_APPEND_TIME, 0);
    assert_eq!(max_ts, r.log_append_time_ms);
    server.shutdown().await.unwrap();
}

#[cfg(not(madsim))]
#[tokio::test]
async fn topic_configs_are_accepted_altered_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.set("log.cleaner.delete.retention.ms", "5000").unwrap();
    let server = start_with(cfg).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(
        &mut c,
        "cfg",
        &[
            ("cleanup.policy", "compact,delete"),
            ("retention.ms", "60000"),
            ("min.cleanable.dirty.ratio", "0.1"),
            ("compression.type", "lz4"),
        ],
    )
    .await;
    let d = describe_topic(&mut c, "cfg").await;
    let get = |k: &str| d.iter().find(|e| e.0 == k).cloned().unwrap();
    assert_eq!(get("cleanup.policy").1, "compact,delete");
    assert_eq!(get("cleanup.policy").2, 1);
    assert_eq!(get("retention.ms").1, "60000");
    assert_eq!(get("compression.type").1, "lz4");
    assert_eq!(get("min.cleanable.dirty.ratio").1, "0.1");
    assert_eq!(
        get("delete.retention.ms"),
        ("delete.retention.ms".into(), "5000".into(), 4)
    );
    assert_eq!(get("min.compaction.lag.ms").1, "0");
    assert_eq!(get("retention.bytes").1, "-1");
    let alter = |k: &str, v: &str| {
        IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("cfg"))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.to_string()))
                    .with_config_operation(0)
                    .with_value(Some(StrBytes::from_string(v.to_string())))]),
        ])
    };
    let resp = c.call(1, &alter("retention.bytes", "100000")).await;
    assert_eq!(resp.responses[0].error_code, 0);
    assert_eq!(
        describe_topic(&mut c, "cfg")
            .await
            .into_iter()
            .find(|e| e.0 == "retention.bytes")
            .unwrap()
            .1,
        "100000"
    );
    let resp = c.call(1, &alter("cleanup.policy", "shred")).await;
    assert_eq!(resp.responses[0].error_code, 40);
    // compression.type=lz4 is applied to what is stored.
    produce(&mut c, "cfg", keyed("k", "v")).await;
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name("cfg"))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = c.call(12, &req).await;
    let raw = resp.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(raw[22] & 0x07, 3, "stored as lz4");
    server.shutdown().await.unwrap();
}

#[cfg(not(madsim))]
#[tokio::test]
async fn maintenance_task_applies_retention_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.set("log.retention.check.interval.ms", "20").unwrap();
    cfg.set("log.cleaner.backoff.ms", "20").unwrap();
    let server = start_with(cfg).await;
    let mut c = Client::connect(server.local_addr()).await;
    // Records stamped 1s after the epoch: far older than retention.ms.
    create(
        &mut c,
        "old",
        &[("retention.ms", "1000"), ("segment.bytes", "100")],
    )
    .await;
    create(
        &mut c,
        "kv",
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    )
    .await;
    for i in 0..20 {
        produce(&mut c, "old", keyed("k", &format!("v{i}"))).await;
        produce(
            &mut c,
            "kv",
            keyed(&format!("k{}", i % 3), &format!("v{i}")),
        )
        .await;
    }
    let mut ok = false;
    for _ in 0..250 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let start = earliest(&mut c, "old").await;
        let Some(recs) = fetch_all(&mut c, "kv").await else {
            continue;
        };
        if start >= 19 && recs.len() < 10 {
            // The latest value of each key survives the cleaning.
            let values: Vec<_> = recs.iter().filter_map(|r| r.1.clone()).collect();
            for v in ["v17", "v18", "v19"] {
                assert!(
                    values.iter().any(|x| x.as_ref() == v.as_bytes()),
                    "{v} kept"
                );
            }
            ok = true;
            break;
        }
    }
    assert!(ok, "retention and the cleaner ran");
    server.shutdown().await.unwrap();
}

/// The cleaner never moves the log start: once it has emptied the first
/// segments of a compacted partition, a consumer at offset 0 (a committed
/// offset in the emptied range) fetches the first surviving record, not
/// OFFSET_OUT_OF_RANGE, and ListOffsets EARLIEST stays 0, across a restart.
#[cfg(not(madsim))]
#[tokio::test]
async fn a_fetch_in_the_range_the_cleaner_emptied_reads_the_survivors() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.set("log.cleaner.backoff.ms", "20").unwrap();
    let server = start_with(cfg.clone()).await;
    let mut c = Client::connect(server.local_addr()).await;
    // One batch per segment: a0..a3 at 0..3, b0..b3 at 4..7, c0 at 8 (so
    // b3's segment is closed). Only a3, b3 and c0 survive.
    create(
        &mut c,
        "kv",
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    )
    .await;
    for key in ["a", "b"] {
        for i in 0..4 {
            produce(&mut c, "kv", keyed(key, &format!("{key}{i}"))).await;
        }
    }
    produce(&mut c, "kv", keyed("c", "c0")).await;
    let want: Vec<(i64, String)> = [(3, "a3"), (7, "b3"), (8, "c0")]
        .iter()
        .map(|&(o, v)| (o, v.to_string()))
        .collect();
    let read = |recs: Vec<(i64, Option<Bytes>)>| -> Vec<(i64, String)> {
        recs.into_iter()
            .map(|(o, v)| (o, String::from_utf8(v.unwrap().to_vec()).unwrap()))
            .collect()
    };
    // Wait for the cleaner to leave only the survivors (or for a fetch at 0
    // to fail, as it did when the cleaner moved the log start).
    let mut last = None;
    for _ in 0..1_500 {
        let (err, start, recs) = fetch(&mut c, "kv", 0).await;
        let all = fetch_all(&mut c, "kv").await.map(read);
        let done = err != 0 || all.as_ref() == Some(&want);
        last = Some((err, start, read(recs), all));
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (err, start, first, all) = last.unwrap();
    assert_eq!((err, start), (0, 0), "fetch at 0 after cleaning: {first:?}");
    assert_eq!(all.as_ref(), Some(&want), "the cleaner ran");
    assert_eq!(first.first(), Some(&want[0]));
    assert_eq!(earliest(&mut c, "kv").await, 0);
    // Survives a restart.
    server.shutdown().await.unwrap();
    let server = start_with(cfg).await;
    let mut c = Client::connect(server.local_addr()).await;
    assert_eq!(earliest(&mut c, "kv").await, 0);
    let (err, start, recs) = fetch(&mut c, "kv", 0).await;
    assert_eq!((err, start), (0, 0));
    assert_eq!(read(recs).first(), Some(&want[0]));
    server.shutdown().await.unwrap();
}

/// Under madsim: a broker node on SimDisk, a client node; retention and the
/// cleaner run on virtual time (no wall-clock waiting).
#[cfg(madsim)]
#[tokio::test]
async fn maintenance_runs_in_the_simulator() {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use weir::broker::Server;
    use weir::config::ServerConfig;
    use weir::env::sim_disk::{SimDisk, SimDiskOptions};

    let handle = madsim::runtime::Handle::current();
    let broker_node = handle
        .create_node()
        .name("broker")
        .ip("10.0.0.1".parse().unwrap())
        .build();
    let client_node = handle
        .create_node()
        .name("client")
        .ip("10.0.0.2".parse().unwrap())
        .build();
    let disk = Arc::new(SimDisk::new(11, SimDiskOptions::default()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<SocketAddr>();
    let server_task = broker_node.spawn(async move {
        let mut cfg = ServerConfig::default_single_node();
        cfg.set("listeners", "PLAINTEXT://10.0.0.1:9092").unwrap();
        cfg.set("log.dirs", "/data").unwrap();
        cfg.set("log.retention.check.interval.ms", "60000").unwrap();
        cfg.set("log.cleaner.backoff.ms", "30000").unwrap();
        let server = Server::start(cfg, disk).await.unwrap();
        ready_tx.send(server.local_addr()).unwrap();
        let _ = stop_rx.await;
        server.shutdown().await.unwrap();
    });
    let addr = ready_rx.await.unwrap();
    client_node
        .spawn(async move {
            let mut c = Client::connect(addr).await;
            create(
                &mut c,
                "old",
                &[("retention.ms", "1000"), ("segment.bytes", "100")],
            )
            .await;
            create(
                &mut c,
                "kv",
                &[
                    ("cleanup.policy", "compact"),
                    ("segment.bytes", "100"),
                    ("min.cleanable.dirty.ratio", "0.01"),
                ],
            )
            .await;
            for i in 0..20 {
                produce(&mut c, "old", keyed("k", &format!("v{i}"))).await;
                produce(
                    &mut c,
                    "kv",
                    keyed(&format!("k{}", i % 3), &format!("v{i}")),
                )
                .await;
            }
            // Nothing yet: the first retention check is one interval away
            // and the cleaner is backing off after its first, empty scan.
            assert_eq!(earliest(&mut c, "old").await, 0);
            weir::env::time::sleep(weir::env::time::Duration::from_secs(61)).await;
            assert_eq!(earliest(&mut c, "old").await, 19, "retention ran");
            let recs = fetch_all(&mut c, "kv").await.unwrap();
            assert!(recs.len() < 10, "the cleaner ran: {} records", recs.len());
            let values: Vec<_> = recs.iter().filter_map(|r| r.1.clone()).collect();
            for v in ["v17", "v18", "v19"] {
                assert!(
                    values.iter().any(|x| x.as_ref() == v.as_bytes()),
                    "{v} kept"
                );
            }
        })
        .await
        .unwrap();
    stop_tx.send(()).unwrap();
    server_task.await.unwrap();
}

//! The idempotent producer against a scripted fake broker that fails
//! produce requests: retries must keep sequences and order, with no
//! duplicates and no gaps.
// Runs in both worlds: on tokio over loopback, and in madsim's simulated network.

use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir::client::{Producer, ProducerConfig, ProducerRecord};

#[derive(Default)]
struct Log {
    /// Values appended, in offset order.
    values: Vec<Bytes>,
    next_sequence: i32,
    produce_requests: u32,
    rejected: u32,
}

fn encode<M: Encodable>(correlation_id: i32, api: ApiKey, version: i16, body: &M) -> Vec<u8> {
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, api.response_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    buf.to_vec()
}

async fn serve(mut stream: TcpStream, port: u16, log: Arc<Mutex<Log>>) {
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
        stream.read_exact(&mut frame).await.unwrap();
        let mut buf = Bytes::from(frame);
        let header = decode_request_header_from_buffer(&mut buf).unwrap();
        let api = ApiKey::try_from(header.request_api_key).unwrap();
        let v = header.request_api_version;
        let cid = header.correlation_id;
        let out = match api {
            ApiKey::ApiVersions => {
                let keys = [
                    (ApiKey::ApiVersions, 0, 3),
                    (ApiKey::Metadata, 1, 12),
                    (ApiKey::Produce, 3, 11),
                    (ApiKey::InitProducerId, 0, 4),
                ];
                let r = ApiVersionsResponse::default().with_api_keys(
                    keys.iter()
                        .map(|(k, lo, hi)| {
                            ApiVersion::default()
                                .with_api_key(*k as i16)
                                .with_min_version(*lo)
                                .with_max_version(*hi)
                        })
                        .collect(),
                );
                encode(cid, api, v, &r)
            }
            ApiKey::Metadata => {
                let r = MetadataResponse::default()
                    .with_brokers(vec![MetadataResponseBroker::default()
                        .with_node_id(BrokerId(1))
                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                        .with_port(port as i32)])
                    .with_controller_id(BrokerId(1))
                    .with_topics(vec![MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                        .with_partitions(vec![MetadataResponsePartition::default()
                            .with_partition_index(0)
                            .with_leader_id(BrokerId(1))
                            .with_replica_nodes(vec![BrokerId(1)])
                            .with_isr_nodes(vec![BrokerId(1)])])]);
                encode(cid, api, v, &r)
            }
            ApiKey::InitProducerId => {
                let r = InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(42))
                    .with_producer_epoch(0);
                encode(cid, api, v, &r)
            }
            ApiKey::Produce => {
                let req = ProduceRequest::decode(&mut buf, v).unwrap();
                let mut records = req.topic_data[0].partition_data[0].records.clone().unwrap();
                let info = RecordBatchDecoder::decode_batch_info(&mut records.clone()).unwrap();
                assert_eq!(info.len(), 1, "one batch per partition per request");
                assert_eq!(info[0].producer_id, 42);
                let set = RecordBatchDecoder::decode(&mut records).unwrap();
                let (code, base) = {
                    let mut log = log.lock().unwrap();
                    log.produce_requests += 1;
                    if log.produce_requests % 3 == 0 {
                        // Every third request: the leader "moved".
                        log.rejected += 1;
                        (6, -1)
                    } else if info[0].base_sequence != log.next_sequence {
                        log.rejected += 1;
                        (45, -1)
                    } else {
                        let base = log.values.len() as i64;
                        for r in set.records {
                            log.values.push(r.value.unwrap());
                        }
                        log.next_sequence += info[0].record_count;
                        (0, base)
                    }
                };
                let r =
                    ProduceResponse::default().with_responses(vec![TopicProduceResponse::default(
                    )
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partition_responses(vec![PartitionProduceResponse::default()
                        .with_index(0)
                        .with_error_code(code)
                        .with_base_offset(base)])]);
                encode(cid, api, v, &r)
            }
            other => panic!("fake broker got {other:?}"),
        };
        let _ = buf.remaining();
        stream.write_all(&out).await.unwrap();
        stream.flush().await.unwrap();
    }
}

#[tokio::test]
async fn idempotent_retries_keep_order_without_duplicates() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Log::default()));
    let server_log = log.clone();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(s, port, server_log.clone()));
        }
    });

    let mut config = ProducerConfig::default();
    config.set("enable.idempotence", "true").unwrap();
    config.set("batch.size", "200").unwrap();
    config.set("linger.ms", "0").unwrap();
    config.set("retry.backoff.ms", "1").unwrap();
    let producer = Producer::connect(&format!("127.0.0.1:{port}"), config)
        .await
        .unwrap();
    assert!(producer.is_idempotent());
    let mut futures = Vec::new();
    for i in 0..500 {
        futures.push(
            producer
                .send(ProducerRecord::new("t", format!("{i:04}")))
                .await
                .unwrap(),
        );
    }
    let mut offsets = Vec::new();
    for f in futures {
        offsets.push(f.await.expect("delivered despite failures").offset);
    }
    producer.close().await;
    assert_eq!(offsets, (0..500).collect::<Vec<i64>>());
    let log = log.lock().unwrap();
    assert!(log.rejected > 0, "the fault script fired");
    let want: Vec<Bytes> = (0..500).map(|i| Bytes::from(format!("{i:04}"))).collect();
    assert_eq!(log.values, want, "every record once, in order");
}

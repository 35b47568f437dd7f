//! The idempotent producer against a scripted fake broker that fails
//! produce requests: retries must keep sequences and order, with no
//! duplicates and no gaps.
// Runs in both worlds: on tokio over loopback, and in madsim's simulated network.

use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use weir::client::{Producer, ProducerConfig, ProducerRecord};

mod fake_broker;
use fake_broker::{api_versions, encode, listen, metadata, read_request};

#[derive(Default)]
struct Log {
    /// Values appended, in offset order.
    values: Vec<Bytes>,
    next_sequence: i32,
    produce_requests: u32,
    rejected: u32,
}

async fn serve(mut stream: TcpStream, port: u16, log: Arc<Mutex<Log>>) {
    while let Some((header, api, mut buf)) = read_request(&mut stream).await {
        let v = header.request_api_version;
        let cid = header.correlation_id;
        let out = match api {
            ApiKey::ApiVersions => api_versions(cid, v),
            ApiKey::Metadata => metadata(cid, v, port),
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
    let log = Arc::new(Mutex::new(Log::default()));
    let server_log = log.clone();
    let port = listen(move |s, port| serve(s, port, server_log.clone())).await;

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

//! The idempotent producer recovers when the broker lost the tail it had
//! acknowledged (KIP-360): a scripted fake broker "crashes" after 100
//! records, dropping the last 20 and rewinding the producer's sequence, so
//! the next batch gets OUT_OF_ORDER_SEQUENCE_NUMBER although no earlier batch
//! failed. The producer must fail that batch, take a new producer id, restart
//! its sequences at 0 and deliver everything after it, in order, once.
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

use std::collections::BTreeMap;

/// Records kept before the "crash", and records it drops.
const KEPT: usize = 80;
const CRASH_AT: usize = 100;

#[derive(Default)]
struct Log {
    /// Values appended, in offset order.
    values: Vec<Bytes>,
    /// Next expected sequence per producer id (unknown ids: any sequence,
    /// as Kafka 2.5+ and Weir accept).
    next_sequence: BTreeMap<i64, i32>,
    /// Producer ids handed out, in order.
    producer_ids: Vec<i64>,
    crashed: bool,
    out_of_order: u32,
}

async fn serve(mut stream: TcpStream, port: u16, log: Arc<Mutex<Log>>) {
    while let Some((header, api, mut buf)) = read_request(&mut stream).await {
        let v = header.request_api_version;
        let cid = header.correlation_id;
        let out = match api {
            ApiKey::ApiVersions => api_versions(cid, v),
            ApiKey::Metadata => metadata(cid, v, port),
            ApiKey::InitProducerId => {
                let req = InitProducerIdRequest::decode(&mut buf, v).unwrap();
                assert!(req.transactional_id.is_none());
                let id = {
                    let mut log = log.lock().unwrap();
                    let id = 42 + log.producer_ids.len() as i64;
                    log.producer_ids.push(id);
                    id
                };
                let r = InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(id))
                    .with_producer_epoch(0);
                encode(cid, api, v, &r)
            }
            ApiKey::Produce => {
                let req = ProduceRequest::decode(&mut buf, v).unwrap();
                let mut records = req.topic_data[0].partition_data[0].records.clone().unwrap();
                let info = RecordBatchDecoder::decode_batch_info(&mut records.clone()).unwrap();
                assert_eq!(info.len(), 1, "one batch per partition per request");
                let set = RecordBatchDecoder::decode(&mut records).unwrap();
                let (code, base) = {
                    let mut log = log.lock().unwrap();
                    let pid = info[0].producer_id;
                    assert!(log.producer_ids.contains(&pid), "a producer id we gave out");
                    let expected = log.next_sequence.get(&pid).copied();
                    if expected.is_some_and(|e| e != info[0].base_sequence) {
                        log.out_of_order += 1;
                        (45, -1)
                    } else {
                        let base = log.values.len() as i64;
                        for r in set.records {
                            log.values.push(r.value.unwrap());
                        }
                        log.next_sequence
                            .insert(pid, info[0].base_sequence + info[0].record_count);
                        if !log.crashed && log.values.len() >= CRASH_AT {
                            // Acknowledge this batch, then lose the tail (the
                            // broker "crashed" before syncing it): the log and
                            // the producer state end at KEPT.
                            log.crashed = true;
                            let lost = (log.values.len() - KEPT) as i32;
                            log.values.truncate(KEPT);
                            *log.next_sequence.get_mut(&pid).unwrap() -= lost;
                        }
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
async fn lost_acknowledged_tail_resets_the_producer_id_and_keeps_order() {
    let log = Arc::new(Mutex::new(Log::default()));
    let server_log = log.clone();
    let port = listen(move |s, port| serve(s, port, server_log.clone())).await;

    let mut config = ProducerConfig::default();
    config.set("enable.idempotence", "true").unwrap();
    // About five records a batch, so several batches are in flight at once.
    config.set("batch.size", "200").unwrap();
    config.set("linger.ms", "0").unwrap();
    config.set("retry.backoff.ms", "1").unwrap();
    let producer = Producer::connect(&format!("127.0.0.1:{port}"), config)
        .await
        .unwrap();
    assert_eq!(producer.producer_identity(), Some((42, 0)));
    let total = 500;
    let mut futures = Vec::new();
    for i in 0..total {
        futures.push(
            producer
                .send(ProducerRecord::new("t", format!("{i:04}")))
                .await
                .unwrap(),
        );
    }
    let mut results = Vec::new();
    for f in futures {
        results.push(f.await);
    }
    producer.close().await;

    let log = log.lock().unwrap();
    assert!(log.crashed, "the fault script fired");
    assert!(log.out_of_order > 0, "the broker refused the lost sequence");
    assert_eq!(log.producer_ids, vec![42, 43], "exactly one reset");
    // The refused batch failed with the broker's error; every failure is
    // one contiguous run (one batch), and everything after it got through.
    let failed: Vec<usize> = (0..total).filter(|&i| results[i].is_err()).collect();
    assert!(
        !failed.is_empty(),
        "the first refused batch fails to the user"
    );
    assert!(failed.len() <= 10, "only that batch fails: {failed:?}");
    assert!(
        failed.windows(2).all(|w| w[1] == w[0] + 1),
        "one batch: {failed:?}"
    );
    for i in &failed {
        let e = results[*i].as_ref().unwrap_err();
        assert_eq!(e.code(), Some(45), "record {i}: {e}");
    }
    // Order kept, no duplicate: the log's values strictly increase.
    let logged: Vec<usize> = log
        .values
        .iter()
        .map(|v| std::str::from_utf8(v).unwrap().parse().unwrap())
        .collect();
    assert!(
        logged.windows(2).all(|w| w[0] < w[1]),
        "in order, once: {logged:?}"
    );
    // Every record acknowledged after the crash is where its offset says;
    // every record is either in the log or was lost in the crash or failed.
    let last_failed = *failed.last().unwrap();
    for (i, result) in results.iter().enumerate().skip(last_failed + 1) {
        let offset = result.as_ref().expect("delivered after the reset").offset;
        assert_eq!(logged[offset as usize], i, "record {i} at its offset");
    }
    let missing: Vec<usize> = (0..total)
        .filter(|i| !logged.contains(i) && !failed.contains(i))
        .collect();
    assert!(missing.len() >= CRASH_AT - KEPT, "the crash lost its tail");
    assert_eq!(
        missing,
        (KEPT..KEPT + missing.len()).collect::<Vec<_>>(),
        "only the crash's tail is missing"
    );
}

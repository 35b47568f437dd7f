//! The client against a scripted two-broker fake cluster whose partition
//! leader keeps moving: the producer must follow the leader with its
//! idempotent identity intact (same producer id, epoch and sequences: no
//! duplicate, no reorder, no reset), the consumer must follow it too and
//! send the leader epoch it knows (KIP-320), and bootstrap must get past a
//! dead server. Broker 2 is also a liar: when it is not the leader it
//! answers Metadata with an older epoch naming the deposed leader, which
//! the client must not go back to.
// Runs in both worlds: on tokio over loopback, and in madsim's simulated network.

use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use weir::client::records::{encode_batch, to_wire};
use weir::client::{
    Compression, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord,
};
use weir::env::time::{timeout, Duration};

mod fake_broker;
use fake_broker::{encode, read_request};

const PRODUCER_ID: i64 = 42;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const FENCED_LEADER_EPOCH: i16 = 74;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

/// The fake cluster's shared state (as if replicated: both brokers see one
/// log and one producer state).
#[derive(Default)]
struct State {
    ports: [u16; 2],
    /// Broker id (1 or 2) leading partition 0.
    leader: i32,
    leader_epoch: i32,
    /// Values appended, in offset order.
    values: Vec<Bytes>,
    next_sequence: i32,
    /// Requests (Produce or Fetch) the leader served since the last move.
    served_since_move: u32,
    /// Move the leadership after this many served requests.
    move_every: u32,
    moves: u32,
    init_producer_ids: u32,
    not_leader: u32,
    fenced: u32,
    unknown_epoch: u32,
    /// Fetches that carried no current_leader_epoch (-1).
    fetches_without_epoch: u32,
    /// Produce requests a broker got with a foreign producer id or epoch.
    foreign_identity: u32,
    /// Produce requests out of sequence (a reorder or a gap).
    out_of_order: u32,
}

impl State {
    /// After a served request: maybe move. Odd moves change the leader,
    /// even ones only bump the epoch (a leader re-elected), so both
    /// NOT_LEADER_OR_FOLLOWER and FENCED_LEADER_EPOCH come up.
    fn served(&mut self) {
        self.served_since_move += 1;
        if self.served_since_move >= self.move_every {
            self.served_since_move = 0;
            self.moves += 1;
            self.leader_epoch += 1;
            if self.moves % 2 == 1 {
                self.leader = 3 - self.leader;
            }
        }
    }
}

fn api_versions(cid: i32, version: i16) -> Vec<u8> {
    let keys = [
        (ApiKey::ApiVersions, 0, 3),
        (ApiKey::Metadata, 1, 12),
        (ApiKey::Produce, 3, 11),
        (ApiKey::Fetch, 4, 12),
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
    encode(cid, ApiKey::ApiVersions, version, &r)
}

fn metadata(cid: i32, version: i16, me: i32, s: &State) -> Vec<u8> {
    // The liar: broker 2, when not leading, names the other broker with
    // an epoch older than the real one.
    let (leader, epoch) = if me == 2 && s.leader != 2 && s.leader_epoch > 0 {
        (2, s.leader_epoch - 1)
    } else {
        (s.leader, s.leader_epoch)
    };
    let brokers = (1..=2)
        .map(|id| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_static_str("127.0.0.1"))
                .with_port(s.ports[id as usize - 1] as i32)
        })
        .collect();
    let r = MetadataResponse::default()
        .with_brokers(brokers)
        .with_controller_id(BrokerId(1))
        .with_topics(vec![MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
            .with_partitions(vec![MetadataResponsePartition::default()
                .with_partition_index(0)
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch)
                .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                .with_isr_nodes(vec![BrokerId(1), BrokerId(2)])])]);
    encode(cid, ApiKey::Metadata, version, &r)
}

fn produce(cid: i32, v: i16, mut buf: Bytes, me: i32, s: &mut State) -> Vec<u8> {
    let req = ProduceRequest::decode(&mut buf, v).unwrap();
    let mut records = req.topic_data[0].partition_data[0].records.clone().unwrap();
    let info = RecordBatchDecoder::decode_batch_info(&mut records.clone()).unwrap();
    assert_eq!(info.len(), 1, "one batch per partition per request");
    let (code, base) = if s.leader != me {
        s.not_leader += 1;
        (NOT_LEADER_OR_FOLLOWER, -1)
    } else {
        if info[0].producer_id != PRODUCER_ID || info[0].producer_epoch != 0 {
            s.foreign_identity += 1;
        }
        s.served();
        if info[0].base_sequence != s.next_sequence {
            s.out_of_order += 1;
            (OUT_OF_ORDER_SEQUENCE_NUMBER, -1)
        } else {
            let set = RecordBatchDecoder::decode(&mut records).unwrap();
            let base = s.values.len() as i64;
            for r in set.records {
                s.values.push(r.value.unwrap());
            }
            s.next_sequence += info[0].record_count;
            (0, base)
        }
    };
    let r = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partition_responses(vec![PartitionProduceResponse::default()
            .with_index(0)
            .with_error_code(code)
            .with_base_offset(base)])]);
    encode(cid, ApiKey::Produce, v, &r)
}

/// Fetch: at most 3 records from the fetch offset, one batch each.
fn fetch(cid: i32, v: i16, mut buf: Bytes, me: i32, s: &mut State) -> Vec<u8> {
    let req = FetchRequest::decode(&mut buf, v).unwrap();
    let p = &req.topics[0].partitions[0];
    if p.current_leader_epoch < 0 {
        s.fetches_without_epoch += 1;
    }
    let mut data = PartitionData::default().with_partition_index(0);
    if s.leader != me {
        s.not_leader += 1;
        data = data.with_error_code(NOT_LEADER_OR_FOLLOWER);
    } else if p.current_leader_epoch >= 0 && p.current_leader_epoch < s.leader_epoch {
        s.fenced += 1;
        data = data.with_error_code(FENCED_LEADER_EPOCH);
    } else if p.current_leader_epoch > s.leader_epoch {
        s.unknown_epoch += 1;
        data = data.with_error_code(UNKNOWN_LEADER_EPOCH);
    } else {
        s.served();
        let from = p.fetch_offset as usize;
        let mut bytes = Vec::new();
        for (o, value) in s.values.iter().enumerate().skip(from).take(3) {
            let mut r = vec![to_wire(
                ProducerRecord::new("t", value.clone()),
                o as i32,
                0,
            )];
            bytes.extend_from_slice(&encode_batch(&mut r, Compression::None, None).unwrap());
        }
        data = data
            .with_high_watermark(s.values.len() as i64)
            .with_records(Some(Bytes::from(bytes)));
    }
    let r = FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(vec![data])]);
    encode(cid, ApiKey::Fetch, v, &r)
}

async fn serve(mut stream: TcpStream, me: i32, state: Arc<Mutex<State>>) {
    while let Some((header, api, buf)) = read_request(&mut stream).await {
        let v = header.request_api_version;
        let cid = header.correlation_id;
        let out = {
            let mut s = state.lock().unwrap();
            match api {
                ApiKey::ApiVersions => api_versions(cid, v),
                ApiKey::Metadata => metadata(cid, v, me, &s),
                ApiKey::InitProducerId => {
                    s.init_producer_ids += 1;
                    let r = InitProducerIdResponse::default()
                        .with_producer_id(ProducerId(PRODUCER_ID))
                        .with_producer_epoch(0);
                    encode(cid, api, v, &r)
                }
                ApiKey::Produce => produce(cid, v, buf.clone(), me, &mut s),
                ApiKey::Fetch => fetch(cid, v, buf.clone(), me, &mut s),
                other => panic!("the fake cluster got an unexpected {other:?}"),
            }
        };
        let _ = buf.remaining();
        if stream.write_all(&out).await.is_err() || stream.flush().await.is_err() {
            return;
        }
    }
}

/// Start both fake brokers; returns the state and a bootstrap list whose
/// first entry is a port nobody listens on.
async fn fake_cluster(move_every: u32, values: usize) -> (Arc<Mutex<State>>, String) {
    let state = Arc::new(Mutex::new(State {
        leader: 1,
        move_every,
        values: (0..values)
            .map(|i| Bytes::from(format!("{i:04}")))
            .collect(),
        ..State::default()
    }));
    let mut ports = [0u16; 2];
    for me in 1..=2 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        ports[me as usize - 1] = listener.local_addr().unwrap().port();
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(s, me, state.clone()));
            }
        });
    }
    state.lock().unwrap().ports = ports;
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let bootstrap = format!("127.0.0.1:{dead},127.0.0.1:{}", ports[1]);
    (state, bootstrap)
}

#[tokio::test]
async fn idempotent_producer_follows_the_leader_without_duplicates_or_reset() {
    let (state, bootstrap) = fake_cluster(5, 0).await;
    let mut config = ProducerConfig::default();
    config.set("enable.idempotence", "true").unwrap();
    config.set("batch.size", "200").unwrap();
    config.set("linger.ms", "0").unwrap();
    config.set("retry.backoff.ms", "1").unwrap();
    let producer = Producer::connect(&bootstrap, config)
        .await
        .expect("bootstrap gets past the dead server");
    let mut futures = Vec::new();
    for i in 0..300 {
        futures.push(
            producer
                .send(ProducerRecord::new("t", format!("{i:04}")))
                .await
                .unwrap(),
        );
    }
    let mut offsets = Vec::new();
    for f in futures {
        offsets.push(f.await.expect("delivered across leader moves").offset);
    }
    producer.close().await;
    assert_eq!(offsets, (0..300).collect::<Vec<i64>>());
    let s = state.lock().unwrap();
    assert!(s.moves >= 10, "the leader moved ({} moves)", s.moves);
    assert!(s.not_leader > 0, "some request met a deposed leader");
    let want: Vec<Bytes> = (0..300).map(|i| Bytes::from(format!("{i:04}"))).collect();
    assert_eq!(s.values, want, "every record once, in order");
    assert_eq!(s.init_producer_ids, 1, "no identity reset");
    assert_eq!(
        s.foreign_identity, 0,
        "one producer id and epoch throughout"
    );
}

#[tokio::test]
async fn consumer_follows_the_leader_and_sends_its_epoch() {
    let (state, bootstrap) = fake_cluster(3, 100).await;
    let mut config = ConsumerConfig::default();
    config.set("retry.backoff.ms", "1").unwrap();
    config.set("fetch.max.wait.ms", "10").unwrap();
    let mut consumer = Consumer::connect(&bootstrap, config).await.unwrap();
    let tp = ("t".to_string(), 0);
    consumer.assign(std::slice::from_ref(&tp));
    consumer.seek(&tp, 0).unwrap();
    let mut seen = Vec::new();
    let read_all = async {
        while seen.len() < 100 {
            for r in consumer.poll(Duration::from_millis(50)).await.unwrap() {
                seen.push((r.offset, r.value.unwrap()));
            }
        }
    };
    timeout(Duration::from_secs(60), read_all)
        .await
        .expect("the consumer kept up with the moving leader");
    let want: Vec<(i64, Bytes)> = (0..100)
        .map(|i| (i, Bytes::from(format!("{i:04}"))))
        .collect();
    assert_eq!(seen, want, "every record once, in offset order");
    let s = state.lock().unwrap();
    assert!(s.moves >= 10, "the leader moved ({} moves)", s.moves);
    assert!(s.not_leader + s.fenced > 0, "some fetch met a moved leader");
    assert_eq!(
        s.fetches_without_epoch, 0,
        "every fetch carries current_leader_epoch"
    );
}

/// A broker that stops answering (paused, cut off) must not hold the
/// client: the request times out and the connection is closed, so the
/// next request connects afresh (to this broker or, after a metadata
/// refresh, to another) instead of queueing behind the silent stream.
#[tokio::test]
async fn a_timed_out_request_closes_its_connection() {
    use weir::client::connection::{Connection, ConnectionOptions};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                // Answer ApiVersions, then swallow everything.
                while let Some((header, api, _)) = read_request(&mut s).await {
                    if api == ApiKey::ApiVersions {
                        let out = api_versions(header.correlation_id, header.request_api_version);
                        s.write_all(&out).await.unwrap();
                        s.flush().await.unwrap();
                    }
                }
            });
        }
    });
    let options = ConnectionOptions {
        request_timeout: Duration::from_millis(200),
        ..ConnectionOptions::default()
    };
    let conn = Connection::connect(&format!("127.0.0.1:{port}"), options)
        .await
        .unwrap();
    assert!(conn.is_alive());
    let err = conn.send(&MetadataRequest::default()).await.unwrap_err();
    assert!(
        matches!(err, weir::client::ClientError::Timeout { .. }),
        "{err}"
    );
    assert!(
        err.invalidates_metadata(),
        "a silent broker means stale metadata"
    );
    assert!(!conn.is_alive(), "the timed-out connection is closed");
}

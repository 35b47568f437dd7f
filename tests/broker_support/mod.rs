//! Test helpers: start a Server on a temp dir, talk raw Kafka protocol to it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir::broker::Server;
use weir::config::ServerConfig;
use weir::env::RealDisk;

pub fn config(dir: &Path) -> ServerConfig {
    let mut c = ServerConfig::default_single_node();
    c.set("listeners", "PLAINTEXT://127.0.0.1:0").unwrap();
    c.set("log.dirs", dir.to_str().unwrap()).unwrap();
    c
}

pub async fn start(dir: &Path) -> Server {
    start_with(config(dir)).await
}

pub async fn start_with(c: ServerConfig) -> Server {
    Server::start(c, Arc::new(RealDisk::new())).await.unwrap()
}

pub struct Client {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_correlation_id: 1,
        }
    }

    /// Frame and send one request; returns its correlation id.
    pub async fn send<R: Request>(&mut self, version: i16, req: &R) -> i32 {
        let cid = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(cid)
            .with_client_id(Some(StrBytes::from_static_str("weir-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .unwrap();
        req.encode(&mut body, version).unwrap();
        let mut framed = BytesMut::new();
        framed.put_i32(body.len() as i32);
        framed.extend_from_slice(&body);
        self.stream.write_all(&framed).await.unwrap();
        self.stream.flush().await.unwrap();
        cid
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
        self.stream.flush().await.unwrap();
    }

    /// Read one response frame: (correlation id, body bytes after the header).
    pub async fn recv_frame(&mut self) -> std::io::Result<Bytes> {
        let size = self.stream.read_i32().await? as usize;
        let mut buf = vec![0u8; size];
        self.stream.read_exact(&mut buf).await?;
        Ok(Bytes::from(buf))
    }

    pub async fn recv<R: Request>(&mut self, version: i16) -> (i32, R::Response) {
        let mut frame = self.recv_frame().await.unwrap();
        let header =
            ResponseHeader::decode(&mut frame, R::Response::header_version(version)).unwrap();
        let body = R::Response::decode(&mut frame, version).unwrap();
        assert_eq!(frame.remaining(), 0, "trailing bytes in response");
        (header.correlation_id, body)
    }

    pub async fn call<R: Request>(&mut self, version: i16, req: &R) -> R::Response {
        let cid = self.send(version, req).await;
        let (got, body) = self.recv::<R>(version).await;
        assert_eq!(got, cid, "correlation id");
        body
    }

    /// True when the server closed the connection.
    pub async fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.stream.read(&mut b).await, Ok(0) | Err(_))
    }
}

pub fn record(key: &str, value: &[u8], timestamp: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::copy_from_slice(value)),
        headers: Default::default(),
    }
}

/// One RecordBatch v2 holding `records` (offsets renumbered 0..n, as a producer does).
pub fn batch(records: &[Record]) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            offset: i as i64,
            ..r.clone()
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

/// An idempotent batch: producer id/epoch and base sequence set.
pub fn idempotent_batch(pid: i64, epoch: i16, base_seq: i32, n: usize) -> Bytes {
    let records: Vec<Record> = (0..n)
        .map(|i| {
            let mut r = record(
                &format!("k{i}"),
                format!("v{i}").as_bytes(),
                1000 + i as i64,
            );
            r.producer_id = pid;
            r.producer_epoch = epoch;
            r.sequence = base_seq + i as i32;
            r.offset = i as i64;
            r
        })
        .collect();
    batch(&records)
}

pub fn decode_records(mut bytes: Bytes) -> Vec<Record> {
    let mut out = Vec::new();
    while bytes.has_remaining() {
        let set = RecordBatchDecoder::decode(&mut bytes).unwrap();
        out.extend(set.records);
    }
    out
}

/// Fetch partition 0 of `topic` at `offset` without waiting: (error code,
/// log start offset, each record's (offset, value)).
pub async fn fetch_partition0(
    c: &mut Client,
    topic: &str,
    offset: i64,
) -> (i16, i64, Vec<(i64, Option<Bytes>)>) {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, TopicName};
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let resp = c.call(12, &req).await;
    let p = &resp.responses[0].partitions[0];
    let recs = p
        .records
        .clone()
        .map(decode_records)
        .unwrap_or_default()
        .into_iter()
        .map(|r| (r.offset, r.value))
        .collect();
    (p.error_code, p.log_start_offset, recs)
}

/// Produce `records` to partition 0 of `topic` with `acks` and
/// `timeout_ms`: (error code, base offset).
pub async fn produce_partition0(
    c: &mut Client,
    topic: &str,
    acks: i16,
    timeout_ms: i32,
    records: Bytes,
) -> (i16, i64) {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let resp = c.call(9, &req).await;
    let p = &resp.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

/// DescribeConfigs of a topic: (name, value, source) per config.
pub async fn describe_topic(c: &mut Client, topic: &str) -> Vec<(String, String, i8)> {
    try_describe_topic(c, topic)
        .await
        .unwrap_or_else(|code| panic!("DescribeConfigs of {topic}: error {code}"))
}

/// DescribeConfigs of a topic: (name, value, source) per config, or the
/// resource's error code.
pub async fn try_describe_topic(
    c: &mut Client,
    topic: &str,
) -> Result<Vec<(String, String, i8)>, i16> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::DescribeConfigsRequest;
    let r = c
        .call(
            4,
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_string(topic.to_string()))
                    .with_configuration_keys(None),
            ]),
        )
        .await;
    if r.results[0].error_code != 0 {
        return Err(r.results[0].error_code);
    }
    Ok(r.results[0]
        .configs
        .iter()
        .map(|e| {
            (
                e.name.to_string(),
                e.value.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                e.config_source,
            )
        })
        .collect())
}

pub fn described(d: &[(String, String, i8)], key: &str) -> (String, i8) {
    d.iter()
        .find(|e| e.0 == key)
        .map(|e| (e.1.clone(), e.2))
        .unwrap_or_else(|| panic!("{key} not described"))
}

/// CreateTopics of one single-replica partition with `configs`; asserts it
/// was created.
pub async fn create_with(c: &mut Client, topic: &str, configs: &[(&'static str, &'static str)]) {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
    let t = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_string())))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(
            configs
                .iter()
                .map(|(k, v)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str(k))
                        .with_value(Some(StrBytes::from_static_str(v)))
                })
                .collect(),
        );
    let resp = c
        .call(7, &CreateTopicsRequest::default().with_topics(vec![t]))
        .await;
    assert_eq!(resp.topics[0].error_code, 0, "{:?}", resp.topics[0]);
}

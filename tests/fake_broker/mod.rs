//! Pieces of a scripted fake Kafka broker for client tests: frame I/O,
//! response encoding, and the ApiVersions / Metadata answers of a one-broker
//! cluster with topic "t", partition 0. Each test scripts Produce and
//! InitProducerId itself. Works on tokio and in madsim.
#![allow(dead_code)]

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Encodable, StrBytes};
use std::future::Future;
use tokio::io::AsyncReadExt;

use tokio::net::{TcpListener, TcpStream};

/// A response frame: size, header at the API's response header version, body.
pub fn encode<M: Encodable>(correlation_id: i32, api: ApiKey, version: i16, body: &M) -> Vec<u8> {
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

/// The next request: its header and the body bytes; None when the peer closed.
pub async fn read_request(stream: &mut TcpStream) -> Option<(RequestHeader, ApiKey, Bytes)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame).await.ok()?;
    let mut buf = Bytes::from(frame);
    let header = decode_request_header_from_buffer(&mut buf).unwrap();
    let api = ApiKey::try_from(header.request_api_key).unwrap();
    Some((header, api, buf))
}

/// ApiVersions: the APIs a producer needs.
pub fn api_versions(correlation_id: i32, version: i16) -> Vec<u8> {
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
    encode(correlation_id, ApiKey::ApiVersions, version, &r)
}

/// Metadata: broker 1 at 127.0.0.1:`port` leads partition 0 of topic "t".
pub fn metadata(correlation_id: i32, version: i16, port: u16) -> Vec<u8> {
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
    encode(correlation_id, ApiKey::Metadata, version, &r)
}

/// Listen on a loopback port and serve every connection with `serve(stream,
/// port)` on its own task; returns the port.
pub async fn listen<F, Fut>(serve: F) -> u16
where
    F: Fn(TcpStream, u16) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (s, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(s, port));
        }
    });
    port
}

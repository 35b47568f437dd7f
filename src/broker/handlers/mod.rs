//! One handler per Kafka API. `dispatch` decodes the body at the request's
//! version, runs the handler and encodes its response.
//!
//! **Architecture Invariant:** a handler never panics on client input and
//! never fails the whole connection for a per-topic or per-partition problem:
//! those become error codes in the response. Only an undecodable body closes
//! the connection (the client sent something that is not Kafka).

pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub mod write_txn_markers;

use bytes::BytesMut;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use std::net::SocketAddr;

use super::Broker;
use crate::protocol::{encode_response, RequestError, RequestFrame};

/// Run one request and append its framed response (if any) to `out`.
pub async fn dispatch(
    broker: &Broker,
    request: RequestFrame,
    peer: SocketAddr,
    out: &mut BytesMut,
) -> Result<(), RequestError> {
    let RequestFrame {
        api_key,
        version,
        header,
        body,
    } = request;
    let correlation_id = header.correlation_id;
    // Only JoinGroup keeps the client id (DescribeGroups reports it).
    let client_id = if api_key == ApiKey::JoinGroup {
        header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default()
    } else {
        String::new()
    };
    // The header's client id is a slice of the frame: drop it so produce can
    // take the frame back as a unique buffer.
    drop(header);
    tracing::trace!(?api_key, version, correlation_id, "request");
    let mut body = body;
    match api_key {
        ApiKey::Produce => {
            if let Some(resp) = produce::handle(broker, body, version).await? {
                respond(out, correlation_id, version, &resp)?;
            }
        }
        ApiKey::Fetch => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &fetch::handle(broker, req, version).await,
            )?;
        }
        ApiKey::ListOffsets => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &list_offsets::handle(broker, req, version),
            )?;
        }
        ApiKey::Metadata => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &metadata::handle(broker, req, version).await,
            )?;
        }
        ApiKey::ApiVersions => {
            let req = decode(&mut body, version)?;
            respond(out, correlation_id, version, &api_versions::handle(req))?;
        }
        ApiKey::CreateTopics => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &create_topics::handle(broker, req, version).await,
            )?;
        }
        ApiKey::DeleteTopics => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &delete_topics::handle(broker, req, version).await,
            )?;
        }
        ApiKey::CreatePartitions => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &create_partitions::handle(broker, req).await,
            )?;
        }
        ApiKey::DeleteRecords => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &delete_records::handle(broker, req),
            )?;
        }
        ApiKey::DescribeConfigs => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &describe_configs::handle(broker, req, version),
            )?;
        }
        ApiKey::IncrementalAlterConfigs => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &incremental_alter_configs::handle(broker, req).await,
            )?;
        }
        ApiKey::DescribeCluster => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &describe_cluster::handle(broker, req),
            )?;
        }
        ApiKey::InitProducerId => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &init_producer_id::handle(broker, req).await,
            )?;
        }
        ApiKey::WriteTxnMarkers => {
            let req = decode(&mut body, version)?;
            let resp = write_txn_markers::handle(broker, req).await;
            respond(out, correlation_id, version, &resp)?;
        }
        ApiKey::FindCoordinator => {
            let req = decode(&mut body, version)?;
            let resp = find_coordinator::handle(broker, req, version).await;
            respond(out, correlation_id, version, &resp)?;
        }
        ApiKey::JoinGroup => {
            let req = decode(&mut body, version)?;
            // Kafka reports the host as InetAddress.toString: "/1.2.3.4".
            let host = format!("/{}", peer.ip());
            let resp = join_group::handle(broker, req, version, &client_id, &host).await;
            respond(out, correlation_id, version, &resp)?;
        }
        ApiKey::SyncGroup => {
            let req = decode(&mut body, version)?;
            let resp = sync_group::handle(broker, req).await;
            respond(out, correlation_id, version, &resp)?;
        }
        ApiKey::Heartbeat => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &heartbeat::handle(broker, req),
            )?;
        }
        ApiKey::LeaveGroup => {
            let req = decode(&mut body, version)?;
            let resp = leave_group::handle(broker, req, version);
            respond(out, correlation_id, version, &resp)?;
        }
        ApiKey::OffsetCommit => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &offset_commit::handle(broker, req).await,
            )?;
        }
        ApiKey::OffsetFetch => {
            let req = decode(&mut body, version)?;
            let resp = offset_fetch::handle(broker, req, version);
            respond(out, correlation_id, version, &resp)?;
        }
        ApiKey::ListGroups => {
            let req = decode(&mut body, version)?;
            respond(
                out,
                correlation_id,
                version,
                &list_groups::handle(broker, req),
            )?;
        }
        ApiKey::DescribeGroups => {
            let req = decode(&mut body, version)?;
            let resp = describe_groups::handle(broker, req);
            respond(out, correlation_id, version, &resp)?;
        }
        ApiKey::DeleteGroups => {
            let req = decode(&mut body, version)?;
            let resp = delete_groups::handle(broker, req);
            respond(out, correlation_id, version, &resp)?;
        }
        ApiKey::OffsetDelete => {
            let req = decode(&mut body, version)?;
            let resp = offset_delete::handle(broker, req);
            respond(out, correlation_id, version, &resp)?;
        }
        ApiKey::OffsetForLeaderEpoch => {
            let req = decode(&mut body, version)?;
            let resp = offset_for_leader_epoch::handle(broker, req);
            respond(out, correlation_id, version, &resp)?;
        }
        other => {
            // Unreachable in practice: the version table admits only the APIs above.
            return Err(RequestError::Unsupported {
                api_key: other as i16,
                version,
            });
        }
    }
    Ok(())
}

fn decode<T: Decodable>(body: &mut bytes::Bytes, version: i16) -> Result<T, RequestError> {
    T::decode(body, version).map_err(|e| RequestError::Malformed(e.to_string()))
}

fn respond<R: Encodable + HeaderVersion>(
    out: &mut BytesMut,
    correlation_id: i32,
    version: i16,
    body: &R,
) -> Result<(), RequestError> {
    // A response that does not encode at this version is a handler bug.
    // Skipping it would leave the client waiting forever for this correlation
    // id, so the connection is closed instead: the client sees an error at once.
    encode_response(out, correlation_id, version, body).map_err(|e| {
        tracing::error!(error = %e, correlation_id, version, "response encoding failed");
        RequestError::Encode(e.to_string())
    })
}

/// An owned string as the codec's string type.
pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// This broker's replica of a partition, or the error for one it does not
/// host: NOT_LEADER_OR_FOLLOWER when the metadata image has the partition
/// (the client asked the wrong broker and should refresh its metadata),
/// UNKNOWN_TOPIC_OR_PARTITION when the image does not.
pub(crate) fn hosted_replica(
    broker: &Broker,
    topic: &str,
    partition: i32,
) -> Result<std::sync::Arc<crate::replica::partition::Partition>, i16> {
    use crate::protocol::error_codes as ec;
    match broker.replicas.get(topic, partition) {
        Some(replica) => Ok(replica),
        None if broker.replicas.image_leader(topic, partition).is_some() => {
            Err(ec::NOT_LEADER_OR_FOLLOWER)
        }
        None => Err(ec::UNKNOWN_TOPIC_OR_PARTITION),
    }
}

//! FindCoordinator: a group's coordinator is the leader of the partition of
//! `__consumer_offsets` its id hashes to. v0-v3 ask for one key, v4+ for a
//! batch of `coordinator_keys`. A transactional id's coordinator (key
//! type 1) is the leader of its `__transaction_state` partition. The first lookup
//! creates the internal topic through the controller, as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;
use crate::broker::admin::create_topics_via_controller;
use crate::broker::Broker;
use crate::controller::api::CreateTopicSpec;
use crate::coordinator::group::codes as ec;
use crate::coordinator::group::records::partition_for;
use crate::coordinator::group::service::OFFSETS_TOPIC;
use crate::coordinator::txn::TXN_STATE_TOPIC;
use crate::metadata::MetadataImage;

/// v4 moved the answer into a list of coordinators.
const BATCHED_VERSION: i16 = 4;
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// Where a key's coordinator is: (node, host, port) or an error code.
type Located = Result<(i32, String, i32), i16>;

pub async fn handle(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= BATCHED_VERSION {
        request
            .coordinator_keys
            .iter()
            .map(|k| k.to_string())
            .collect()
    } else {
        vec![request.key.to_string()]
    };
    let topic = match request.key_type {
        KEY_TYPE_GROUP => {
            ensure_offsets_topic(broker).await;
            Some(OFFSETS_TOPIC)
        }
        KEY_TYPE_TRANSACTION => {
            ensure_txn_state_topic(broker).await;
            Some(TXN_STATE_TOPIC)
        }
        _ => None,
    };
    let image = broker.cluster.image();
    let located: Vec<Located> = keys
        .iter()
        .map(|k| match topic {
            None => Err(ec::INVALID_REQUEST),
            Some(t) => locate(&image, t, k),
        })
        .collect();
    if version >= BATCHED_VERSION {
        let coordinators = keys
            .into_iter()
            .zip(located)
            .map(|(key, at)| {
                let c = Coordinator::default().with_key(str_bytes(key));
                match at {
                    Ok((node, host, port)) => c
                        .with_node_id(BrokerId(node))
                        .with_host(str_bytes(host))
                        .with_port(port),
                    Err(code) => c
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(code),
                }
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        match located
            .into_iter()
            .next()
            .unwrap_or(Err(ec::COORDINATOR_NOT_AVAILABLE))
        {
            Ok((node, host, port)) => FindCoordinatorResponse::default()
                .with_node_id(BrokerId(node))
                .with_host(str_bytes(host))
                .with_port(port),
            Err(code) => FindCoordinatorResponse::default()
                .with_error_code(code)
                .with_node_id(BrokerId(-1))
                .with_port(-1),
        }
    }
}

/// The live leader of the key's partition of the internal topic.
fn locate(image: &MetadataImage, internal: &str, group: &str) -> Located {
    let topic = image.topic(internal).ok_or(ec::COORDINATOR_NOT_AVAILABLE)?;
    let p = partition_for(group, topic.partitions.len() as i32);
    let leader = topic.partitions[p as usize].leader;
    let b = image
        .brokers
        .get(&leader)
        .filter(|b| !b.fenced)
        .ok_or(ec::COORDINATOR_NOT_AVAILABLE)?;
    Ok((b.id, b.host.clone(), b.port))
}

/// Create `__consumer_offsets` if missing, with Kafka's offsets topic
/// configs: compacted, segment.bytes = offsets.topic.segment.bytes (small
/// segments close sooner, and only closed ones are cleaned), and
/// compression.type=producer (the coordinator's batches are stored as
/// written, whatever the broker's compression.type); replication factor
/// offsets.topic.replication.factor capped at the live brokers.
pub(crate) async fn ensure_offsets_topic(broker: &Broker) {
    let image = broker.cluster.image();
    if image.topic(OFFSETS_TOPIC).is_some() {
        return;
    }
    let live = image.live_brokers().count().max(1) as i16;
    let spec = CreateTopicSpec {
        name: OFFSETS_TOPIC.to_string(),
        partitions: broker.groups.config().offsets_partitions,
        replication_factor: broker.config.offsets_topic_replication_factor.min(live),
        assignments: Vec::new(),
        configs: BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                broker.config.offsets_topic_segment_bytes.to_string(),
            ),
            ("compression.type".to_string(), "producer".to_string()),
        ]),
    };
    for (_, r) in create_topics_via_controller(broker, vec![spec], false).await {
        if r.error_code != ec::NONE
            && r.error_code != crate::protocol::error_codes::TOPIC_ALREADY_EXISTS
        {
            tracing::warn!(code = r.error_code, message = ?r.message, "cannot create {OFFSETS_TOPIC}");
        }
    }
}

/// Create `__transaction_state` (compacted; transaction.state.log.* sizes,
/// replication factor and min ISR capped at the live brokers) if missing.
pub(crate) async fn ensure_txn_state_topic(broker: &Broker) {
    let image = broker.cluster.image();
    if image.topic(TXN_STATE_TOPIC).is_some() {
        return;
    }
    let live = image.live_brokers().count().max(1) as i16;
    let cfg = broker.txns.config();
    let rf = cfg.replication_factor.min(live);
    let min_isr = cfg.min_isr.min(rf);
    let spec = CreateTopicSpec {
        name: TXN_STATE_TOPIC.to_string(),
        partitions: cfg.partitions,
        replication_factor: rf,
        assignments: Vec::new(),
        configs: BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("min.insync.replicas".to_string(), min_isr.to_string()),
            ("segment.bytes".to_string(), cfg.segment_bytes.to_string()),
            ("compression.type".to_string(), "producer".to_string()),
        ]),
    };
    for (_, r) in create_topics_via_controller(broker, vec![spec], false).await {
        if r.error_code != ec::NONE
            && r.error_code != crate::protocol::error_codes::TOPIC_ALREADY_EXISTS
        {
            tracing::warn!(code = r.error_code, message = ?r.message, "cannot create {TXN_STATE_TOPIC}");
        }
    }
}

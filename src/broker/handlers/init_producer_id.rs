//! InitProducerId: for idempotent (non-transactional) producers a fresh
//! producer id with epoch 0 every time, as Kafka does when no transactional
//! id is given; with a transactional id, the transaction coordinator's
//! answer (same id, bumped epoch; fencing; KIP-360 from v3).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::registry::lock_or_recover;
use crate::broker::Broker;
use crate::controller::api::{ControllerRequest, ControllerResponse};
use crate::protocol::error_codes as ec;

/// KIP-360: the request carries the producer's current id and epoch.
const EXPECTED_VERSION: i16 = 3;
/// KIP-588: PRODUCER_FENCED is known.
const FENCED_VERSION: i16 = 4;

pub async fn handle(
    broker: &Broker,
    request: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(id) = request
        .transactional_id
        .as_ref()
        .filter(|id| !id.is_empty())
    {
        let expected = (version >= EXPECTED_VERSION && request.producer_id.0 >= 0)
            .then_some((request.producer_id.0, request.producer_epoch));
        let answer = broker
            .txns
            .init_producer_id(
                id.as_str(),
                request.transaction_timeout_ms,
                expected,
                || next_producer_id(broker),
            )
            .await;
        return match answer {
            Ok((pid, epoch)) => resp
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch),
            Err(code) => resp.with_error_code(super::add_partitions_to_txn::fenced_code(
                code,
                version,
                FENCED_VERSION,
            )),
        };
    }
    match next_producer_id(broker).await {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(code) => resp.with_error_code(code),
    }
}

async fn next_producer_id(broker: &Broker) -> Result<i64, i16> {
    // Two requests may both find the block empty; both refill, and the
    // second block simply follows the first (ids are skipped, never reused).
    loop {
        if let Some(id) = lock_or_recover(&broker.producer_ids).take() {
            return Ok(id);
        }
        let answer = broker
            .cluster
            .call(ControllerRequest::AllocateProducerIds {
                broker: broker.config.node_id,
                broker_epoch: broker.cluster.broker_epoch(),
            })
            .await;
        match answer {
            Ok(ControllerResponse::ProducerIds { first, count }) => {
                let mut block = lock_or_recover(&broker.producer_ids);
                if block.is_used_up() {
                    block.refill(first, count);
                }
            }
            Ok(other) => {
                tracing::warn!(?other, "unexpected answer to AllocateProducerIds");
                return Err(ec::COORDINATOR_NOT_AVAILABLE);
            }
            Err(e) => {
                tracing::warn!(error = ?e, "allocating producer ids failed");
                // Retriable for clients: they retry InitProducerId.
                return Err(ec::COORDINATOR_NOT_AVAILABLE);
            }
        }
    }
}

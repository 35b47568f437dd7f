//! InitProducerId for idempotent (non-transactional) producers: a fresh
//! producer id with epoch 0 every time, as Kafka does when no transactional
//! id is given. Transactions are not served yet.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::registry::lock_or_recover;
use crate::broker::Broker;
use crate::controller::api::{ControllerRequest, ControllerResponse};
use crate::protocol::error_codes as ec;

pub async fn handle(broker: &Broker, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        // No transaction coordinator yet: a fatal, well-understood error
        // rather than a retriable one the client would spin on.
        return resp.with_error_code(ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
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

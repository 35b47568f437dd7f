//! InitProducerId for idempotent (non-transactional) producers: a fresh
//! producer id with epoch 0 every time, as Kafka does when no transactional
//! id is given. Transactions are not served yet.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::registry::lock_or_recover;
use crate::broker::Broker;
use crate::protocol::error_codes as ec;

pub fn handle(broker: &Broker, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if request.transactional_id.is_some() {
        // No transaction coordinator yet: a fatal, well-understood error
        // rather than a retriable one the client would spin on.
        return resp.with_error_code(ec::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    let allocated = lock_or_recover(&broker.producer_ids).allocate(broker.registry.store());
    match allocated {
        Ok(id) => resp.with_producer_id(ProducerId(id)).with_producer_epoch(0),
        Err(e) => {
            tracing::error!(error = %e, "persisting a producer id block failed");
            resp.with_error_code(ec::KAFKA_STORAGE_ERROR)
        }
    }
}

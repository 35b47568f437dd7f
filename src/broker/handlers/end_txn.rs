//! EndTxn v0-v3: Ongoing -> PrepareCommit/PrepareAbort, answered once
//! persisted; the coordinator then writes the markers in the background.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use super::add_partitions_to_txn::fenced_code;
use crate::broker::Broker;

pub async fn handle(broker: &Broker, request: EndTxnRequest, version: i16) -> EndTxnResponse {
    let code = broker
        .txns
        .end_txn(
            request.transactional_id.as_str(),
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
        )
        .await;
    EndTxnResponse::default().with_error_code(fenced_code(code, version, 2))
}

//! ListTransactions v0-v1: the transactions this broker coordinates,
//! filtered by state names and producer ids (v1 adds the duration filter:
//! transactions running at least that long).

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId};

use super::str_bytes;
use crate::broker::Broker;
use crate::coordinator::txn::state::TxnState;

const STATES: [TxnState; 8] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
    TxnState::PrepareEpochFence,
    TxnState::Dead,
];

pub fn handle(broker: &Broker, request: ListTransactionsRequest) -> ListTransactionsResponse {
    let unknown = request
        .state_filters
        .iter()
        .filter(|f| !STATES.iter().any(|s| s.name() == f.as_str()))
        .cloned()
        .collect();
    let now = broker.txns.now_ms();
    let states = broker
        .txns
        .snapshot()
        .into_iter()
        .filter(|m| {
            request.state_filters.is_empty()
                || request
                    .state_filters
                    .iter()
                    .any(|f| f.as_str() == m.state.name())
        })
        .filter(|m| {
            request.producer_id_filters.is_empty()
                || request
                    .producer_id_filters
                    .contains(&ProducerId(m.producer_id))
        })
        .filter(|m| {
            request.duration_filter < 0
                || (m.state == TxnState::Ongoing && now - m.start_ms >= request.duration_filter)
        })
        .map(|m| {
            TransactionState::default()
                .with_transactional_id(str_bytes(m.transactional_id).into())
                .with_producer_id(ProducerId(m.producer_id))
                .with_transaction_state(str_bytes(m.state.name().to_string()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}

//! DescribeTransactions v0: the state of each asked id this broker
//! coordinates (NOT_COORDINATOR / TRANSACTIONAL_ID_NOT_FOUND otherwise).

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::coordinator::txn::codes as ec;

pub fn handle(
    broker: &Broker,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let all: BTreeMap<String, _> = broker
        .txns
        .snapshot()
        .into_iter()
        .map(|m| (m.transactional_id.clone(), m))
        .collect();
    let states = request
        .transactional_ids
        .into_iter()
        .map(|id| {
            let s = TransactionState::default().with_transactional_id(id.clone());
            if !broker.txns.owns(id.as_str()) {
                return s
                    .with_error_code(ec::NOT_COORDINATOR)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
            }
            let Some(m) = all.get(id.as_str()) else {
                return s
                    .with_error_code(ec::TRANSACTIONAL_ID_NOT_FOUND)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
            };
            let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (t, p) in &m.partitions {
                topics.entry(t.as_str()).or_default().push(*p);
            }
            s.with_transaction_state(str_bytes(m.state.name().to_string()))
                .with_transaction_timeout_ms(m.timeout_ms)
                .with_transaction_start_time_ms(m.start_ms)
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(t, ps)| {
                            TopicData::default()
                                .with_topic(TopicName(str_bytes(t.to_string())))
                                .with_partitions(ps)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

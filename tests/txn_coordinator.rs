//! The transaction coordinator end to end over real connections:
//! FindCoordinator(TRANSACTION) -> InitProducerId -> AddPartitionsToTxn ->
//! transactional Produce -> EndTxn, then read_committed Fetch; abort; and
//! fencing by a second InitProducerId.
#![cfg(not(madsim))]

mod broker_support;

use std::time::Duration;

use broker_support::*;
use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir::log::batch::{build_batch, BatchProducer, SimpleRecord};

const TOPIC: &str = "tx";
const RETRIABLE: [i16; 4] = [14, 15, 16, 51];

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, values: &[&str]) -> Bytes {
    let recs: Vec<SimpleRecord> = values
        .iter()
        .map(|v| SimpleRecord {
            key: None,
            value: Some(v.as_bytes().to_vec()),
            headers: Vec::new(),
            timestamp: 1000,
        })
        .collect();
    Bytes::from(build_batch(
        &recs,
        BatchProducer {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            transactional: true,
        },
    ))
}

async fn setup(c: &mut Client) {
    let r = c
        .call(
            7,
            &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(s(TOPIC)))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
        )
        .await;
    assert_eq!(r.topics[0].error_code, 0);
}

async fn find_txn_coordinator(c: &mut Client, id: &str) {
    for _ in 0..200 {
        let r = c
            .call(
                3,
                &FindCoordinatorRequest::default()
                    .with_key(s(id))
                    .with_key_type(1),
            )
            .await;
        if r.error_code == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no transaction coordinator");
}

async fn init(c: &mut Client, id: &str) -> (i64, i16) {
    for _ in 0..200 {
        let r = c
            .call(
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(s(id))))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
            .await;
        if r.error_code == 0 {
            return (r.producer_id.0, r.producer_epoch);
        }
        assert!(RETRIABLE.contains(&r.error_code), "{}", r.error_code);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("InitProducerId never succeeded");
}

async fn add_partition(c: &mut Client, id: &str, pid: i64, epoch: i16) -> i16 {
    let r = c
        .call(
            3,
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(s(id)))
                .with_v3_and_below_producer_id(ProducerId(pid))
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(s(TOPIC)))
                    .with_partitions(vec![0])]),
        )
        .await;
    r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

async fn produce(c: &mut Client, id: &str, records: Bytes) -> i16 {
    let req = ProduceRequest::default()
        .with_transactional_id(Some(TransactionalId(s(id))))
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s(TOPIC)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let r = c.call(9, &req).await;
    r.responses[0].partition_responses[0].error_code
}

async fn end(c: &mut Client, id: &str, pid: i64, epoch: i16, commit: bool) -> i16 {
    c.call(
        3,
        &EndTxnRequest::default()
            .with_transactional_id(TransactionalId(s(id)))
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_committed(commit),
    )
    .await
    .error_code
}

/// read_committed: (LSO, offsets of data records, aborted producer ids).
async fn committed(c: &mut Client) -> (i64, Vec<i64>, Vec<i64>) {
    let req = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s(TOPIC)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let r = c.call(11, &req).await;
    let p = &r.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    let recs = p.records.clone().map(decode_records).unwrap_or_default();
    (
        p.last_stable_offset,
        recs.iter()
            .filter(|r| !r.control)
            .map(|r| r.offset)
            .collect(),
        p.aborted_transactions
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|a| a.producer_id.0)
            .collect(),
    )
}

async fn wait_lso(c: &mut Client, at_least: i64) -> (i64, Vec<i64>, Vec<i64>) {
    for _ in 0..200 {
        let got = committed(c).await;
        if got.0 >= at_least {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("LSO never reached {at_least}");
}

async fn describe_state(c: &mut Client, id: &str) -> String {
    let r = c
        .call(
            0,
            &DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(s(id))]),
        )
        .await;
    assert_eq!(r.transaction_states[0].error_code, 0);
    r.transaction_states[0].transaction_state.to_string()
}

async fn wait_state(c: &mut Client, id: &str, want: &str) {
    for _ in 0..200 {
        if describe_state(c, id).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{id} never reached {want}");
}

#[tokio::test]
async fn commit_abort_and_fencing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    setup(&mut c).await;
    let id = "txn-a";
    find_txn_coordinator(&mut c, id).await;
    let (pid, epoch) = init(&mut c, id).await;
    assert_eq!(epoch, 0);

    // Commit: the two records become visible to read_committed.
    assert_eq!(add_partition(&mut c, id, pid, epoch).await, 0);
    assert_eq!(describe_state(&mut c, id).await, "Ongoing");
    assert_eq!(
        produce(&mut c, id, txn_batch(pid, epoch, 0, &["a", "b"])).await,
        0
    );
    assert_eq!(
        committed(&mut c).await.0,
        0,
        "open transaction holds the LSO"
    );
    assert_eq!(end(&mut c, id, pid, epoch, true).await, 0);
    let (lso, data, aborted) = wait_lso(&mut c, 3).await;
    assert_eq!(lso, 3);
    assert_eq!(data, vec![0, 1]);
    assert!(aborted.is_empty());
    wait_state(&mut c, id, "CompleteCommit").await;
    // A retried EndTxn(commit) answers NONE, an abort INVALID_TXN_STATE.
    assert_eq!(end(&mut c, id, pid, epoch, true).await, 0);
    assert_eq!(end(&mut c, id, pid, epoch, false).await, 48);

    // Abort: the record stays hidden, listed as aborted.
    assert_eq!(add_partition(&mut c, id, pid, epoch).await, 0);
    assert_eq!(
        produce(&mut c, id, txn_batch(pid, epoch, 2, &["c"])).await,
        0
    );
    assert_eq!(end(&mut c, id, pid, epoch, false).await, 0);
    let (lso, data, aborted) = wait_lso(&mut c, 5).await;
    assert_eq!(lso, 5);
    assert_eq!(
        data,
        vec![0, 1, 3],
        "read_committed returns the data; the client drops aborted"
    );
    assert_eq!(aborted, vec![pid]);
    wait_state(&mut c, id, "CompleteAbort").await;

    // A second InitProducerId fences the first producer.
    let (pid2, epoch2) = init(&mut c, id).await;
    assert_eq!((pid2, epoch2), (pid, epoch + 1));
    assert_eq!(add_partition(&mut c, id, pid, epoch).await, 90);
    assert_eq!(end(&mut c, id, pid, epoch, true).await, 90);
    // (A zombie's Produce without AddPartitionsToTxn is not refused by the
    // partition until it sees the newer epoch: KIP-890 part 2, not ours.)

    // ListTransactions sees it.
    let r = c
        .call(
            1,
            &ListTransactionsRequest::default().with_state_filters(vec![s("Empty")]),
        )
        .await;
    assert_eq!(r.transaction_states.len(), 1);
    assert_eq!(r.transaction_states[0].producer_id.0, pid);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn prepared_transaction_finishes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = "txn-r";
    let (pid, epoch) = {
        let server = start(dir.path()).await;
        let mut c = Client::connect(server.local_addr()).await;
        setup(&mut c).await;
        find_txn_coordinator(&mut c, id).await;
        let (pid, epoch) = init(&mut c, id).await;
        assert_eq!(add_partition(&mut c, id, pid, epoch).await, 0);
        assert_eq!(
            produce(&mut c, id, txn_batch(pid, epoch, 0, &["x"])).await,
            0
        );
        assert_eq!(end(&mut c, id, pid, epoch, true).await, 0);
        wait_lso(&mut c, 2).await;
        server.shutdown().await.unwrap();
        (pid, epoch)
    };
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    find_txn_coordinator(&mut c, id).await;
    // The state was reloaded: the next InitProducerId bumps the epoch.
    assert_eq!(init(&mut c, id).await, (pid, epoch + 1));
    let (_, data, _) = wait_lso(&mut c, 2).await;
    assert_eq!(data, vec![0]);
    server.shutdown().await.unwrap();
}

async fn find_group_coordinator(c: &mut Client, group: &str) {
    for _ in 0..200 {
        let r = c
            .call(3, &FindCoordinatorRequest::default().with_key(s(group)))
            .await;
        if r.error_code == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no group coordinator");
}

async fn committed_offset(c: &mut Client, group: &str) -> i64 {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let r = c
        .call(
            5,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(TopicName(s(TOPIC)))
                    .with_partition_indexes(vec![0])])),
        )
        .await;
    assert_eq!(r.error_code, 0);
    r.topics[0].partitions[0].committed_offset
}

async fn txn_offsets(c: &mut Client, id: &str, group: &str, pid: i64, epoch: i16, offset: i64) {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    let r = c
        .call(
            3,
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s(id)))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_group_id(GroupId(s(group))),
        )
        .await;
    assert_eq!(r.error_code, 0);
    let r = c
        .call(
            3,
            &TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(s(id)))
                .with_group_id(GroupId(s(group)))
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_generation_id(-1)
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(s(TOPIC)))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(-1)])]),
        )
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
}

#[tokio::test]
async fn transactional_offsets_visible_on_commit_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    setup(&mut c).await;
    let (id, group) = ("txn-o", "g-o");
    find_group_coordinator(&mut c, group).await;
    find_txn_coordinator(&mut c, id).await;
    let (pid, epoch) = init(&mut c, id).await;

    txn_offsets(&mut c, id, group, pid, epoch, 5).await;
    assert_eq!(
        committed_offset(&mut c, group).await,
        -1,
        "pending until COMMIT"
    );
    assert_eq!(end(&mut c, id, pid, epoch, true).await, 0);
    wait_state(&mut c, id, "CompleteCommit").await;
    assert_eq!(committed_offset(&mut c, group).await, 5);

    txn_offsets(&mut c, id, group, pid, epoch, 9).await;
    assert_eq!(end(&mut c, id, pid, epoch, false).await, 0);
    wait_state(&mut c, id, "CompleteAbort").await;
    assert_eq!(
        committed_offset(&mut c, group).await,
        5,
        "aborted offsets dropped"
    );

    // Reload: the committed one survives, the aborted one stays dropped.
    server.shutdown().await.unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    find_group_coordinator(&mut c, group).await;
    let mut got = -2;
    for _ in 0..100 {
        got = committed_offset(&mut c, group).await;
        if got == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got, 5);
    server.shutdown().await.unwrap();
}

/// `__transaction_state` is created compacted, with
/// transaction.state.log.segment.bytes as its segment size (so the cleaner
/// can compact it and a new coordinator loads little) and the producer's
/// compression kept.
#[tokio::test]
async fn transaction_state_topic_is_compacted_with_its_own_segment_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.set("transaction.state.log.segment.bytes", "65536")
        .unwrap();
    let server = start_with(cfg).await;
    let mut c = Client::connect(server.local_addr()).await;
    find_txn_coordinator(&mut c, "txn-cfg").await;
    let d = describe_topic(&mut c, "__transaction_state").await;
    assert_eq!(described(&d, "cleanup.policy"), ("compact".into(), 1));
    assert_eq!(described(&d, "segment.bytes"), ("65536".into(), 1));
    assert_eq!(described(&d, "compression.type"), ("producer".into(), 1));
    server.shutdown().await.unwrap();
}

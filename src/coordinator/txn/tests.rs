//! State machine transitions and the `__transaction_state` layout.

use super::codes as ec;
use super::records;
use super::state::*;

const ID: &str = "tx-1";

fn init(c: &mut TxnCoordinator, fresh: i64, now: i64) -> (i64, i16) {
    let req = InitRequest {
        transactional_id: ID,
        timeout_ms: 60_000,
        expected: None,
    };
    match c.init_producer_id(req.clone(), None, now) {
        InitOutcome::Ok {
            producer_id,
            producer_epoch,
            ..
        } => (producer_id, producer_epoch),
        InitOutcome::NeedProducerId => match c.init_producer_id(req, Some(fresh), now) {
            InitOutcome::Ok {
                producer_id,
                producer_epoch,
                ..
            } => (producer_id, producer_epoch),
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("unexpected {other:?}"),
    }
}

fn parts(v: &[(&str, i32)]) -> Vec<(String, i32)> {
    v.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

fn state(c: &TxnCoordinator) -> TxnState {
    c.get(ID).unwrap().state
}

#[test]
fn new_id_gets_fresh_producer_id_epoch_zero() {
    let mut c = TxnCoordinator::default();
    assert_eq!(init(&mut c, 7, 0), (7, 0));
    assert_eq!(state(&c), TxnState::Empty);
}

#[test]
fn same_id_bumps_epoch() {
    let mut c = TxnCoordinator::default();
    init(&mut c, 7, 0);
    assert_eq!(init(&mut c, 8, 1), (7, 1));
    assert_eq!(init(&mut c, 9, 2), (7, 2));
}

#[test]
fn timeout_above_max_is_refused() {
    let mut c = TxnCoordinator::default();
    let req = InitRequest {
        transactional_id: ID,
        timeout_ms: 900_001,
        expected: None,
    };
    assert!(matches!(
        c.init_producer_id(req, Some(1), 0),
        InitOutcome::Err(ec::INVALID_TRANSACTION_TIMEOUT, _)
    ));
}

#[test]
fn epoch_exhaustion_gets_new_producer_id() {
    let mut c = TxnCoordinator::default();
    init(&mut c, 7, 0);
    let mut m = c.get(ID).unwrap().clone();
    m.producer_epoch = EPOCH_EXHAUSTED;
    c.replay(ID.to_string(), Some(m));
    assert_eq!(init(&mut c, 42, 1), (42, 0));
    assert_eq!(c.get(ID).unwrap().last_producer_id, 7);
}

#[test]
fn full_commit_cycle() {
    let mut c = TxnCoordinator::default();
    let (pid, ep) = init(&mut c, 7, 0);
    let fx = c
        .add_partitions(ID, pid, ep, &parts(&[("a", 0), ("b", 1)]), 10)
        .unwrap();
    assert_eq!(fx.records.len(), 1);
    assert_eq!(state(&c), TxnState::Ongoing);
    // Adding known partitions again persists nothing.
    assert!(c
        .add_partitions(ID, pid, ep, &parts(&[("a", 0)]), 11)
        .unwrap()
        .is_empty());
    let fx = c.end_txn(ID, pid, ep, true, 20).unwrap();
    assert_eq!(state(&c), TxnState::PrepareCommit);
    assert_eq!(fx.markers.len(), 1);
    let job = fx.markers[0].clone();
    assert!(job.commit);
    assert_eq!(job.partitions, parts(&[("a", 0), ("b", 1)]));
    // Retry while markers are in flight; opposite outcome is invalid.
    assert_eq!(
        c.end_txn(ID, pid, ep, true, 21),
        Err(ec::CONCURRENT_TRANSACTIONS)
    );
    assert_eq!(
        c.end_txn(ID, pid, ep, false, 21),
        Err(ec::INVALID_TXN_STATE)
    );
    assert_eq!(
        c.add_partitions(ID, pid, ep, &parts(&[("c", 0)]), 21),
        Err(ec::CONCURRENT_TRANSACTIONS)
    );
    let fx = c.markers_written(&job, 30);
    assert_eq!(fx.records.len(), 1);
    assert_eq!(state(&c), TxnState::CompleteCommit);
    assert!(c.get(ID).unwrap().partitions.is_empty());
    // A retried EndTxn whose outcome happened answers NONE.
    assert_eq!(c.end_txn(ID, pid, ep, true, 31), Ok(Effects::default()));
    assert_eq!(
        c.end_txn(ID, pid, ep, false, 31),
        Err(ec::INVALID_TXN_STATE)
    );
    // Next transaction from Complete*.
    c.add_partitions(ID, pid, ep, &parts(&[("c", 0)]), 40)
        .unwrap();
    assert_eq!(state(&c), TxnState::Ongoing);
    assert_eq!(c.get(ID).unwrap().partitions.len(), 1);
}

#[test]
fn abort_cycle() {
    let mut c = TxnCoordinator::default();
    let (pid, ep) = init(&mut c, 7, 0);
    c.add_partitions(ID, pid, ep, &parts(&[("a", 0)]), 10)
        .unwrap();
    let fx = c.end_txn(ID, pid, ep, false, 20).unwrap();
    assert!(!fx.markers[0].commit);
    assert_eq!(state(&c), TxnState::PrepareAbort);
    c.markers_written(&fx.markers[0], 30);
    assert_eq!(state(&c), TxnState::CompleteAbort);
    assert_eq!(c.end_txn(ID, pid, ep, false, 31), Ok(Effects::default()));
}

#[test]
fn end_txn_on_empty_is_invalid() {
    let mut c = TxnCoordinator::default();
    let (pid, ep) = init(&mut c, 7, 0);
    assert_eq!(c.end_txn(ID, pid, ep, true, 1), Err(ec::INVALID_TXN_STATE));
}

#[test]
fn wrong_epoch_is_fenced_wrong_id_is_mapping_error() {
    let mut c = TxnCoordinator::default();
    let (pid, ep) = init(&mut c, 7, 0);
    init(&mut c, 8, 1); // epoch 1 fences epoch 0
    assert_eq!(
        c.add_partitions(ID, pid, ep, &parts(&[("a", 0)]), 2),
        Err(ec::PRODUCER_FENCED)
    );
    assert_eq!(c.end_txn(ID, pid, ep, true, 2), Err(ec::PRODUCER_FENCED));
    assert_eq!(
        c.add_partitions(ID, 99, 1, &parts(&[("a", 0)]), 2),
        Err(ec::INVALID_PRODUCER_ID_MAPPING)
    );
    assert_eq!(
        c.add_partitions("nope", pid, 1, &parts(&[("a", 0)]), 2),
        Err(ec::INVALID_PRODUCER_ID_MAPPING)
    );
}

#[test]
fn init_during_ongoing_aborts_first() {
    let mut c = TxnCoordinator::default();
    let (pid, ep) = init(&mut c, 7, 0);
    c.add_partitions(ID, pid, ep, &parts(&[("a", 0)]), 10)
        .unwrap();
    let req = InitRequest {
        transactional_id: ID,
        timeout_ms: 60_000,
        expected: None,
    };
    let InitOutcome::Err(code, fx) = c.init_producer_id(req.clone(), None, 20) else {
        panic!("expected an error");
    };
    assert_eq!(code, ec::CONCURRENT_TRANSACTIONS);
    assert_eq!(state(&c), TxnState::PrepareAbort);
    let job = fx.markers[0].clone();
    assert_eq!(job.producer_epoch, ep + 1, "abort bumps the epoch");
    // Still concurrent until the markers are written.
    assert!(matches!(
        c.init_producer_id(req.clone(), None, 21),
        InitOutcome::Err(ec::CONCURRENT_TRANSACTIONS, _)
    ));
    c.markers_written(&job, 30);
    assert_eq!(init(&mut c, 8, 31), (pid, ep + 2));
    // The old producer is fenced.
    assert_eq!(c.end_txn(ID, pid, ep, true, 32), Err(ec::PRODUCER_FENCED));
}

#[test]
fn kip360_expected_producer() {
    let mut c = TxnCoordinator::default();
    let (pid, ep) = init(&mut c, 7, 0);
    let req = |expected| InitRequest {
        transactional_id: ID,
        timeout_ms: 60_000,
        expected: Some(expected),
    };
    // Matching: bump.
    let InitOutcome::Ok { producer_epoch, .. } = c.init_producer_id(req((pid, ep)), None, 1) else {
        panic!()
    };
    assert_eq!(producer_epoch, ep + 1);
    // Retry with the old epoch: the same answer, no new bump.
    let InitOutcome::Ok {
        producer_epoch,
        effects,
        ..
    } = c.init_producer_id(req((pid, ep)), None, 2)
    else {
        panic!()
    };
    assert_eq!(producer_epoch, ep + 1);
    assert!(effects.is_empty());
    // Unknown pair: fenced.
    assert!(matches!(
        c.init_producer_id(req((pid, 77)), None, 3),
        InitOutcome::Err(ec::PRODUCER_FENCED, _)
    ));
}

#[test]
fn timed_out_transaction_is_aborted_with_epoch_bump() {
    let mut c = TxnCoordinator::default();
    let (pid, ep) = init(&mut c, 7, 0);
    c.add_partitions(ID, pid, ep, &parts(&[("a", 0)]), 1_000)
        .unwrap();
    assert!(c.tick(60_000).is_empty());
    let fx = c.tick(61_001);
    assert_eq!(fx.markers.len(), 1);
    assert!(!fx.markers[0].commit);
    assert_eq!(fx.markers[0].producer_epoch, ep + 1);
    assert_eq!(state(&c), TxnState::PrepareAbort);
    // The zombie's commit is fenced, its abort retry is accepted.
    assert_eq!(
        c.end_txn(ID, pid, ep, true, 61_002),
        Err(ec::PRODUCER_FENCED)
    );
    assert_eq!(
        c.end_txn(ID, pid, ep, false, 61_002),
        Ok(Effects::default())
    );
    c.markers_written(&fx.markers[0], 61_003);
    assert_eq!(state(&c), TxnState::CompleteAbort);
}

#[test]
fn idle_ids_expire_with_a_tombstone() {
    let mut c = TxnCoordinator::new(TxnConfig {
        max_timeout_ms: 900_000,
        id_expiration_ms: 1_000,
    });
    init(&mut c, 7, 0);
    let fx = c.tick(1_001);
    assert_eq!(fx.records, vec![(ID.to_string(), None)]);
    assert!(c.get(ID).is_none());
}

#[test]
fn reload_lists_prepare_markers() {
    let mut c = TxnCoordinator::default();
    let (pid, ep) = init(&mut c, 7, 0);
    c.add_partitions(ID, pid, ep, &parts(&[("a", 0)]), 1)
        .unwrap();
    let fx = c.end_txn(ID, pid, ep, true, 2).unwrap();
    let mut fresh = TxnCoordinator::default();
    for (id, v) in fx.records {
        fresh.replay(id, v);
    }
    assert_eq!(fresh.pending_markers(|_| true), fx.markers);
}

#[test]
fn records_roundtrip() {
    let mut c = TxnCoordinator::default();
    let (pid, ep) = init(&mut c, 7, 0);
    let fx = c
        .add_partitions(ID, pid, ep, &parts(&[("a", 0), ("a", 3), ("b", 1)]), 5)
        .unwrap();
    let m = fx.records[0].1.clone().unwrap();
    let (id, back) = records::decode(
        Some(&records::encode_key(ID)),
        Some(&records::encode_value(&m)),
    )
    .unwrap();
    assert_eq!(id, ID);
    let back = back.unwrap();
    assert_eq!(back.partitions, m.partitions);
    assert_eq!(back.state, TxnState::Ongoing);
    assert_eq!(
        (back.producer_id, back.producer_epoch, back.timeout_ms),
        (pid, ep, 60_000)
    );
    assert_eq!((back.start_ms, back.update_ms), (5, 5));
    // Tombstone.
    assert_eq!(
        records::decode(Some(&records::encode_key(ID)), None).unwrap(),
        (ID.to_string(), None)
    );
    // Every status survives.
    for s in 0..8 {
        let st = TxnState::from_id(s).unwrap();
        assert_eq!(st.id(), s);
    }
    // Garbage is an error, not a panic.
    assert!(records::decode(Some(&[0, 0, 0, 9, b'x']), None).is_err());
    assert!(records::decode(Some(&records::encode_key(ID)), Some(&[0, 0, 1])).is_err());
    assert!(records::decode(None, None).is_err());
}

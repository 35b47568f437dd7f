//! State machine tests: deterministic, time is a parameter.

use bytes::Bytes;

use super::codes as ec;
use super::records::{GroupRecord, OffsetValue};
use super::state::*;

const SESSION_MS: i32 = 10_000;
const REBALANCE_MS: i32 = 30_000;

struct Harness {
    c: GroupCoordinator,
    next_waiter: Waiter,
    next_id: u32,
    replies: Vec<(Waiter, Reply)>,
    records: Vec<GroupRecord>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        })
    }

    fn with(config: GroupConfig) -> Harness {
        Harness {
            c: GroupCoordinator::new(config),
            next_waiter: 1,
            next_id: 1,
            replies: Vec::new(),
            records: Vec::new(),
        }
    }

    fn absorb(&mut self, fx: Effects) {
        self.replies.extend(fx.replies);
        self.records.extend(fx.records);
        self.c.check_invariants();
    }

    fn join_req(
        &mut self,
        member: &str,
        instance: Option<&str>,
        protocols: &[&str],
    ) -> JoinRequest {
        let fresh = format!("m{}", self.next_id);
        self.next_id += 1;
        JoinRequest {
            group_id: "g".into(),
            member_id: member.into(),
            instance_id: instance.map(String::from),
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
                .collect(),
            require_known_member_id: true,
            fresh_member_id: fresh,
        }
    }

    /// Send a JoinGroup; returns its waiter.
    fn join(&mut self, now: i64, req: JoinRequest) -> Waiter {
        let w = self.next_waiter;
        self.next_waiter += 1;
        let fx = self.c.join(now, w, req);
        self.absorb(fx);
        w
    }

    fn sync(
        &mut self,
        now: i64,
        member: &str,
        generation: i32,
        assignments: &[(&str, &str)],
    ) -> Waiter {
        let w = self.next_waiter;
        self.next_waiter += 1;
        let fx = self.c.sync(
            now,
            w,
            SyncRequest {
                group_id: "g".into(),
                member_id: member.into(),
                instance_id: None,
                generation,
                protocol_type: None,
                protocol_name: None,
                assignments: assignments
                    .iter()
                    .map(|(m, a)| (m.to_string(), Bytes::from(a.to_string())))
                    .collect(),
            },
        );
        self.absorb(fx);
        w
    }

    fn tick(&mut self, now: i64) {
        let fx = self.c.tick(now);
        self.absorb(fx);
    }

    fn take_join(&mut self, w: Waiter) -> Option<JoinResult> {
        let i = self.replies.iter().position(|(x, _)| *x == w)?;
        match self.replies.remove(i).1 {
            Reply::Join(r) => Some(r),
            other => panic!("expected a join reply, got {other:?}"),
        }
    }

    fn take_sync(&mut self, w: Waiter) -> Option<SyncResult> {
        let i = self.replies.iter().position(|(x, _)| *x == w)?;
        match self.replies.remove(i).1 {
            Reply::Sync(r) => Some(r),
            other => panic!("expected a sync reply, got {other:?}"),
        }
    }

    /// A new dynamic member goes through MEMBER_ID_REQUIRED and joins.
    fn join_new(&mut self, now: i64) -> (String, Waiter) {
        let req = self.join_req("", None, &["range"]);
        let w = self.join(now, req);
        let r = self.take_join(w).expect("MEMBER_ID_REQUIRED comes at once");
        assert_eq!(r.error, ec::MEMBER_ID_REQUIRED);
        let id = r.member_id;
        let req = self.join_req(&id, None, &["range"]);
        (id.clone(), self.join(now, req))
    }
}

#[test]
fn single_member_forms_a_stable_group() {
    let mut h = Harness::new();
    let (id, w) = h.join_new(0);
    let r = h
        .take_join(w)
        .expect("a lone member completes the join at once");
    assert_eq!(r.error, ec::NONE);
    assert_eq!(r.generation, 1);
    assert_eq!(r.leader, id);
    assert_eq!(r.protocol_name.as_deref(), Some("range"));
    assert_eq!(r.members.len(), 1);
    assert_eq!(h.c.state("g"), Some(GroupState::CompletingRebalance));
    let s = h.sync(1, &id, 1, &[(&id, "A")]);
    assert_eq!(h.take_sync(s).unwrap().assignment, Bytes::from("A"));
    assert_eq!(h.c.state("g"), Some(GroupState::Stable));
    assert_eq!(h.c.heartbeat(2, "g", &id, None, 1), ec::NONE);
    assert_eq!(h.c.heartbeat(2, "g", &id, None, 0), ec::ILLEGAL_GENERATION);
    assert_eq!(
        h.c.heartbeat(2, "g", "nobody", None, 1),
        ec::UNKNOWN_MEMBER_ID
    );
    assert!(
        matches!(h.records.last(), Some(GroupRecord::Group { value: Some(v), .. }) if v.generation == 1),
        "the stable generation is persisted"
    );
}

#[test]
fn second_member_triggers_rebalance_and_followers_get_leader_assignment() {
    let mut h = Harness::new();
    let (a, w) = h.join_new(0);
    h.take_join(w).unwrap();
    let s = h.sync(0, &a, 1, &[(&a, "all")]);
    h.take_sync(s).unwrap();

    // b joins: the group prepares a rebalance and waits for a.
    let (b, wb) = h.join_new(10);
    assert!(h.take_join(wb).is_none(), "b waits for a to rejoin");
    assert_eq!(h.c.state("g"), Some(GroupState::PreparingRebalance));
    assert_eq!(
        h.c.heartbeat(20, "g", &a, None, 1),
        ec::REBALANCE_IN_PROGRESS
    );
    let req = h.join_req(&a, None, &["range"]);
    let wa = h.join(30, req);
    let ra = h.take_join(wa).unwrap();
    let rb = h.take_join(wb).unwrap();
    assert_eq!(ra.generation, 2);
    assert_eq!(rb.generation, 2);
    assert_eq!(ra.leader, a, "the leader stays the leader");
    assert_eq!(ra.members.len(), 2);
    assert!(rb.members.is_empty(), "followers get no member list");

    // b syncs first and waits; a (leader) syncs and both get answers.
    let sb = h.sync(40, &b, 2, &[]);
    assert!(h.take_sync(sb).is_none());
    let sa = h.sync(41, &a, 2, &[(&a, "p0"), (&b, "p1")]);
    assert_eq!(h.take_sync(sa).unwrap().assignment, Bytes::from("p0"));
    assert_eq!(h.take_sync(sb).unwrap().assignment, Bytes::from("p1"));
    assert_eq!(h.c.state("g"), Some(GroupState::Stable));
}

#[test]
fn leave_hands_partitions_over_via_rebalance() {
    let mut h = Harness::new();
    let (a, w) = h.join_new(0);
    h.take_join(w).unwrap();
    h.sync(0, &a, 1, &[(&a, "x")]);
    let (b, wb) = h.join_new(1);
    let req = h.join_req(&a, None, &["range"]);
    let wa = h.join(2, req);
    h.take_join(wa).unwrap();
    h.take_join(wb).unwrap();
    h.sync(3, &a, 2, &[(&a, "p0"), (&b, "p1")]);
    h.sync(3, &b, 2, &[]);

    let (codes, fx) = h.c.leave(
        4,
        "g",
        &[LeavingMember {
            member_id: b.clone(),
            instance_id: None,
        }],
    );
    h.absorb(fx);
    assert_eq!(codes, vec![ec::NONE]);
    assert_eq!(h.c.state("g"), Some(GroupState::PreparingRebalance));
    let req = h.join_req(&a, None, &["range"]);
    let wa = h.join(5, req);
    let r = h.take_join(wa).unwrap();
    assert_eq!(r.generation, 3);
    assert_eq!(r.members.len(), 1);
    // Leaving twice: unknown.
    let (codes, _) = h.c.leave(
        6,
        "g",
        &[LeavingMember {
            member_id: b,
            instance_id: None,
        }],
    );
    assert_eq!(codes, vec![ec::UNKNOWN_MEMBER_ID]);
}

#[test]
fn session_expiry_removes_a_silent_member() {
    let mut h = Harness::new();
    let (a, w) = h.join_new(0);
    h.take_join(w).unwrap();
    h.sync(0, &a, 1, &[(&a, "x")]);
    h.tick(SESSION_MS as i64 - 1);
    assert_eq!(h.c.state("g"), Some(GroupState::Stable));
    h.tick(SESSION_MS as i64 + 1);
    assert_eq!(h.c.state("g"), Some(GroupState::Empty));
    assert_eq!(
        h.c.heartbeat(SESSION_MS as i64 + 2, "g", &a, None, 1),
        ec::UNKNOWN_MEMBER_ID
    );
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    let mut h = Harness::new();
    let (a, w) = h.join_new(0);
    h.take_join(w).unwrap();
    h.sync(0, &a, 1, &[(&a, "x")]);
    let (_b, wb) = h.join_new(100);
    // a keeps heartbeating but never rejoins.
    let mut now = 100;
    while now < 100 + REBALANCE_MS as i64 {
        now += 1000;
        let _ = h.c.heartbeat(now, "g", &a, None, 1);
        h.tick(now);
    }
    let rb = h
        .take_join(wb)
        .expect("the join completes at the rebalance timeout");
    assert_eq!(rb.error, ec::NONE);
    assert_eq!(rb.members.len(), 1, "a was removed; b leads alone");
    assert_eq!(h.c.heartbeat(now, "g", &a, None, 1), ec::UNKNOWN_MEMBER_ID);
}

#[test]
fn pending_member_id_expires() {
    let mut h = Harness::new();
    let req = h.join_req("", None, &["range"]);
    let w = h.join(0, req);
    let id = h.take_join(w).unwrap().member_id;
    h.tick(SESSION_MS as i64 + 1);
    let req = h.join_req(&id, None, &["range"]);
    let w = h.join(SESSION_MS as i64 + 2, req);
    assert_eq!(h.take_join(w).unwrap().error, ec::UNKNOWN_MEMBER_ID);
}

#[test]
fn protocol_selection_needs_a_common_protocol() {
    let mut h = Harness::new();
    let req = h.join_req("", Some("i1"), &["cooperative-sticky", "range"]);
    let w = h.join(0, req);
    let ra = h.take_join(w).unwrap();
    assert_eq!(ra.protocol_name.as_deref(), Some("cooperative-sticky"));
    // A member that supports only roundrobin cannot join.
    let req = h.join_req("", Some("i2"), &["roundrobin"]);
    let w = h.join(1, req);
    assert_eq!(
        h.take_join(w).unwrap().error,
        ec::INCONSISTENT_GROUP_PROTOCOL
    );
    // One that supports only range forces range for everyone.
    let req = h.join_req("", Some("i3"), &["range"]);
    let w3 = h.join(2, req);
    let req = h.join_req(&ra.member_id, Some("i1"), &["cooperative-sticky", "range"]);
    let w1 = h.join(3, req);
    let r1 = h.take_join(w1).unwrap();
    let r3 = h.take_join(w3).unwrap();
    assert_eq!(r1.protocol_name.as_deref(), Some("range"));
    assert_eq!(r3.protocol_name.as_deref(), Some("range"));
}

#[test]
fn static_member_rejoin_keeps_assignment_without_rebalance() {
    let mut h = Harness::new();
    let req = h.join_req("", Some("inst-a"), &["range"]);
    let w = h.join(0, req);
    let ra = h.take_join(w).unwrap();
    assert_eq!(ra.error, ec::NONE, "static members skip MEMBER_ID_REQUIRED");
    let req = h.join_req("", Some("inst-b"), &["range"]);
    let wb = h.join(1, req);
    let req = h.join_req(&ra.member_id, Some("inst-a"), &["range"]);
    let wa = h.join(2, req);
    let ra = h.take_join(wa).unwrap();
    let rb = h.take_join(wb).unwrap();
    let gen = ra.generation;
    h.sync(
        3,
        &ra.member_id,
        gen,
        &[(&ra.member_id, "p0"), (&rb.member_id, "p1")],
    );
    h.sync(3, &rb.member_id, gen, &[]);
    assert_eq!(h.c.state("g"), Some(GroupState::Stable));

    // b restarts (new process, no member id) within its session.
    let req = h.join_req("", Some("inst-b"), &["range"]);
    let w = h.join(1000, req);
    let rb2 = h.take_join(w).expect("answered at once");
    assert_eq!(rb2.error, ec::NONE);
    assert_eq!(rb2.generation, gen, "no new generation");
    assert_ne!(rb2.member_id, rb.member_id, "a new member id");
    assert_eq!(h.c.state("g"), Some(GroupState::Stable));
    let s = h.sync(1001, &rb2.member_id, gen, &[]);
    assert_eq!(h.take_sync(s).unwrap().assignment, Bytes::from("p1"));
    // The old incarnation is fenced.
    assert_eq!(
        h.c.heartbeat(1002, "g", &rb.member_id, Some("inst-b"), gen),
        ec::FENCED_INSTANCE_ID
    );
    assert_eq!(
        h.c.heartbeat(1002, "g", &rb2.member_id, Some("inst-b"), gen),
        ec::NONE
    );
}

#[test]
fn static_member_with_changed_subscription_rebalances() {
    let mut h = Harness::new();
    let req = h.join_req("", Some("inst-a"), &["range"]);
    let w = h.join(0, req);
    let ra = h.take_join(w).unwrap();
    h.sync(0, &ra.member_id, 1, &[(&ra.member_id, "x")]);
    let mut req = h.join_req("", Some("inst-a"), &["range"]);
    req.protocols[0].1 = Bytes::from_static(b"new-subscription");
    let w = h.join(10, req);
    let r = h.take_join(w).unwrap();
    assert_eq!(r.generation, 2, "a changed subscription rebalances");
}

#[test]
fn initial_delay_waits_for_more_members() {
    let mut h = Harness::with(GroupConfig {
        initial_rebalance_delay_ms: 3000,
        ..GroupConfig::default()
    });
    let (_a, wa) = h.join_new(0);
    assert!(h.take_join(wa).is_none(), "waits for the initial delay");
    let (_b, wb) = h.join_new(1000);
    h.tick(3500);
    assert!(
        h.take_join(wa).is_none(),
        "the delay was extended by b's join"
    );
    h.tick(4001);
    let ra = h.take_join(wa).unwrap();
    let rb = h.take_join(wb).unwrap();
    assert_eq!(ra.generation, 1);
    assert_eq!(rb.generation, 1);
}

#[test]
fn offsets_commit_rules() {
    let mut h = Harness::new();
    // Simple commits on an unknown or empty group are allowed.
    assert_eq!(h.c.validate_commit("g", "", None, -1), ec::NONE);
    assert_eq!(
        h.c.validate_commit("g", "x", None, 3),
        ec::ILLEGAL_GENERATION
    );
    let (a, w) = h.join_new(0);
    h.take_join(w).unwrap();
    assert_eq!(
        h.c.validate_commit("g", &a, None, 1),
        ec::REBALANCE_IN_PROGRESS
    );
    h.sync(0, &a, 1, &[(&a, "x")]);
    assert_eq!(h.c.validate_commit("g", &a, None, 1), ec::NONE);
    assert_eq!(
        h.c.validate_commit("g", &a, None, 0),
        ec::ILLEGAL_GENERATION
    );
    assert_eq!(
        h.c.validate_commit("g", "zz", None, 1),
        ec::UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        h.c.validate_commit("g", "", None, -1),
        ec::UNKNOWN_MEMBER_ID
    );
    let o = OffsetValue {
        offset: 5,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
    };
    h.c.apply_offsets(0, "g", vec![("t".into(), 0, o.clone())]);
    assert_eq!(h.c.committed("g", "t", 0), Some(&o));
    assert_eq!(h.c.validate_delete("g"), ec::NON_EMPTY_GROUP);
    assert_eq!(h.c.validate_delete("nope"), ec::GROUP_ID_NOT_FOUND);
}

#[test]
fn offsets_of_empty_groups_expire() {
    let mut h = Harness::with(GroupConfig {
        initial_rebalance_delay_ms: 0,
        offsets_retention_ms: 1000,
        ..GroupConfig::default()
    });
    let o = OffsetValue {
        offset: 5,
        leader_epoch: -1,
        metadata: String::new(),
        commit_timestamp_ms: 0,
    };
    h.c.apply_offsets(0, "g", vec![("t".into(), 0, o)]);
    h.tick(999);
    assert!(h.c.committed("g", "t", 0).is_some());
    h.tick(1001);
    assert!(h.c.committed("g", "t", 0).is_none());
    assert_eq!(h.c.state("g"), None, "a group with nothing left is dropped");
    assert!(h
        .records
        .iter()
        .any(|r| matches!(r, GroupRecord::Offset { value: None, .. })));
}

#[test]
fn replay_restores_offsets_and_members() {
    let mut h = Harness::new();
    let (a, w) = h.join_new(0);
    h.take_join(w).unwrap();
    h.sync(0, &a, 1, &[(&a, "x")]);
    let mut records = h.records.clone();
    records.push(GroupRecord::Offset {
        group: "g".into(),
        topic: "t".into(),
        partition: 1,
        value: Some(OffsetValue {
            offset: 9,
            leader_epoch: 0,
            metadata: "m".into(),
            commit_timestamp_ms: 1,
        }),
    });
    let mut fresh = GroupCoordinator::new(GroupConfig::default());
    for r in records {
        fresh.replay(100, r);
    }
    fresh.check_invariants();
    assert_eq!(fresh.state("g"), Some(GroupState::Stable));
    assert_eq!(fresh.generation("g"), Some(1));
    assert_eq!(fresh.committed("g", "t", 1).unwrap().offset, 9);
    assert_eq!(fresh.heartbeat(200, "g", &a, None, 1), ec::NONE);
}

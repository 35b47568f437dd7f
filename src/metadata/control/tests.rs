use super::*;
use proptest::prelude::*;

/// An image plus the raft index the next entry gets.
struct Cluster {
    img: MetadataImage,
    cfg: ControlConfig,
    rng: WeirRng,
}

impl Cluster {
    fn new() -> Self {
        Cluster {
            img: MetadataImage::default(),
            cfg: ControlConfig::from_server(Arc::new(ServerConfig::default())),
            rng: WeirRng::from_seed(42),
        }
    }

    fn apply(&mut self, records: Vec<MetadataRecord>) {
        if records.is_empty() {
            return;
        }
        let index = self.img.offset + 1;
        self.img.apply_entry(index, &records);
    }

    fn register(&mut self, id: i32, incarnation: u128) -> i64 {
        self.register_rack(id, incarnation, None)
    }

    fn register_rack(&mut self, id: i32, incarnation: u128, rack: Option<&str>) -> i64 {
        match register_broker(
            &self.img,
            &self.cfg,
            id,
            Uuid::from_u128(incarnation),
            "h".into(),
            9000 + id,
            rack.map(str::to_owned),
        )
        .unwrap()
        {
            Registration::Existing { epoch } => epoch,
            Registration::New(recs) => {
                self.apply(recs);
                self.img.brokers[&id].epoch
            }
        }
    }

    fn epoch(&self, id: i32) -> i64 {
        self.img.brokers[&id].epoch
    }

    /// Register and unfence brokers 1..=n.
    fn brokers(&mut self, n: i32) {
        for id in 1..=n {
            self.register(id, id as u128);
        }
        for id in 1..=n {
            let e = self.epoch(id);
            let recs = heartbeat(&self.img, &self.cfg, id, e, self.img.offset, false).unwrap();
            self.apply(recs);
        }
    }

    fn create(&mut self, name: &str, partitions: i32, rf: i16) -> Vec<ItemResult> {
        self.create_with(name, partitions, rf, BTreeMap::new())
    }

    fn create_with(
        &mut self,
        name: &str,
        partitions: i32,
        rf: i16,
        configs: BTreeMap<String, String>,
    ) -> Vec<ItemResult> {
        let spec = CreateTopicSpec {
            name: name.into(),
            partitions,
            replication_factor: rf,
            assignments: vec![],
            configs,
        };
        let (recs, res) = create_topics(&self.img, &self.cfg, &[spec], &mut self.rng);
        self.apply(recs);
        res
    }

    fn p(&self, t: &str, p: i32) -> PartitionRegistration {
        self.img.partition(t, p).unwrap().clone()
    }

    fn fence(&mut self, id: i32) {
        let recs = fence_broker(&self.img, &self.cfg, id, self.epoch(id));
        self.apply(recs);
    }

    fn unfence(&mut self, id: i32) {
        let recs = unfence_broker(&self.img, &self.cfg, id, self.epoch(id));
        self.apply(recs);
    }

    fn set_partition(&mut self, t: &str, p: i32, state: PartitionRegistration) {
        let id = self.img.topic(t).unwrap().id;
        let mut state = state;
        state.partition_epoch = self.p(t, p).partition_epoch + 1;
        self.apply(vec![MetadataRecord::ChangePartition {
            topic_id: id,
            partition: p,
            state,
        }]);
    }
}

fn code(r: &[ItemResult]) -> i16 {
    r[0].error_code
}

#[test]
fn brokers_register_fenced_and_unfence_once_caught_up() {
    let mut c = Cluster::new();
    let e = c.register(1, 1);
    assert!(c.img.brokers[&1].fenced);
    // Not caught up: nothing.
    assert!(heartbeat(&c.img, &c.cfg, 1, e, (e - 1) as u64, false)
        .unwrap()
        .is_empty());
    let recs = heartbeat(&c.img, &c.cfg, 1, e, e as u64, false).unwrap();
    c.apply(recs);
    assert!(!c.img.brokers[&1].fenced);
    // A retry of the same incarnation is idempotent.
    assert_eq!(c.register(1, 1), e);
    // A stale epoch is refused.
    let err = heartbeat(&c.img, &c.cfg, 1, e - 1, 100, false).unwrap_err();
    assert_eq!(err.code, codes::STALE_BROKER_EPOCH);
    let err = heartbeat(&c.img, &c.cfg, 9, 1, 100, false).unwrap_err();
    assert_eq!(err.code, codes::BROKER_ID_NOT_REGISTERED);
}

#[test]
fn create_topic_places_replicas_on_live_brokers() {
    let mut c = Cluster::new();
    c.brokers(3);
    assert_eq!(code(&c.create("t", 6, 3)), 0);
    let t = c.img.topic("t").unwrap();
    assert_eq!(t.partitions.len(), 6);
    assert!(t.id.as_u128() > 1);
    for p in &t.partitions {
        assert_eq!(p.replicas.len(), 3);
        assert_eq!(p.isr, p.replicas);
        assert_eq!(p.leader, p.replicas[0]);
    }
    let leaders: BTreeSet<i32> = t.partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders.len(), 3);
    // Errors.
    assert_eq!(code(&c.create("t", 1, 1)), ec::TOPIC_ALREADY_EXISTS);
    assert_eq!(code(&c.create("u", 1, 4)), ec::INVALID_REPLICATION_FACTOR);
    assert_eq!(code(&c.create("u", 0, 1)), ec::INVALID_PARTITIONS);
    assert_eq!(code(&c.create("u", 10_001, 1)), ec::INVALID_PARTITIONS);
    assert_eq!(
        code(&c.create("bad/name", 1, 1)),
        ec::INVALID_TOPIC_EXCEPTION
    );
    let bad = BTreeMap::from([("no.such.config".to_string(), "1".to_string())]);
    assert_eq!(code(&c.create_with("u", 1, 1, bad)), ec::INVALID_CONFIG);
    let bad = BTreeMap::from([(UNCLEAN_KEY.to_string(), "maybe".to_string())]);
    assert_eq!(code(&c.create_with("u", 1, 1, bad)), ec::INVALID_CONFIG);
    // Defaults: -1 uses num.partitions and default.replication.factor.
    assert_eq!(code(&c.create("d", -1, -1)), 0);
    assert_eq!(
        c.img.topic("d").unwrap().partitions.len(),
        c.cfg.num_partitions as usize
    );
    // Fenced brokers receive no replicas.
    c.fence(3);
    assert_eq!(code(&c.create("v", 1, 3)), ec::INVALID_REPLICATION_FACTOR);
    assert_eq!(code(&c.create("v", 4, 2)), 0);
    assert!(c
        .img
        .topic("v")
        .unwrap()
        .partitions
        .iter()
        .all(|p| !p.replicas.contains(&3)));
}

#[test]
fn duplicate_and_colliding_names_are_refused() {
    let mut c = Cluster::new();
    c.brokers(1);
    let spec = |n: &str| CreateTopicSpec {
        name: n.into(),
        partitions: 1,
        replication_factor: 1,
        assignments: vec![],
        configs: BTreeMap::new(),
    };
    let (recs, res) = create_topics(
        &c.img,
        &c.cfg,
        &[spec("a"), spec("a"), spec("b")],
        &mut c.rng,
    );
    assert_eq!(res[0].error_code, ec::INVALID_REQUEST);
    assert_eq!(res[1].error_code, ec::INVALID_REQUEST);
    assert_eq!(res[2].error_code, 0);
    assert_eq!(recs.len(), 1);
    c.apply(recs);
    assert_eq!(code(&c.create("x.y", 1, 1)), 0);
    assert_eq!(code(&c.create("x_y", 1, 1)), ec::INVALID_TOPIC_EXCEPTION);
}

#[test]
fn explicit_assignments() {
    let mut c = Cluster::new();
    c.brokers(3);
    c.fence(1);
    let spec = |a: Vec<Vec<i32>>| CreateTopicSpec {
        name: "e".into(),
        partitions: -1,
        replication_factor: -1,
        assignments: a,
        configs: BTreeMap::new(),
    };
    let (_, res) = create_topics(&c.img, &c.cfg, &[spec(vec![vec![1, 7]])], &mut c.rng);
    assert_eq!(res[0].error_code, ec::INVALID_REPLICA_ASSIGNMENT);
    let (_, res) = create_topics(&c.img, &c.cfg, &[spec(vec![vec![1]])], &mut c.rng);
    assert_eq!(
        res[0].error_code,
        ec::INVALID_REPLICA_ASSIGNMENT,
        "all fenced"
    );
    let (recs, res) = create_topics(
        &c.img,
        &c.cfg,
        &[spec(vec![vec![1, 2], vec![3, 1]])],
        &mut c.rng,
    );
    assert_eq!(res[0].error_code, 0);
    c.apply(recs);
    // The fenced broker is a replica but not in the ISR and not the leader.
    assert_eq!(c.p("e", 0).isr, vec![2]);
    assert_eq!(c.p("e", 0).leader, 2);
    assert_eq!(c.p("e", 1).isr, vec![3]);
    assert_eq!(c.p("e", 1).replicas, vec![3, 1]);
}

#[test]
fn fencing_moves_leaders_and_keeps_the_last_isr_member() {
    let mut c = Cluster::new();
    c.brokers(3);
    c.create("t", 3, 3);
    let before = c.p("t", 0);
    let old = before.leader;
    c.fence(old);
    let after = c.p("t", 0);
    assert_ne!(after.leader, old);
    assert!(after.isr.contains(&after.leader));
    assert!(!after.isr.contains(&old));
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert_eq!(after.partition_epoch, before.partition_epoch + 1);
    assert!(leads_nothing(&c.img, old));
    // Fence everyone else: the last ISR member stays, no leader.
    for b in 1..=3 {
        c.fence(b);
    }
    for p in &c.img.topic("t").unwrap().partitions {
        assert_eq!(p.leader, NO_LEADER);
        assert_eq!(p.isr.len(), 1);
    }
    // The last member coming back leads again.
    let last = c.p("t", 0).isr[0];
    let epoch_before = c.p("t", 0).leader_epoch;
    c.unfence(last);
    assert_eq!(c.p("t", 0).leader, last);
    assert_eq!(c.p("t", 0).leader_epoch, epoch_before + 1);
    // An out-of-sync replica coming back does not (unclean off).
    let other = *c.p("t", 0).replicas.iter().find(|&&r| r != last).unwrap();
    c.fence(last);
    c.unfence(other);
    assert_eq!(c.p("t", 0).leader, NO_LEADER);
    assert!(elect_leaders(&c.img, &c.cfg)
        .iter()
        .all(|r| !matches!(r, MetadataRecord::ChangePartition { topic_id, partition: 0, .. } if *topic_id == c.img.topic("t").unwrap().id)));
}

#[test]
fn unclean_election_follows_topic_config_then_broker_default() {
    let mut c = Cluster::new();
    c.brokers(2);
    c.create("t", 1, 2);
    let p = c.p("t", 0);
    let (a, b) = (p.replicas[0], p.replicas[1]);
    // Only `a` in the ISR, then `a` dies.
    c.set_partition("t", 0, PartitionRegistration { isr: vec![a], ..p });
    c.fence(a);
    assert_eq!(c.p("t", 0).leader, NO_LEADER);
    assert_eq!(c.p("t", 0).isr, vec![a]);
    // Topic override on: the out-of-sync replica leads, ISR = [it].
    let on = BTreeMap::from([(UNCLEAN_KEY.to_string(), "true".to_string())]);
    let recs = set_topic_configs(&c.img, &c.cfg, "t", &on).unwrap();
    c.apply(recs);
    assert_eq!(c.p("t", 0).leader, b);
    assert_eq!(c.p("t", 0).isr, vec![b]);

    // Broker default on, no override.
    let mut c = Cluster::new();
    let server = ServerConfig {
        unclean_leader_election_enable: true,
        ..ServerConfig::default()
    };
    c.cfg = ControlConfig::from_server(Arc::new(server));
    c.brokers(2);
    c.create("t", 1, 2);
    let p = c.p("t", 0);
    let (a, b) = (p.replicas[0], p.replicas[1]);
    c.set_partition("t", 0, PartitionRegistration { isr: vec![a], ..p });
    c.fence(a);
    assert_eq!(c.p("t", 0).leader, b);
    // ...and a topic override off wins over it.
    let off = BTreeMap::from([(UNCLEAN_KEY.to_string(), "false".to_string())]);
    c.unfence(a);
    assert_eq!(code(&c.create_with("u", 1, 2, off)), 0);
    let p = c.p("u", 0);
    let leader = p.leader;
    c.set_partition(
        "u",
        0,
        PartitionRegistration {
            isr: vec![leader],
            ..p
        },
    );
    c.fence(leader);
    assert_eq!(c.p("u", 0).leader, NO_LEADER);
}

#[test]
fn restart_with_new_incarnation_fences_the_old_one_in_the_same_entry() {
    let mut c = Cluster::new();
    c.brokers(3);
    c.create("t", 3, 3);
    let old_epoch = c.epoch(1);
    let offset = c.img.offset;
    let e = c.register(1, 999);
    assert_eq!(c.img.offset, offset + 1, "one entry");
    assert!(e > old_epoch);
    assert!(c.img.brokers[&1].fenced);
    assert!(leads_nothing(&c.img, 1));
    for p in &c.img.topic("t").unwrap().partitions {
        assert!(!p.isr.contains(&1));
    }
    // The old incarnation's heartbeats are refused.
    assert_eq!(
        heartbeat(&c.img, &c.cfg, 1, old_epoch, 100, false)
            .unwrap_err()
            .code,
        codes::STALE_BROKER_EPOCH
    );
}

#[test]
fn controlled_shutdown_moves_leaders_then_is_ready() {
    let mut c = Cluster::new();
    c.brokers(3);
    c.create("t", 3, 3);
    let e = c.epoch(2);
    assert_eq!(heartbeat_state(&c.img, 2, true), (false, false));
    let recs = heartbeat(&c.img, &c.cfg, 2, e, c.img.offset, true).unwrap();
    c.apply(recs);
    assert!(c.img.brokers[&2].in_controlled_shutdown);
    assert!(leads_nothing(&c.img, 2));
    for p in &c.img.topic("t").unwrap().partitions {
        assert!(!p.isr.contains(&2));
    }
    assert_eq!(heartbeat_state(&c.img, 2, true), (false, true));
    // Placement avoids it; a heartbeat does not unfence/undo it.
    assert_eq!(code(&c.create("u", 1, 3)), ec::INVALID_REPLICATION_FACTOR);
    // The next heartbeat fences it (it is leaving), and it stays ready.
    let recs = heartbeat(&c.img, &c.cfg, 2, e, c.img.offset, true).unwrap();
    assert!(matches!(
        recs[..],
        [MetadataRecord::FenceBroker { id: 2, .. }]
    ));
    c.apply(recs);
    assert_eq!(heartbeat_state(&c.img, 2, true), (true, true));
    assert!(heartbeat(&c.img, &c.cfg, 2, e, c.img.offset, true)
        .unwrap()
        .is_empty());
    // A fenced broker may go at once.
    c.fence(3);
    let e3 = c.epoch(3);
    assert!(heartbeat(&c.img, &c.cfg, 3, e3, 0, true)
        .unwrap()
        .is_empty());
    assert_eq!(heartbeat_state(&c.img, 3, true), (true, true));
}

#[test]
fn alter_partition_validation() {
    let mut c = Cluster::new();
    c.brokers(3);
    c.create("t", 1, 3);
    let p = c.p("t", 0);
    let l = p.leader;
    let le = c.epoch(l);
    let follower = *p.replicas.iter().find(|&&r| r != l).unwrap();
    let shrunk: Vec<i32> = p.isr.iter().copied().filter(|&r| r != follower).collect();
    let alter = |c: &Cluster, b: i32, be: i64, lep: i32, pep: i32, isr: &[i32]| {
        alter_partition(&c.img, b, be, "t", 0, lep, pep, isr)
    };
    let err = |r: Result<_, ControlError>| r.unwrap_err().code;
    assert_eq!(
        err(alter(
            &c,
            l,
            le - 1,
            p.leader_epoch,
            p.partition_epoch,
            &shrunk
        )),
        codes::STALE_BROKER_EPOCH
    );
    assert_eq!(
        err(alter(
            &c,
            l,
            le,
            p.leader_epoch + 1,
            p.partition_epoch,
            &shrunk
        )),
        codes::FENCED_LEADER_EPOCH
    );
    assert_eq!(
        err(alter(
            &c,
            follower,
            c.epoch(follower),
            p.leader_epoch,
            p.partition_epoch,
            &shrunk
        )),
        ec::NOT_LEADER_OR_FOLLOWER
    );
    assert_eq!(
        err(alter(
            &c,
            l,
            le,
            p.leader_epoch,
            p.partition_epoch + 1,
            &shrunk
        )),
        codes::INVALID_UPDATE_VERSION
    );
    assert_eq!(
        err(alter(
            &c,
            l,
            le,
            p.leader_epoch,
            p.partition_epoch,
            &[follower]
        )),
        ec::INVALID_REQUEST
    );
    assert_eq!(
        err(alter(&c, l, le, p.leader_epoch, p.partition_epoch, &[l, 9])),
        ec::INVALID_REQUEST
    );
    assert_eq!(
        err(alter(&c, l, le, p.leader_epoch, p.partition_epoch, &[l, l])),
        ec::INVALID_REQUEST
    );
    assert_eq!(
        err(alter_partition(
            &c.img,
            l,
            le,
            "t",
            5,
            p.leader_epoch,
            p.partition_epoch,
            &[l]
        )),
        ec::UNKNOWN_TOPIC_OR_PARTITION
    );
    // Shrink: accepted, partition epoch bumps, leader epoch does not.
    let (recs, state) = alter(&c, l, le, p.leader_epoch, p.partition_epoch, &shrunk).unwrap();
    c.apply(recs);
    assert_eq!(c.p("t", 0), state);
    assert_eq!(state.isr, shrunk);
    assert_eq!(state.leader_epoch, p.leader_epoch);
    assert_eq!(state.partition_epoch, p.partition_epoch + 1);
    // The same request again: its partition epoch is stale now.
    assert_eq!(
        err(alter(&c, l, le, p.leader_epoch, p.partition_epoch, &shrunk)),
        codes::INVALID_UPDATE_VERSION
    );
    // Expanding with a fenced broker is refused; once it is back, accepted.
    c.fence(follower);
    let mut grown = shrunk.clone();
    grown.push(follower);
    let s = c.p("t", 0);
    assert_eq!(
        err(alter(&c, l, le, s.leader_epoch, s.partition_epoch, &grown)),
        codes::INELIGIBLE_REPLICA
    );
    c.unfence(follower);
    let s = c.p("t", 0);
    let (recs, state) = alter(&c, l, le, s.leader_epoch, s.partition_epoch, &grown).unwrap();
    c.apply(recs);
    assert_eq!(state.isr, p.replicas, "ISR kept in replica order");
    // Unchanged ISR: no records.
    let s = c.p("t", 0);
    let (recs, _) = alter(&c, l, le, s.leader_epoch, s.partition_epoch, &grown).unwrap();
    assert!(recs.is_empty());
}

#[test]
fn delete_create_partitions_configs_and_producer_ids() {
    let mut c = Cluster::new();
    c.brokers(3);
    c.create("t", 2, 2);
    let recs = create_partitions(&c.img, "t", 5, &mut c.rng).unwrap();
    c.apply(recs);
    let t = c.img.topic("t").unwrap();
    assert_eq!(t.partitions.len(), 5);
    assert!(t.partitions.iter().all(|p| p.replicas.len() == 2));
    assert_eq!(
        create_partitions(&c.img, "t", 5, &mut c.rng)
            .unwrap_err()
            .code,
        ec::INVALID_PARTITIONS
    );
    assert_eq!(
        create_partitions(&c.img, "t", 10_001, &mut c.rng)
            .unwrap_err()
            .code,
        ec::INVALID_PARTITIONS
    );
    assert_eq!(
        create_partitions(&c.img, "x", 5, &mut c.rng)
            .unwrap_err()
            .code,
        ec::UNKNOWN_TOPIC_OR_PARTITION
    );

    let cfgs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
    let recs = set_topic_configs(&c.img, &c.cfg, "t", &cfgs).unwrap();
    c.apply(recs);
    assert_eq!(c.img.topic("t").unwrap().configs, cfgs);
    let bad = BTreeMap::from([("retention.ms".to_string(), "soon".to_string())]);
    assert_eq!(
        set_topic_configs(&c.img, &c.cfg, "t", &bad)
            .unwrap_err()
            .code,
        ec::INVALID_CONFIG
    );

    let (recs, res) = delete_topics(&c.img, &["t".into(), "nope".into(), "t".into()]);
    assert_eq!(
        res.iter().map(|r| r.error_code).collect::<Vec<_>>(),
        vec![0, ec::UNKNOWN_TOPIC_OR_PARTITION, 0]
    );
    assert_eq!(recs.len(), 1);
    c.apply(recs);
    assert!(c.img.topic("t").is_none());

    let (recs, first, count) = allocate_producer_ids(&c.img, 1, c.epoch(1)).unwrap();
    c.apply(recs);
    let (recs, second, _) = allocate_producer_ids(&c.img, 2, c.epoch(2)).unwrap();
    c.apply(recs);
    assert_eq!(
        (first, count, second),
        (0, PRODUCER_ID_BLOCK, PRODUCER_ID_BLOCK)
    );
    assert_eq!(
        allocate_producer_ids(&c.img, 1, 0).unwrap_err().code,
        codes::STALE_BROKER_EPOCH
    );
}

#[test]
fn rack_aware_topic_creation() {
    let mut c = Cluster::new();
    for (id, rack) in [(1, "a"), (2, "a"), (3, "b"), (4, "b")] {
        c.register_rack(id, id as u128, Some(rack));
    }
    for id in 1..=4 {
        let e = c.epoch(id);
        let recs = heartbeat(&c.img, &c.cfg, id, e, c.img.offset, false).unwrap();
        c.apply(recs);
    }
    c.create("t", 8, 2);
    for p in &c.img.topic("t").unwrap().partitions {
        let racks: BTreeSet<bool> = p.replicas.iter().map(|&r| r <= 2).collect();
        assert_eq!(racks.len(), 2, "{:?}", p.replicas);
    }
}

#[derive(Clone, Debug)]
enum Op {
    Register(i32, u8),
    Heartbeat(i32, bool),
    Fence(i32),
    Unfence(i32),
    Create(i32, i16, bool),
    Alter(u8, u8, u8),
    Elect,
    Delete(u8),
    AddPartitions(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1..=5i32, 0..3u8).prop_map(|(b, i)| Op::Register(b, i)),
        (1..=5i32, any::<bool>()).prop_map(|(b, s)| Op::Heartbeat(b, s)),
        (1..=5i32).prop_map(Op::Fence),
        (1..=5i32).prop_map(Op::Unfence),
        (1..=4i32, 1..=3i16, any::<bool>()).prop_map(|(p, rf, u)| Op::Create(p, rf, u)),
        (any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(t, p, m)| Op::Alter(t, p, m)),
        Just(Op::Elect),
        any::<u8>().prop_map(Op::Delete),
        any::<u8>().prop_map(Op::AddPartitions),
    ]
}

fn check_invariants(before: &MetadataImage, after: &MetadataImage) {
    for t in after.topics.values() {
        for (i, p) in t.partitions.iter().enumerate() {
            assert!(!p.isr.is_empty(), "ISR non-empty: {p:?}");
            assert!(
                p.isr.iter().all(|b| p.replicas.contains(b)),
                "ISR ⊆ replicas: {p:?}"
            );
            if p.has_leader() {
                assert!(p.isr.contains(&p.leader), "leader in ISR: {p:?}");
                let b = &after.brokers[&p.leader];
                assert!(!b.fenced, "no leader on a fenced broker: {p:?}");
                assert!(!b.in_controlled_shutdown, "no leader shutting down: {p:?}");
            }
            if let Some(q) = before.topic_by_id(t.id).and_then(|bt| bt.partitions.get(i)) {
                assert!(p.leader_epoch >= q.leader_epoch);
                assert!(p.partition_epoch >= q.partition_epoch);
                if p.leader != q.leader {
                    assert!(
                        p.leader_epoch > q.leader_epoch,
                        "leader change bumps the epoch"
                    );
                }
                if p != q {
                    assert!(
                        p.partition_epoch > q.partition_epoch,
                        "change bumps the partition epoch"
                    );
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn random_operations_keep_the_invariants(ops in proptest::collection::vec(op(), 1..60)) {
        let mut c = Cluster::new();
        let mut n = 0;
        for op in ops {
            let before = c.img.clone();
            match op {
                Op::Register(b, inc) => {
                    c.register(b, (b as u128) << 8 | inc as u128);
                }
                Op::Heartbeat(b, s) => {
                    if let Some(e) = c.img.brokers.get(&b).map(|r| r.epoch) {
                        let recs = heartbeat(&c.img, &c.cfg, b, e, c.img.offset, s).unwrap();
                        c.apply(recs);
                    }
                }
                Op::Fence(b) => {
                    if c.img.brokers.contains_key(&b) { c.fence(b) }
                }
                Op::Unfence(b) => {
                    if c.img.brokers.contains_key(&b) { c.unfence(b) }
                }
                Op::Create(p, rf, unclean) => {
                    n += 1;
                    let cfgs = BTreeMap::from([(UNCLEAN_KEY.to_string(), unclean.to_string())]);
                    c.create_with(&format!("t{n}"), p, rf, cfgs);
                }
                Op::Alter(t, p, mask) => {
                    let topics: Vec<_> = c.img.topics.values().cloned().collect();
                    if !topics.is_empty() {
                        let t = &topics[t as usize % topics.len()];
                        let pi = p as usize % t.partitions.len();
                        let part = &t.partitions[pi];
                        if part.has_leader() {
                            let isr: Vec<i32> = part.replicas.iter().enumerate()
                                .filter(|(i, &r)| r == part.leader || mask & (1 << i) != 0)
                                .map(|(_, &r)| r).collect();
                            let e = c.img.brokers[&part.leader].epoch;
                            if let Ok((recs, _)) = alter_partition(&c.img, part.leader, e, &t.name, pi as i32,
                                part.leader_epoch, part.partition_epoch, &isr) {
                                c.apply(recs);
                            }
                        }
                    }
                }
                Op::Elect => {
                    let recs = elect_leaders(&c.img, &c.cfg);
                    c.apply(recs);
                }
                Op::Delete(t) => {
                    let names: Vec<String> = c.img.topics.keys().cloned().collect();
                    if !names.is_empty() {
                        let (recs, _) = delete_topics(&c.img, &[names[t as usize % names.len()].clone()]);
                        c.apply(recs);
                    }
                }
                Op::AddPartitions(t) => {
                    let names: Vec<String> = c.img.topics.keys().cloned().collect();
                    if !names.is_empty() {
                        let name = &names[t as usize % names.len()];
                        let count = c.img.topics[name].partitions.len() as i32 + 1;
                        if let Ok(recs) = create_partitions(&c.img, name, count, &mut c.rng) {
                            c.apply(recs);
                        }
                    }
                }
            }
            check_invariants(&before, &c.img);
        }
    }
}

//! The Rust group consumer against a real in-process broker: the four
//! assignors split partitions over three members; cooperative-sticky
//! revokes only what moves and keeps the rest flowing; auto-commit resumes
//! within one interval; auto.offset.reset none/latest; async commits land
//! in order.
#![cfg(not(madsim))]

mod broker_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use weir::broker::Server;
use weir::client::admin::NewTopic;
use weir::client::group::{GroupAdmin, GroupConfig, GroupConsumer, RebalanceListener};
use weir::client::{
    Admin, ClientConfig, ClientError, Cluster, ConsumerRecord, Producer, ProducerConfig,
    ProducerRecord,
};

type Tp = (String, i32);

struct Broker {
    _dir: tempfile::TempDir,
    server: Server,
    bootstrap: String,
}

async fn broker() -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let mut c = broker_support::config(dir.path());
    c.set("group.initial.rebalance.delay.ms", "0").unwrap();
    c.set("group.min.session.timeout.ms", "100").unwrap();
    let server = broker_support::start_with(c).await;
    let bootstrap = server.local_addr().to_string();
    Broker {
        _dir: dir,
        server,
        bootstrap,
    }
}

async fn create(b: &Broker, topic: &str, partitions: i32) {
    let admin = Admin::connect(&b.bootstrap).await.unwrap();
    admin
        .create_topic(NewTopic {
            name: topic.to_string(),
            partitions,
            replication_factor: 1,
            configs: vec![],
        })
        .await
        .unwrap();
}

/// `per_partition` records to each of `partitions`, values "p-i".
async fn produce(b: &Broker, topic: &str, partitions: i32, per_partition: usize) {
    let producer = Producer::connect(&b.bootstrap, ProducerConfig::default())
        .await
        .unwrap();
    let mut futures = Vec::new();
    for p in 0..partitions {
        for i in 0..per_partition {
            let r = ProducerRecord::new(topic, format!("{p}-{i}")).with_partition(p);
            futures.push(producer.send(r).await.unwrap());
        }
    }
    producer.flush().await;
    for f in futures {
        f.await.unwrap();
    }
    producer.close().await;
}

fn config(group: &str, assignor: &str) -> GroupConfig {
    let mut c = GroupConfig::new(group);
    c.set("partition.assignment.strategy", assignor).unwrap();
    c.set("enable.auto.commit", "false").unwrap();
    c.set("auto.offset.reset", "earliest").unwrap();
    c.set("session.timeout.ms", "3000").unwrap();
    c.set("heartbeat.interval.ms", "100").unwrap();
    c.set("max.poll.interval.ms", "10000").unwrap();
    c.set("fetch.max.wait.ms", "50").unwrap();
    c
}

async fn member(
    b: &Broker,
    config: GroupConfig,
    topic: &str,
    listener: Box<dyn RebalanceListener>,
) -> GroupConsumer {
    let cluster = Cluster::connect(ClientConfig::new(&b.bootstrap))
        .await
        .unwrap();
    GroupConsumer::subscribe_with_listener(cluster, config, &[topic.to_string()], listener)
        .await
        .unwrap()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Assigned(Vec<Tp>),
    Revoked(Vec<Tp>),
    Lost(Vec<Tp>),
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Event>>>);

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

impl RebalanceListener for Recorder {
    fn on_partitions_revoked(&mut self, p: &[Tp]) {
        self.0.lock().unwrap().push(Event::Revoked(p.to_vec()));
    }
    fn on_partitions_assigned(&mut self, p: &[Tp]) {
        self.0.lock().unwrap().push(Event::Assigned(p.to_vec()));
    }
    fn on_partitions_lost(&mut self, p: &[Tp]) {
        self.0.lock().unwrap().push(Event::Lost(p.to_vec()));
    }
}

/// Whether the members agree on a generation, none is rebalancing, and
/// their assignments split all `partitions` of `topic`, balanced.
fn settled(members: &[GroupConsumer], topic: &str, partitions: i32) -> bool {
    let generation = members[0].generation();
    if members
        .iter()
        .any(|m| m.is_rebalancing() || m.generation() != generation || generation < 0)
    {
        return false;
    }
    let mut all = BTreeSet::new();
    for m in members {
        for tp in m.assignment() {
            if !all.insert(tp) {
                return false;
            }
        }
    }
    let want: BTreeSet<Tp> = (0..partitions).map(|p| (topic.to_string(), p)).collect();
    let sizes: Vec<usize> = members.iter().map(|m| m.assignment().len()).collect();
    all == want && sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1
}

/// Poll every member in turn until `settled` holds twice in a row (a
/// heartbeat apart), collecting records per member.
async fn drive_until_settled(
    members: &mut [GroupConsumer],
    topic: &str,
    partitions: i32,
    got: &mut [Vec<ConsumerRecord>],
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stable_rounds = 0;
    while stable_rounds < 3 {
        assert!(Instant::now() < deadline, "group never settled");
        for (i, m) in members.iter_mut().enumerate() {
            got[i].extend(m.poll(Duration::from_millis(50)).await.unwrap());
        }
        if settled(members, topic, partitions) {
            stable_rounds += 1;
        } else {
            stable_rounds = 0;
        }
    }
}

#[tokio::test]
async fn three_members_split_partitions_with_every_assignor() {
    let b = broker().await;
    create(&b, "t", 6).await;
    produce(&b, "t", 6, 10).await;
    for assignor in ["range", "roundrobin", "sticky", "cooperative-sticky"] {
        let group = format!("g-{assignor}");
        let mut cfg = config(&group, assignor);
        // Positions are committed before partitions move, so nothing is
        // read twice across the members.
        cfg.set("enable.auto.commit", "true").unwrap();
        let mut members = Vec::new();
        let mut got = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..3 {
            members.push(member(&b, cfg.clone(), "t", Box::new(Recorder::default())).await);
            let n = members.len();
            drive_until_settled(&mut members, "t", 6, &mut got[..n]).await;
        }
        for m in &members {
            assert_eq!(m.assignor(), Some(assignor));
            assert_eq!(m.assignment().len(), 2, "{assignor}: {:?}", m.assignment());
        }
        if assignor == "range" {
            let mut ranges: Vec<Vec<Tp>> = members.iter().map(|m| m.assignment()).collect();
            ranges.sort();
            for r in &ranges {
                assert_eq!(r[1].1, r[0].1 + 1, "range gives contiguous partitions");
            }
        }
        // Drain what is left, then check every record was read once.
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.iter().map(Vec::len).sum::<usize>() < 60 && Instant::now() < deadline {
            for (i, m) in members.iter_mut().enumerate() {
                got[i].extend(m.poll(Duration::from_millis(50)).await.unwrap());
            }
        }
        let mut seen = BTreeMap::new();
        for r in got.iter().flatten() {
            *seen.entry((r.partition, r.offset)).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 60, "{assignor}: every record read");
        assert!(
            seen.values().all(|&n| n == 1),
            "{assignor}: a record read twice: {seen:?}"
        );
        if assignor.contains("sticky") {
            // A member leaves: the others keep what they had.
            let gone = members.pop().unwrap();
            gone.close().await.unwrap();
            let kept: Vec<Vec<Tp>> = members.iter().map(|m| m.assignment()).collect();
            let mut more = [Vec::new(), Vec::new()];
            drive_until_settled(&mut members, "t", 6, &mut more).await;
            for (m, before) in members.iter().zip(&kept) {
                let now = m.assignment();
                assert_eq!(now.len(), 3, "{assignor}: {now:?}");
                assert!(
                    before.iter().all(|tp| now.contains(tp)),
                    "{assignor}: {before:?} not kept in {now:?}"
                );
            }
        }
        for m in members {
            m.close().await.unwrap();
        }
    }
    b.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_member_that_stops_polling_leaves_and_finds_its_partitions_lost() {
    let b = broker().await;
    create(&b, "l", 4).await;
    let (la, lb) = (Recorder::default(), Recorder::default());
    let mut stuck = config("lost", "cooperative-sticky");
    stuck.set("max.poll.interval.ms", "1000").unwrap();
    let mut members = vec![
        member(&b, stuck, "l", Box::new(la.clone())).await,
        member(
            &b,
            config("lost", "cooperative-sticky"),
            "l",
            Box::new(lb.clone()),
        )
        .await,
    ];
    let mut got = [Vec::new(), Vec::new()];
    drive_until_settled(&mut members, "l", 4, &mut got).await;
    let a_had = members[0].assignment();
    assert_eq!(a_had.len(), 2);
    let a_seen = la.events().len();
    // Only the second member polls: the first one's heartbeat task leaves
    // once max.poll.interval.ms passes, and the second takes everything.
    let deadline = Instant::now() + Duration::from_secs(20);
    while members[1].assignment().len() < 4 || members[1].is_rebalancing() {
        assert!(
            Instant::now() < deadline,
            "the idle member was never removed"
        );
        members[1].poll(Duration::from_millis(50)).await.unwrap();
    }
    // Back to polling: its partitions are reported lost, not revoked, and
    // it rejoins.
    drive_until_settled(&mut members, "l", 4, &mut got).await;
    let events = la.events().split_off(a_seen);
    assert_eq!(events[0], Event::Lost(a_had.clone()), "{events:?}");
    assert!(
        !events.iter().any(|e| matches!(e, Event::Revoked(_))),
        "{events:?}"
    );
    assert!(
        !lb.events().iter().any(|e| matches!(e, Event::Lost(_))),
        "the member that kept polling lost nothing"
    );
    for m in members {
        m.close().await.unwrap();
    }
    b.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn cooperative_sticky_revokes_only_moved_partitions_and_keeps_the_rest_flowing() {
    let b = broker().await;
    create(&b, "c", 6).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // A steady trickle to every partition, so a member that keeps a
    // partition through a rebalance has something to read during it.
    let trickle = {
        let stop = stop.clone();
        let bootstrap = b.bootstrap.clone();
        tokio::spawn(async move {
            let cfg = ProducerConfig {
                linger: weir::env::time::Duration::from_millis(0),
                ..ProducerConfig::default()
            };
            let producer = Producer::connect(&bootstrap, cfg).await.unwrap();
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for p in 0..6 {
                    let r = ProducerRecord::new("c", format!("{i}")).with_partition(p);
                    let _ = producer.send(r).await.unwrap();
                }
                producer.flush().await;
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            producer.close().await;
        })
    };
    let listeners = [
        Recorder::default(),
        Recorder::default(),
        Recorder::default(),
    ];
    let mut members = Vec::new();
    let mut got = [Vec::new(), Vec::new(), Vec::new()];
    // Records a member got from partitions it kept, while it was rejoining.
    let mut flowed_during_rebalance = 0usize;
    for (i, listener) in listeners.iter().enumerate() {
        let mut cfg = config("coop", "cooperative-sticky");
        if i > 0 {
            // The newcomer notices the follow-up rebalance late, so the
            // old members spend a while rejoining while still consuming.
            cfg.set("heartbeat.interval.ms", "500").unwrap();
        }
        members.push(member(&b, cfg, "c", Box::new(listener.clone())).await);
        let n = members.len();
        let before: Vec<BTreeSet<Tp>> = members
            .iter()
            .map(|m| m.assignment().into_iter().collect())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut stable_rounds = 0;
        while stable_rounds < 3 {
            assert!(Instant::now() < deadline, "group never settled");
            for (j, m) in members.iter_mut().enumerate() {
                let rebalancing = m.is_rebalancing();
                let records = m.poll(Duration::from_millis(50)).await.unwrap();
                if rebalancing && j < n - 1 {
                    flowed_during_rebalance += records
                        .iter()
                        .filter(|r| before[j].contains(&(r.topic.clone(), r.partition)))
                        .count();
                }
                got[j].extend(records);
            }
            if settled(&members, "c", 6) {
                stable_rounds += 1;
            } else {
                stable_rounds = 0;
            }
        }
        assert_eq!(
            members[0].rebalance_protocol(),
            weir::client::assignor::RebalanceProtocol::Cooperative
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    trickle.await.unwrap();
    assert!(
        flowed_during_rebalance > 0,
        "kept partitions delivered nothing while their owners rejoined"
    );
    for (i, (m, l)) in members.iter().zip(&listeners).enumerate() {
        let finally: BTreeSet<Tp> = m.assignment().into_iter().collect();
        let mut owned: BTreeSet<Tp> = BTreeSet::new();
        for e in l.events() {
            match e {
                Event::Assigned(ps) => {
                    for tp in ps {
                        assert!(
                            owned.insert(tp.clone()),
                            "member {i}: {tp:?} assigned twice"
                        );
                    }
                }
                Event::Revoked(ps) => {
                    for tp in ps {
                        assert!(owned.remove(&tp), "member {i}: revoked unowned {tp:?}");
                        assert!(
                            !finally.contains(&tp),
                            "member {i}: {tp:?} revoked but it never moved"
                        );
                    }
                }
                Event::Lost(ps) => panic!("member {i} lost {ps:?}"),
            }
        }
        assert_eq!(
            owned, finally,
            "member {i}: listener agrees with assignment"
        );
    }
    // The first member gave up exactly what the others took: 6 -> 3 -> 2.
    let revoked: usize = listeners[0]
        .events()
        .iter()
        .map(|e| match e {
            Event::Revoked(ps) => ps.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(revoked, 4);
    for m in members {
        m.close().await.unwrap();
    }
    b.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn auto_commit_resumes_without_rereading_more_than_an_interval() {
    let b = broker().await;
    create(&b, "a", 1).await;
    produce(&b, "a", 1, 200).await;
    let interval = Duration::from_millis(300);
    let mut cfg = config("auto", "range");
    cfg.set("enable.auto.commit", "true").unwrap();
    cfg.set("auto.commit.interval.ms", "300").unwrap();
    cfg.set("max.poll.records", "5").unwrap();
    cfg.set("session.timeout.ms", "1000").unwrap();
    let mut c1 = member(&b, cfg.clone(), "a", Box::new(Recorder::default())).await;
    c1.poll_until_joined(Duration::from_secs(10)).await.unwrap();
    // Read slowly, remembering the position after each poll.
    let tp = ("a".to_string(), 0);
    let mut history: Vec<(Instant, i64)> = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        c1.poll(Duration::from_millis(50)).await.unwrap();
        history.push((Instant::now(), c1.position(&tp).unwrap_or(0)));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let crashed_at = Instant::now();
    let last = history.last().unwrap().1;
    assert!(last > 20 && last < 200, "read part of the log: {last}");
    // Crash: no commit, no LeaveGroup; the session expires.
    drop(c1);
    let mut c2 = member(&b, cfg.clone(), "a", Box::new(Recorder::default())).await;
    let mut got = c2.poll_until_joined(Duration::from_secs(10)).await.unwrap();
    while got.is_empty() {
        got = c2.poll(Duration::from_millis(200)).await.unwrap();
    }
    let resumed = got[0].offset;
    // What c1 had read one interval (plus a poll's slack) before it died.
    let floor = history
        .iter()
        .rev()
        .find(|(at, _)| crashed_at.duration_since(*at) >= interval + Duration::from_millis(150))
        .map(|(_, p)| *p)
        .unwrap();
    assert!(
        resumed >= floor && resumed <= last,
        "resumed at {resumed}: c1 was at {last}, one interval before at {floor}"
    );
    // close() commits the position: a third member re-reads nothing.
    let mut read = got.last().unwrap().offset + 1;
    while read < 200 {
        if let Some(r) = c2.poll(Duration::from_millis(200)).await.unwrap().last() {
            read = r.offset + 1;
        }
    }
    c2.close().await.unwrap();
    let admin = GroupAdmin::new(
        Cluster::connect(ClientConfig::new(&b.bootstrap))
            .await
            .unwrap(),
    );
    assert_eq!(admin.committed("auto", None).await.unwrap()[&tp], 200);
    b.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn offset_reset_none_errors_and_latest_skips_old_records() {
    let b = broker().await;
    create(&b, "r", 2).await;
    produce(&b, "r", 2, 5).await;
    let mut cfg = config("none", "range");
    cfg.set("auto.offset.reset", "none").unwrap();
    let mut c = member(&b, cfg, "r", Box::new(Recorder::default())).await;
    let err = c
        .poll_until_joined(Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::NoOffsetForPartition { ref topic, .. } if topic == "r"),
        "{err}"
    );
    c.leave().await;

    let mut cfg = config("latest", "range");
    cfg.set("auto.offset.reset", "latest").unwrap();
    let mut c = member(&b, cfg, "r", Box::new(Recorder::default())).await;
    c.poll_until_joined(Duration::from_secs(10)).await.unwrap();
    // Fetch positions are set at assignment: records produced now are new.
    produce(&b, "r", 2, 3).await;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 6 && Instant::now() < deadline {
        got.extend(c.poll(Duration::from_millis(100)).await.unwrap());
    }
    let mut offsets: Vec<(i32, i64)> = got.iter().map(|r| (r.partition, r.offset)).collect();
    offsets.sort();
    assert_eq!(
        offsets,
        vec![(0, 5), (0, 6), (0, 7), (1, 5), (1, 6), (1, 7)]
    );
    c.close().await.unwrap();
    b.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn async_commits_land_in_order() {
    let b = broker().await;
    create(&b, "o", 1).await;
    produce(&b, "o", 1, 1).await;
    let mut c = member(
        &b,
        config("ordered", "range"),
        "o",
        Box::new(Recorder::default()),
    )
    .await;
    c.poll_until_joined(Duration::from_secs(10)).await.unwrap();
    let admin = GroupAdmin::new(
        Cluster::connect(ClientConfig::new(&b.bootstrap))
            .await
            .unwrap(),
    );
    let tp = ("o".to_string(), 0);
    let mut handles = Vec::new();
    for offset in 1..=50 {
        let offsets: BTreeMap<Tp, i64> = [(tp.clone(), offset)].into();
        handles.push(c.commit_async(&offsets).await.unwrap());
    }
    for h in handles {
        h.wait().await.unwrap();
    }
    assert_eq!(admin.committed("ordered", None).await.unwrap()[&tp], 50);
    // Async commits followed by a sync one: the sync one is last.
    let a = c.commit_async(&[(tp.clone(), 60)].into()).await.unwrap();
    let _dropped = c.commit_async(&[(tp.clone(), 65)].into()).await.unwrap();
    c.commit_sync(&[(tp.clone(), 70)].into()).await.unwrap();
    a.wait().await.unwrap();
    assert_eq!(admin.committed("ordered", None).await.unwrap()[&tp], 70);
    c.close().await.unwrap();
    b.server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_static_member_restarts_without_a_rebalance() {
    let b = broker().await;
    create(&b, "s", 4).await;
    let mut fixed = config("static", "range");
    fixed.set("group.instance.id", "instance-a").unwrap();
    let lb = Recorder::default();
    let mut members = vec![
        member(&b, fixed.clone(), "s", Box::new(Recorder::default())).await,
        member(&b, config("static", "range"), "s", Box::new(lb.clone())).await,
    ];
    let mut got = [Vec::new(), Vec::new()];
    drive_until_settled(&mut members, "s", 4, &mut got).await;
    let had = members[0].assignment();
    let generation = members[1].generation();
    let b_events = lb.events().len();
    // Close without LeaveGroup (static), then restart with the same id.
    let old = members.remove(0);
    old.close().await.unwrap();
    let mut again = member(&b, fixed, "s", Box::new(Recorder::default())).await;
    again
        .poll_until_joined(Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(again.assignment(), had, "the same partitions come back");
    assert_eq!(again.generation(), generation, "no new generation");
    // The other member saw nothing happen.
    for _ in 0..10 {
        members[0].poll(Duration::from_millis(50)).await.unwrap();
    }
    assert_eq!(members[0].generation(), generation);
    assert_eq!(lb.events().len(), b_events, "{:?}", lb.events());
    again.close().await.unwrap();
    members.remove(0).close().await.unwrap();
    b.server.shutdown().await.unwrap();
}

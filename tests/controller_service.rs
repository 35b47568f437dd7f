//! The controller end to end: a single-voter `Controller` on a SimDisk
//! (runs on real tokio and under madsim), and a three-voter quorum over
//! loopback that loses its active controller (real tokio only).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use uuid::Uuid;
use weir::config::ServerConfig;
use weir::controller::api::{ControllerRequest, ControllerResponse, CreateTopicSpec};
use weir::controller::{Controller, ControllerClient};
use weir::env::rng::WeirRng;
use weir::env::sim_disk::{SimDisk, SimDiskOptions};
use weir::env::time::{now, sleep, Duration};
use weir::metadata::{MetadataImage, NO_LEADER};

const CALL: Duration = Duration::from_secs(10);
const SESSION_MS: u64 = 600;

fn config(node_id: i32, voters: Option<&str>) -> Arc<ServerConfig> {
    let mut c = ServerConfig {
        node_id,
        log_dirs: vec![format!("/node{node_id}").into()],
        ..ServerConfig::default()
    };
    // `set`, not the fields: the cluster keys are typed on main, and
    // `set` routes them wherever the config keeps them.
    c.set("broker.session.timeout.ms", &SESSION_MS.to_string())
        .unwrap();
    if let Some(v) = voters {
        c.set("controller.quorum.voters", v).unwrap();
    }
    Arc::new(c)
}

async fn call(client: &ControllerClient, req: ControllerRequest) -> ControllerResponse {
    client.call(req, CALL).await.expect("controller answers")
}

async fn register(client: &ControllerClient, id: i32, incarnation: u128) -> i64 {
    let req = ControllerRequest::RegisterBroker {
        id,
        incarnation: Uuid::from_u128(incarnation),
        host: "127.0.0.1".into(),
        port: 9090 + id,
        rack: None,
    };
    match call(client, req).await {
        ControllerResponse::Registered { epoch } => epoch,
        other => panic!("register {id}: {other:?}"),
    }
}

async fn heartbeat(
    client: &ControllerClient,
    id: i32,
    epoch: i64,
    want_shutdown: bool,
) -> (bool, bool) {
    let req = ControllerRequest::Heartbeat {
        id,
        epoch,
        // A broker that applied everything (the tests read the image directly).
        metadata_offset: u64::MAX / 2,
        want_shutdown,
    };
    match call(client, req).await {
        ControllerResponse::Heartbeat {
            fenced,
            shutdown_ready,
        } => (fenced, shutdown_ready),
        other => panic!("heartbeat {id}: {other:?}"),
    }
}

/// A broker's heartbeat loop, stopped by clearing `alive`.
fn heartbeats(client: ControllerClient, id: i32, epoch: i64, alive: Arc<AtomicBool>) {
    tokio::spawn(async move {
        while alive.load(Ordering::SeqCst) {
            let _ = client
                .call(
                    ControllerRequest::Heartbeat {
                        id,
                        epoch,
                        metadata_offset: u64::MAX / 2,
                        want_shutdown: false,
                    },
                    Duration::from_secs(1),
                )
                .await;
            sleep(Duration::from_millis(100)).await;
        }
    });
}

async fn fetch_image(client: &ControllerClient) -> MetadataImage {
    let req = ControllerRequest::FetchImage {
        have_offset: 0,
        max_wait_ms: 1000,
    };
    match call(client, req).await {
        ControllerResponse::Image(Some(b)) => weir::metadata::codec::decode_image(&b).unwrap(),
        other => panic!("fetch: {other:?}"),
    }
}

/// Poll `f` on fresh images until it holds.
async fn wait_for(
    client: &ControllerClient,
    what: &str,
    f: impl Fn(&MetadataImage) -> bool,
) -> MetadataImage {
    let deadline = now() + Duration::from_secs(20);
    loop {
        let img = fetch_image(client).await;
        if f(&img) {
            return img;
        }
        assert!(now() < deadline, "timed out waiting for {what}: {img:#?}");
        sleep(Duration::from_millis(50)).await;
    }
}

fn topic(name: &str, partitions: i32, rf: i16) -> CreateTopicSpec {
    CreateTopicSpec {
        name: name.into(),
        partitions,
        replication_factor: rf,
        assignments: vec![],
        configs: BTreeMap::new(),
    }
}

async fn create(client: &ControllerClient, spec: CreateTopicSpec) -> i16 {
    let req = ControllerRequest::CreateTopics {
        topics: vec![spec],
        validate_only: false,
    };
    match call(client, req).await {
        ControllerResponse::Items(items) => items[0].error_code,
        other => panic!("create: {other:?}"),
    }
}

#[tokio::test]
async fn single_voter_controller_lifecycle() {
    let disk = SimDisk::new(11, SimDiskOptions::default());
    let ctrl = Controller::start(
        config(1, None),
        Arc::new(disk.clone()),
        WeirRng::from_seed(1),
    )
    .await
    .unwrap();
    assert!(ctrl.local_addr().is_none(), "single node: no listener");
    let client = ctrl.client();

    // Three brokers register (fenced) and unfence on their first heartbeat.
    let mut epochs = BTreeMap::new();
    let mut alive = BTreeMap::new();
    for id in 1..=3 {
        let e = register(&client, id, id as u128).await;
        assert_eq!(register(&client, id, id as u128).await, e, "idempotent");
        assert_eq!(heartbeat(&client, id, e, false).await, (false, false));
        epochs.insert(id, e);
        let flag = Arc::new(AtomicBool::new(true));
        heartbeats(client.clone(), id, e, flag.clone());
        alive.insert(id, flag);
    }

    // A topic with rf 3 is placed over all three, leaders spread.
    assert_eq!(create(&client, topic("t", 3, 3)).await, 0);
    assert_eq!(create(&client, topic("t", 3, 3)).await, 36);
    assert_eq!(create(&client, topic("big", 1, 4)).await, 38);
    let img = fetch_image(&client).await;
    let t = img.topic("t").unwrap();
    let leaders: std::collections::BTreeSet<i32> = t.partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders.len(), 3);
    for p in &t.partitions {
        assert_eq!(p.isr.len(), 3);
    }

    // AlterPartition: validation, then shrink p0's ISR to its leader alone.
    let p0 = t.partitions[0].clone();
    let l = p0.leader;
    let alter =
        |leader_epoch, partition_epoch, new_isr: Vec<i32>| ControllerRequest::AlterPartition {
            broker: l,
            broker_epoch: epochs[&l],
            topic: "t".into(),
            partition: 0,
            leader_epoch,
            partition_epoch,
            new_isr,
        };
    let code = |r: ControllerResponse| match r {
        ControllerResponse::Error(e) => e.error_code,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        code(
            call(
                &client,
                alter(p0.leader_epoch + 1, p0.partition_epoch, vec![l])
            )
            .await
        ),
        74
    );
    assert_eq!(
        code(
            call(
                &client,
                alter(p0.leader_epoch, p0.partition_epoch + 1, vec![l])
            )
            .await
        ),
        95
    );
    assert_eq!(
        code(call(&client, alter(p0.leader_epoch, p0.partition_epoch, vec![])).await),
        42
    );
    let shrunk = match call(&client, alter(p0.leader_epoch, p0.partition_epoch, vec![l])).await {
        ControllerResponse::Partition(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(shrunk.isr, vec![l]);
    assert_eq!(shrunk.partition_epoch, p0.partition_epoch + 1);

    // The leader of p0 goes silent: fenced by the timer; p1/p2 leaderships
    // it held move with epochs bumped, p0 (ISR = [it]) goes offline with
    // unclean election off...
    alive[&l].store(false, Ordering::SeqCst);
    let img = wait_for(&client, "fencing", |img| img.brokers[&l].fenced).await;
    let t2 = img.topic("t").unwrap();
    assert_eq!(t2.partitions[0].leader, NO_LEADER);
    assert_eq!(t2.partitions[0].isr, vec![l]);
    assert!(t2.partitions[0].leader_epoch > p0.leader_epoch);
    for (before, after) in t.partitions.iter().zip(&t2.partitions).skip(1) {
        assert_ne!(after.leader, l);
        assert!(!after.isr.contains(&l));
        if before.leader == l {
            assert_eq!(after.leader_epoch, before.leader_epoch + 1);
        }
        assert!(after.partition_epoch > before.partition_epoch);
    }
    // ...and comes back under the topic's unclean override.
    let req = ControllerRequest::SetTopicConfigs {
        topic: "t".into(),
        configs: BTreeMap::from([("unclean.leader.election.enable".into(), "true".into())]),
        validate_only: false,
    };
    assert!(matches!(
        call(&client, req).await,
        ControllerResponse::Items(_)
    ));
    let img = wait_for(&client, "unclean election", |img| {
        img.partition("t", 0).unwrap().has_leader()
    })
    .await;
    let p = img.partition("t", 0).unwrap();
    assert_ne!(p.leader, l);
    assert_eq!(p.isr, vec![p.leader]);

    // The silent broker restarts (new incarnation) and is unfenced again.
    let e = register(&client, l, 1000 + l as u128).await;
    assert!(e > epochs[&l]);
    epochs.insert(l, e);
    assert_eq!(heartbeat(&client, l, e, false).await, (false, false));
    alive.insert(l, Arc::new(AtomicBool::new(true)));
    heartbeats(client.clone(), l, e, alive[&l].clone());

    // Controlled shutdown of another broker: leaders move, then ready.
    let s = *epochs.keys().find(|&&b| b != l).unwrap();
    alive[&s].store(false, Ordering::SeqCst);
    let mut ready = false;
    for _ in 0..20 {
        let (_, r) = heartbeat(&client, s, epochs[&s], true).await;
        if r {
            ready = true;
            break;
        }
        sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "controlled shutdown completes");
    let img = fetch_image(&client).await;
    assert!(img
        .topics
        .values()
        .flat_map(|t| &t.partitions)
        .all(|p| p.leader != s));

    // Producer ids come in disjoint blocks.
    let req = |b: i32| ControllerRequest::AllocateProducerIds {
        broker: b,
        broker_epoch: epochs[&b],
    };
    let a = call(&client, req(l)).await;
    let b = call(&client, req(l)).await;
    assert!(matches!(
        (a, b),
        (
            ControllerResponse::ProducerIds {
                first: 0,
                count: 1000
            },
            ControllerResponse::ProducerIds { first: 1000, .. }
        )
    ));

    // validate_only decides but commits nothing; partitions grow; delete.
    let offset = fetch_image(&client).await.offset;
    let req = ControllerRequest::CreateTopics {
        topics: vec![topic("dry", 1, 1)],
        validate_only: true,
    };
    assert!(
        matches!(call(&client, req).await, ControllerResponse::Items(i) if i[0].error_code == 0)
    );
    // (rf 3 no longer fits: one broker has shut down.)
    let req = ControllerRequest::CreatePartitions {
        topic: "t".into(),
        count: 5,
        validate_only: false,
    };
    assert!(matches!(call(&client, req).await, ControllerResponse::Error(e) if e.error_code == 38));
    assert_eq!(create(&client, topic("g", 1, 2)).await, 0);
    let req = ControllerRequest::CreatePartitions {
        topic: "g".into(),
        count: 3,
        validate_only: false,
    };
    assert!(matches!(
        call(&client, req).await,
        ControllerResponse::Items(_)
    ));
    let req = ControllerRequest::DeleteTopics {
        names: vec!["t".into(), "nope".into()],
    };
    match call(&client, req).await {
        ControllerResponse::Items(i) => {
            assert_eq!((i[0].error_code, i[1].error_code), (0, 3));
        }
        other => panic!("{other:?}"),
    }
    let img = fetch_image(&client).await;
    assert!(img.offset >= offset + 3);
    assert!(img.topic("dry").is_none() && img.topic("t").is_none());
    assert_eq!(img.topic("g").unwrap().partitions.len(), 3);

    // Restart the controller from its disk: the same image.
    for f in alive.values() {
        f.store(false, Ordering::SeqCst);
    }
    let before = fetch_image(&client).await;
    ctrl.shutdown().await;
    disk.crash();
    let ctrl = Controller::start(
        config(1, None),
        Arc::new(disk.clone()),
        WeirRng::from_seed(2),
    )
    .await
    .unwrap();
    let svc = ctrl.service();
    let deadline = now() + Duration::from_secs(10);
    while svc.image() != before {
        assert!(
            now() < deadline,
            "restored image differs: {:#?}",
            svc.image()
        );
        sleep(Duration::from_millis(20)).await;
    }
    ctrl.shutdown().await;
}

/// Three voters over loopback: the active controller dies, the client finds
/// the new one, nothing committed is lost.
#[cfg(not(madsim))]
#[tokio::test]
async fn three_voters_survive_losing_the_active_controller() {
    let mut listeners = Vec::new();
    let mut voters = Vec::new();
    for id in 0..3 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        voters.push((id, l.local_addr().unwrap().to_string()));
        listeners.push(Some(l));
    }
    let voters_str = voters
        .iter()
        .map(|(id, a)| format!("{id}@{a}"))
        .collect::<Vec<_>>()
        .join(",");
    let disks: Vec<SimDisk> = (0..3)
        .map(|i| SimDisk::new(20 + i, SimDiskOptions::default()))
        .collect();
    let mut ctrls = Vec::new();
    for id in 0..3 {
        let c = Controller::start_with_listener(
            config(id, Some(&voters_str)),
            Arc::new(disks[id as usize].clone()),
            WeirRng::from_seed(100 + id as u64),
            listeners[id as usize].take(),
        )
        .await
        .unwrap();
        assert!(c.local_addr().is_some());
        ctrls.push(Some(c));
    }
    // Garbage on the RPC path gets an error answer, not a crash or a hang.
    let rpc = weir::controller::rpc::RpcClient::default();
    let resp = rpc
        .call(&voters[0].1, vec![1, 0xff, 0xff], Duration::from_secs(5))
        .await
        .unwrap();
    match weir::controller::codec::decode_response(&resp).unwrap() {
        ControllerResponse::Error(e) => assert_eq!(e.error_code, 42),
        other => panic!("{other:?}"),
    }

    // A broker-side client (no local controller).
    let client = ControllerClient::new(voters.clone(), None);
    let e = register(&client, 7, 7).await;
    heartbeat(&client, 7, e, false).await;
    let alive = Arc::new(AtomicBool::new(true));
    heartbeats(client.clone(), 7, e, alive.clone());
    for i in 0..5 {
        assert_eq!(create(&client, topic(&format!("t{i}"), 2, 1)).await, 0);
    }
    let before = fetch_image(&client).await;
    assert_eq!(before.topics.len(), 5);

    // Kill the active controller.
    let active = ctrls
        .iter()
        .flatten()
        .find(|c| c.service().is_active())
        .map(|c| c.service().node_id())
        .expect("an active controller");
    ctrls[active as usize].take().unwrap().shutdown().await;

    // The client finds the new one; everything committed is there.
    assert_eq!(create(&client, topic("after", 1, 1)).await, 0);
    let img = fetch_image(&client).await;
    for name in before.topics.keys() {
        assert_eq!(img.topic(name), before.topic(name), "{name} survives");
    }
    assert!(img.topic("after").is_some());
    let new_active = ctrls
        .iter()
        .flatten()
        .find(|c| c.service().is_active())
        .map(|c| c.service().node_id())
        .unwrap();
    assert_ne!(new_active, active);
    alive.store(false, Ordering::SeqCst);
    for c in ctrls.into_iter().flatten() {
        c.shutdown().await;
    }
}

//! Three controllers inside madsim, each on its own node with a SimDisk the
//! test owns: a broker-side client on a fourth node registers, creates
//! topics, the active controller's node is killed, and the client finds the
//! new active controller with everything committed still there.
#![cfg(madsim)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use madsim::runtime::Handle;
use uuid::Uuid;
use weir::config::ServerConfig;
use weir::controller::api::{ControllerRequest, ControllerResponse, CreateTopicSpec};
use weir::controller::{Controller, ControllerClient};
use weir::env::rng::WeirRng;
use weir::env::sim_disk::{SimDisk, SimDiskOptions};
use weir::env::time::{sleep, Duration};
use weir::metadata::codec::decode_image;
use weir::metadata::MetadataImage;

const PORT: u16 = 9093;
const CALL: Duration = Duration::from_secs(20);

type Slot = Arc<Mutex<Option<Controller>>>;

fn ip(id: i32) -> String {
    format!("10.0.2.{}", id + 1)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn create(client: &ControllerClient, name: &str) -> i16 {
    let req = ControllerRequest::CreateTopics {
        topics: vec![CreateTopicSpec {
            name: name.into(),
            partitions: 2,
            replication_factor: 1,
            assignments: vec![],
            configs: BTreeMap::new(),
        }],
        validate_only: false,
    };
    match client.call(req, CALL).await.unwrap() {
        ControllerResponse::Items(items) => items[0].error_code,
        other => panic!("{other:?}"),
    }
}

async fn image(client: &ControllerClient) -> MetadataImage {
    let req = ControllerRequest::FetchImage {
        have_offset: 0,
        max_wait_ms: 100,
    };
    match client.call(req, CALL).await.unwrap() {
        ControllerResponse::Image(Some(b)) => decode_image(&b).unwrap(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn active_controller_crash_loses_nothing_committed() {
    let handle = Handle::current();
    let voters: Vec<(i32, String)> = (0..3).map(|i| (i, format!("{}:{PORT}", ip(i)))).collect();
    let voters_str = voters
        .iter()
        .map(|(id, a)| format!("{id}@{a}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    let mut slots: Vec<Slot> = Vec::new();
    for id in 0..3i32 {
        let disk = SimDisk::new(40 + id as u64, SimDiskOptions::default());
        let slot: Slot = Arc::default();
        let mut cfg = ServerConfig {
            node_id: id,
            log_dirs: vec![format!("/node{id}").into()],
            ..ServerConfig::default()
        };
        cfg.set("controller.quorum.voters", &voters_str).unwrap();
        cfg.set("broker.session.timeout.ms", "1000").unwrap();
        let cfg = Arc::new(cfg);
        let s = slot.clone();
        let node = handle
            .create_node()
            .name(format!("controller-{id}"))
            .ip(ip(id).parse().unwrap())
            .init(move || {
                let (disk, slot, cfg) = (disk.clone(), s.clone(), cfg.clone());
                async move {
                    let c = Controller::start(cfg, Arc::new(disk), WeirRng::from_seed(id as u64))
                        .await
                        .expect("controller starts");
                    *lock(&slot) = Some(c);
                    // The node's main task: when it returns, madsim ends the node.
                    std::future::pending::<()>().await
                }
            })
            .build();
        nodes.push(node);
        slots.push(slot);
    }
    let node_ids: Vec<_> = nodes.iter().map(|n| n.id()).collect();
    let client_node = handle
        .create_node()
        .name("broker")
        .ip("10.0.2.10".parse().unwrap())
        .build();
    client_node
        .spawn(async move {
            let client = ControllerClient::new(voters, None);
            let req = ControllerRequest::RegisterBroker {
                id: 7,
                incarnation: Uuid::from_u128(7),
                host: "10.0.2.10".into(),
                port: 9092,
                rack: None,
            };
            let epoch = match client.call(req, CALL).await.unwrap() {
                ControllerResponse::Registered { epoch } => epoch,
                other => panic!("{other:?}"),
            };
            let hb = client.clone();
            tokio::spawn(async move {
                loop {
                    let _ = hb
                        .call(
                            ControllerRequest::Heartbeat {
                                id: 7,
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
            sleep(Duration::from_millis(300)).await;
            for i in 0..5 {
                assert_eq!(create(&client, &format!("t{i}")).await, 0);
            }
            let before = image(&client).await;
            assert_eq!(before.topics.len(), 5);

            let active = slots
                .iter()
                .position(|s| lock(s).as_ref().is_some_and(|c| c.service().is_active()))
                .expect("an active controller");
            Handle::current().kill(node_ids[active]);
            drop(lock(&slots[active]).take());

            assert_eq!(create(&client, "after").await, 0);
            let img = image(&client).await;
            for name in before.topics.keys() {
                assert_eq!(img.topic(name), before.topic(name), "{name} survives");
            }
            assert!(img.topic("after").is_some());
            assert!(
                !img.brokers[&7].fenced,
                "a failover gives brokers a full session"
            );
            let new_active = slots
                .iter()
                .position(|s| lock(s).as_ref().is_some_and(|c| c.service().is_active()))
                .expect("a new active controller");
            assert_ne!(new_active, active);
        })
        .await
        .unwrap();
}

//! The client against Weir's broker inside the simulator: a broker node on a
//! SimDisk and a client node, produce (idempotent, every codec) then consume.
#![cfg(madsim)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use weir::broker::Server;
use weir::client::admin::NewTopic;
use weir::client::{Admin, Consumer, ConsumerConfig, Producer, ProducerConfig, ProducerRecord};
use weir::config::ServerConfig;
use weir::env::sim_disk::{SimDisk, SimDiskOptions};

#[madsim::test]
async fn produce_and_consume_through_the_simulated_network() {
    let handle = madsim::runtime::Handle::current();
    let broker_addr: SocketAddr = "10.0.0.1:9092".parse().unwrap();
    let broker = handle
        .create_node()
        .name("broker")
        .ip(broker_addr.ip())
        .build();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    broker.spawn(async move {
        let mut config = ServerConfig::default_single_node();
        config
            .set("listeners", "PLAINTEXT://10.0.0.1:9092")
            .unwrap();
        config.set("log.dirs", "/data").unwrap();
        let disk = Arc::new(SimDisk::new(7, SimDiskOptions::default()));
        let server = Server::start(config, disk).await.unwrap();
        let _ = ready_tx.send(());
        // Keep the server alive for the rest of the test.
        std::future::pending::<()>().await;
        drop(server);
    });
    ready_rx.await.unwrap();

    let client = handle
        .create_node()
        .name("client")
        .ip("10.0.0.2".parse().unwrap())
        .build();
    client
        .spawn(async move {
            let bootstrap = "10.0.0.1:9092";
            let admin = Admin::connect(bootstrap).await.unwrap();
            admin
                .create_topic(NewTopic {
                    name: "sim".into(),
                    partitions: 2,
                    replication_factor: 1,
                    configs: vec![],
                })
                .await
                .unwrap();
            let mut sent = 0;
            for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
                let mut config = ProducerConfig::default();
                config.set("compression.type", codec).unwrap();
                config.set("enable.idempotence", "true").unwrap();
                config.set("batch.size", "1024").unwrap();
                let producer = Producer::connect(bootstrap, config).await.unwrap();
                let mut futures = Vec::new();
                for i in 0..100 {
                    let record = ProducerRecord::new("sim", format!("{codec}-{i}"))
                        .with_key(format!("k{}", i % 7));
                    futures.push(producer.send(record).await.unwrap());
                }
                for f in futures {
                    f.await.unwrap();
                }
                producer.close().await;
                sent += 100;
            }
            let mut consumer = Consumer::connect(bootstrap, ConsumerConfig::default())
                .await
                .unwrap();
            let tps = consumer.assign_topic("sim").await.unwrap();
            consumer.seek_to_beginning(&tps).await.unwrap();
            let mut got = Vec::new();
            while got.len() < sent {
                let batch = consumer.poll(Duration::from_secs(1)).await.unwrap();
                assert!(!batch.is_empty() || got.len() < sent, "progress");
                got.extend(batch);
            }
            assert_eq!(got.len(), sent);
            for p in 0..2 {
                let offsets: Vec<i64> = got
                    .iter()
                    .filter(|r| r.partition == p)
                    .map(|r| r.offset)
                    .collect();
                assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1));
            }
        })
        .await
        .unwrap();
}

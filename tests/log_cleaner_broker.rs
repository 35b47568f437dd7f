//! Through the broker, on a multi-threaded runtime: produce requests to a
//! compacted partition complete while the cleaner is part way through a
//! pass. The pass's `.cleaned` files exist only between its first rewritten
//! segment and its swap, so an acknowledgement that arrives while one is
//! still on disk was served during the pass. (With the cleaner holding the
//! partition lock for the whole pass, every produce sent during it waited
//! for the swap, after which no `.cleaned` file is left.)
#![cfg(not(madsim))]

mod broker_support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use broker_support::*;
use bytes::Bytes;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

async fn produce(c: &mut Client, topic: &str, records: Bytes) -> i64 {
    let (code, base) = produce_partition0(c, topic, 1, 30_000, records).await;
    assert_eq!(code, 0);
    base
}

fn cleaning(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".cleaned"))
        })
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_completes_while_the_cleaner_rewrites_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path());
    cfg.set("log.cleaner.backoff.ms", "50").unwrap();
    let server = start_with(cfg).await;
    let mut c = Client::connect(server.local_addr()).await;
    let topic = "busy";
    // Written under cleanup.policy=delete, then switched to compact, so the
    // first pass covers every segment at once.
    let configs = [
        ("segment.bytes", "1048576"),
        ("retention.ms", "-1"),
        ("min.cleanable.dirty.ratio", "0.01"),
    ];
    create_with(&mut c, topic, &configs).await;
    let part_dir = tmp.path().join(format!("{topic}-0"));

    // ~0.9 MB batches, one segment each: 80 keys every batch overwrites and
    // 10 of its own, so each segment keeps a little and gets rewritten.
    let value = vec![b'v'; 10_000];
    let mut sent = 0i64;
    for i in 0..24 {
        let mut recs: Vec<_> = (0..80)
            .map(|k| record(&format!("shared-{k}"), &value, 1))
            .collect();
        recs.extend((0..10).map(|k| record(&format!("own-{i}-{k}"), &value, 1)));
        sent += recs.len() as i64;
        produce(&mut c, topic, batch(&recs)).await;
    }

    let alter = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str(topic))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("cleanup.policy"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_static_str("compact")))]),
    ]);
    let resp = c.call(1, &alter).await;
    assert_eq!(resp.responses[0].error_code, 0);

    // A watcher notes that a pass is under way (it needs no broker lock).
    let saw_pass = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (saw_pass, stop, dir) = (saw_pass.clone(), stop.clone(), part_dir.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if cleaning(&dir) {
                    saw_pass.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };

    // Small appends back to back until one is acknowledged with a
    // `.cleaned` file on disk both before it was sent and after its ack.
    let mut during = false;
    let mut next = sent;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let before = cleaning(&part_dir);
        if before {
            saw_pass.store(true, Ordering::Relaxed);
        }
        let off = produce(&mut c, topic, batch(&[record("tick", b"t", 1)])).await;
        assert_eq!(off, next, "offsets stay dense for appends");
        next += 1;
        if before && cleaning(&part_dir) {
            during = true;
            break;
        }
        if saw_pass.load(Ordering::Relaxed) && !cleaning(&part_dir) {
            // The pass is over.
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    assert!(saw_pass.load(Ordering::Relaxed), "the cleaner never ran");
    assert!(during, "no produce completed during a cleaner pass");
    server.shutdown().await.unwrap();
}

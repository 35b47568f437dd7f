//! Throughput sanity for the partition log, not a timed assert: run with
//! `cargo test --release --test log_perf -- --ignored --nocapture` and read
//! the printed rates (the brief's target: consume >= 1 GB/s from page cache;
//! appends O(size), no fsync per append by default).

use std::sync::Arc;
use std::time::Instant;

use weir::env::{Disk, RealDisk};
use weir::log::batch::{build_batch, BatchProducer, SimpleRecord};
use weir::log::{LogConfig, PartitionLog};

#[test]
#[ignore]
fn append_and_read_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(RealDisk::new());
    let cfg = LogConfig {
        segment_bytes: 64 << 20,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(disk, tmp.path().join("perf-0"), cfg, 0).unwrap();
    // 16 KiB batches of 16 records of 1 KiB.
    let recs: Vec<SimpleRecord> = (0..16)
        .map(|i| SimpleRecord {
            key: None,
            value: Some(vec![i as u8; 1000]),
            headers: vec![],
            timestamp: 1,
        })
        .collect();
    let template = build_batch(&recs, BatchProducer::default());
    let batches = 16_384; // ~256 MiB
    let mut buf = template.clone();
    let start = Instant::now();
    for _ in 0..batches {
        buf.copy_from_slice(&template);
        log.append(&mut buf, 0, 0).unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let total = (template.len() * batches) as f64;
    println!(
        "append: {:.0} MB/s, {:.0} batches/s ({} byte batches)",
        total / secs / 1e6,
        batches as f64 / secs,
        template.len()
    );
    for fetch in [1 << 20, 8 << 20] {
        let start = Instant::now();
        let mut off = 0;
        let mut read = 0usize;
        while off < log.log_end_offset() {
            let s = log.read(off, fetch, true).unwrap();
            read += s.records.len();
            let n = s.records.len() / template.len();
            off += (n * 16) as i64;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "read ({} KiB fetches): {:.0} MB/s",
            fetch >> 10,
            read as f64 / secs / 1e6
        );
    }
}

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

fn keyed_batch(keys: std::ops::Range<u32>, value_len: usize) -> Vec<u8> {
    let recs: Vec<SimpleRecord> = keys
        .map(|k| SimpleRecord {
            key: Some(format!("key-{k:08}").into_bytes()),
            value: Some(vec![(k % 251) as u8; value_len]),
            headers: vec![],
            timestamp: 1,
        })
        .collect();
    build_batch(&recs, BatchProducer::default())
}

/// Append cost of compressed batches (decompressed and walked record by
/// record, as Kafka validates them) against the same records uncompressed
/// (header + CRC only).
#[test]
#[ignore]
fn compressed_validation_cost() {
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};
    let tmp = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(RealDisk::new());
    // Values half random, half repeated: compressible about 2:1, like
    // typical JSON, so compression neither dominates nor vanishes.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let recs: Vec<SimpleRecord> = (0..16)
        .map(|k| SimpleRecord {
            key: Some(format!("key-{k:08}").into_bytes()),
            value: Some(
                (0..1000)
                    .map(|i| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        if i % 2 == 0 {
                            x as u8
                        } else {
                            b'a'
                        }
                    })
                    .collect(),
            ),
            headers: vec![],
            timestamp: 1,
        })
        .collect();
    let plain = build_batch(&recs, BatchProducer::default());
    let records = weir::log::batch::decode_records(&plain).unwrap();
    for (name, c) in [
        ("none", Compression::None),
        ("lz4", Compression::Lz4),
        ("zstd", Compression::Zstd),
        ("gzip", Compression::Gzip),
    ] {
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: c,
            },
        )
        .unwrap();
        let template = buf.to_vec();
        let cfg = LogConfig {
            segment_bytes: 64 << 20,
            ..LogConfig::default()
        };
        let mut log = PartitionLog::open(disk.clone(), tmp.path().join(name), cfg, 0).unwrap();
        let batches = 8_192;
        let mut b = template.clone();
        let start = Instant::now();
        for _ in 0..batches {
            b.copy_from_slice(&template);
            log.append(&mut b, 0, 0).unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "append {name:>4}: {:.0} MB/s of uncompressed record bytes, {:.0} batches/s ({} bytes stored per batch)",
            (plain.len() * batches) as f64 / secs / 1e6,
            batches as f64 / secs,
            template.len()
        );
    }
}

/// Cleaner throughput: 64 MiB of keyed records (~1 KiB values, 10% of keys
/// live), cleaned in one pass.
#[test]
#[ignore]
fn cleaner_throughput() {
    let tmp = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(RealDisk::new());
    let cfg = LogConfig {
        segment_bytes: 8 << 20,
        cleanup_policy: weir::log::CleanupPolicy::COMPACT,
        min_cleanable_dirty_ratio: 0.0,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(disk, tmp.path().join("clean-0"), cfg, 0).unwrap();
    let keys = 6_400u32;
    let mut i = 0u32;
    while log.size_bytes() < 64 << 20 {
        let k = i % keys;
        log.append(&mut keyed_batch(k..k + 16, 1000), 0, 0).unwrap();
        i += 16;
    }
    let bytes = log.size_bytes();
    let end = log.log_end_offset();
    let start = Instant::now();
    let out = log.clean(10, end).unwrap().unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "cleaner: {:.0} MB/s ({} MB read, {} MB written, {} records removed, {} segments rewritten, {:.2}s)",
        out.bytes_read as f64 / secs / 1e6,
        out.bytes_read >> 20,
        out.bytes_written >> 20,
        out.records_removed,
        out.segments_rewritten,
        secs
    );
    assert!(out.bytes_read <= bytes);
}

/// Cost of a retention check that deletes nothing, over 10 and 1,000
/// partitions of 5 segments each (3 open files per segment: 1,000 x 5 x 3
/// stays under this machine's 20,000 descriptors).
#[test]
#[ignore]
fn retention_check_cost() {
    let tmp = tempfile::tempdir().unwrap();
    let disk: Arc<dyn Disk> = Arc::new(RealDisk::new());
    let cfg = LogConfig {
        segment_bytes: 4096,
        retention_ms: 7 * 24 * 3600 * 1000,
        retention_bytes: 1 << 30,
        ..LogConfig::default()
    };
    let batch = keyed_batch(0..3, 1000);
    for partitions in [10usize, 1_000] {
        let mut logs: Vec<PartitionLog> = (0..partitions)
            .map(|p| {
                let dir = tmp.path().join(format!("r{partitions}-{p}"));
                let mut log = PartitionLog::open(disk.clone(), dir, cfg.clone(), 0).unwrap();
                while log.segment_count() < 5 {
                    log.append(&mut batch.clone(), 0, 1).unwrap();
                }
                log
            })
            .collect();
        let rounds = 20;
        let start = Instant::now();
        for _ in 0..rounds {
            for log in &mut logs {
                let hw = log.log_end_offset();
                let out = log.apply_retention(1_000, hw).unwrap();
                assert_eq!(out.deleted_segments, 0);
            }
        }
        let secs = start.elapsed().as_secs_f64() / rounds as f64;
        println!(
            "retention check over {partitions} partitions: {:.1} us per pass ({:.2} us per partition)",
            secs * 1e6,
            secs * 1e6 / partitions as f64
        );
    }
}

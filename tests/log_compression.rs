//! Compressed batches are validated on append as Kafka does, and
//! compression.type recompresses to the topic's codec with offsets kept.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use weir::env::{Disk, RealDisk};
use weir::log::batch::{self, build_batch, BatchProducer, SimpleRecord};
use weir::log::{CompressionType, LogConfig, LogError, PartitionLog};

fn disk() -> Arc<dyn Disk> {
    Arc::new(RealDisk::new())
}

fn records(offsets: &[i64]) -> Vec<Record> {
    offsets
        .iter()
        .map(|&o| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: o,
            // offset - sequence must be constant or the encoder splits the
            // batch; -1 + delta is what a non-idempotent batch decodes to.
            sequence: o as i32 - 1,
            timestamp: 1_000 + o,
            key: Some(Bytes::from(format!("k{o}"))),
            value: Some(Bytes::from(vec![b'v'; 300])),
            headers: Default::default(),
        })
        .collect()
}

fn encode(recs: &[Record], compression: Compression) -> Vec<u8> {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buf.to_vec()
}

/// Overwrite a big-endian i32 at `at` and fix the CRC, as a buggy or
/// malicious producer would send it.
fn patch_i32(b: &mut [u8], at: usize, v: i32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let crc = batch::compute_crc(b);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
}

const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_RECORD_COUNT: usize = 57;

fn open(name: &str, tmp: &tempfile::TempDir, cfg: LogConfig) -> PartitionLog {
    PartitionLog::open(disk(), tmp.path().join(name), cfg, 0).unwrap()
}

#[test]
fn valid_compressed_batches_append_in_every_codec() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open("z-0", &tmp, LogConfig::default());
    for c in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let mut b = encode(&records(&[0, 1, 2]), c);
        let info = log.append(&mut b, 0, 0).unwrap();
        assert_eq!(info.last_offset - info.first_offset, 2);
    }
    assert_eq!(log.log_end_offset(), 12);
}

#[test]
fn compressed_batch_with_wrong_count_or_offsets_is_rejected_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let mut log = open("z-0", &tmp, LogConfig::default());
    // Header claims 4 records (consistently), the payload holds 3.
    let mut b = encode(&records(&[0, 1, 2]), Compression::Gzip);
    patch_i32(&mut b, OFF_RECORD_COUNT, 4);
    patch_i32(&mut b, OFF_LAST_OFFSET_DELTA, 3);
    let e = log.append(&mut b, 0, 0).unwrap_err();
    assert!(matches!(e, LogError::InvalidRecord(_)), "{e}");
    assert_eq!(e.error_code(), 87);
    // Header claims 2, payload holds 3.
    let mut b = encode(&records(&[0, 1, 2]), Compression::Lz4);
    patch_i32(&mut b, OFF_RECORD_COUNT, 2);
    patch_i32(&mut b, OFF_LAST_OFFSET_DELTA, 1);
    assert_eq!(log.append(&mut b, 0, 0).unwrap_err().error_code(), 87);
    // Offset deltas 0, 1, 3 under a header saying 3 records ending at delta 2.
    let mut b = encode(&records(&[0, 1, 3]), Compression::Zstd);
    patch_i32(&mut b, OFF_LAST_OFFSET_DELTA, 2);
    let e = log.append(&mut b, 0, 0).unwrap_err();
    assert_eq!(e.error_code(), 87, "{e}");
    // A payload that does not decompress, under a valid CRC: CORRUPT_MESSAGE.
    let mut b = encode(&records(&[0, 1, 2]), Compression::Gzip);
    let n = b.len();
    for x in &mut b[70..n - 10] {
        *x ^= 0x5a;
    }
    patch_i32(&mut b, OFF_RECORD_COUNT, 3);
    let e = log.append(&mut b, 0, 0).unwrap_err();
    assert_eq!(e.error_code(), 2, "{e}");
    // In a multi-batch append, one bad batch means nothing is written.
    let mut good = encode(&records(&[0, 1, 2]), Compression::Snappy);
    let mut bad = encode(&records(&[0, 1, 2]), Compression::Snappy);
    patch_i32(&mut bad, OFF_RECORD_COUNT, 4);
    patch_i32(&mut bad, OFF_LAST_OFFSET_DELTA, 3);
    good.extend_from_slice(&bad);
    assert!(log.append(&mut good, 0, 0).is_err());
    assert_eq!(log.log_end_offset(), 0);
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn compression_type_recompresses_with_offsets_and_producer_fields_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        compression_type: CompressionType::Gzip,
        ..LogConfig::default()
    };
    let mut log = open("z-0", &tmp, cfg);
    let recs: Vec<SimpleRecord> = (0..5)
        .map(|i| SimpleRecord {
            key: Some(vec![i]),
            value: Some(vec![i; 500]),
            headers: vec![("h".into(), Some(vec![i]))],
            timestamp: 10 + i as i64,
        })
        .collect();
    let p = BatchProducer {
        producer_id: 3,
        producer_epoch: 1,
        base_sequence: 0,
        transactional: false,
    };
    let mut plain = build_batch(&recs, p);
    let plain_len = plain.len();
    log.append(&mut plain, 0, 0).unwrap();
    let mut lz4 = encode(&records(&[0, 1]), Compression::Lz4);
    let info = log.append(&mut lz4, 0, 0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (5, 6));
    let got = log.read(0, 1 << 20, true).unwrap().records;
    let parts = batch::split_batches(&got).unwrap();
    assert_eq!(parts.len(), 2);
    let (r0, h0) = &parts[0];
    assert_eq!(h0.compression(), 1);
    assert!(r0.len() < plain_len, "gzip shrinks repetitive values");
    assert_eq!((h0.base_offset, h0.last_offset()), (0, 4));
    assert_eq!(
        (h0.producer_id, h0.producer_epoch, h0.base_sequence),
        (3, 1, 0)
    );
    let decoded = batch::decode_records(&got[r0.clone()]).unwrap();
    for (i, r) in decoded.iter().enumerate() {
        assert_eq!(r.offset, i as i64);
        assert_eq!(r.value.as_deref(), Some(&vec![i as u8; 500][..]));
        assert_eq!(r.timestamp, 10 + i as i64);
    }
    assert_eq!(parts[1].1.compression(), 1);
    // The idempotent producer's retry is still recognised after conversion.
    let mut retry = build_batch(&recs, p);
    assert!(log.append(&mut retry, 0, 0).unwrap().duplicate);
    // compression.type=uncompressed decompresses.
    let cfg = LogConfig {
        compression_type: CompressionType::Uncompressed,
        ..LogConfig::default()
    };
    let mut log = open("u-0", &tmp, cfg);
    log.append(&mut encode(&records(&[0, 1, 2]), Compression::Zstd), 0, 0)
        .unwrap();
    let got = log.read(0, 1 << 20, true).unwrap().records;
    assert_eq!(batch::split_batches(&got).unwrap()[0].1.compression(), 0);
}

#[test]
fn compacted_topics_refuse_keyless_records() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        cleanup_policy: weir::log::CleanupPolicy::COMPACT,
        ..LogConfig::default()
    };
    let mut log = open("k-0", &tmp, cfg);
    let rec = |key: Option<Vec<u8>>| SimpleRecord {
        key,
        value: Some(b"v".to_vec()),
        headers: vec![],
        timestamp: 1,
    };
    let mut ok = build_batch(&[rec(Some(b"k".to_vec()))], BatchProducer::default());
    log.append(&mut ok, 0, 0).unwrap();
    let mut bad = build_batch(
        &[rec(Some(b"k".to_vec())), rec(None)],
        BatchProducer::default(),
    );
    assert_eq!(log.append(&mut bad, 0, 0).unwrap_err().error_code(), 87);
    let mut recs = records(&[0, 1]);
    recs[1].key = None;
    let mut bad = encode(&recs, Compression::Lz4);
    assert_eq!(log.append(&mut bad, 0, 0).unwrap_err().error_code(), 87);
    assert_eq!(log.log_end_offset(), 1);
}

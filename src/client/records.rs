//! Records as the client sees them, and the bridge to kafka-protocol's
//! RecordBatch codec (encode for produce, decode for fetch).

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::error::ClientError;

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProducerRecord {
    pub topic: String,
    /// Explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time in ms since the epoch; `None` means now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn with_partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((name.into(), Some(value.into())));
        self
    }

    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// Upper estimate of the record's encoded size inside a batch (varint
    /// overheads counted at their maximum), used for batch.size accounting.
    pub fn size_estimate(&self) -> usize {
        let len = |b: &Option<Bytes>| b.as_ref().map_or(0, |b| b.len());
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + len(v) + 10)
            .sum();
        21 + len(&self.key) + len(&self.value) + 10 + headers
    }
}

/// A record read by the consumer.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// `compression.type` values Kafka accepts.
pub fn parse_compression(name: &str) -> Result<Compression, ClientError> {
    match name {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        other => Err(ClientError::Config(format!(
            "unknown compression.type '{other}' (none, gzip, snappy, lz4, zstd)"
        ))),
    }
}

/// Turn a producer record into the codec's record, at `index` in its batch.
pub fn to_wire(record: ProducerRecord, index: i32, timestamp: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: index as i64,
        sequence: -1,
        timestamp,
        key: record.key,
        value: record.value,
        headers: record
            .headers
            .into_iter()
            .map(|(k, v)| (StrBytes::from_string(k), v))
            .collect(),
    }
}

/// Identity of an idempotent producer, stamped on each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// Sequence of the batch's first record.
    pub base_sequence: i32,
}

/// Encode `records` (offsets 0..n) as exactly one RecordBatch v2.
pub fn encode_batch(
    records: &mut [Record],
    compression: Compression,
    identity: Option<ProducerIdentity>,
) -> Result<Bytes, ClientError> {
    // The codec splits batches where `offset - sequence` changes, so the
    // sequence of each record must move in step with its offset: base - 1 +
    // (offset + 1) keeps base_sequence = -1 for a non-idempotent producer.
    let (pid, epoch, base) = match identity {
        Some(i) => (i.producer_id, i.producer_epoch, i.base_sequence),
        None => (-1, -1, -1),
    };
    for r in records.iter_mut() {
        r.producer_id = pid;
        r.producer_epoch = epoch;
        r.sequence = base.wrapping_add(r.offset as i32);
    }
    let size: usize = records
        .iter()
        .map(|r| {
            r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()) + 32
        })
        .sum();
    let mut buf = BytesMut::with_capacity(61 + size);
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options)
        .map_err(|e| ClientError::Protocol(format!("encode record batch: {e}")))?;
    Ok(buf.freeze())
}

/// Decode the `records` bytes of one fetched partition.
///
/// Returns the records at or above `fetch_offset` (a batch may start below
/// it) with control records removed, and the offset to fetch next. A trailing
/// partial batch (the broker cut the response at max bytes) is left for the
/// next fetch.
///
/// The next offset follows each whole batch's header (base offset + last
/// offset delta + 1), not its last record: the log cleaner keeps a batch's
/// original last offset when it drops records from its tail, so a batch
/// can end past its last record. Going by records, a consumer positioned in
/// that tail would fetch the same batch forever.
pub fn decode_fetched(
    topic: &str,
    partition: i32,
    data: Bytes,
    fetch_offset: i64,
) -> Result<(Vec<ConsumerRecord>, i64), ClientError> {
    decode_fetched_filtered(topic, partition, data, fetch_offset, None)
}

/// One aborted transaction a read_committed fetch response lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AbortedRange {
    pub first_offset: i64,
    pub producer_id: i64,
}

/// Control record type of an ABORT marker (key `[version i16][type i16]`).
const CONTROL_TYPE_ABORT: i16 = 0;

/// Which producers' transactional records are being dropped, as Kafka's
/// consumer tracks it within one fetch response: an aborted transaction
/// starts dropping its producer's transactional batches at its first
/// offset, and that producer's ABORT marker stops it.
struct AbortFilter {
    /// Not yet reached, ascending by first offset.
    pending: std::collections::VecDeque<AbortedRange>,
    dropping: std::collections::BTreeSet<i64>,
}

impl AbortFilter {
    fn new(mut aborted: Vec<AbortedRange>) -> AbortFilter {
        aborted.sort();
        AbortFilter {
            pending: aborted.into(),
            dropping: Default::default(),
        }
    }

    /// Whether a record of a batch ending at `batch_last` is dropped; a
    /// control record is always dropped, and an ABORT ends its producer's
    /// aborted range.
    fn drops(&mut self, r: &Record, batch_last: i64) -> bool {
        if !r.transactional {
            return r.control;
        }
        while self
            .pending
            .front()
            .is_some_and(|t| t.first_offset <= batch_last)
        {
            let t = self.pending.pop_front().expect("front exists");
            self.dropping.insert(t.producer_id);
        }
        if r.control {
            let kind = r
                .key
                .as_ref()
                .filter(|k| k.len() >= 4)
                .map(|k| i16::from_be_bytes([k[2], k[3]]));
            if kind == Some(CONTROL_TYPE_ABORT) {
                self.dropping.remove(&r.producer_id);
            }
            return true;
        }
        self.dropping.contains(&r.producer_id)
    }
}

/// [`decode_fetched`] for either isolation level: with `aborted` (a
/// read_committed response's aborted transactions) the records of aborted
/// transactions are dropped too. Control records are never returned; the
/// position still moves past everything dropped.
pub fn decode_fetched_filtered(
    topic: &str,
    partition: i32,
    mut data: Bytes,
    fetch_offset: i64,
    aborted: Option<Vec<AbortedRange>>,
) -> Result<(Vec<ConsumerRecord>, i64), ClientError> {
    let mut filter = AbortFilter::new(aborted.unwrap_or_default());
    // Batch framing: baseOffset i64, batchLength i32 (bytes after this field).
    const LOG_OVERHEAD: usize = 12;
    let mut out: Vec<ConsumerRecord> = Vec::new();
    let mut next = fetch_offset;
    while data.len() >= LOG_OVERHEAD {
        let batch_len = (&data[8..12]).get_i32();
        if batch_len < 0 {
            return Err(ClientError::Protocol(format!(
                "negative batch length {batch_len}"
            )));
        }
        let total = LOG_OVERHEAD + batch_len as usize;
        if data.len() < total {
            break;
        }
        let mut batch = data.split_to(total);
        // v2 header: magic at byte 16, lastOffsetDelta (covered by the CRC)
        // at 23..27. kafka-protocol's RecordSet does not expose it.
        let mut batch_last = i64::MAX;
        if total >= 27 && batch[16] == 2 {
            let base = (&batch[0..8]).get_i64();
            let last_delta = (&batch[23..27]).get_i32();
            if last_delta >= 0 {
                batch_last = base.saturating_add(last_delta as i64);
                next = next.max(batch_last.saturating_add(1));
            }
        }
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| ClientError::Protocol(format!("decode record batch: {e}")))?;
        for r in set.records {
            if r.offset >= next {
                next = r.offset + 1;
            }
            let last = if batch_last == i64::MAX {
                r.offset
            } else {
                batch_last
            };
            if filter.drops(&r, last) || r.offset < fetch_offset {
                continue;
            }
            // Offsets in a partition only grow. Data that says otherwise is
            // damaged (a batch header the CRC does not cover, say): refuse it
            // rather than hand the caller records out of order.
            if let Some(last) = out.last() {
                if r.offset <= last.offset {
                    return Err(ClientError::Protocol(format!(
                        "{topic}-{partition}: fetched offsets go backwards ({} after {})",
                        r.offset, last.offset
                    )));
                }
            }
            out.push(ConsumerRecord {
                topic: topic.to_string(),
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                timestamp_type: r.timestamp_type,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            });
        }
    }
    Ok((out, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: i32, compression: Compression) -> Bytes {
        let mut records: Vec<Record> = (0..n)
            .map(|i| {
                to_wire(
                    ProducerRecord::new("t", format!("v{i}")).with_key(format!("k{i}")),
                    i,
                    1000 + i as i64,
                )
            })
            .collect();
        encode_batch(&mut records, compression, None).unwrap()
    }

    #[test]
    fn every_codec_round_trips_one_batch() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = batch(5, c);
            let (records, next) = decode_fetched("t", 0, bytes, 0).unwrap();
            assert_eq!(records.len(), 5, "{c:?}");
            assert_eq!(next, 5);
            assert_eq!(records[3].value.as_deref(), Some(&b"v3"[..]));
            assert_eq!(records[3].key.as_deref(), Some(&b"k3"[..]));
            assert_eq!(records[3].timestamp, 1003);
        }
    }

    #[test]
    fn skips_below_fetch_offset_and_keeps_partial_tail() {
        let one = batch(4, Compression::None);
        let mut two = BytesMut::from(&one[..]);
        two.extend_from_slice(&one[..one.len() - 3]);
        let (records, next) = decode_fetched("t", 0, two.freeze(), 2).unwrap();
        assert_eq!(
            records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(next, 4);
    }

    /// The log cleaner dropped the tail of a batch (offsets 2 and 3) and
    /// kept its header's last offset, as Kafka's does: a consumer at offset
    /// 2 gets that batch, no record from it, and must move on to 4 (it once
    /// fetched offset 2 forever, "larger than max.partition.fetch.bytes",
    /// found by scenarios/compaction-crash.toml).
    #[test]
    fn a_batch_whose_tail_was_cleaned_moves_the_position_past_it() {
        use crate::log::batch::{decode_records, reencode, BatchHeader};
        for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
            let full = batch(4, c);
            let header = BatchHeader::parse(&full).unwrap();
            let mut kept = decode_records(&full).unwrap();
            kept.truncate(2);
            let cleaned = reencode(&header, &kept, header.compression()).unwrap();
            let (records, next) = decode_fetched("t", 0, Bytes::from(cleaned.clone()), 0).unwrap();
            assert_eq!(records.len(), 2, "{c:?}");
            assert_eq!(next, 4, "{c:?}: the position follows the header");
            let (records, next) = decode_fetched("t", 0, Bytes::from(cleaned), 2).unwrap();
            assert!(records.is_empty(), "{c:?}");
            assert_eq!(next, 4, "{c:?}: a position in the cleaned tail moves on");
        }
    }

    /// Transactional batch of values `vals` by producer `pid` at `base`.
    fn txn_batch(pid: i64, base: i64, vals: &[&str]) -> Vec<u8> {
        use crate::log::batch::{build_batch, set_base_offset, BatchProducer, SimpleRecord};
        let records: Vec<SimpleRecord> = vals
            .iter()
            .map(|v| SimpleRecord {
                value: Some(v.as_bytes().to_vec()),
                timestamp: 1,
                ..SimpleRecord::default()
            })
            .collect();
        let mut b = build_batch(
            &records,
            BatchProducer {
                producer_id: pid,
                producer_epoch: 0,
                base_sequence: 0,
                transactional: true,
            },
        );
        set_base_offset(&mut b, base);
        b
    }

    fn marker(pid: i64, base: i64, commit: bool) -> Vec<u8> {
        use crate::log::batch::set_base_offset;
        use crate::log::txn::{build_marker, TxnMarker};
        let mut b = build_marker(
            pid,
            0,
            TxnMarker {
                commit,
                coordinator_epoch: 3,
            },
            1,
        );
        set_base_offset(&mut b, base);
        b
    }

    fn values(records: &[ConsumerRecord]) -> Vec<(i64, String)> {
        records
            .iter()
            .map(|r| {
                let v = r.value.as_deref().unwrap_or_default();
                (r.offset, String::from_utf8_lossy(v).into_owned())
            })
            .collect()
    }

    /// Producer 1 aborts (a@0, b@2, ABORT@4), producer 2 commits
    /// (x@1, y@3, COMMIT@5) interleaved with it, then producer 1 writes
    /// again in a new transaction (c@6) that commits (COMMIT@7).
    fn interleaved() -> Bytes {
        let mut all = Vec::new();
        for b in [
            txn_batch(1, 0, &["a"]),
            txn_batch(2, 1, &["x"]),
            txn_batch(1, 2, &["b"]),
            txn_batch(2, 3, &["y"]),
            marker(1, 4, false),
            marker(2, 5, true),
            txn_batch(1, 6, &["c"]),
            marker(1, 7, true),
        ] {
            all.extend_from_slice(&b);
        }
        Bytes::from(all)
    }

    #[test]
    fn read_committed_drops_an_aborted_transaction_up_to_its_marker() {
        let aborted = vec![AbortedRange {
            first_offset: 0,
            producer_id: 1,
        }];
        let (records, next) =
            decode_fetched_filtered("t", 0, interleaved(), 0, Some(aborted)).unwrap();
        assert_eq!(
            values(&records),
            vec![(1, "x".into()), (3, "y".into()), (6, "c".into())],
            "the aborted producer's later, committed transaction is kept"
        );
        assert_eq!(next, 8, "the position moves past the markers");
    }

    #[test]
    fn an_aborted_range_starts_at_its_first_offset() {
        // The abort listed starts at 2: producer 1's record at 0 belongs to
        // an earlier (committed) transaction and is kept.
        let aborted = vec![AbortedRange {
            first_offset: 2,
            producer_id: 1,
        }];
        let (records, _) =
            decode_fetched_filtered("t", 0, interleaved(), 0, Some(aborted)).unwrap();
        assert_eq!(
            values(&records),
            vec![
                (0, "a".into()),
                (1, "x".into()),
                (3, "y".into()),
                (6, "c".into())
            ]
        );
    }

    #[test]
    fn read_uncommitted_keeps_aborted_data_but_never_control_records() {
        let (records, next) = decode_fetched("t", 0, interleaved(), 0).unwrap();
        assert_eq!(
            values(&records),
            vec![
                (0, "a".into()),
                (1, "x".into()),
                (2, "b".into()),
                (3, "y".into()),
                (6, "c".into())
            ]
        );
        assert_eq!(next, 8);
        // A fetch of only a marker hands nothing over and still moves on.
        let (records, next) =
            decode_fetched_filtered("t", 0, Bytes::from(marker(1, 4, false)), 4, Some(vec![]))
                .unwrap();
        assert!(records.is_empty());
        assert_eq!(next, 5);
    }

    #[test]
    fn idempotent_batch_is_one_batch() {
        let mut records: Vec<Record> = (0..3)
            .map(|i| to_wire(ProducerRecord::new("t", "x"), i, 1))
            .collect();
        let id = ProducerIdentity {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: 10,
        };
        let bytes = encode_batch(&mut records, Compression::None, Some(id)).unwrap();
        let info = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].base_sequence, 10);
        assert_eq!(info[0].producer_id, 7);
        let mut plain: Vec<Record> = (0..3)
            .map(|i| to_wire(ProducerRecord::new("t", "x"), i, 1))
            .collect();
        let bytes = encode_batch(&mut plain, Compression::None, None).unwrap();
        let info = RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].base_sequence, -1);
    }
}

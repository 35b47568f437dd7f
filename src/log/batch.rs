//! RecordBatch v2 header: parsing, validation and in-place patching.
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12,
//! magic i8 @16, crc u32 @17 (CRC32C of bytes 21..end), attributes i16 @21,
//! lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35,
//! producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53, recordCount i32 @57,
//! records @61.
//!
//! The broker never re-encodes records: it checks the header and CRC, patches
//! the base offset and leader epoch (outside the CRC), and, under
//! LogAppendTime, the max timestamp and one attribute bit (inside the CRC, so
//! the CRC is recomputed). Everything here is O(header) except the CRC, which is
//! O(batch) and needs no record parsing.

use std::ops::Range;

use super::LogError;

/// Size of the RecordBatch v2 header.
pub const HEADER_BYTES: usize = 61;

/// Bytes before `batchLength` counts: baseOffset (8) + batchLength (4).
pub const LOG_OVERHEAD: usize = 12;

/// The only record format Weir stores.
pub const MAGIC_V2: i8 = 2;

/// The CRC covers everything from the attributes to the end of the batch.
pub const CRC_START: usize = 21;

const OFF_BASE_OFFSET: usize = 0;
const OFF_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORD_COUNT: usize = 57;

/// Attribute bits 0-2: compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit 3: timestamp type (0 CreateTime, 1 LogAppendTime).
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit 4: the batch is part of a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit 5: the batch holds a control record (transaction marker).
pub const ATTR_CONTROL: i16 = 0x20;

/// Highest compression codec id Kafka defines (zstd).
const COMPRESSION_CODEC_MAX: i16 = 4;

/// "No sequence" / "no producer" sentinels, as in Kafka.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_SEQUENCE: i32 = -1;

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// The parsed 61-byte header of one batch. A plain value, so scans over a file
/// can keep it after the bytes are gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parse a header from the first [`HEADER_BYTES`] of `buf`. Checks only
    /// what the header alone can tell: enough bytes, magic 2 and a batchLength
    /// that at least covers the header. Does not check the CRC.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, LogError> {
        if buf.len() < HEADER_BYTES {
            return Err(LogError::CorruptMessage(format!(
                "batch header needs {HEADER_BYTES} bytes, have {}",
                buf.len()
            )));
        }
        let magic = buf[OFF_MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(LogError::InvalidRecord(format!(
                "record batch magic {magic}, only magic 2 is supported"
            )));
        }
        let batch_length = be_i32(buf, OFF_LENGTH);
        if batch_length < (HEADER_BYTES - LOG_OVERHEAD) as i32 {
            return Err(LogError::CorruptMessage(format!(
                "batchLength {batch_length} is shorter than the batch header"
            )));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, OFF_BASE_OFFSET),
            batch_length,
            partition_leader_epoch: be_i32(buf, OFF_LEADER_EPOCH),
            magic,
            crc: be_u32(buf, OFF_CRC),
            attributes: be_i16(buf, OFF_ATTRIBUTES),
            last_offset_delta: be_i32(buf, OFF_LAST_OFFSET_DELTA),
            base_timestamp: be_i64(buf, OFF_BASE_TIMESTAMP),
            max_timestamp: be_i64(buf, OFF_MAX_TIMESTAMP),
            producer_id: be_i64(buf, OFF_PRODUCER_ID),
            producer_epoch: be_i16(buf, OFF_PRODUCER_EPOCH),
            base_sequence: be_i32(buf, OFF_BASE_SEQUENCE),
            record_count: be_i32(buf, OFF_RECORD_COUNT),
        })
    }

    /// Whole size of the batch in bytes, header included.
    pub fn total_size(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the batch's last record: base + lastOffsetDelta.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Offset one past the batch's last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec id (attribute bits 0-2).
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }

    /// Whether the timestamp type is LogAppendTime (attribute bit 3).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// Attribute bit 4.
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Attribute bit 5.
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Whether the batch carries an idempotent/transactional producer id.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the batch's last record, wrapping at i32::MAX as Kafka does.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// Check the header fields that must hold for a batch a producer sends:
    /// known codec, non-empty, recordCount consistent with lastOffsetDelta,
    /// transactional only with a producer id.
    pub fn validate_fields(&self) -> Result<(), LogError> {
        if self.compression() > COMPRESSION_CODEC_MAX {
            return Err(LogError::CorruptMessage(format!(
                "unknown compression codec {}",
                self.compression()
            )));
        }
        if self.record_count <= 0 {
            return Err(LogError::InvalidRecord(format!(
                "record batch holds {} records",
                self.record_count
            )));
        }
        // Producers always send lastOffsetDelta = count - 1 for magic 2;
        // anything else would make offsets disagree with the records.
        if self.last_offset_delta as i64 != self.record_count as i64 - 1 {
            return Err(LogError::InvalidRecord(format!(
                "recordCount {} does not match lastOffsetDelta {}",
                self.record_count, self.last_offset_delta
            )));
        }
        if self.is_transactional() && !self.has_producer_id() {
            return Err(LogError::InvalidRecord(
                "transactional batch without a producer id".into(),
            ));
        }
        Ok(())
    }
}

/// `seq + delta`, wrapping past i32::MAX to 0 as Kafka's sequence numbers do.
pub fn increment_sequence(seq: i32, delta: i32) -> i32 {
    if seq > i32::MAX - delta {
        delta - (i32::MAX - seq) - 1
    } else {
        seq + delta
    }
}

/// CRC32C of a whole batch's CRC-covered bytes (21..end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// Parse and fully check one batch occupying exactly `batch`: header, length
/// consistent with the buffer, CRC32C.
pub fn validate_batch(batch: &[u8]) -> Result<BatchHeader, LogError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_size() != batch.len() {
        return Err(LogError::CorruptMessage(format!(
            "batchLength says {} bytes, buffer holds {}",
            header.total_size(),
            batch.len()
        )));
    }
    let crc = compute_crc(batch);
    if crc != header.crc {
        return Err(LogError::CorruptMessage(format!(
            "CRC32C mismatch: stored {:#010x}, computed {crc:#010x}",
            header.crc
        )));
    }
    Ok(header)
}

/// Size of the batch starting at `buf[0]`, from its first 12 bytes, if the
/// buffer is long enough to say and the length is sane. Used to walk buffers
/// of consecutive batches without parsing further.
pub fn batch_size_at(buf: &[u8]) -> Option<usize> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let len = be_i32(buf, OFF_LENGTH);
    if len < (HEADER_BYTES - LOG_OVERHEAD) as i32 {
        return None;
    }
    Some(len as usize + LOG_OVERHEAD)
}

/// Split a produce buffer (a Produce request's records field) into its
/// batches. Every byte must belong to a whole batch; each batch is validated
/// (header, length, CRC). Returns each batch's range and header.
pub fn split_batches(buf: &[u8]) -> Result<Vec<(Range<usize>, BatchHeader)>, LogError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let size = batch_size_at(rest).ok_or_else(|| {
            LogError::CorruptMessage(format!("truncated or bad batch length at byte {pos}"))
        })?;
        if size > rest.len() {
            return Err(LogError::CorruptMessage(format!(
                "batch at byte {pos} claims {size} bytes, only {} remain",
                rest.len()
            )));
        }
        let header = validate_batch(&rest[..size])?;
        out.push((pos..pos + size, header));
        pos += size;
    }
    Ok(out)
}

/// Set the base offset in place (not CRC-covered).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Set the partition leader epoch in place (not CRC-covered).
/// Replace the attributes and recompute the CRC (building control batches).
pub fn set_attributes(batch: &mut [u8], attributes: i16) {
    batch[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Stamp the batch with LogAppendTime: maxTimestamp = `now_ms`, attribute bit 3
/// set, CRC recomputed (both fields are CRC-covered).
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    batch[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let attrs = be_i16(batch, OFF_ATTRIBUTES) | ATTR_LOG_APPEND_TIME;
    batch[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    let crc = compute_crc(batch);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The kafka-protocol codec for a batch codec id (attribute bits 0-2).
pub fn compression_of(codec: i16) -> Result<kafka_protocol::records::Compression, LogError> {
    use kafka_protocol::records::Compression;
    Ok(match codec {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        c => {
            return Err(LogError::CorruptMessage(format!(
                "unknown compression codec {c}"
            )))
        }
    })
}

/// Re-encode `records` (a non-empty subset, in offset order, of the records
/// of the batch whose header is `orig`) as one batch compressed with
/// `codec`, with kafka-protocol's RecordBatchEncoder. Each record keeps its
/// offset; the header keeps what Kafka's cleaner keeps: the batch's last
/// offset (lastOffsetDelta is stretched over dropped tail records, so
/// producer state rebuilt from the log sees the same last sequence), the
/// producer id, epoch and (shifted) base sequence, the partition leader
/// epoch, the transactional/control bits and the LogAppendTime stamp.
///
/// Known loss: kafka-protocol keeps record headers in a map, so a record
/// with repeated header keys keeps only the last value of each.
pub fn reencode(
    orig: &BatchHeader,
    records: &[kafka_protocol::records::Record],
    codec: i16,
) -> Result<Vec<u8>, LogError> {
    use kafka_protocol::records::{RecordBatchEncoder, RecordEncodeOptions};
    assert!(!records.is_empty(), "reencode needs at least one record");
    let mut out = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut out,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: compression_of(codec)?,
        },
    )
    .map_err(|e| LogError::InvalidRecord(format!("cannot re-encode records: {e}")))?;
    let mut b = out.to_vec();
    let h = BatchHeader::parse(&b)?;
    if h.total_size() != b.len() {
        return Err(LogError::InvalidRecord(
            "re-encoding split the records over several batches".into(),
        ));
    }
    let new_base = h.base_offset;
    assert!(
        new_base >= orig.base_offset && orig.last_offset() >= new_base,
        "reencode invariant: records lie inside the original batch"
    );
    let delta = (orig.last_offset() - new_base) as i32;
    b[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4].copy_from_slice(&delta.to_be_bytes());
    let seq = if orig.base_sequence < 0 {
        NO_SEQUENCE
    } else {
        increment_sequence(orig.base_sequence, (new_base - orig.base_offset) as i32)
    };
    b[OFF_BASE_SEQUENCE..OFF_BASE_SEQUENCE + 4].copy_from_slice(&seq.to_be_bytes());
    b[OFF_PRODUCER_ID..OFF_PRODUCER_ID + 8].copy_from_slice(&orig.producer_id.to_be_bytes());
    b[OFF_PRODUCER_EPOCH..OFF_PRODUCER_EPOCH + 2]
        .copy_from_slice(&orig.producer_epoch.to_be_bytes());
    // The encoder knows nothing of the timestamp type: restore it.
    let keep_bits = ATTR_LOG_APPEND_TIME | ATTR_TRANSACTIONAL | ATTR_CONTROL;
    let attrs = (be_i16(&b, OFF_ATTRIBUTES) & !keep_bits) | (orig.attributes & keep_bits);
    b[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    if orig.is_log_append_time() {
        b[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8]
            .copy_from_slice(&orig.max_timestamp.to_be_bytes());
    }
    set_partition_leader_epoch(&mut b, orig.partition_leader_epoch);
    let crc = compute_crc(&b);
    b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(b)
}

/// Decode every record of one whole batch (decompressing), with kafka-protocol.
pub fn decode_records(batch: &[u8]) -> Result<Vec<kafka_protocol::records::Record>, LogError> {
    let mut bytes = bytes::Bytes::copy_from_slice(batch);
    kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes)
        .map(|set| set.records)
        .map_err(|e| LogError::CorruptMessage(format!("cannot decode records: {e}")))
}

/// One record for [`build_batch`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimpleRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: i64,
}

/// Producer fields of a batch built by [`build_batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub transactional: bool,
}

impl Default for BatchProducer {
    fn default() -> Self {
        BatchProducer {
            producer_id: NO_PRODUCER_ID,
            producer_epoch: -1,
            base_sequence: NO_SEQUENCE,
            transactional: false,
        }
    }
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    // Zig-zag, then base-128 little-endian groups, as Kafka's varlong.
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Build one uncompressed CreateTime RecordBatch v2 with base offset 0, for
/// tests and tools. (Clients use kafka-protocol's RecordBatchEncoder.)
pub fn build_batch(records: &[SimpleRecord], producer: BatchProducer) -> Vec<u8> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let base_ts = records.iter().map(|r| r.timestamp).min().unwrap_or(-1);
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
    let mut body = Vec::new();
    let mut rec = Vec::new();
    for (i, r) in records.iter().enumerate() {
        rec.clear();
        rec.push(0); // record attributes, unused
        put_varint(&mut rec, r.timestamp - base_ts);
        put_varint(&mut rec, i as i64);
        put_bytes(&mut rec, r.key.as_deref());
        put_bytes(&mut rec, r.value.as_deref());
        put_varint(&mut rec, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_bytes(&mut rec, Some(k.as_bytes()));
            put_bytes(&mut rec, v.as_deref());
        }
        put_varint(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let mut b = Vec::with_capacity(HEADER_BYTES + body.len());
    let attributes: i16 = if producer.transactional {
        ATTR_TRANSACTIONAL
    } else {
        0
    };
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((HEADER_BYTES - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(MAGIC_V2 as u8);
    b.extend_from_slice(&0u32.to_be_bytes());
    b.extend_from_slice(&attributes.to_be_bytes());
    b.extend_from_slice(&((records.len() - 1) as i32).to_be_bytes());
    b.extend_from_slice(&base_ts.to_be_bytes());
    b.extend_from_slice(&max_ts.to_be_bytes());
    b.extend_from_slice(&producer.producer_id.to_be_bytes());
    b.extend_from_slice(&producer.producer_epoch.to_be_bytes());
    b.extend_from_slice(&producer.base_sequence.to_be_bytes());
    b.extend_from_slice(&(records.len() as i32).to_be_bytes());
    b.extend_from_slice(&body);
    let crc = compute_crc(&b);
    b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Record offsets and timestamps of one stored batch, decoding (and
/// decompressing) its records with kafka-protocol. Only for rare lookups
/// (ListOffsets by timestamp): the append and fetch paths never call it.
pub fn record_timestamps(batch: &[u8]) -> Result<Vec<(i64, i64)>, LogError> {
    let header = validate_batch(batch)?;
    if header.is_log_append_time() {
        // Every record carries the batch's maxTimestamp under LogAppendTime.
        return Ok((header.base_offset..=header.last_offset())
            .map(|o| (o, header.max_timestamp))
            .collect());
    }
    let mut bytes = bytes::Bytes::copy_from_slice(batch);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes)
        .map_err(|e| LogError::CorruptMessage(format!("cannot decode records: {e}")))?;
    Ok(set
        .records
        .iter()
        .map(|r| (r.offset, r.timestamp))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ts: i64, v: &str) -> SimpleRecord {
        SimpleRecord {
            key: Some(b"k".to_vec()),
            value: Some(v.as_bytes().to_vec()),
            headers: vec![("h".into(), Some(b"x".to_vec()))],
            timestamp: ts,
        }
    }

    #[test]
    fn build_parse_roundtrip() {
        let b = build_batch(
            &[rec(100, "a"), rec(105, "bb"), rec(103, "c")],
            BatchProducer {
                producer_id: 7,
                producer_epoch: 2,
                base_sequence: 10,
                transactional: true,
            },
        );
        let h = validate_batch(&b).unwrap();
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.total_size(), b.len());
        assert_eq!(h.record_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.base_timestamp, 100);
        assert_eq!(h.max_timestamp, 105);
        assert_eq!(h.producer_id, 7);
        assert_eq!(h.producer_epoch, 2);
        assert_eq!(h.base_sequence, 10);
        assert_eq!(h.last_sequence(), 12);
        assert!(h.is_transactional());
        assert!(!h.is_control());
        assert_eq!(h.compression(), 0);
        h.validate_fields().unwrap();
        // kafka-protocol agrees with our encoding.
        let ts = record_timestamps(&b).unwrap();
        assert_eq!(ts, vec![(0, 100), (1, 105), (2, 103)]);
    }

    #[test]
    fn kafka_protocol_encoded_batch_validates() {
        use kafka_protocol::records::*;
        let records: Vec<Record> = (0..3)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i,
                sequence: -1,
                timestamp: 1000 + i,
                key: None,
                value: Some(bytes::Bytes::from_static(b"value")),
                headers: Default::default(),
            })
            .collect();
        for compression in [Compression::None, Compression::Gzip, Compression::Lz4] {
            let mut buf = bytes::BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &records,
                &RecordEncodeOptions {
                    version: 2,
                    compression,
                },
            )
            .unwrap();
            // The encoder may split the records over several batches.
            let mut seen = Vec::new();
            for (range, h) in split_batches(&buf).unwrap() {
                h.validate_fields().unwrap();
                seen.extend(record_timestamps(&buf[range]).unwrap());
            }
            assert_eq!(seen, vec![(0, 1000), (1, 1001), (2, 1002)]);
        }
    }

    #[test]
    fn patching_offset_and_epoch_keeps_crc_valid() {
        let mut b = build_batch(&[rec(1, "a")], BatchProducer::default());
        set_base_offset(&mut b, 12345);
        set_partition_leader_epoch(&mut b, 9);
        let h = validate_batch(&b).unwrap();
        assert_eq!(h.base_offset, 12345);
        assert_eq!(h.partition_leader_epoch, 9);
        assert_eq!(h.last_offset(), 12345);
    }

    #[test]
    fn log_append_time_recomputes_crc() {
        let mut b = build_batch(&[rec(1, "a"), rec(2, "b")], BatchProducer::default());
        set_log_append_time(&mut b, 999);
        let h = validate_batch(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 999);
        assert_eq!(h.base_timestamp, 1);
        assert_eq!(record_timestamps(&b).unwrap(), vec![(0, 999), (1, 999)]);
    }

    #[test]
    fn corrupt_inputs_are_errors_not_panics() {
        let b = build_batch(&[rec(1, "abc")], BatchProducer::default());
        // Bit flip inside the CRC-covered region.
        let mut bad = b.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(
            validate_batch(&bad),
            Err(LogError::CorruptMessage(_))
        ));
        // Wrong magic.
        let mut bad = b.clone();
        bad[OFF_MAGIC] = 1;
        assert!(matches!(
            validate_batch(&bad),
            Err(LogError::InvalidRecord(_))
        ));
        // Truncated.
        for cut in [0, 5, 20, 60, b.len() - 1] {
            assert!(split_batches(&b[..cut]).is_err() || cut == 0);
        }
        // Length longer than the buffer.
        let mut bad = b.clone();
        bad.extend_from_slice(&[0; 3]);
        assert!(split_batches(&bad).is_err());
        // Inconsistent record count.
        let mut bad = b.clone();
        bad[OFF_RECORD_COUNT..OFF_RECORD_COUNT + 4].copy_from_slice(&5i32.to_be_bytes());
        let crc = compute_crc(&bad);
        bad[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        let h = validate_batch(&bad).unwrap();
        assert!(matches!(
            h.validate_fields(),
            Err(LogError::InvalidRecord(_))
        ));
        // Garbage of every short length.
        for n in 0..80 {
            let g = vec![0xffu8; n];
            let _ = split_batches(&g);
            let _ = BatchHeader::parse(&g);
        }
    }

    #[test]
    fn split_multiple_batches() {
        let a = build_batch(&[rec(1, "a")], BatchProducer::default());
        let b = build_batch(&[rec(2, "b"), rec(3, "c")], BatchProducer::default());
        let mut buf = a.clone();
        buf.extend_from_slice(&b);
        let parts = split_batches(&buf).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, 0..a.len());
        assert_eq!(parts[1].0, a.len()..buf.len());
        assert_eq!(parts[1].1.record_count, 2);
    }

    #[test]
    fn sequence_wraps() {
        assert_eq!(increment_sequence(5, 3), 8);
        assert_eq!(increment_sequence(i32::MAX, 0), i32::MAX);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn record() -> impl Strategy<Value = SimpleRecord> {
            (
                prop::option::of(prop::collection::vec(any::<u8>(), 0..20)),
                prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
                prop::collection::vec(
                    (
                        "[a-z]{0,5}",
                        prop::option::of(prop::collection::vec(any::<u8>(), 0..5)),
                    ),
                    0..3,
                ),
                0i64..1_000_000,
            )
                .prop_map(|(key, value, headers, timestamp)| SimpleRecord {
                    key,
                    value,
                    headers,
                    timestamp,
                })
        }

        proptest! {
            #[test]
            fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
                let _ = split_batches(&bytes);
                let _ = BatchHeader::parse(&bytes);
                let _ = validate_batch(&bytes);
                let _ = record_timestamps(&bytes);
            }

            #[test]
            fn built_batches_decode_with_kafka_protocol(
                records in prop::collection::vec(record(), 1..10),
                base in 0i64..1 << 40,
            ) {
                let mut b = build_batch(&records, BatchProducer::default());
                set_base_offset(&mut b, base);
                let h = validate_batch(&b).unwrap();
                h.validate_fields().unwrap();
                prop_assert_eq!(h.record_count as usize, records.len());
                let mut bytes = bytes::Bytes::from(b);
                let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
                prop_assert_eq!(set.records.len(), records.len());
                for (i, (got, want)) in set.records.iter().zip(&records).enumerate() {
                    prop_assert_eq!(got.offset, base + i as i64);
                    prop_assert_eq!(got.timestamp, want.timestamp);
                    prop_assert_eq!(got.key.as_deref(), want.key.as_deref());
                    prop_assert_eq!(got.value.as_deref(), want.value.as_deref());
                    // kafka-protocol keeps headers in a map: repeated keys collapse.
                    let mut keys: Vec<&String> = want.headers.iter().map(|(k, _)| k).collect();
                    keys.sort();
                    keys.dedup();
                    prop_assert_eq!(got.headers.len(), keys.len());
                }
            }
        }
    }
}

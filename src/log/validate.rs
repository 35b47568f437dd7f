//! Append-time checks of compressed batches and compression.type conversion.
//!
//! An uncompressed batch is checked from its header and CRC alone (batch.rs):
//! the hot path does no per-record work. A compressed batch hides its record
//! count and offsets from that check, so, as Kafka's LogValidator does, it is
//! decompressed and walked: the records must frame exactly the decompressed
//! bytes (no trailing data), their number must equal recordCount (and so
//! lastOffsetDelta + 1, checked by `validate_fields`), their offset deltas
//! must be 0..n-1, and every record must decode. A failure is InvalidRecord
//! (87) for wrong counts or offsets and CorruptMessage (2) for bytes that do
//! not decompress or decode; either way nothing of the append is written.
//!
//! Under cleanup.policy compact every record must have a key, as in Kafka;
//! only compacted topics pay for that record walk on uncompressed batches.

use bytes::{Buf, Bytes};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::{Record, RecordBatchDecoder};

use super::batch::{self, BatchHeader, HEADER_BYTES};
use super::LogError;

fn grab<D: Decompressor<Bytes>>(b: &mut Bytes) -> anyhow::Result<Bytes> {
    D::decompress(b, |out| Ok(out.copy_to_bytes(out.remaining())))
}

/// The decompressed record bytes of a (CRC-checked) compressed batch.
fn decompress(batch: &[u8], codec: i16) -> Result<Bytes, LogError> {
    let mut body = Bytes::copy_from_slice(&batch[HEADER_BYTES..]);
    let r = match codec {
        1 => grab::<Gzip>(&mut body),
        2 => grab::<Snappy>(&mut body),
        3 => grab::<Lz4>(&mut body),
        4 => grab::<Zstd>(&mut body),
        c => {
            return Err(LogError::CorruptMessage(format!(
                "unknown compression codec {c}"
            )))
        }
    };
    r.map_err(|e| LogError::CorruptMessage(format!("cannot decompress records: {e}")))
}

/// Read a zig-zag varint (Kafka's varint) from `b` at `*pos`.
fn varint(b: &[u8], pos: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        z |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
        }
    }
    None
}

/// Count the length-prefixed records framing `body` exactly; None if the
/// lengths do not tile it.
fn count_records(body: &[u8]) -> Option<usize> {
    let mut pos = 0;
    let mut n = 0;
    while pos < body.len() {
        let len = varint(body, &mut pos)?;
        if len < 0 {
            return None;
        }
        pos = pos.checked_add(len as usize)?;
        n += 1;
    }
    (pos == body.len()).then_some(n)
}

/// Check a compressed batch as Kafka does on append (see the module doc)
/// and return its decoded records. `batch` is one whole batch whose CRC and
/// header fields were already checked.
pub fn validate_compressed(batch: &[u8], h: &BatchHeader) -> Result<Vec<Record>, LogError> {
    debug_assert!(h.compression() != 0, "only compressed batches come here");
    let body = decompress(batch, h.compression())?;
    let framed = count_records(&body).ok_or_else(|| {
        LogError::CorruptMessage("compressed records do not frame their bytes".into())
    })?;
    if framed != h.record_count as usize {
        return Err(LogError::InvalidRecord(format!(
            "batch claims {} records, holds {framed}",
            h.record_count
        )));
    }
    let mut whole = Bytes::copy_from_slice(batch);
    let decoded = body.clone();
    let set = RecordBatchDecoder::decode_with_custom_compression(
        &mut whole,
        Some(|_: &mut Bytes, _| Ok(decoded.clone())),
    )
    .map_err(|e| LogError::CorruptMessage(format!("cannot decode records: {e}")))?;
    for (i, r) in set.records.iter().enumerate() {
        if r.offset - h.base_offset != i as i64 {
            return Err(LogError::InvalidRecord(format!(
                "record {i} has offset delta {}, expected {i}",
                r.offset - h.base_offset
            )));
        }
    }
    Ok(set.records)
}

/// Under compression.type = `codec`, the batch re-encoded with that codec,
/// or None when it already uses it. Control batches are left as they are.
pub fn maybe_recompress(
    batch: &[u8],
    h: &BatchHeader,
    codec: i16,
) -> Result<Option<Vec<u8>>, LogError> {
    if h.compression() == codec || h.is_control() {
        return Ok(None);
    }
    let records = if h.compression() != 0 {
        validate_compressed(batch, h)?
    } else {
        batch::decode_records(batch)?
    };
    if records.len() != h.record_count as usize {
        return Err(LogError::InvalidRecord(format!(
            "batch claims {} records, holds {}",
            h.record_count,
            records.len()
        )));
    }
    Ok(Some(batch::reencode(h, &records, codec)?))
}

/// Kafka refuses keyless records on a compacted topic (the cleaner could
/// never supersede them). Control records carry keys of their own.
pub fn require_keys(h: &BatchHeader, records: &[Record]) -> Result<(), LogError> {
    if h.is_control() {
        return Ok(());
    }
    if records.iter().any(|r| r.key.is_none()) {
        return Err(LogError::InvalidRecord(
            "compacted topic cannot accept a record without a key".into(),
        ));
    }
    Ok(())
}

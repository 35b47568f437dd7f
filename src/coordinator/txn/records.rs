//! The key/value layout of `__transaction_state` (Kafka's
//! TransactionLogKey / TransactionLogValue, version 0).
//!
//! key:   version i16 (0), transactional id (i16-length string)
//! value: version i16 (0), producer id i64, producer epoch i16, timeout i32,
//!        status i8, partitions [topic string, [partition i32]], last update
//!        timestamp i64, start timestamp i64. No value = tombstone.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::{TxnMetadata, TxnState};

/// Why a stored record did not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record truncated")]
    Truncated,
    #[error("unknown key version {0}")]
    KeyVersion(i16),
    #[error("unknown value version {0}")]
    ValueVersion(i16),
    #[error("unknown transaction status {0}")]
    Status(i8),
    #[error("string is not UTF-8")]
    Utf8,
    #[error("record has no key")]
    NoKey,
}

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    put_str(&mut b, transactional_id);
    b.freeze()
}

pub fn encode_value(m: &TxnMetadata) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i64(m.producer_id);
    b.put_i16(m.producer_epoch);
    b.put_i32(m.timeout_ms);
    b.put_i8(m.state.id());
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &m.partitions {
        by_topic.entry(t.as_str()).or_default().push(*p);
    }
    b.put_i32(by_topic.len() as i32);
    for (t, ps) in by_topic {
        put_str(&mut b, t);
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(p);
        }
    }
    b.put_i64(m.update_ms);
    b.put_i64(m.start_ms);
    b.freeze()
}

/// Decode one record: the transactional id and its value (None = tombstone).
/// Fields Kafka's v0 value does not store (last producer id/epoch) come back
/// as -1.
pub fn decode(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(String, Option<TxnMetadata>), RecordError> {
    let mut k = key.ok_or(RecordError::NoKey)?;
    let kv = get_i16(&mut k)?;
    if kv != 0 {
        return Err(RecordError::KeyVersion(kv));
    }
    let id = get_str(&mut k)?;
    let Some(mut v) = value else {
        return Ok((id, None));
    };
    let vv = get_i16(&mut v)?;
    if vv != 0 {
        return Err(RecordError::ValueVersion(vv));
    }
    let producer_id = get_i64(&mut v)?;
    let producer_epoch = get_i16(&mut v)?;
    let timeout_ms = get_i32(&mut v)?;
    let status = get_i8(&mut v)?;
    let state = TxnState::from_id(status).ok_or(RecordError::Status(status))?;
    let topics = get_i32(&mut v)?;
    let mut partitions = BTreeSet::new();
    for _ in 0..topics.max(0) {
        let t = get_str(&mut v)?;
        let n = get_i32(&mut v)?;
        for _ in 0..n.max(0) {
            partitions.insert((t.clone(), get_i32(&mut v)?));
        }
    }
    let update_ms = get_i64(&mut v)?;
    let start_ms = get_i64(&mut v)?;
    Ok((
        id.clone(),
        Some(TxnMetadata {
            transactional_id: id,
            producer_id,
            last_producer_id: -1,
            producer_epoch,
            last_producer_epoch: -1,
            timeout_ms,
            state,
            partitions,
            start_ms,
            update_ms,
        }),
    ))
}

fn put_str(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len().min(i16::MAX as usize) as i16);
    b.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn need(buf: &[u8], n: usize) -> Result<(), RecordError> {
    if buf.remaining() < n {
        Err(RecordError::Truncated)
    } else {
        Ok(())
    }
}

fn get_i8(buf: &mut &[u8]) -> Result<i8, RecordError> {
    need(buf, 1)?;
    Ok(buf.get_i8())
}
fn get_i16(buf: &mut &[u8]) -> Result<i16, RecordError> {
    need(buf, 2)?;
    Ok(buf.get_i16())
}
fn get_i32(buf: &mut &[u8]) -> Result<i32, RecordError> {
    need(buf, 4)?;
    Ok(buf.get_i32())
}
fn get_i64(buf: &mut &[u8]) -> Result<i64, RecordError> {
    need(buf, 8)?;
    Ok(buf.get_i64())
}
fn get_str(buf: &mut &[u8]) -> Result<String, RecordError> {
    let len = get_i16(buf)?;
    let len = usize::try_from(len).map_err(|_| RecordError::Truncated)?;
    need(buf, len)?;
    let s = std::str::from_utf8(&buf[..len])
        .map_err(|_| RecordError::Utf8)?
        .to_string();
    buf.advance(len);
    Ok(s)
}

//! The records of `__consumer_offsets`, in Kafka's own key/value layouts, so
//! the topic reads the same to Kafka tooling (kafka-protocol 0.18 ships the
//! request/response schemas but not these internal ones, hence the codec here).
//!
//! Keys (big-endian, strings as int16 length + UTF-8):
//! - offset commit, key version 1: group, topic, partition int32;
//! - group metadata, key version 2: group.
//!
//! Values (a null value is a tombstone: the offset or group is gone):
//! - offset commit value v3: offset int64, leader epoch int32, metadata
//!   string, commit timestamp int64;
//! - group metadata value v3: protocol type string, generation int32,
//!   protocol nullable string, leader nullable string, current state
//!   timestamp int64, members array (int32 count) of { member id, group
//!   instance id (nullable), client id, client host, rebalance timeout int32,
//!   session timeout int32, subscription bytes (int32 length), assignment bytes }.
//!
//! Decoding never panics: a record that does not parse is an error the loader
//! logs and skips (Kafka fails the load; a single-node broker would then have
//! no coordinator at all, which is worse).

use bytes::{Buf, BufMut, Bytes, BytesMut};

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

/// A committed offset as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One member in a group metadata record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's metadata as stored after each completed rebalance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// One record of `__consumer_offsets`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        value: Option<GroupValue>,
    },
}

/// Why a stored record did not decode.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record truncated")]
    Truncated,
    #[error("unknown key version {0}")]
    KeyVersion(i16),
    #[error("unknown value version {0}")]
    ValueVersion(i16),
    #[error("string is not UTF-8")]
    Utf8,
    #[error("record has no key")]
    NoKey,
}

impl GroupRecord {
    /// The group this record belongs to (it picks the partition).
    pub fn group(&self) -> &str {
        match self {
            GroupRecord::Offset { group, .. } | GroupRecord::Group { group, .. } => group,
        }
    }

    pub fn key(&self) -> Bytes {
        let mut b = BytesMut::new();
        match self {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                ..
            } => {
                b.put_i16(OFFSET_KEY_VERSION);
                put_str(&mut b, group);
                put_str(&mut b, topic);
                b.put_i32(*partition);
            }
            GroupRecord::Group { group, .. } => {
                b.put_i16(GROUP_KEY_VERSION);
                put_str(&mut b, group);
            }
        }
        b.freeze()
    }

    /// The value, None for a tombstone.
    pub fn value(&self) -> Option<Bytes> {
        let mut b = BytesMut::new();
        match self {
            GroupRecord::Offset { value, .. } => {
                let v = value.as_ref()?;
                b.put_i16(OFFSET_VALUE_VERSION);
                b.put_i64(v.offset);
                b.put_i32(v.leader_epoch);
                put_str(&mut b, &v.metadata);
                b.put_i64(v.commit_timestamp_ms);
            }
            GroupRecord::Group { value, .. } => {
                let v = value.as_ref()?;
                b.put_i16(GROUP_VALUE_VERSION);
                put_str(&mut b, &v.protocol_type);
                b.put_i32(v.generation);
                put_nullable_str(&mut b, v.protocol.as_deref());
                put_nullable_str(&mut b, v.leader.as_deref());
                b.put_i64(v.state_timestamp_ms);
                b.put_i32(v.members.len() as i32);
                for m in &v.members {
                    put_str(&mut b, &m.member_id);
                    put_nullable_str(&mut b, m.instance_id.as_deref());
                    put_str(&mut b, &m.client_id);
                    put_str(&mut b, &m.client_host);
                    b.put_i32(m.rebalance_timeout_ms);
                    b.put_i32(m.session_timeout_ms);
                    put_bytes(&mut b, &m.subscription);
                    put_bytes(&mut b, &m.assignment);
                }
            }
        }
        Some(b.freeze())
    }

    /// Decode a stored key and value.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<GroupRecord, RecordError> {
        let mut k = key.ok_or(RecordError::NoKey)?;
        let version = get_i16(&mut k)?;
        match version {
            0 | OFFSET_KEY_VERSION => {
                let group = get_str(&mut k)?;
                let topic = get_str(&mut k)?;
                let partition = get_i32(&mut k)?;
                let value = value.map(decode_offset_value).transpose()?;
                Ok(GroupRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                })
            }
            GROUP_KEY_VERSION => {
                let group = get_str(&mut k)?;
                let value = value.map(decode_group_value).transpose()?;
                Ok(GroupRecord::Group { group, value })
            }
            v => Err(RecordError::KeyVersion(v)),
        }
    }
}

fn decode_offset_value(mut v: &[u8]) -> Result<OffsetValue, RecordError> {
    let version = get_i16(&mut v)?;
    // v0: offset, metadata, commit ts; v1 adds an expire ts; v3 adds the
    // leader epoch and drops the expire ts. Older layouts are read for tools
    // that wrote them; Weir writes v3 only.
    let offset = get_i64(&mut v)?;
    let leader_epoch = if version >= 3 { get_i32(&mut v)? } else { -1 };
    let metadata = get_str(&mut v)?;
    let commit_timestamp_ms = get_i64(&mut v)?;
    if !(0..=OFFSET_VALUE_VERSION).contains(&version) {
        return Err(RecordError::ValueVersion(version));
    }
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn decode_group_value(mut v: &[u8]) -> Result<GroupValue, RecordError> {
    let version = get_i16(&mut v)?;
    if !(0..=GROUP_VALUE_VERSION).contains(&version) {
        return Err(RecordError::ValueVersion(version));
    }
    let protocol_type = get_str(&mut v)?;
    let generation = get_i32(&mut v)?;
    let protocol = get_nullable_str(&mut v)?;
    let leader = get_nullable_str(&mut v)?;
    let state_timestamp_ms = if version >= 2 { get_i64(&mut v)? } else { -1 };
    let count = get_i32(&mut v)?.max(0) as usize;
    // Each member takes at least 24 bytes: a lying count cannot allocate.
    let mut members = Vec::with_capacity(count.min(v.len() / 24 + 1));
    for _ in 0..count {
        let member_id = get_str(&mut v)?;
        let instance_id = if version >= 3 {
            get_nullable_str(&mut v)?
        } else {
            None
        };
        let client_id = get_str(&mut v)?;
        let client_host = get_str(&mut v)?;
        let rebalance_timeout_ms = if version >= 1 { get_i32(&mut v)? } else { -1 };
        let session_timeout_ms = get_i32(&mut v)?;
        let subscription = get_bytes(&mut v)?;
        let assignment = get_bytes(&mut v)?;
        members.push(MemberValue {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

fn put_str(b: &mut BytesMut, s: &str) {
    // Group ids, topics and member ids are far below 32 KiB; longer strings
    // are cut rather than written with a wrapped length.
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    b.put_i16(bytes.len() as i16);
    b.put_slice(bytes);
}

fn put_nullable_str(b: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(b, s),
        None => b.put_i16(-1),
    }
}

fn put_bytes(b: &mut BytesMut, v: &[u8]) {
    b.put_i32(v.len() as i32);
    b.put_slice(v);
}

fn need(buf: &[u8], n: usize) -> Result<(), RecordError> {
    if buf.remaining() < n {
        Err(RecordError::Truncated)
    } else {
        Ok(())
    }
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

fn get_nullable_str(buf: &mut &[u8]) -> Result<Option<String>, RecordError> {
    let len = get_i16(buf)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    need(buf, len)?;
    let s = std::str::from_utf8(&buf[..len]).map_err(|_| RecordError::Utf8)?;
    let s = s.to_string();
    buf.advance(len);
    Ok(Some(s))
}

fn get_str(buf: &mut &[u8]) -> Result<String, RecordError> {
    Ok(get_nullable_str(buf)?.unwrap_or_default())
}

fn get_bytes(buf: &mut &[u8]) -> Result<Bytes, RecordError> {
    let len = get_i32(buf)?;
    if len < 0 {
        return Ok(Bytes::new());
    }
    let len = len as usize;
    need(buf, len)?;
    let b = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    Ok(b)
}

/// Java's `String.hashCode` (over UTF-16 code units), which Kafka uses to
/// map a group to its `__consumer_offsets` partition.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `__consumer_offsets` partition of `group`: Kafka's
/// `Utils.abs(groupId.hashCode) % partitions` (abs(MIN_VALUE) is 0 there).
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    assert!(
        partitions > 0,
        "offsets topic invariant: at least one partition"
    );
    let h = java_string_hash(group);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(r: GroupRecord) {
        let key = r.key();
        let value = r.value();
        let back = GroupRecord::decode(Some(&key), value.as_deref()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn records_roundtrip() {
        roundtrip(GroupRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(OffsetValue {
                offset: 42,
                leader_epoch: 0,
                metadata: "m".into(),
                commit_timestamp_ms: 1234,
            }),
        });
        roundtrip(GroupRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: None,
        });
        roundtrip(GroupRecord::Group {
            group: "g".into(),
            value: Some(GroupValue {
                protocol_type: "consumer".into(),
                generation: 7,
                protocol: Some("range".into()),
                leader: Some("m1".into()),
                state_timestamp_ms: 99,
                members: vec![MemberValue {
                    member_id: "m1".into(),
                    instance_id: Some("i1".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 10_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        });
    }

    #[test]
    fn offset_key_layout_is_kafkas() {
        let r = GroupRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 1,
            value: None,
        };
        assert_eq!(&r.key()[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 1]);
    }

    #[test]
    fn garbage_never_panics() {
        for n in 0..40u8 {
            let junk: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            let _ = GroupRecord::decode(Some(&junk), Some(&junk));
        }
    }

    #[test]
    fn java_hash_matches_known_values() {
        // "hello".hashCode() == 99162322 in Java.
        assert_eq!(java_string_hash("hello"), 99_162_322);
        assert_eq!(java_string_hash(""), 0);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
    }
}

//! The consumer protocol's embedded payloads: the subscription a member
//! sends in JoinGroup metadata and the assignment the leader hands out in
//! SyncGroup. Both are a big-endian i16 version followed by the struct body
//! (ConsumerProtocolSubscription v0-3, ConsumerProtocolAssignment v0-3) as
//! kafka-protocol defines them.
//!
//! Decoding is lenient the way Kafka's is: a version newer than we know is
//! read as the newest we know (later versions only append fields), and
//! bytes that do not decode yield `None`, never a panic.

use std::collections::BTreeMap;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTp;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTp;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::{Assignment, Subscription, TopicPartition};

/// The newest version of both payloads we read and write.
pub const VERSION_MAX: i16 = 3;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// (topic, partitions) groups of a sorted partition list, in topic order.
fn by_topic(partitions: &[TopicPartition]) -> BTreeMap<&str, Vec<i32>> {
    let mut out: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in partitions {
        out.entry(t.as_str()).or_default().push(*p);
    }
    for ps in out.values_mut() {
        ps.sort_unstable();
        ps.dedup();
    }
    out
}

fn flatten(groups: impl IntoIterator<Item = (String, Vec<i32>)>) -> Vec<TopicPartition> {
    let mut out: Vec<TopicPartition> = groups
        .into_iter()
        .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Encode a subscription at the newest version (owned partitions,
/// generation and rack included).
pub fn encode_subscription(sub: &Subscription) -> Bytes {
    let body = ConsumerProtocolSubscription::default()
        .with_topics(sub.topics.iter().map(|t| s(t)).collect())
        .with_user_data(sub.user_data.clone())
        .with_owned_partitions(
            by_topic(&sub.owned_partitions)
                .into_iter()
                .map(|(t, ps)| {
                    OwnedTp::default()
                        .with_topic(TopicName(s(t)))
                        .with_partitions(ps)
                })
                .collect(),
        )
        .with_generation_id(sub.generation)
        .with_rack_id(sub.rack_id.as_deref().map(s));
    let mut b = BytesMut::new();
    b.extend_from_slice(&VERSION_MAX.to_be_bytes());
    // A struct built from valid strings and vectors always encodes.
    body.encode(&mut b, VERSION_MAX)
        .expect("encoding a well-formed subscription cannot fail");
    b.freeze()
}

/// Decode a subscription of any version; `None` for bytes that are not one.
pub fn decode_subscription(bytes: &Bytes) -> Option<Subscription> {
    let mut b = bytes.clone();
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16();
    if version < 0 {
        return None;
    }
    let sub = ConsumerProtocolSubscription::decode(&mut b, version.min(VERSION_MAX)).ok()?;
    let mut topics: Vec<String> = sub.topics.iter().map(|t| t.to_string()).collect();
    topics.sort();
    topics.dedup();
    Some(Subscription {
        topics,
        user_data: sub.user_data,
        owned_partitions: flatten(
            sub.owned_partitions
                .into_iter()
                .map(|tp| (tp.topic.0.to_string(), tp.partitions)),
        ),
        // Before v2 there is no generation: Kafka reads it as -1.
        generation: if version >= 2 { sub.generation_id } else { -1 },
        rack_id: sub.rack_id.map(|r| r.to_string()),
    })
}

/// Encode an assignment at the newest version.
pub fn encode_assignment(a: &Assignment) -> Bytes {
    let body = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(
            by_topic(&a.partitions)
                .into_iter()
                .map(|(t, ps)| {
                    AssignedTp::default()
                        .with_topic(TopicName(s(t)))
                        .with_partitions(ps)
                })
                .collect(),
        )
        .with_user_data(a.user_data.clone());
    let mut b = BytesMut::new();
    b.extend_from_slice(&VERSION_MAX.to_be_bytes());
    body.encode(&mut b, VERSION_MAX)
        .expect("encoding a well-formed assignment cannot fail");
    b.freeze()
}

/// Decode an assignment of any version; `None` for bytes that are not one.
/// An empty payload (a member the leader gave nothing) is an empty assignment.
pub fn decode_assignment(bytes: &Bytes) -> Option<Assignment> {
    if bytes.is_empty() {
        return Some(Assignment::default());
    }
    let mut b = bytes.clone();
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16();
    if version < 0 {
        return None;
    }
    let a = ConsumerProtocolAssignment::decode(&mut b, version.min(VERSION_MAX)).ok()?;
    Some(Assignment {
        partitions: flatten(
            a.assigned_partitions
                .into_iter()
                .map(|tp| (tp.topic.0.to_string(), tp.partitions)),
        ),
        user_data: a.user_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(t: &str, p: i32) -> TopicPartition {
        (t.to_string(), p)
    }

    #[test]
    fn subscription_roundtrips_at_v3() {
        let sub = Subscription {
            topics: vec!["a".into(), "b".into()],
            user_data: Some(Bytes::from_static(b"x")),
            owned_partitions: vec![tp("a", 0), tp("a", 2), tp("b", 1)],
            generation: 7,
            rack_id: Some("r1".into()),
        };
        assert_eq!(decode_subscription(&encode_subscription(&sub)), Some(sub));
    }

    #[test]
    fn old_subscription_versions_decode() {
        for version in 0..=1i16 {
            let body = ConsumerProtocolSubscription::default()
                .with_topics(vec![s("t")])
                .with_owned_partitions(vec![OwnedTp::default()
                    .with_topic(TopicName(s("t")))
                    .with_partitions(vec![3])]);
            let mut b = BytesMut::new();
            b.extend_from_slice(&version.to_be_bytes());
            body.encode(&mut b, version).unwrap();
            let got = decode_subscription(&b.freeze()).unwrap();
            assert_eq!(got.topics, vec!["t".to_string()]);
            assert_eq!(got.generation, -1);
            let owned = if version >= 1 {
                vec![tp("t", 3)]
            } else {
                vec![]
            };
            assert_eq!(got.owned_partitions, owned);
        }
    }

    #[test]
    fn assignment_roundtrips_and_garbage_is_none() {
        let a = Assignment {
            partitions: vec![tp("a", 1), tp("b", 0)],
            user_data: None,
        };
        assert_eq!(decode_assignment(&encode_assignment(&a)), Some(a));
        assert_eq!(
            decode_assignment(&Bytes::new()),
            Some(Assignment::default())
        );
        assert_eq!(decode_assignment(&Bytes::from_static(b"\x00")), None);
        assert_eq!(
            decode_assignment(&Bytes::from_static(b"\x00\x00\xff\xff\xff")),
            None
        );
        assert_eq!(decode_subscription(&Bytes::from_static(b"\xff\xff")), None);
    }
}

//! Binary encoding of the metadata image and of metadata records.
//!
//! Layout: one version byte (`FORMAT_VERSION`), then the value. Integers are
//! big-endian and fixed width; a string is `u32 length` + UTF-8 bytes; an
//! `Option` is a `u8` tag (0 = None, 1 = Some) + the value; a sequence or map
//! is `u32 count` + its items in order (maps in key order), so the same value
//! always encodes to the same bytes on every node.
//!
//! Decoding treats its input as hostile: every read checks the remaining
//! length, a count is refused when even the smallest items could not fit in
//! the bytes left (so a forged count never allocates more than the input's
//! size), trailing bytes are an error, and nothing panics.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{BrokerRegistration, MetadataImage, MetadataRecord, PartitionRegistration, TopicImage};

/// The first byte of every encoding. Bump when the layout changes.
pub const FORMAT_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("unsupported metadata format version {0}")]
    Version(u8),
    #[error("truncated input: needed {needed} more bytes at offset {at}")]
    Truncated { at: usize, needed: usize },
    #[error("count {count} at offset {at} cannot fit in the {remaining} bytes left")]
    Count {
        at: usize,
        count: u64,
        remaining: usize,
    },
    #[error("invalid UTF-8 string at offset {0}")]
    Utf8(usize),
    #[error("unknown tag {tag} at offset {at}")]
    Tag { at: usize, tag: u8 },
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// Appends big-endian primitives to a buffer.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            buf: vec![FORMAT_VERSION],
        }
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }
    pub fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn uuid(&mut self, v: Uuid) {
        self.buf.extend_from_slice(v.as_bytes());
    }
    /// A length or count. Lengths beyond u32 cannot come from a valid image
    /// (the raft entry and frame limits are far smaller).
    pub fn len(&mut self, n: usize) {
        let n = u32::try_from(n).expect("codec invariant: lengths fit in u32");
        self.u32(n);
    }
    pub fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.buf.extend_from_slice(v);
    }
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    pub fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    pub fn i32s(&mut self, v: &[i32]) {
        self.len(v.len());
        for x in v {
            self.i32(*x);
        }
    }
    pub fn string_map(&mut self, m: &BTreeMap<String, String>) {
        self.len(m.len());
        for (k, v) in m {
            self.str(k);
            self.str(v);
        }
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads big-endian primitives, checking every length against the input.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Checks the version byte.
    pub fn new(buf: &'a [u8]) -> Result<Self, CodecError> {
        let mut r = Reader { buf, pos: 0 };
        let v = r.u8()?;
        if v != FORMAT_VERSION {
            return Err(CodecError::Version(v));
        }
        Ok(r)
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.remaining() < n {
            return Err(CodecError::Truncated {
                at: self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> Result<bool, CodecError> {
        let at = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(CodecError::Tag { at, tag }),
        }
    }
    pub fn i16(&mut self) -> Result<i16, CodecError> {
        Ok(i16::from_be_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    pub fn uuid(&mut self) -> Result<Uuid, CodecError> {
        Ok(Uuid::from_bytes(self.array()?))
    }
    /// A count of items each at least `item_bytes_min` long (>= 1): refused
    /// when they could not fit in what is left, which bounds allocation.
    pub fn count(&mut self, item_bytes_min: usize) -> Result<usize, CodecError> {
        let at = self.pos;
        let count = self.u32()? as usize;
        let remaining = self.remaining();
        if count.saturating_mul(item_bytes_min.max(1)) > remaining {
            return Err(CodecError::Count {
                at,
                count: count as u64,
                remaining,
            });
        }
        Ok(count)
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.count(1)?;
        self.take(n)
    }
    pub fn string(&mut self) -> Result<String, CodecError> {
        let at = self.pos;
        let b = self.bytes()?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| CodecError::Utf8(at))
    }
    pub fn opt_string(&mut self) -> Result<Option<String>, CodecError> {
        let at = self.pos;
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.string()?)),
            tag => Err(CodecError::Tag { at, tag }),
        }
    }
    pub fn i32s(&mut self) -> Result<Vec<i32>, CodecError> {
        let n = self.count(4)?;
        (0..n).map(|_| self.i32()).collect()
    }
    pub fn string_map(&mut self) -> Result<BTreeMap<String, String>, CodecError> {
        let n = self.count(8)?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = self.string()?;
            let v = self.string()?;
            m.insert(k, v);
        }
        Ok(m)
    }
    /// Everything was consumed.
    pub fn finish(self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(CodecError::Trailing(n)),
        }
    }
}

// Smallest encodings, for bounding counts.
const PARTITION_BYTES_MIN: usize = 4 + 4 + 4 + 4 + 4;
const BROKER_BYTES_MIN: usize = 4 + 16 + 8 + 4 + 4 + 1 + 1 + 1;
const TOPIC_BYTES_MIN: usize = 4 + 16 + 4 + 4;
const RECORD_BYTES_MIN: usize = 1 + 4 + 8;

pub fn write_partition(w: &mut Writer, p: &PartitionRegistration) {
    w.i32s(&p.replicas);
    w.i32s(&p.isr);
    w.i32(p.leader);
    w.i32(p.leader_epoch);
    w.i32(p.partition_epoch);
}

pub fn read_partition(r: &mut Reader) -> Result<PartitionRegistration, CodecError> {
    Ok(PartitionRegistration {
        replicas: r.i32s()?,
        isr: r.i32s()?,
        leader: r.i32()?,
        leader_epoch: r.i32()?,
        partition_epoch: r.i32()?,
    })
}

fn write_partitions(w: &mut Writer, ps: &[PartitionRegistration]) {
    w.len(ps.len());
    for p in ps {
        write_partition(w, p);
    }
}

fn read_partitions(r: &mut Reader) -> Result<Vec<PartitionRegistration>, CodecError> {
    let n = r.count(PARTITION_BYTES_MIN)?;
    (0..n).map(|_| read_partition(r)).collect()
}

fn write_broker(w: &mut Writer, b: &BrokerRegistration) {
    w.i32(b.id);
    w.uuid(b.incarnation);
    w.i64(b.epoch);
    w.str(&b.host);
    w.i32(b.port);
    w.opt_str(b.rack.as_deref());
    w.bool(b.fenced);
    w.bool(b.in_controlled_shutdown);
}

fn read_broker(r: &mut Reader) -> Result<BrokerRegistration, CodecError> {
    Ok(BrokerRegistration {
        id: r.i32()?,
        incarnation: r.uuid()?,
        epoch: r.i64()?,
        host: r.string()?,
        port: r.i32()?,
        rack: r.opt_string()?,
        fenced: r.bool()?,
        in_controlled_shutdown: r.bool()?,
    })
}

/// Record tags. Never reuse a number.
mod tag {
    pub const REGISTER_BROKER: u8 = 1;
    pub const FENCE_BROKER: u8 = 2;
    pub const UNFENCE_BROKER: u8 = 3;
    pub const BEGIN_CONTROLLED_SHUTDOWN: u8 = 4;
    pub const CREATE_TOPIC: u8 = 5;
    pub const CREATE_PARTITIONS: u8 = 6;
    pub const DELETE_TOPIC: u8 = 7;
    pub const CHANGE_PARTITION: u8 = 8;
    pub const SET_TOPIC_CONFIGS: u8 = 9;
    pub const ALLOCATE_PRODUCER_IDS: u8 = 10;
}

fn write_record(w: &mut Writer, rec: &MetadataRecord) {
    match rec {
        MetadataRecord::RegisterBroker(b) => {
            w.u8(tag::REGISTER_BROKER);
            write_broker(w, b);
        }
        MetadataRecord::FenceBroker { id, epoch } => {
            w.u8(tag::FENCE_BROKER);
            w.i32(*id);
            w.i64(*epoch);
        }
        MetadataRecord::UnfenceBroker { id, epoch } => {
            w.u8(tag::UNFENCE_BROKER);
            w.i32(*id);
            w.i64(*epoch);
        }
        MetadataRecord::BeginControlledShutdown { id, epoch } => {
            w.u8(tag::BEGIN_CONTROLLED_SHUTDOWN);
            w.i32(*id);
            w.i64(*epoch);
        }
        MetadataRecord::CreateTopic {
            name,
            id,
            configs,
            partitions,
        } => {
            w.u8(tag::CREATE_TOPIC);
            w.str(name);
            w.uuid(*id);
            w.string_map(configs);
            write_partitions(w, partitions);
        }
        MetadataRecord::CreatePartitions {
            topic_id,
            partitions,
        } => {
            w.u8(tag::CREATE_PARTITIONS);
            w.uuid(*topic_id);
            write_partitions(w, partitions);
        }
        MetadataRecord::DeleteTopic { id } => {
            w.u8(tag::DELETE_TOPIC);
            w.uuid(*id);
        }
        MetadataRecord::ChangePartition {
            topic_id,
            partition,
            state,
        } => {
            w.u8(tag::CHANGE_PARTITION);
            w.uuid(*topic_id);
            w.i32(*partition);
            write_partition(w, state);
        }
        MetadataRecord::SetTopicConfigs { topic_id, configs } => {
            w.u8(tag::SET_TOPIC_CONFIGS);
            w.uuid(*topic_id);
            w.string_map(configs);
        }
        MetadataRecord::AllocateProducerIds {
            broker,
            first,
            count,
        } => {
            w.u8(tag::ALLOCATE_PRODUCER_IDS);
            w.i32(*broker);
            w.i64(*first);
            w.i64(*count);
        }
    }
}

fn read_record(r: &mut Reader) -> Result<MetadataRecord, CodecError> {
    let at = r.pos();
    Ok(match r.u8()? {
        tag::REGISTER_BROKER => MetadataRecord::RegisterBroker(read_broker(r)?),
        tag::FENCE_BROKER => MetadataRecord::FenceBroker {
            id: r.i32()?,
            epoch: r.i64()?,
        },
        tag::UNFENCE_BROKER => MetadataRecord::UnfenceBroker {
            id: r.i32()?,
            epoch: r.i64()?,
        },
        tag::BEGIN_CONTROLLED_SHUTDOWN => MetadataRecord::BeginControlledShutdown {
            id: r.i32()?,
            epoch: r.i64()?,
        },
        tag::CREATE_TOPIC => MetadataRecord::CreateTopic {
            name: r.string()?,
            id: r.uuid()?,
            configs: r.string_map()?,
            partitions: read_partitions(r)?,
        },
        tag::CREATE_PARTITIONS => MetadataRecord::CreatePartitions {
            topic_id: r.uuid()?,
            partitions: read_partitions(r)?,
        },
        tag::DELETE_TOPIC => MetadataRecord::DeleteTopic { id: r.uuid()? },
        tag::CHANGE_PARTITION => MetadataRecord::ChangePartition {
            topic_id: r.uuid()?,
            partition: r.i32()?,
            state: read_partition(r)?,
        },
        tag::SET_TOPIC_CONFIGS => MetadataRecord::SetTopicConfigs {
            topic_id: r.uuid()?,
            configs: r.string_map()?,
        },
        tag::ALLOCATE_PRODUCER_IDS => MetadataRecord::AllocateProducerIds {
            broker: r.i32()?,
            first: r.i64()?,
            count: r.i64()?,
        },
        tag => return Err(CodecError::Tag { at, tag }),
    })
}

/// One raft entry: the records applied together.
pub fn encode_records(records: &[MetadataRecord]) -> Vec<u8> {
    let mut w = Writer::new();
    w.len(records.len());
    for rec in records {
        write_record(&mut w, rec);
    }
    w.finish()
}

pub fn decode_records(buf: &[u8]) -> Result<Vec<MetadataRecord>, CodecError> {
    let mut r = Reader::new(buf)?;
    let n = r.count(RECORD_BYTES_MIN)?;
    let records = (0..n)
        .map(|_| read_record(&mut r))
        .collect::<Result<_, _>>()?;
    r.finish()?;
    Ok(records)
}

/// The whole image (the raft snapshot and the FetchImage answer).
pub fn encode_image(img: &MetadataImage) -> Vec<u8> {
    let mut w = Writer::new();
    w.u64(img.offset);
    w.i64(img.next_producer_id);
    w.len(img.brokers.len());
    for b in img.brokers.values() {
        write_broker(&mut w, b);
    }
    w.len(img.topics.len());
    for t in img.topics.values() {
        w.str(&t.name);
        w.uuid(t.id);
        w.string_map(&t.configs);
        write_partitions(&mut w, &t.partitions);
    }
    w.finish()
}

pub fn decode_image(buf: &[u8]) -> Result<MetadataImage, CodecError> {
    let mut r = Reader::new(buf)?;
    let mut img = MetadataImage {
        offset: r.u64()?,
        next_producer_id: r.i64()?,
        ..MetadataImage::default()
    };
    let n = r.count(BROKER_BYTES_MIN)?;
    for _ in 0..n {
        let b = read_broker(&mut r)?;
        img.brokers.insert(b.id, b);
    }
    let n = r.count(TOPIC_BYTES_MIN)?;
    for _ in 0..n {
        let t = TopicImage {
            name: r.string()?,
            id: r.uuid()?,
            configs: r.string_map()?,
            partitions: read_partitions(&mut r)?,
        };
        img.topics.insert(t.name.clone(), t);
    }
    r.finish()?;
    Ok(img)
}

#[cfg(test)]
pub(crate) mod strategies {
    //! Proptest generators for metadata values, shared with the controller codec tests.
    use super::*;
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    pub fn uuid() -> impl Strategy<Value = Uuid> {
        any::<u128>().prop_map(Uuid::from_u128)
    }

    pub fn configs() -> impl Strategy<Value = BTreeMap<String, String>> {
        btree_map("[a-z.]{0,12}", ".{0,8}", 0..4)
    }

    pub fn partition() -> impl Strategy<Value = PartitionRegistration> {
        (
            vec(any::<i32>(), 0..5),
            vec(any::<i32>(), 0..5),
            any::<i32>(),
            any::<i32>(),
            any::<i32>(),
        )
            .prop_map(|(replicas, isr, leader, leader_epoch, partition_epoch)| {
                PartitionRegistration {
                    replicas,
                    isr,
                    leader,
                    leader_epoch,
                    partition_epoch,
                }
            })
    }

    pub fn broker() -> impl Strategy<Value = BrokerRegistration> {
        (
            any::<i32>(),
            uuid(),
            any::<i64>(),
            ".{0,10}",
            any::<i32>(),
            proptest::option::of("[a-z]{0,4}"),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(id, incarnation, epoch, host, port, rack, fenced, in_controlled_shutdown)| {
                    BrokerRegistration {
                        id,
                        incarnation,
                        epoch,
                        host,
                        port,
                        rack,
                        fenced,
                        in_controlled_shutdown,
                    }
                },
            )
    }

    pub fn record() -> impl Strategy<Value = MetadataRecord> {
        prop_oneof![
            broker().prop_map(MetadataRecord::RegisterBroker),
            (any::<i32>(), any::<i64>())
                .prop_map(|(id, epoch)| MetadataRecord::FenceBroker { id, epoch }),
            (any::<i32>(), any::<i64>())
                .prop_map(|(id, epoch)| MetadataRecord::UnfenceBroker { id, epoch }),
            (any::<i32>(), any::<i64>())
                .prop_map(|(id, epoch)| MetadataRecord::BeginControlledShutdown { id, epoch }),
            (".{0,10}", uuid(), configs(), vec(partition(), 0..4)).prop_map(
                |(name, id, configs, partitions)| MetadataRecord::CreateTopic {
                    name,
                    id,
                    configs,
                    partitions
                }
            ),
            (uuid(), vec(partition(), 0..4)).prop_map(|(topic_id, partitions)| {
                MetadataRecord::CreatePartitions {
                    topic_id,
                    partitions,
                }
            }),
            uuid().prop_map(|id| MetadataRecord::DeleteTopic { id }),
            (uuid(), any::<i32>(), partition()).prop_map(|(topic_id, partition, state)| {
                MetadataRecord::ChangePartition {
                    topic_id,
                    partition,
                    state,
                }
            }),
            (uuid(), configs()).prop_map(|(topic_id, configs)| MetadataRecord::SetTopicConfigs {
                topic_id,
                configs
            }),
            (any::<i32>(), any::<i64>(), any::<i64>()).prop_map(|(broker, first, count)| {
                MetadataRecord::AllocateProducerIds {
                    broker,
                    first,
                    count,
                }
            }),
        ]
    }

    pub fn image() -> impl Strategy<Value = MetadataImage> {
        (
            any::<u64>(),
            any::<i64>(),
            vec(broker(), 0..4),
            vec((".{0,10}", uuid(), configs(), vec(partition(), 0..4)), 0..4),
        )
            .prop_map(
                |(offset, next_producer_id, brokers, topics)| MetadataImage {
                    offset,
                    next_producer_id,
                    brokers: brokers.into_iter().map(|b| (b.id, b)).collect(),
                    topics: topics
                        .into_iter()
                        .map(|(name, id, configs, partitions)| {
                            (
                                name.clone(),
                                TopicImage {
                                    name,
                                    id,
                                    configs,
                                    partitions,
                                },
                            )
                        })
                        .collect(),
                },
            )
    }
}

#[cfg(test)]
mod tests {
    use super::strategies::*;
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn records_round_trip(recs in proptest::collection::vec(record(), 0..8)) {
            let bytes = encode_records(&recs);
            prop_assert_eq!(decode_records(&bytes).unwrap(), recs.clone());
            // Deterministic: encoding the decoded value gives the same bytes.
            prop_assert_eq!(encode_records(&decode_records(&bytes).unwrap()), bytes);
        }

        #[test]
        fn image_round_trips(img in image()) {
            let bytes = encode_image(&img);
            prop_assert_eq!(decode_image(&bytes).unwrap(), img);
        }

        #[test]
        fn truncations_and_garbage_are_errors_not_panics(
            recs in proptest::collection::vec(record(), 1..4),
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            junk in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let bytes = encode_records(&recs);
            let n = cut.index(bytes.len());
            prop_assert!(decode_records(&bytes[..n]).is_err());
            let mut flipped = bytes.clone();
            let i = flip.index(flipped.len());
            flipped[i] ^= 0xff;
            let _ = decode_records(&flipped);
            let _ = decode_image(&flipped);
            let _ = decode_records(&junk);
            let _ = decode_image(&junk);
        }
    }

    #[test]
    fn forged_counts_are_refused_before_allocating() {
        // version, then a record count of u32::MAX with nothing behind it.
        let bytes = [FORMAT_VERSION, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            decode_records(&bytes),
            Err(CodecError::Count { .. })
        ));
        assert_eq!(decode_records(&[9]), Err(CodecError::Version(9)));
        assert!(decode_records(&[]).is_err());
        let mut ok = encode_records(&[]);
        ok.push(0);
        assert_eq!(decode_records(&ok), Err(CodecError::Trailing(1)));
    }
}

//! Binary encoding of `ControllerRequest` / `ControllerResponse`, the
//! payload of the controller listener's RPC frames.
//!
//! Same conventions as `metadata::codec` (version byte, big-endian, counts
//! bounded by the bytes left, no panics on hostile input); a `u8` tag names
//! the variant.

use super::api::{ControllerRequest, ControllerResponse, CreateTopicSpec, ItemResult};
use crate::metadata::codec::{read_partition, write_partition, CodecError, Reader, Writer};

mod req {
    pub const REGISTER_BROKER: u8 = 1;
    pub const HEARTBEAT: u8 = 2;
    pub const FETCH_IMAGE: u8 = 3;
    pub const CREATE_TOPICS: u8 = 4;
    pub const DELETE_TOPICS: u8 = 5;
    pub const CREATE_PARTITIONS: u8 = 6;
    pub const SET_TOPIC_CONFIGS: u8 = 7;
    pub const ALTER_PARTITION: u8 = 8;
    pub const ALLOCATE_PRODUCER_IDS: u8 = 9;
}

mod resp {
    pub const NOT_CONTROLLER: u8 = 1;
    pub const ERROR: u8 = 2;
    pub const REGISTERED: u8 = 3;
    pub const HEARTBEAT: u8 = 4;
    pub const IMAGE: u8 = 5;
    pub const ITEMS: u8 = 6;
    pub const PARTITION: u8 = 7;
    pub const PRODUCER_IDS: u8 = 8;
}

pub fn encode_request(r: &ControllerRequest) -> Vec<u8> {
    let mut w = Writer::new();
    match r {
        ControllerRequest::RegisterBroker {
            id,
            incarnation,
            host,
            port,
            rack,
        } => {
            w.u8(req::REGISTER_BROKER);
            w.i32(*id);
            w.uuid(*incarnation);
            w.str(host);
            w.i32(*port);
            w.opt_str(rack.as_deref());
        }
        ControllerRequest::Heartbeat {
            id,
            epoch,
            metadata_offset,
            want_shutdown,
        } => {
            w.u8(req::HEARTBEAT);
            w.i32(*id);
            w.i64(*epoch);
            w.u64(*metadata_offset);
            w.bool(*want_shutdown);
        }
        ControllerRequest::FetchImage {
            have_offset,
            max_wait_ms,
        } => {
            w.u8(req::FETCH_IMAGE);
            w.u64(*have_offset);
            w.u32(*max_wait_ms);
        }
        ControllerRequest::CreateTopics {
            topics,
            validate_only,
        } => {
            w.u8(req::CREATE_TOPICS);
            w.len(topics.len());
            for t in topics {
                w.str(&t.name);
                w.i32(t.partitions);
                w.i16(t.replication_factor);
                w.len(t.assignments.len());
                for a in &t.assignments {
                    w.i32s(a);
                }
                w.string_map(&t.configs);
            }
            w.bool(*validate_only);
        }
        ControllerRequest::DeleteTopics { names } => {
            w.u8(req::DELETE_TOPICS);
            w.len(names.len());
            for n in names {
                w.str(n);
            }
        }
        ControllerRequest::CreatePartitions {
            topic,
            count,
            validate_only,
        } => {
            w.u8(req::CREATE_PARTITIONS);
            w.str(topic);
            w.i32(*count);
            w.bool(*validate_only);
        }
        ControllerRequest::SetTopicConfigs {
            topic,
            configs,
            validate_only,
        } => {
            w.u8(req::SET_TOPIC_CONFIGS);
            w.str(topic);
            w.string_map(configs);
            w.bool(*validate_only);
        }
        ControllerRequest::AlterPartition {
            broker,
            broker_epoch,
            topic,
            partition,
            leader_epoch,
            partition_epoch,
            new_isr,
        } => {
            w.u8(req::ALTER_PARTITION);
            w.i32(*broker);
            w.i64(*broker_epoch);
            w.str(topic);
            w.i32(*partition);
            w.i32(*leader_epoch);
            w.i32(*partition_epoch);
            w.i32s(new_isr);
        }
        ControllerRequest::AllocateProducerIds {
            broker,
            broker_epoch,
        } => {
            w.u8(req::ALLOCATE_PRODUCER_IDS);
            w.i32(*broker);
            w.i64(*broker_epoch);
        }
    }
    w.finish()
}

pub fn decode_request(buf: &[u8]) -> Result<ControllerRequest, CodecError> {
    let mut r = Reader::new(buf)?;
    let at = r.pos();
    let out = match r.u8()? {
        req::REGISTER_BROKER => ControllerRequest::RegisterBroker {
            id: r.i32()?,
            incarnation: r.uuid()?,
            host: r.string()?,
            port: r.i32()?,
            rack: r.opt_string()?,
        },
        req::HEARTBEAT => ControllerRequest::Heartbeat {
            id: r.i32()?,
            epoch: r.i64()?,
            metadata_offset: r.u64()?,
            want_shutdown: r.bool()?,
        },
        req::FETCH_IMAGE => ControllerRequest::FetchImage {
            have_offset: r.u64()?,
            max_wait_ms: r.u32()?,
        },
        req::CREATE_TOPICS => {
            // name + partitions + rf + assignment count + config count
            let n = r.count(4 + 4 + 2 + 4 + 4)?;
            let mut topics = Vec::with_capacity(n);
            for _ in 0..n {
                let name = r.string()?;
                let partitions = r.i32()?;
                let replication_factor = r.i16()?;
                let a = r.count(4)?;
                let assignments = (0..a).map(|_| r.i32s()).collect::<Result<_, _>>()?;
                topics.push(CreateTopicSpec {
                    name,
                    partitions,
                    replication_factor,
                    assignments,
                    configs: r.string_map()?,
                });
            }
            ControllerRequest::CreateTopics {
                topics,
                validate_only: r.bool()?,
            }
        }
        req::DELETE_TOPICS => {
            let n = r.count(4)?;
            ControllerRequest::DeleteTopics {
                names: (0..n).map(|_| r.string()).collect::<Result<_, _>>()?,
            }
        }
        req::CREATE_PARTITIONS => ControllerRequest::CreatePartitions {
            topic: r.string()?,
            count: r.i32()?,
            validate_only: r.bool()?,
        },
        req::SET_TOPIC_CONFIGS => ControllerRequest::SetTopicConfigs {
            topic: r.string()?,
            configs: r.string_map()?,
            validate_only: r.bool()?,
        },
        req::ALTER_PARTITION => ControllerRequest::AlterPartition {
            broker: r.i32()?,
            broker_epoch: r.i64()?,
            topic: r.string()?,
            partition: r.i32()?,
            leader_epoch: r.i32()?,
            partition_epoch: r.i32()?,
            new_isr: r.i32s()?,
        },
        req::ALLOCATE_PRODUCER_IDS => ControllerRequest::AllocateProducerIds {
            broker: r.i32()?,
            broker_epoch: r.i64()?,
        },
        tag => return Err(CodecError::Tag { at, tag }),
    };
    r.finish()?;
    Ok(out)
}

fn write_item(w: &mut Writer, i: &ItemResult) {
    w.i16(i.error_code);
    w.opt_str(i.message.as_deref());
}

fn read_item(r: &mut Reader) -> Result<ItemResult, CodecError> {
    Ok(ItemResult {
        error_code: r.i16()?,
        message: r.opt_string()?,
    })
}

pub fn encode_response(resp: &ControllerResponse) -> Vec<u8> {
    let mut w = Writer::new();
    match resp {
        ControllerResponse::NotController { leader } => {
            w.u8(resp::NOT_CONTROLLER);
            match leader {
                None => w.u8(0),
                Some(l) => {
                    w.u8(1);
                    w.i32(*l);
                }
            }
        }
        ControllerResponse::Error(i) => {
            w.u8(resp::ERROR);
            write_item(&mut w, i);
        }
        ControllerResponse::Registered { epoch } => {
            w.u8(resp::REGISTERED);
            w.i64(*epoch);
        }
        ControllerResponse::Heartbeat {
            fenced,
            shutdown_ready,
        } => {
            w.u8(resp::HEARTBEAT);
            w.bool(*fenced);
            w.bool(*shutdown_ready);
        }
        ControllerResponse::Image(img) => {
            w.u8(resp::IMAGE);
            match img {
                None => w.u8(0),
                Some(b) => {
                    w.u8(1);
                    w.bytes(b);
                }
            }
        }
        ControllerResponse::Items(items) => {
            w.u8(resp::ITEMS);
            w.len(items.len());
            for i in items {
                write_item(&mut w, i);
            }
        }
        ControllerResponse::Partition(p) => {
            w.u8(resp::PARTITION);
            write_partition(&mut w, p);
        }
        ControllerResponse::ProducerIds { first, count } => {
            w.u8(resp::PRODUCER_IDS);
            w.i64(*first);
            w.i64(*count);
        }
    }
    w.finish()
}

pub fn decode_response(buf: &[u8]) -> Result<ControllerResponse, CodecError> {
    let mut r = Reader::new(buf)?;
    let at = r.pos();
    let out = match r.u8()? {
        resp::NOT_CONTROLLER => {
            let at = r.pos();
            ControllerResponse::NotController {
                leader: match r.u8()? {
                    0 => None,
                    1 => Some(r.i32()?),
                    tag => return Err(CodecError::Tag { at, tag }),
                },
            }
        }
        resp::ERROR => ControllerResponse::Error(read_item(&mut r)?),
        resp::REGISTERED => ControllerResponse::Registered { epoch: r.i64()? },
        resp::HEARTBEAT => ControllerResponse::Heartbeat {
            fenced: r.bool()?,
            shutdown_ready: r.bool()?,
        },
        resp::IMAGE => {
            let at = r.pos();
            ControllerResponse::Image(match r.u8()? {
                0 => None,
                1 => Some(r.bytes()?.to_vec()),
                tag => return Err(CodecError::Tag { at, tag }),
            })
        }
        resp::ITEMS => {
            let n = r.count(3)?;
            ControllerResponse::Items(
                (0..n)
                    .map(|_| read_item(&mut r))
                    .collect::<Result<_, _>>()?,
            )
        }
        resp::PARTITION => ControllerResponse::Partition(read_partition(&mut r)?),
        resp::PRODUCER_IDS => ControllerResponse::ProducerIds {
            first: r.i64()?,
            count: r.i64()?,
        },
        tag => return Err(CodecError::Tag { at, tag }),
    };
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::codec::strategies::{configs, partition, uuid};
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn request() -> impl Strategy<Value = ControllerRequest> {
        let spec = (
            ".{0,8}",
            any::<i32>(),
            any::<i16>(),
            vec(vec(any::<i32>(), 0..3), 0..3),
            configs(),
        )
            .prop_map(
                |(name, partitions, replication_factor, assignments, configs)| CreateTopicSpec {
                    name,
                    partitions,
                    replication_factor,
                    assignments,
                    configs,
                },
            );
        prop_oneof![
            (
                any::<i32>(),
                uuid(),
                ".{0,8}",
                any::<i32>(),
                proptest::option::of("[a-z]{0,3}")
            )
                .prop_map(|(id, incarnation, host, port, rack)| {
                    ControllerRequest::RegisterBroker {
                        id,
                        incarnation,
                        host,
                        port,
                        rack,
                    }
                }),
            (any::<i32>(), any::<i64>(), any::<u64>(), any::<bool>()).prop_map(
                |(id, epoch, metadata_offset, want_shutdown)| ControllerRequest::Heartbeat {
                    id,
                    epoch,
                    metadata_offset,
                    want_shutdown
                }
            ),
            (any::<u64>(), any::<u32>()).prop_map(|(have_offset, max_wait_ms)| {
                ControllerRequest::FetchImage {
                    have_offset,
                    max_wait_ms,
                }
            }),
            (vec(spec, 0..3), any::<bool>()).prop_map(|(topics, validate_only)| {
                ControllerRequest::CreateTopics {
                    topics,
                    validate_only,
                }
            }),
            vec(".{0,8}", 0..3).prop_map(|names| ControllerRequest::DeleteTopics { names }),
            (".{0,8}", any::<i32>(), any::<bool>()).prop_map(|(topic, count, validate_only)| {
                ControllerRequest::CreatePartitions {
                    topic,
                    count,
                    validate_only,
                }
            }),
            (".{0,8}", configs(), any::<bool>()).prop_map(|(topic, configs, validate_only)| {
                ControllerRequest::SetTopicConfigs {
                    topic,
                    configs,
                    validate_only,
                }
            }),
            (
                any::<i32>(),
                any::<i64>(),
                ".{0,8}",
                any::<i32>(),
                any::<i32>(),
                any::<i32>(),
                vec(any::<i32>(), 0..4)
            )
                .prop_map(
                    |(
                        broker,
                        broker_epoch,
                        topic,
                        partition,
                        leader_epoch,
                        partition_epoch,
                        new_isr,
                    )| {
                        ControllerRequest::AlterPartition {
                            broker,
                            broker_epoch,
                            topic,
                            partition,
                            leader_epoch,
                            partition_epoch,
                            new_isr,
                        }
                    }
                ),
            (any::<i32>(), any::<i64>()).prop_map(|(broker, broker_epoch)| {
                ControllerRequest::AllocateProducerIds {
                    broker,
                    broker_epoch,
                }
            }),
        ]
    }

    fn item() -> impl Strategy<Value = ItemResult> {
        (any::<i16>(), proptest::option::of(".{0,8}")).prop_map(|(error_code, message)| {
            ItemResult {
                error_code,
                message,
            }
        })
    }

    fn response() -> impl Strategy<Value = ControllerResponse> {
        prop_oneof![
            proptest::option::of(any::<i32>())
                .prop_map(|leader| ControllerResponse::NotController { leader }),
            item().prop_map(ControllerResponse::Error),
            any::<i64>().prop_map(|epoch| ControllerResponse::Registered { epoch }),
            (any::<bool>(), any::<bool>()).prop_map(|(fenced, shutdown_ready)| {
                ControllerResponse::Heartbeat {
                    fenced,
                    shutdown_ready,
                }
            }),
            proptest::option::of(vec(any::<u8>(), 0..32)).prop_map(ControllerResponse::Image),
            vec(item(), 0..4).prop_map(ControllerResponse::Items),
            partition().prop_map(ControllerResponse::Partition),
            (any::<i64>(), any::<i64>())
                .prop_map(|(first, count)| ControllerResponse::ProducerIds { first, count }),
        ]
    }

    proptest! {
        #[test]
        fn requests_round_trip(req in request(), cut in any::<prop::sample::Index>()) {
            let bytes = encode_request(&req);
            prop_assert_eq!(decode_request(&bytes).unwrap(), req);
            prop_assert!(decode_request(&bytes[..cut.index(bytes.len())]).is_err());
        }

        #[test]
        fn responses_round_trip(resp in response(), cut in any::<prop::sample::Index>()) {
            let bytes = encode_response(&resp);
            prop_assert_eq!(decode_response(&bytes).unwrap(), resp);
            prop_assert!(decode_response(&bytes[..cut.index(bytes.len())]).is_err());
        }

        #[test]
        fn garbage_never_panics(junk in vec(any::<u8>(), 0..64)) {
            let _ = decode_request(&junk);
            let _ = decode_response(&junk);
        }
    }
}

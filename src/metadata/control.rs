//! The controller's decisions, as pure functions of the image.
//!
//! Each function reads a `MetadataImage` and returns the records that carry
//! out a request (to be proposed as one raft entry) or a Kafka error code.
//! Nothing here does I/O, reads a clock or holds state, so every rule is
//! unit-tested on plain values and the controller service is a thin shell:
//! decide, propose, wait until applied.
//!
//! Liveness: a broker is *live* when registered, not fenced and not in
//! controlled shutdown. Leader election (Kafka's rule): the first replica in
//! `replicas` order that is in the ISR and live. When no ISR member is live,
//! with unclean election enabled the first live replica leads with ISR =
//! [it]; otherwise the partition has no leader and the ISR keeps its last
//! member, so that broker can lead again when it returns.
//!
//! Invariants every decision keeps (checked by the proptest below):
//! ISR ⊆ replicas; ISR never empty; the leader (if any) is in the ISR and
//! live; leader epochs and partition epochs never go back; every change of
//! a partition bumps its partition epoch, every leader change its leader
//! epoch.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use uuid::Uuid;

use super::placement::{self, Candidate};
use super::{
    BrokerRegistration, MetadataImage, MetadataRecord, PartitionRegistration, TopicImage, NO_LEADER,
};
use crate::broker::registry::validate_topic_name;
use crate::config::ServerConfig;
use crate::controller::api::{CreateTopicSpec, ItemResult};
use crate::env::rng::WeirRng;
use crate::log::topic_config;
use crate::protocol::error_codes as ec;

/// Kafka error codes the controller answers with that the broker's table
/// does not hold (yet).
pub mod codes {
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const STALE_BROKER_EPOCH: i16 = 77;
    pub const INVALID_UPDATE_VERSION: i16 = 95;
    pub const BROKER_ID_NOT_REGISTERED: i16 = 102;
    pub const INELIGIBLE_REPLICA: i16 = 107;
}

/// Partitions of one topic, at most.
pub const PARTITIONS_MAX: i32 = 10_000;
/// Producer ids handed to a broker per AllocateProducerIds.
pub const PRODUCER_ID_BLOCK: i64 = 1000;
/// The broker default and topic override key.
pub const UNCLEAN_KEY: &str = "unclean.leader.election.enable";

/// A refused decision: a Kafka error code and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("error {code}: {message}")]
pub struct ControlError {
    pub code: i16,
    pub message: String,
}

impl ControlError {
    pub fn new(code: i16, message: impl Into<String>) -> Self {
        ControlError {
            code,
            message: message.into(),
        }
    }
}

impl From<ControlError> for ItemResult {
    fn from(e: ControlError) -> Self {
        ItemResult {
            error_code: e.code,
            message: Some(e.message),
        }
    }
}

/// The broker settings decisions depend on.
#[derive(Clone, Debug)]
pub struct ControlConfig {
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    /// unclean.leader.election.enable, the broker default.
    pub unclean_leader_election_enable: bool,
    /// Validates topic config overrides.
    pub server: Arc<ServerConfig>,
}

impl ControlConfig {
    pub fn from_server(server: Arc<ServerConfig>) -> Self {
        ControlConfig {
            num_partitions: server.num_partitions,
            default_replication_factor: server.default_replication_factor,
            unclean_leader_election_enable: server.unclean_leader_election_enable,
            server,
        }
    }

    fn validate_topic_config(&self, key: &str, value: &str) -> Result<(), ControlError> {
        self.server.validate_topic_config(key, value).map_err(|e| {
            ControlError::new(
                ec::INVALID_CONFIG,
                format!("invalid config {key}={value}: {e}"),
            )
        })
    }

    /// The topic override if set, else the broker default.
    pub fn unclean_enabled(&self, topic: &TopicImage) -> bool {
        // Overrides were validated when committed; an unreadable one (from
        // an older image) counts as unset.
        match topic
            .configs
            .get(UNCLEAN_KEY)
            .map(|v| topic_config::parse(UNCLEAN_KEY, v))
        {
            Some(Ok(v)) => v.flag(),
            _ => self.unclean_leader_election_enable,
        }
    }
}

/// Registered, not fenced, not in controlled shutdown.
pub fn is_live(img: &MetadataImage, id: i32) -> bool {
    img.brokers
        .get(&id)
        .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
}

/// Whether `id` leads no partition (a broker may stop once this holds).
pub fn leads_nothing(img: &MetadataImage, id: i32) -> bool {
    img.topics
        .values()
        .flat_map(|t| t.partitions.iter())
        .all(|p| p.leader != id)
}

/// The state a partition moves to, or None when nothing changes.
///
/// `remove`: a broker leaving the ISR (fenced, shutting down, restarted);
/// it stays when it is the last member. Then the leader is kept if still
/// live and in the ISR, else elected anew.
fn next_state(
    p: &PartitionRegistration,
    live: &dyn Fn(i32) -> bool,
    remove: Option<i32>,
    unclean: bool,
) -> Option<PartitionRegistration> {
    let mut isr = p.isr.clone();
    if let Some(b) = remove {
        if isr.iter().any(|&x| x != b) {
            isr.retain(|&x| x != b);
        }
    }
    let mut leader = p.leader;
    let leader_ok = p.has_leader() && live(p.leader) && isr.contains(&p.leader);
    if !leader_ok {
        leader = match p.replicas.iter().find(|&&r| isr.contains(&r) && live(r)) {
            Some(&r) => r,
            None if unclean => match p.replicas.iter().find(|&&r| live(r)) {
                Some(&r) => {
                    isr = vec![r];
                    r
                }
                None => NO_LEADER,
            },
            None => NO_LEADER,
        };
    }
    if leader == p.leader && isr == p.isr {
        return None;
    }
    assert!(!isr.is_empty(), "metadata invariant: an ISR is never empty");
    Some(PartitionRegistration {
        replicas: p.replicas.clone(),
        isr,
        leader,
        leader_epoch: p.leader_epoch + i32::from(leader != p.leader),
        partition_epoch: p.partition_epoch + 1,
    })
}

/// ChangePartition records for every partition whose state moves.
fn partition_changes(
    img: &MetadataImage,
    cfg: &ControlConfig,
    live: &dyn Fn(i32) -> bool,
    remove: Option<i32>,
) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for t in img.topics.values() {
        let unclean = cfg.unclean_enabled(t);
        for (i, p) in t.partitions.iter().enumerate() {
            let touched = match remove {
                Some(b) => p.replicas.contains(&b) || p.isr.contains(&b) || p.leader == b,
                None => !p.has_leader() || !live(p.leader),
            };
            if !touched {
                continue;
            }
            if let Some(state) = next_state(p, live, remove, unclean) {
                out.push(MetadataRecord::ChangePartition {
                    topic_id: t.id,
                    partition: i as i32,
                    state,
                });
            }
        }
    }
    out
}

/// Records that take `id` out of every leadership and ISR (as far as the
/// rules allow), as if it were no longer live.
fn remove_broker(img: &MetadataImage, cfg: &ControlConfig, id: i32) -> Vec<MetadataRecord> {
    let live = |x: i32| x != id && is_live(img, x);
    partition_changes(img, cfg, &live, Some(id))
}

/// Elect leaders for leaderless partitions (or partitions led by a broker
/// that is no longer live). Run when brokers come back and by the
/// controller's periodic retry.
pub fn elect_leaders(img: &MetadataImage, cfg: &ControlConfig) -> Vec<MetadataRecord> {
    let live = |x: i32| is_live(img, x);
    partition_changes(img, cfg, &live, None)
}

fn broker_at_epoch(
    img: &MetadataImage,
    id: i32,
    epoch: i64,
) -> Result<&BrokerRegistration, ControlError> {
    match img.brokers.get(&id) {
        None => Err(ControlError::new(
            codes::BROKER_ID_NOT_REGISTERED,
            format!("broker {id} is not registered"),
        )),
        Some(b) if b.epoch != epoch => Err(ControlError::new(
            codes::STALE_BROKER_EPOCH,
            format!("broker {id} epoch {epoch} is not its current {}", b.epoch),
        )),
        Some(b) => Ok(b),
    }
}

/// What a RegisterBroker request needs.
pub enum Registration {
    /// The same incarnation registered already (a retry): its epoch.
    Existing { epoch: i64 },
    /// Propose these; the epoch is the index of the entry holding them.
    New(Vec<MetadataRecord>),
}

/// Register a broker. A new incarnation of a known id is a restart: the old
/// one is fenced and leaves leaderships and ISRs in the same entry.
pub fn register_broker(
    img: &MetadataImage,
    cfg: &ControlConfig,
    id: i32,
    incarnation: Uuid,
    host: String,
    port: i32,
    rack: Option<String>,
) -> Result<Registration, ControlError> {
    if id < 0 {
        return Err(ControlError::new(
            ec::INVALID_REQUEST,
            format!("invalid broker id {id}"),
        ));
    }
    let mut records = Vec::new();
    if let Some(old) = img.brokers.get(&id) {
        if old.incarnation == incarnation {
            return Ok(Registration::Existing { epoch: old.epoch });
        }
        if !old.fenced {
            records.push(MetadataRecord::FenceBroker {
                id,
                epoch: old.epoch,
            });
        }
        records.extend(remove_broker(img, cfg, id));
    }
    records.push(MetadataRecord::RegisterBroker(BrokerRegistration {
        id,
        incarnation,
        epoch: 0,
        host,
        port,
        rack,
        fenced: true,
        in_controlled_shutdown: false,
    }));
    Ok(Registration::New(records))
}

/// Fence a live broker (its session lapsed): its leaderships move to other
/// live ISR members and it leaves the ISRs. Nothing when it is not at that
/// epoch or fenced already.
pub fn fence_broker(
    img: &MetadataImage,
    cfg: &ControlConfig,
    id: i32,
    epoch: i64,
) -> Vec<MetadataRecord> {
    match img.brokers.get(&id) {
        Some(b) if b.epoch == epoch && !b.fenced => {
            let mut records = vec![MetadataRecord::FenceBroker { id, epoch }];
            records.extend(remove_broker(img, cfg, id));
            records
        }
        _ => Vec::new(),
    }
}

/// Unfence a broker that caught up: it may lead again, so leaderless
/// partitions whose ISR holds it get a leader.
pub fn unfence_broker(
    img: &MetadataImage,
    cfg: &ControlConfig,
    id: i32,
    epoch: i64,
) -> Vec<MetadataRecord> {
    match img.brokers.get(&id) {
        Some(b) if b.epoch == epoch && b.fenced && !b.in_controlled_shutdown => {
            let mut records = vec![MetadataRecord::UnfenceBroker { id, epoch }];
            let live = |x: i32| x == id || is_live(img, x);
            records.extend(partition_changes(img, cfg, &live, None));
            records
        }
        _ => Vec::new(),
    }
}

/// Start a controlled shutdown: leaderships move away and the broker leaves
/// the ISRs it is not the last member of.
pub fn begin_controlled_shutdown(
    img: &MetadataImage,
    cfg: &ControlConfig,
    id: i32,
    epoch: i64,
) -> Vec<MetadataRecord> {
    match img.brokers.get(&id) {
        Some(b) if b.epoch == epoch && !b.in_controlled_shutdown => {
            let mut records = vec![MetadataRecord::BeginControlledShutdown { id, epoch }];
            records.extend(remove_broker(img, cfg, id));
            records
        }
        _ => Vec::new(),
    }
}

/// The records a heartbeat calls for: a controlled shutdown when asked, an
/// unfence once the broker has applied the image up to its registration.
pub fn heartbeat(
    img: &MetadataImage,
    cfg: &ControlConfig,
    id: i32,
    epoch: i64,
    metadata_offset: u64,
    want_shutdown: bool,
) -> Result<Vec<MetadataRecord>, ControlError> {
    let b = broker_at_epoch(img, id, epoch)?;
    if want_shutdown {
        // A fenced broker leads nothing and may go at once.
        if b.fenced {
            return Ok(Vec::new());
        }
        if !b.in_controlled_shutdown {
            return Ok(begin_controlled_shutdown(img, cfg, id, epoch));
        }
        // Its leaderships have moved: fence it now rather than after its
        // session lapses, so nothing waits on a broker that is leaving.
        if leads_nothing(img, id) {
            return Ok(fence_broker(img, cfg, id, epoch));
        }
        return Ok(Vec::new());
    }
    if b.fenced && metadata_offset as i64 >= b.epoch {
        return Ok(unfence_broker(img, cfg, id, epoch));
    }
    Ok(Vec::new())
}

/// The heartbeat answer on the image after the heartbeat's records:
/// (fenced, shutdown_ready).
pub fn heartbeat_state(img: &MetadataImage, id: i32, want_shutdown: bool) -> (bool, bool) {
    let fenced = img.brokers.get(&id).is_none_or(|b| b.fenced);
    (fenced, want_shutdown && leads_nothing(img, id))
}

fn new_topic_id(img: &MetadataImage, taken: &BTreeSet<Uuid>, rng: &mut WeirRng) -> Uuid {
    loop {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&rng.next_u64().to_be_bytes());
        bytes[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
        let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
        // Kafka reserves the zero id and id 1 (the metadata topic).
        let reserved = id.as_u128() <= 1;
        if !reserved && !taken.contains(&id) && img.topic_by_id(id).is_none() {
            return id;
        }
    }
}

/// Kafka refuses names that differ only in '.' vs '_' (metric names collide).
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

fn placement_candidates(img: &MetadataImage) -> Vec<Candidate> {
    img.brokers
        .values()
        .filter(|b| is_live(img, b.id))
        .map(|b| Candidate {
            id: b.id,
            rack: b.rack.clone(),
        })
        .collect()
}

/// A new partition's first state: the ISR is its live replicas, the leader
/// the first of them.
fn initial_partition(
    img: &MetadataImage,
    replicas: Vec<i32>,
    p: usize,
) -> Result<PartitionRegistration, ControlError> {
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|&r| is_live(img, r))
        .collect();
    let Some(&leader) = isr.first() else {
        return Err(ControlError::new(
            ec::INVALID_REPLICA_ASSIGNMENT,
            format!("every broker assigned to partition {p} is fenced or shutting down"),
        ));
    };
    Ok(PartitionRegistration {
        replicas,
        isr,
        leader,
        leader_epoch: 0,
        partition_epoch: 0,
    })
}

fn check_partition_count(n: i32) -> Result<(), ControlError> {
    if !(1..=PARTITIONS_MAX).contains(&n) {
        return Err(ControlError::new(
            ec::INVALID_PARTITIONS,
            format!("partition count must be between 1 and {PARTITIONS_MAX}, not {n}"),
        ));
    }
    Ok(())
}

fn validate_configs(
    cfg: &ControlConfig,
    configs: &BTreeMap<String, String>,
) -> Result<(), ControlError> {
    configs
        .iter()
        .try_for_each(|(k, v)| cfg.validate_topic_config(k, v))
}

fn create_one(
    img: &MetadataImage,
    cfg: &ControlConfig,
    spec: &CreateTopicSpec,
    taken_ids: &BTreeSet<Uuid>,
    rng: &mut WeirRng,
) -> Result<MetadataRecord, ControlError> {
    validate_topic_name(&spec.name).map_err(|e| ControlError::new(e.code, e.message))?;
    if img.topics.contains_key(&spec.name) {
        return Err(ControlError::new(
            ec::TOPIC_ALREADY_EXISTS,
            format!("topic {} already exists", spec.name),
        ));
    }
    let key = collision_key(&spec.name);
    if let Some(other) = img.topics.keys().find(|n| collision_key(n) == key) {
        return Err(ControlError::new(
            ec::INVALID_TOPIC_EXCEPTION,
            format!("topic {} collides with existing topic {other}", spec.name),
        ));
    }
    let assignments = if spec.assignments.is_empty() {
        let n = if spec.partitions == -1 {
            cfg.num_partitions
        } else {
            spec.partitions
        };
        check_partition_count(n)?;
        let rf = if spec.replication_factor == -1 {
            cfg.default_replication_factor
        } else {
            spec.replication_factor
        };
        placement::assign(&placement_candidates(img), 0, n, rf, rng)?
    } else {
        let n = spec.assignments.len();
        let rf = spec.assignments[0].len();
        if (spec.partitions != -1 && spec.partitions as usize != n)
            || (spec.replication_factor != -1 && spec.replication_factor as usize != rf)
        {
            return Err(ControlError::new(
                ec::INVALID_REQUEST,
                "partitions and replication factor must be -1 with an explicit assignment",
            ));
        }
        check_partition_count(i32::try_from(n).unwrap_or(i32::MAX))?;
        let registered: BTreeSet<i32> = img.brokers.keys().copied().collect();
        placement::validate_explicit(&spec.assignments, &registered)?;
        spec.assignments.clone()
    };
    validate_configs(cfg, &spec.configs)?;
    let partitions = assignments
        .into_iter()
        .enumerate()
        .map(|(p, replicas)| initial_partition(img, replicas, p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(MetadataRecord::CreateTopic {
        name: spec.name.clone(),
        id: new_topic_id(img, taken_ids, rng),
        configs: spec.configs.clone(),
        partitions,
    })
}

/// CreateTopics: one result per spec in order; the records create the
/// topics that passed.
pub fn create_topics(
    img: &MetadataImage,
    cfg: &ControlConfig,
    specs: &[CreateTopicSpec],
    rng: &mut WeirRng,
) -> (Vec<MetadataRecord>, Vec<ItemResult>) {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for s in specs {
        *seen.entry(collision_key(&s.name)).or_default() += 1;
    }
    let mut records = Vec::new();
    let mut results = Vec::new();
    let mut taken = BTreeSet::new();
    for spec in specs {
        if seen[&collision_key(&spec.name)] > 1 {
            results.push(
                ControlError::new(
                    ec::INVALID_REQUEST,
                    format!("topic {} appears more than once in the request", spec.name),
                )
                .into(),
            );
            continue;
        }
        match create_one(img, cfg, spec, &taken, rng) {
            Ok(rec) => {
                if let MetadataRecord::CreateTopic { id, .. } = &rec {
                    taken.insert(*id);
                }
                records.push(rec);
                results.push(ItemResult::default());
            }
            Err(e) => results.push(e.into()),
        }
    }
    (records, results)
}

/// DeleteTopics: one result per name in order.
pub fn delete_topics(
    img: &MetadataImage,
    names: &[String],
) -> (Vec<MetadataRecord>, Vec<ItemResult>) {
    let mut records = Vec::new();
    let mut results = Vec::new();
    let mut deleted = BTreeSet::new();
    for name in names {
        match img.topic(name) {
            Some(t) => {
                if deleted.insert(t.id) {
                    records.push(MetadataRecord::DeleteTopic { id: t.id });
                }
                results.push(ItemResult::default());
            }
            None => results.push(
                ControlError::new(
                    ec::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("unknown topic {name}"),
                )
                .into(),
            ),
        }
    }
    (records, results)
}

fn topic<'a>(img: &'a MetadataImage, name: &str) -> Result<&'a TopicImage, ControlError> {
    img.topic(name).ok_or_else(|| {
        ControlError::new(
            ec::UNKNOWN_TOPIC_OR_PARTITION,
            format!("unknown topic {name}"),
        )
    })
}

/// CreatePartitions: grow `topic` to `count` partitions, placed like a new
/// topic's with the same replication factor.
pub fn create_partitions(
    img: &MetadataImage,
    topic_name: &str,
    count: i32,
    rng: &mut WeirRng,
) -> Result<Vec<MetadataRecord>, ControlError> {
    let t = topic(img, topic_name)?;
    let have = t.partitions.len() as i32;
    if count <= have {
        return Err(ControlError::new(
            ec::INVALID_PARTITIONS,
            format!("topic {topic_name} has {have} partitions; {count} would not add any"),
        ));
    }
    check_partition_count(count)?;
    let rf = t.partitions.first().map_or(1, |p| p.replicas.len()) as i16;
    let assignments = placement::assign(&placement_candidates(img), have, count - have, rf, rng)?;
    let partitions = assignments
        .into_iter()
        .enumerate()
        .map(|(i, replicas)| initial_partition(img, replicas, have as usize + i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![MetadataRecord::CreatePartitions {
        topic_id: t.id,
        partitions,
    }])
}

/// Replace a topic's dynamic config overrides. A change of the unclean
/// setting takes effect at once: leaderless partitions are retried.
pub fn set_topic_configs(
    img: &MetadataImage,
    cfg: &ControlConfig,
    topic_name: &str,
    configs: &BTreeMap<String, String>,
) -> Result<Vec<MetadataRecord>, ControlError> {
    let t = topic(img, topic_name)?;
    validate_configs(cfg, configs)?;
    let mut records = vec![MetadataRecord::SetTopicConfigs {
        topic_id: t.id,
        configs: configs.clone(),
    }];
    let mut after = t.clone();
    after.configs = configs.clone();
    let unclean = cfg.unclean_enabled(&after);
    let live = |x: i32| is_live(img, x);
    for (i, p) in t.partitions.iter().enumerate() {
        if p.has_leader() && live(p.leader) {
            continue;
        }
        if let Some(state) = next_state(p, &live, None, unclean) {
            records.push(MetadataRecord::ChangePartition {
                topic_id: t.id,
                partition: i as i32,
                state,
            });
        }
    }
    Ok(records)
}

/// AlterPartition (KIP-497): the leader asks for a new ISR. On success the
/// records (none when the ISR is unchanged) and the partition's new state.
#[allow(clippy::too_many_arguments)]
pub fn alter_partition(
    img: &MetadataImage,
    broker: i32,
    broker_epoch: i64,
    topic_name: &str,
    partition: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    new_isr: &[i32],
) -> Result<(Vec<MetadataRecord>, PartitionRegistration), ControlError> {
    broker_at_epoch(img, broker, broker_epoch)?;
    let t = topic(img, topic_name)?;
    let p = usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
        .ok_or_else(|| {
            ControlError::new(
                ec::UNKNOWN_TOPIC_OR_PARTITION,
                format!("unknown partition {topic_name}-{partition}"),
            )
        })?;
    if leader_epoch != p.leader_epoch {
        return Err(ControlError::new(
            codes::FENCED_LEADER_EPOCH,
            format!(
                "leader epoch {leader_epoch} is not the current {}",
                p.leader_epoch
            ),
        ));
    }
    if p.leader != broker {
        return Err(ControlError::new(
            ec::NOT_LEADER_OR_FOLLOWER,
            format!("broker {broker} does not lead {topic_name}-{partition}"),
        ));
    }
    if partition_epoch != p.partition_epoch {
        return Err(ControlError::new(
            codes::INVALID_UPDATE_VERSION,
            format!(
                "partition epoch {partition_epoch} is not the current {}",
                p.partition_epoch
            ),
        ));
    }
    let wanted: BTreeSet<i32> = new_isr.iter().copied().collect();
    if wanted.len() != new_isr.len()
        || !wanted.iter().all(|b| p.replicas.contains(b))
        || !wanted.contains(&broker)
    {
        return Err(ControlError::new(
            ec::INVALID_REQUEST,
            format!(
                "ISR {new_isr:?} must be distinct replicas of {:?} including the leader {broker}",
                p.replicas
            ),
        ));
    }
    if let Some(b) = wanted
        .iter()
        .find(|&&b| !p.isr.contains(&b) && !is_live(img, b))
    {
        return Err(ControlError::new(
            codes::INELIGIBLE_REPLICA,
            format!("broker {b} is fenced or shutting down and cannot join the ISR"),
        ));
    }
    // Keep the ISR in replica order, as every other decision does.
    let isr: Vec<i32> = p
        .replicas
        .iter()
        .copied()
        .filter(|b| wanted.contains(b))
        .collect();
    if isr == p.isr {
        return Ok((Vec::new(), p.clone()));
    }
    let state = PartitionRegistration {
        isr,
        partition_epoch: p.partition_epoch + 1,
        ..p.clone()
    };
    Ok((
        vec![MetadataRecord::ChangePartition {
            topic_id: t.id,
            partition,
            state: state.clone(),
        }],
        state,
    ))
}

/// A block of producer ids for a broker: (records, first, count).
pub fn allocate_producer_ids(
    img: &MetadataImage,
    broker: i32,
    broker_epoch: i64,
) -> Result<(Vec<MetadataRecord>, i64, i64), ControlError> {
    broker_at_epoch(img, broker, broker_epoch)?;
    let first = img.next_producer_id;
    let count = PRODUCER_ID_BLOCK;
    Ok((
        vec![MetadataRecord::AllocateProducerIds {
            broker,
            first,
            count,
        }],
        first,
        count,
    ))
}

#[cfg(test)]
mod tests;

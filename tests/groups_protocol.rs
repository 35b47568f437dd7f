//! The group APIs through the wire: FindCoordinator, JoinGroup (with the
//! MEMBER_ID_REQUIRED round), SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete,
//! committed offsets surviving a restart, and `__consumer_offsets` being
//! compacted.
#![cfg(not(madsim))]

mod broker_support;

use std::path::Path;

use broker_support::*;
use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use weir::broker::Server;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn gid(v: &str) -> GroupId {
    GroupId(s(v))
}

fn tname(v: &str) -> TopicName {
    TopicName(s(v))
}

async fn start_groups(dir: &Path) -> Server {
    let mut c = config(dir);
    c.set("group.initial.rebalance.delay.ms", "0").unwrap();
    c.set("group.min.session.timeout.ms", "100").unwrap();
    c.set("offsets.topic.num.partitions", "5").unwrap();
    let server = start_with(c).await;
    // Clients look their coordinator up before joining; the first lookup
    // creates __consumer_offsets, whose partitions' leader coordinates.
    let mut client = Client::connect(server.local_addr()).await;
    let r = client
        .call(3, &FindCoordinatorRequest::default().with_key(s("any")))
        .await;
    assert_eq!(r.error_code, 0, "FindCoordinator");
    server
}

async fn create(c: &mut Client, topic: &str, partitions: i32) {
    let r = c
        .call(
            7,
            &CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                .with_name(tname(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(1)]),
        )
        .await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

/// ConsumerProtocolSubscription v0 bytes for `topics`.
fn subscription(topics: &[&str]) -> Bytes {
    use kafka_protocol::protocol::Encodable;
    let sub =
        ConsumerProtocolSubscription::default().with_topics(topics.iter().map(|t| s(t)).collect());
    let mut b = bytes::BytesMut::new();
    b.extend_from_slice(&0i16.to_be_bytes());
    sub.encode(&mut b, 0).unwrap();
    b.freeze()
}

fn join_req(group: &str, member: &str, session_ms: i32, topics: &[&str]) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member))
        .with_session_timeout_ms(session_ms)
        .with_rebalance_timeout_ms(10_000)
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(s("range"))
            .with_metadata(subscription(topics))])
}

/// MEMBER_ID_REQUIRED round, then the real join. Returns the response.
async fn join(c: &mut Client, group: &str, session_ms: i32, topics: &[&str]) -> JoinGroupResponse {
    let r = c.call(9, &join_req(group, "", session_ms, topics)).await;
    assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED first");
    assert!(!r.member_id.is_empty());
    let id = r.member_id.to_string();
    c.call(9, &join_req(group, &id, session_ms, topics)).await
}

async fn sync(
    c: &mut Client,
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> SyncGroupResponse {
    c.call(
        5,
        &SyncGroupRequest::default()
            .with_group_id(gid(group))
            .with_member_id(s(member))
            .with_generation_id(generation)
            .with_protocol_type(Some(s("consumer")))
            .with_protocol_name(Some(s("range")))
            .with_assignments(
                assignments
                    .iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(m))
                            .with_assignment(Bytes::copy_from_slice(a))
                    })
                    .collect(),
            ),
    )
    .await
}

async fn heartbeat(c: &mut Client, group: &str, member: &str, generation: i32) -> i16 {
    c.call(
        4,
        &HeartbeatRequest::default()
            .with_group_id(gid(group))
            .with_member_id(s(member))
            .with_generation_id(generation),
    )
    .await
    .error_code
}

fn commit_req(
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    offsets: &[(i32, i64)],
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(gid(group))
        .with_member_id(s(member))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(tname(topic))
            .with_partitions(
                offsets
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                            .with_committed_metadata(Some(s("meta")))
                    })
                    .collect(),
            )])
}

async fn fetch_v7(
    c: &mut Client,
    group: &str,
    topics: Option<&[(&str, &[i32])]>,
) -> Vec<(String, i32, i64)> {
    let req = OffsetFetchRequest::default()
        .with_group_id(gid(group))
        .with_topics(topics.map(|ts| {
            ts.iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(tname(t))
                        .with_partition_indexes(ps.to_vec())
                })
                .collect()
        }));
    let r = c.call(7, &req).await;
    assert_eq!(r.error_code, 0);
    let mut out = Vec::new();
    for t in r.topics {
        for p in t.partitions {
            assert_eq!(p.error_code, 0);
            out.push((t.name.0.to_string(), p.partition_index, p.committed_offset));
        }
    }
    out
}

#[tokio::test]
async fn find_coordinator_single_and_batched() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_groups(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    for v in 0..=3 {
        let r = c
            .call(v, &FindCoordinatorRequest::default().with_key(s("g1")))
            .await;
        assert_eq!(r.error_code, 0, "v{v}");
        assert_eq!(r.node_id.0, 1);
        assert_eq!(r.port as u16, server.local_addr().port());
    }
    let r = c
        .call(
            4,
            &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("a"), s("b")]),
        )
        .await;
    assert_eq!(r.coordinators.len(), 2);
    assert!(r
        .coordinators
        .iter()
        .all(|c| c.error_code == 0 && c.node_id.0 == 1));
    // Transaction coordinators are served (the first lookup creates
    // `__transaction_state`).
    let r = c
        .call(
            3,
            &FindCoordinatorRequest::default()
                .with_key(s("tx"))
                .with_key_type(1),
        )
        .await;
    assert_eq!((r.error_code, r.node_id.0), (0, 1));
    // The offsets topic now exists with the configured partitions, compacted.
    let m = c
        .call(
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(tname("__consumer_offsets"))),
            ])),
        )
        .await;
    assert_eq!(m.topics[0].error_code, 0);
    assert_eq!(m.topics[0].partitions.len(), 5);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn join_sync_heartbeat_leave_describe_list() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_groups(dir.path()).await;
    let mut a = Client::connect(server.local_addr()).await;
    let mut b = Client::connect(server.local_addr()).await;
    create(&mut a, "t", 4).await;

    let ja = join(&mut a, "g", 10_000, &["t"]).await;
    assert_eq!(ja.error_code, 0);
    assert_eq!(ja.generation_id, 1);
    assert_eq!(ja.leader, ja.member_id);
    assert_eq!(ja.protocol_name.as_deref(), Some("range"));
    assert_eq!(ja.members.len(), 1);
    let a_id = ja.member_id.to_string();
    let sa = sync(&mut a, "g", &a_id, 1, &[(&a_id, b"all")]).await;
    assert_eq!(sa.error_code, 0);
    assert_eq!(&sa.assignment[..], b"all");
    assert_eq!(heartbeat(&mut a, "g", &a_id, 1).await, 0);
    assert_eq!(heartbeat(&mut a, "g", &a_id, 7).await, 22);
    assert_eq!(heartbeat(&mut a, "g", "ghost", 1).await, 25);

    // b joins from another connection: its JoinGroup waits for a to rejoin.
    let r = b.call(9, &join_req("g", "", 10_000, &["t"])).await;
    let b_id = r.member_id.to_string();
    let b_join = b.send(9, &join_req("g", &b_id, 10_000, &["t"])).await;
    // a learns of the rebalance by heartbeat, then rejoins.
    let mut hb = 0;
    for _ in 0..50 {
        hb = heartbeat(&mut a, "g", &a_id, 1).await;
        if hb == 27 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(hb, 27, "REBALANCE_IN_PROGRESS");
    let ja = a.call(9, &join_req("g", &a_id, 10_000, &["t"])).await;
    let (cid, jb) = b.recv::<JoinGroupRequest>(9).await;
    assert_eq!(cid, b_join);
    assert_eq!(ja.generation_id, 2);
    assert_eq!(jb.generation_id, 2);
    assert_eq!(ja.members.len(), 2, "the leader sees every member");
    assert!(jb.members.is_empty());
    let b_sync = b
        .send(
            5,
            &SyncGroupRequest::default()
                .with_group_id(gid("g"))
                .with_member_id(s(&b_id))
                .with_generation_id(2),
        )
        .await;
    let sa = sync(&mut a, "g", &a_id, 2, &[(&a_id, b"p0p1"), (&b_id, b"p2p3")]).await;
    assert_eq!(&sa.assignment[..], b"p0p1");
    let (cid, sb) = b.recv::<SyncGroupRequest>(5).await;
    assert_eq!(cid, b_sync);
    assert_eq!(&sb.assignment[..], b"p2p3");

    // Describe and list.
    let d = a
        .call(
            5,
            &DescribeGroupsRequest::default().with_groups(vec![gid("g"), gid("none")]),
        )
        .await;
    assert_eq!(d.groups[0].group_state.as_str(), "Stable");
    assert_eq!(d.groups[0].protocol_data.as_str(), "range");
    assert_eq!(d.groups[0].members.len(), 2);
    assert!(d.groups[0]
        .members
        .iter()
        .all(|m| m.client_host.as_str() == "/127.0.0.1"));
    assert_eq!(d.groups[1].group_state.as_str(), "Dead");
    let l = a
        .call(
            4,
            &ListGroupsRequest::default().with_states_filter(vec![s("stable")]),
        )
        .await;
    assert_eq!(l.groups.len(), 1);
    assert_eq!(l.groups[0].group_state.as_str(), "Stable");
    let l = a
        .call(
            4,
            &ListGroupsRequest::default().with_states_filter(vec![s("Empty")]),
        )
        .await;
    assert!(l.groups.is_empty());

    // Deleting a group with members is refused.
    let del = a
        .call(
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![gid("g")]),
        )
        .await;
    assert_eq!(del.results[0].error_code, 68);

    // b leaves (v3+ batch); a rejoins alone.
    let lv = b
        .call(
            5,
            &LeaveGroupRequest::default()
                .with_group_id(gid("g"))
                .with_members(vec![MemberIdentity::default().with_member_id(s(&b_id))]),
        )
        .await;
    assert_eq!(lv.members[0].error_code, 0);
    assert_eq!(heartbeat(&mut a, "g", &a_id, 2).await, 27);
    let ja = a.call(9, &join_req("g", &a_id, 10_000, &["t"])).await;
    assert_eq!(ja.generation_id, 3);
    assert_eq!(ja.members.len(), 1);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn session_timeout_expires_member_and_empties_group() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_groups(dir.path()).await;
    let mut a = Client::connect(server.local_addr()).await;
    let ja = join(&mut a, "g", 300, &["t"]).await;
    let id = ja.member_id.to_string();
    sync(&mut a, "g", &id, 1, &[(&id, b"x")]).await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(heartbeat(&mut a, "g", &id, 1).await, 25, "expired");
    let d = a
        .call(
            5,
            &DescribeGroupsRequest::default().with_groups(vec![gid("g")]),
        )
        .await;
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn offsets_commit_fetch_rules_and_batched_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_groups(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, "t", 3).await;

    // Simple commit (generation -1) into an unknown group.
    for v in [2, 5, 8, 9] {
        let r = c
            .call(v, &commit_req("simple", "", -1, "t", &[(0, 10 + v as i64)]))
            .await;
        assert_eq!(r.topics[0].partitions[0].error_code, 0, "v{v}");
    }
    let r = c
        .call(9, &commit_req("simple", "", -1, "nope", &[(0, 1)]))
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 3, "unknown topic");
    let r = c
        .call(9, &commit_req("simple", "", -1, "t", &[(7, 1)]))
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 3, "unknown partition");
    let r = c
        .call(9, &commit_req("simple", "x", 4, "t", &[(1, 1)]))
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 25, "unknown member");

    assert_eq!(
        fetch_v7(&mut c, "simple", Some(&[("t", &[0, 1])])).await,
        vec![("t".into(), 0, 19), ("t".into(), 1, -1)]
    );
    assert_eq!(
        fetch_v7(&mut c, "simple", None).await,
        vec![("t".into(), 0, 19)]
    );
    assert_eq!(fetch_v7(&mut c, "nobody", None).await, vec![]);
    // v1 (no top-level error code).
    let r = c
        .call(
            1,
            &OffsetFetchRequest::default()
                .with_group_id(gid("simple"))
                .with_topics(Some(vec![OffsetFetchRequestTopic::default()
                    .with_name(tname("t"))
                    .with_partition_indexes(vec![0])])),
        )
        .await;
    assert_eq!(r.topics[0].partitions[0].committed_offset, 19);

    // Group commits need the member and generation.
    let ja = join(&mut c, "grp", 10_000, &["t"]).await;
    let id = ja.member_id.to_string();
    let r = c.call(9, &commit_req("grp", &id, 1, "t", &[(0, 5)])).await;
    assert_eq!(
        r.topics[0].partitions[0].error_code, 27,
        "completing rebalance"
    );
    sync(&mut c, "grp", &id, 1, &[(&id, b"x")]).await;
    let r = c
        .call(9, &commit_req("grp", &id, 1, "t", &[(0, 5), (2, 6)]))
        .await;
    assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 0));
    let r = c.call(9, &commit_req("grp", &id, 0, "t", &[(0, 5)])).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 22);
    let r = c.call(9, &commit_req("grp", "", -1, "t", &[(0, 5)])).await;
    assert_eq!(
        r.topics[0].partitions[0].error_code, 25,
        "no simple commits while members exist"
    );

    // Batched v8: two groups, one with a null topic list.
    let r = c
        .call(
            8,
            &OffsetFetchRequest::default().with_groups(vec![
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid("grp"))
                    .with_topics(None),
                OffsetFetchRequestGroup::default()
                    .with_group_id(gid("simple"))
                    .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                        .with_name(tname("t"))
                        .with_partition_indexes(vec![0])])),
            ]),
        )
        .await;
    assert_eq!(r.groups.len(), 2);
    let g0: Vec<(i32, i64)> = r.groups[0].topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.committed_offset))
        .collect();
    assert_eq!(g0, vec![(0, 5), (2, 6)]);
    assert_eq!(r.groups[1].topics[0].partitions[0].committed_offset, 19);
    assert_eq!(
        r.groups[1].topics[0].partitions[0].metadata.as_deref(),
        Some("meta")
    );

    // OffsetDelete: refused for a subscribed topic, allowed once the group is empty.
    let od = OffsetDeleteRequest::default()
        .with_group_id(gid("grp"))
        .with_topics(vec![OffsetDeleteRequestTopic::default()
            .with_name(tname("t"))
            .with_partitions(vec![
                OffsetDeleteRequestPartition::default().with_partition_index(2)
            ])]);
    let r = c.call(0, &od).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 86);
    let lv = c
        .call(
            1,
            &LeaveGroupRequest::default()
                .with_group_id(gid("grp"))
                .with_member_id(s(&id)),
        )
        .await;
    assert_eq!(lv.error_code, 0);
    let r = c.call(0, &od).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    assert_eq!(
        fetch_v7(&mut c, "grp", None).await,
        vec![("t".into(), 0, 5)]
    );
    let r = c
        .call(0, &OffsetDeleteRequest::default().with_group_id(gid("zzz")))
        .await;
    assert_eq!(r.error_code, 69);

    // DeleteGroups on the now empty group; its offsets are gone.
    let del = c
        .call(
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![gid("grp"), gid("zzz")]),
        )
        .await;
    assert_eq!(del.results[0].error_code, 0);
    assert_eq!(del.results[1].error_code, 69);
    assert_eq!(fetch_v7(&mut c, "grp", None).await, vec![]);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn committed_offsets_and_groups_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_groups(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    create(&mut c, "t", 2).await;
    let r = c
        .call(8, &commit_req("simple", "", -1, "t", &[(0, 42), (1, 7)]))
        .await;
    assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 0));
    let r = c
        .call(8, &commit_req("simple", "", -1, "t", &[(0, 43)]))
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let ja = join(&mut c, "grp", 30_000, &["t"]).await;
    let id = ja.member_id.to_string();
    sync(&mut c, "grp", &id, 1, &[(&id, b"both")]).await;
    let r = c.call(8, &commit_req("grp", &id, 1, "t", &[(1, 99)])).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    // A deleted group stays deleted.
    c.call(8, &commit_req("gone", "", -1, "t", &[(0, 1)])).await;
    let del = c
        .call(
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![gid("gone")]),
        )
        .await;
    assert_eq!(del.results[0].error_code, 0);
    drop(c);
    server.shutdown().await.unwrap();

    let server = start_groups(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    assert_eq!(
        fetch_v7(&mut c, "simple", None).await,
        vec![("t".into(), 0, 43), ("t".into(), 1, 7)]
    );
    assert_eq!(
        fetch_v7(&mut c, "grp", None).await,
        vec![("t".into(), 1, 99)]
    );
    assert_eq!(fetch_v7(&mut c, "gone", None).await, vec![]);
    // The member carries on in its generation after the restart.
    assert_eq!(heartbeat(&mut c, "grp", &id, 1).await, 0);
    let r = c
        .call(8, &commit_req("grp", &id, 1, "t", &[(1, 100)]))
        .await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let s2 = sync(&mut c, "grp", &id, 1, &[]).await;
    assert_eq!(&s2.assignment[..], b"both");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn static_member_rejoins_without_rebalance() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_groups(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    let req = |member: &str| {
        join_req("sg", member, 10_000, &["t"]).with_group_instance_id(Some(s("inst-1")))
    };
    let r = c.call(9, &req("")).await;
    assert_eq!(
        r.error_code, 0,
        "static members need no MEMBER_ID_REQUIRED round"
    );
    let old = r.member_id.to_string();
    sync(&mut c, "sg", &old, 1, &[(&old, b"mine")]).await;
    // Restarted process: same instance id, no member id.
    let r = c.call(9, &req("")).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, 1, "no rebalance");
    assert!(r.skip_assignment, "the leader must not reassign");
    let new = r.member_id.to_string();
    assert_ne!(new, old);
    let sr = sync(&mut c, "sg", &new, 1, &[]).await;
    assert_eq!(&sr.assignment[..], b"mine");
    // Before v9 there is no SkipAssignment: the leader gets the member list.
    let r = c.call(5, &req("")).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.generation_id, 1);
    assert_eq!(r.members.len(), 1);
    let old = new;
    let new = r.member_id.to_string();
    let sr = sync(&mut c, "sg", &new, 1, &[(&new, b"ignored")]).await;
    assert_eq!(
        &sr.assignment[..],
        b"mine",
        "a Stable group keeps its assignment"
    );
    let hb = c
        .call(
            4,
            &HeartbeatRequest::default()
                .with_group_id(gid("sg"))
                .with_member_id(s(&old))
                .with_group_instance_id(Some(s("inst-1")))
                .with_generation_id(1),
        )
        .await;
    assert_eq!(hb.error_code, 82, "FENCED_INSTANCE_ID");
    // Leave by instance id alone.
    let lv = c
        .call(
            5,
            &LeaveGroupRequest::default()
                .with_group_id(gid("sg"))
                .with_members(vec![MemberIdentity::default()
                    .with_member_id(s(""))
                    .with_group_instance_id(Some(s("inst-1")))]),
        )
        .await;
    assert_eq!(lv.members[0].error_code, 0);
    let d = c
        .call(
            5,
            &DescribeGroupsRequest::default().with_groups(vec![gid("sg")]),
        )
        .await;
    assert_eq!(d.groups[0].group_state.as_str(), "Empty");
    server.shutdown().await.unwrap();
}

/// The group a `__consumer_offsets` key belongs to: every key version (0-1
/// offset commit, 2 group metadata) starts with i16 version, then the group
/// as an i16-length string.
fn group_of(key: &[u8]) -> String {
    let len = i16::from_be_bytes([key[2], key[3]]) as usize;
    String::from_utf8(key[4..4 + len].to_vec()).unwrap()
}

/// ListOffsets of partition 0 of `__consumer_offsets`: -2 earliest, -1 latest.
async fn offsets_log_bound(c: &mut Client, timestamp: i64) -> i64 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let req = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(tname("__consumer_offsets"))
        .with_partitions(vec![ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(timestamp)])]);
    let r = c.call(7, &req).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

/// Every record of partition 0 of `__consumer_offsets` from its log start
/// (the cleaner deletes emptied segments, so that may move): (offset,
/// group, has a value); None if the log start moved under the read.
async fn read_offsets_log(c: &mut Client) -> Option<Vec<(i64, String, bool)>> {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    let mut offset = offsets_log_bound(c, -2).await;
    let mut out = Vec::new();
    loop {
        let req = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(tname("__consumer_offsets"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset)
                    .with_partition_max_bytes(1 << 20)])]);
        let r = c.call(12, &req).await;
        let p = &r.responses[0].partitions[0];
        if p.error_code == 1 {
            return None;
        }
        assert_eq!(p.error_code, 0);
        let records = p.records.clone().map(decode_records).unwrap_or_default();
        let Some(last) = records.last() else {
            return Some(out);
        };
        assert!(
            last.offset >= offset,
            "a fetch at {offset} returned only records below it"
        );
        offset = last.offset + 1;
        for r in records {
            let key = r.key.expect("every offsets record has a key");
            out.push((r.offset, group_of(&key), r.value.is_some()));
        }
    }
}

/// Kafka creates the offsets topic compacted, with segment.bytes =
/// offsets.topic.segment.bytes; a Metadata request that auto-creates it
/// must do the same (a plain topic would delete offsets by retention).
#[tokio::test]
async fn metadata_auto_create_makes_consumer_offsets_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.set("offsets.topic.num.partitions", "2").unwrap();
    cfg.set("offsets.topic.segment.bytes", "50000").unwrap();
    let server = start_with(cfg).await;
    let mut c = Client::connect(server.local_addr()).await;
    let md = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![
            kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(tname("__consumer_offsets"))),
        ]));
    c.call(12, &md).await;
    let m = c.call(12, &md).await;
    assert_eq!(m.topics[0].error_code, 0);
    assert!(m.topics[0].is_internal);
    assert_eq!(
        m.topics[0].partitions.len(),
        2,
        "offsets.topic.num.partitions"
    );
    let d = describe_topic(&mut c, "__consumer_offsets").await;
    assert_eq!(described(&d, "cleanup.policy"), ("compact".into(), 1));
    assert_eq!(described(&d, "segment.bytes"), ("50000".into(), 1));
    server.shutdown().await.unwrap();
}

/// `__consumer_offsets` is compacted: with small segments
/// (offsets.topic.segment.bytes) and a busy cleaner, the superseded commits
/// of a group and every record of a deleted group (its tombstones too, once
/// delete.retention.ms passes) leave the log; after a restart the
/// coordinator, replaying the compacted log, serves the latest commits and
/// the deleted group stays gone.
#[tokio::test]
async fn consumer_offsets_is_compacted_and_replays_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.set("offsets.topic.num.partitions", "1").unwrap();
    cfg.set("offsets.topic.segment.bytes", "1024").unwrap();
    cfg.set("log.cleaner.backoff.ms", "10").unwrap();
    cfg.set("log.cleaner.delete.retention.ms", "0").unwrap();
    let server = start_with(cfg.clone()).await;
    let mut c = Client::connect(server.local_addr()).await;
    let r = c
        .call(3, &FindCoordinatorRequest::default().with_key(s("kept")))
        .await;
    assert_eq!(r.error_code, 0);
    let d = describe_topic(&mut c, "__consumer_offsets").await;
    assert_eq!(described(&d, "cleanup.policy"), ("compact".into(), 1));
    assert_eq!(described(&d, "segment.bytes"), ("1024".into(), 1));
    assert_eq!(described(&d, "compression.type"), ("producer".into(), 1));
    create(&mut c, "t", 2).await;

    let commit =
        |group: &str, o0: i64, o1: i64| commit_req(group, "", -1, "t", &[(0, o0), (1, o1)]);
    let r = c.call(8, &commit("gone", 7, 8)).await;
    assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 0));
    for i in 0..150 {
        let r = c.call(8, &commit("kept", i, 1000 + i)).await;
        assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 0));
    }
    let del = c
        .call(
            2,
            &DeleteGroupsRequest::default().with_groups_names(vec![gid("gone")]),
        )
        .await;
    assert_eq!(del.results[0].error_code, 0);
    // More commits close the segment holding the tombstones, so the
    // cleaner (which never touches the active segment) sees them.
    for i in 150..200 {
        let r = c.call(8, &commit("kept", i, 1000 + i)).await;
        assert!(r.topics[0].partitions.iter().all(|p| p.error_code == 0));
    }

    let end = offsets_log_bound(&mut c, -1).await;
    assert_eq!(end, 405, "201 two-partition commits and 3 tombstones");

    // Wait for the cleaner (a liveness bound, not a timing claim): until no
    // record of the deleted group is left and most superseded commits went.
    // The topic is compact only (no retention, and DeleteRecords refuses
    // it), so only the cleaner removes records.
    let mut cleaned = None;
    for _ in 0..3000 {
        if let Some(records) = read_offsets_log(&mut c).await {
            let gone_left = records.iter().filter(|r| r.1 == "gone").count();
            if gone_left == 0 && records.len() < 100 {
                cleaned = Some(records);
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let records = cleaned.expect("the cleaner compacted __consumer_offsets");
    // Offsets kept their place: the survivors are strictly increasing, all
    // live commits of the kept group, and the log still ends where it did.
    assert!(records.windows(2).all(|w| w[0].0 < w[1].0));

    assert!(records.iter().all(|r| r.1 == "kept" && r.2));
    assert_eq!(offsets_log_bound(&mut c, -1).await, end);
    drop(c);
    server.shutdown().await.unwrap();

    let server = start_with(cfg).await;
    let mut c = Client::connect(server.local_addr()).await;
    let r = c
        .call(3, &FindCoordinatorRequest::default().with_key(s("kept")))
        .await;
    assert_eq!(r.error_code, 0);
    assert_eq!(
        fetch_v7(&mut c, "kept", None).await,
        vec![("t".into(), 0, 199), ("t".into(), 1, 1199)]
    );
    assert_eq!(fetch_v7(&mut c, "gone", None).await, vec![]);
    let groups = c.call(4, &ListGroupsRequest::default()).await;
    let names: Vec<String> = groups
        .groups
        .iter()
        .map(|g| g.group_id.0.to_string())
        .collect();
    assert!(!names.contains(&"gone".to_string()), "{names:?}");
    server.shutdown().await.unwrap();
}

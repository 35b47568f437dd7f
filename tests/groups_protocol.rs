//! The group APIs through the wire: FindCoordinator, JoinGroup (with the
//! MEMBER_ID_REQUIRED round), SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
//! OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete, and
//! committed offsets surviving a restart.
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

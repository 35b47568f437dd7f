//! Broker protocol tests that need no partition log: ApiVersions, framing,
//! bad input, DescribeCluster, broker configs, InitProducerId, CreateTopics
//! validation errors.
#![cfg(not(madsim))]

mod broker_support;

use broker_support::*;
use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};

fn topic(name: &str, partitions: i32, rf: i16) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(partitions)
        .with_replication_factor(rf)
}

#[tokio::test]
async fn api_versions_lists_served_apis_at_every_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    for v in 0..=3 {
        let resp = c.call(v, &ApiVersionsRequest::default()).await;
        assert_eq!(resp.error_code, 0);
        let produce = resp
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::Produce as i16)
            .unwrap();
        assert_eq!((produce.min_version, produce.max_version), (3, 11));
        assert!(resp
            .api_keys
            .iter()
            .all(|k| k.api_key != ApiKey::DescribeAcls as i16));
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn unsupported_api_versions_version_gets_error_35_in_v0_body() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    // ApiVersions v9 with a v2 header and an empty flexible body, as a future client sends it.
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::ApiVersions as i16);
    body.put_i16(9);
    body.put_i32(77);
    body.put_i16(-1); // null client id
    body.put_u8(0); // header tagged fields
    body.put_u8(0); // body tagged fields
    let mut framed = BytesMut::new();
    framed.put_i32(body.len() as i32);
    framed.extend_from_slice(&body);
    c.send_raw(&framed).await;
    let mut frame = c.recv_frame().await.unwrap();
    assert_eq!(
        frame.get_i32(),
        77,
        "v0 response header: correlation id only"
    );
    let resp = ApiVersionsResponse::decode(&mut frame, 0).unwrap();
    assert_eq!(resp.error_code, 35);
    assert!(resp
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ApiVersions as i16 && k.max_version == 3));
    // The connection stays usable: negotiate down.
    let resp = c.call(3, &ApiVersionsRequest::default()).await;
    assert_eq!(resp.error_code, 0);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_input_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.set("socket.request.max.bytes", "1000").unwrap();
    let server = start_with(cfg).await;
    let mut good = Client::connect(server.local_addr()).await;
    assert_eq!(
        good.call(3, &ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );

    // Oversized frame.
    let mut big = Client::connect(server.local_addr()).await;
    big.send_raw(&5000i32.to_be_bytes()).await;
    assert!(big.is_closed().await);
    // Negative size.
    let mut neg = Client::connect(server.local_addr()).await;
    neg.send_raw(&(-5i32).to_be_bytes()).await;
    assert!(neg.is_closed().await);
    // Truncated header inside a frame.
    let mut short = Client::connect(server.local_addr()).await;
    short.send_raw(&[0, 0, 0, 3, 0, 18, 0]).await;
    assert!(short.is_closed().await);
    // Unknown API key.
    let mut unknown = Client::connect(server.local_addr()).await;
    unknown
        .send_raw(&[0, 0, 0, 10, 0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0xff, 0xff])
        .await;
    assert!(unknown.is_closed().await);
    // A served API at an unserved version (DescribeAcls is not served at all).
    let mut unserved = Client::connect(server.local_addr()).await;
    unserved.send(1, &DescribeAclsRequest::default()).await;
    assert!(unserved.is_closed().await);
    // A body that ends inside its topics array (Metadata v1 naming 2 topics, sending none).
    // (Huge array lengths are not tested: kafka-protocol 0.18 pre-allocates
    // the claimed length, which aborts the process; see the broker report.)
    let mut garbage = Client::connect(server.local_addr()).await;
    garbage
        .send_raw(&[0, 0, 0, 14, 0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 2])
        .await;
    assert!(garbage.is_closed().await);

    // Everyone else is still served.
    assert_eq!(
        good.call(3, &ApiVersionsRequest::default())
            .await
            .error_code,
        0
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    let mut sent = Vec::new();
    for i in 0..20 {
        if i % 2 == 0 {
            sent.push(c.send(3, &ApiVersionsRequest::default()).await);
        } else {
            sent.push(c.send(0, &DescribeClusterRequest::default()).await);
        }
    }
    for (i, cid) in sent.into_iter().enumerate() {
        let got = if i % 2 == 0 {
            c.recv::<ApiVersionsRequest>(3).await.0
        } else {
            c.recv::<DescribeClusterRequest>(0).await.0
        };
        assert_eq!(got, cid);
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn metadata_and_describe_cluster_advertise_the_bound_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let port = server.local_addr().port() as i32;
    let mut c = Client::connect(server.local_addr()).await;
    let md = c.call(12, &MetadataRequest::default()).await;
    assert_eq!(md.brokers.len(), 1);
    assert_eq!(md.brokers[0].port, port);
    assert_eq!(md.brokers[0].host.as_str(), "127.0.0.1");
    assert_eq!(md.controller_id.0, 1);
    assert!(md.topics.is_empty());
    let dc = c
        .call(1, &DescribeClusterRequest::default().with_endpoint_type(1))
        .await;
    assert_eq!(dc.error_code, 0);
    assert_eq!(dc.brokers[0].port, port);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn create_topics_validation_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mut c = Client::connect(server.local_addr()).await;
    let req = CreateTopicsRequest::default().with_topics(vec![
        topic("bad/name", 1, 1),
        topic("..", 1, 1),
        topic(&"x".repeat(250), 1, 1),
        topic("zero-partitions", 0, 1),
        topic("rf3", 1, 3),
        topic("bad-config", 1, 1).with_configs(vec![
            create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("no.such.config"))
                .with_value(Some(StrBytes::from_static_str("1"))),
        ]),
    ]);
    let resp = c.call(7, &req).await;
    let codes: Vec<i16> = resp.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![17, 17, 17, 37, 38, 40]);
    // validate_only on a good topic creates nothing.
    let resp = c
        .call(
            7,
            &CreateTopicsRequest::default()
                .with_validate_only(true)
                .with_topics(vec![topic("fine", 3, 1)]),
        )
        .await;
    assert_eq!(resp.topics[0].error_code, 0);
    assert_eq!(resp.topics[0].num_partitions, 3);
    let md = c.call(12, &MetadataRequest::default()).await;
    assert!(md.topics.is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn describe_broker_configs_report_sources() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.set("num.partitions", "3").unwrap();
    let server = start_with(cfg).await;
    let mut c = Client::connect(server.local_addr()).await;
    let resp = c
        .call(
            4,
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1"))
                    .with_configuration_keys(None),
            ]),
        )
        .await;
    let r = &resp.results[0];
    assert_eq!(r.error_code, 0);
    let find = |n: &str| r.configs.iter().find(|c| c.name.as_str() == n).unwrap();
    assert_eq!(find("num.partitions").value.as_ref().unwrap().as_str(), "3");
    assert_eq!(find("num.partitions").config_source, 4);
    assert_eq!(find("message.max.bytes").config_source, 5);
    assert!(find("message.max.bytes").read_only);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn init_producer_id_never_repeats_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let server = start(dir.path()).await;
        let mut c = Client::connect(server.local_addr()).await;
        for v in [0, 4, 5] {
            let r = c
                .call(
                    v,
                    &InitProducerIdRequest::default()
                        .with_transactional_id(None)
                        .with_transaction_timeout_ms(1000),
                )
                .await;
            assert_eq!(r.error_code, 0);
            assert_eq!(r.producer_epoch, 0);
            ids.push(r.producer_id.0);
        }
        let txn = c
            .call(
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("t")))),
            )
            .await;
        // Transactions are served now; with no FindCoordinator yet there is
        // no `__transaction_state`, so: NOT_COORDINATOR (retriable).
        assert_eq!(txn.error_code, 16);
        server.shutdown().await.unwrap();
    }
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "producer ids repeated: {ids:?}");
}

//! A request whose array length lies (claims 2^31 elements in a few bytes)
//! must cost the sender its connection, never the process. kafka-protocol
//! reserves the claimed capacity before decoding; `GuardedAlloc` (installed
//! here exactly as the `weir` binary installs it) keeps that from aborting.
#![cfg(not(madsim))]

mod broker_support;

use broker_support::{start, Client};
use bytes::BufMut;
use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};

#[global_allocator]
static ALLOC: weir::env::alloc::GuardedAlloc = weir::env::alloc::GuardedAlloc;

fn lying_metadata_request(version: i16, flexible: bool) -> Vec<u8> {
    let mut body = Vec::new();
    body.put_i16(3); // Metadata
    body.put_i16(version);
    body.put_i32(99); // correlation id
    body.put_i16(-1); // null client id
    if flexible {
        body.put_u8(0); // no tagged header fields
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // compact array of 2^32-2
    } else {
        body.put_i32(i32::MAX); // topics: 2^31-1 elements, none present
    }
    let mut frame = Vec::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    frame
}

#[tokio::test]
async fn lying_array_length_closes_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let addr = server.local_addr();
    let mut bystander = Client::connect(addr).await;
    for (version, flexible) in [(4, false), (9, true), (12, true)] {
        let mut attacker = Client::connect(addr).await;
        attacker
            .send_raw(&lying_metadata_request(version, flexible))
            .await;
        assert!(
            attacker.is_closed().await,
            "v{version}: connection kept open"
        );
        // everyone else is still served
        let r = bystander.call(3, &ApiVersionsRequest::default()).await;
        assert_eq!(r.error_code, 0);
        let md = bystander.call(12, &MetadataRequest::default()).await;
        assert_eq!(md.brokers.len(), 1);
    }
    server.shutdown().await.unwrap();
}

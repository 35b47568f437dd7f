//! The follower side: one task per leader broker fetching every partition
//! this broker follows from it (Kafka's ReplicaFetcherThread).
//!
//! Each round builds the request from the logs themselves (fetch offset =
//! LEO, last fetched epoch = the newest epoch in the log's cache), so there
//! is no fetcher-side state to keep in step with truncations: a divergent
//! suffix comes back as `diverging_epoch`, the partition truncates, and the
//! next round fetches from the new end. The task ends once no partition
//! follows its leader.

use std::sync::Arc;

use super::endpoint::{LeaderEndpoint, ReplicaFetchRequest};
use super::{codes, follower_requests, Inner};
use crate::broker::registry::lock_or_recover;
use crate::env::time::{now_ms, sleep, Duration};

pub(super) async fn run(inner: Arc<Inner>, leader: i32, endpoint: Arc<dyn LeaderEndpoint>) {
    let mut shutdown = inner.shutdown.subscribe();
    let backoff = Duration::from_millis(inner.settings.fetch_backoff_ms.max(1));
    tracing::debug!(leader, "replica fetcher started");
    loop {
        if *shutdown.borrow() {
            return;
        }
        let requests = follower_requests(&inner, leader);
        if requests.is_empty() {
            // Re-check under the manager lock: apply_image registers new
            // followers before it looks for a running fetcher.
            let mut st = lock_or_recover(&inner.state);
            let still = st
                .partitions
                .values()
                .any(|p| p.fetch_request(leader, 0).is_some());
            if !still {
                st.fetchers.remove(&leader);
                tracing::debug!(leader, "replica fetcher stopped: nothing to follow");
                return;
            }
            continue;
        }
        let broker_epoch = lock_or_recover(&inner.state).broker_epoch;
        let request = ReplicaFetchRequest {
            replica_id: inner.settings.node_id,
            broker_epoch,
            max_wait_ms: inner.settings.fetch_wait_max_ms,
            min_bytes: 1,
            max_bytes: inner.settings.fetch_response_max_bytes,
            partitions: requests.iter().map(|(_, r)| r.clone()).collect(),
        };
        let result = tokio::select! {
            r = endpoint.fetch(request) => r,
            _ = shutdown.changed() => return,
        };
        let mut back_off = false;
        match result {
            Err(e) => {
                tracing::debug!(leader, error = %e, "replica fetch failed");
                back_off = true;
            }
            Ok(answers) => {
                let now = now_ms();
                for a in &answers {
                    let Some((p, sent)) = requests
                        .iter()
                        .find(|(_, r)| r.topic == a.topic && r.partition == a.partition)
                    else {
                        continue;
                    };
                    let code = p.apply_fetched(sent, a, now);
                    if code != codes::NONE {
                        tracing::debug!(leader, topic = %a.topic, partition = a.partition, code, "replica fetch answered with an error");
                        back_off = true;
                    }
                }
            }
        }
        if back_off {
            tokio::select! {
                _ = sleep(backoff) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

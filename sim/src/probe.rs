//! Asking a cluster who leads what, through Weir's real client: the
//! simulator's nemesis runs it on a harness node, the real-process runner
//! (`crate::real`) from its own process. Metadata is what an operator
//! would look at: any live broker's view, possibly a little stale.

use weir::client::cluster::MetadataSnapshot;
use weir::client::{ClientConfig, Cluster as ClientCluster};
use weir::env::time::{timeout, Duration};

/// How long one question to the cluster may take, connect included.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connect and request timeouts of the probe's connections: a dead or
/// paused broker must not hold the question up for the whole budget.
const PROBE_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Fresh Metadata for `topics` (`Some(&[])`: brokers only), read by `read`;
/// None when no broker answered within [`PROBE_TIMEOUT`].
pub async fn metadata<T>(
    bootstrap: &str,
    topics: Option<&[String]>,
    read: impl FnOnce(&MetadataSnapshot) -> T,
) -> Option<T> {
    let mut cc = ClientConfig::new(bootstrap);
    cc.connection.request_timeout = PROBE_REQUEST_TIMEOUT;
    cc.connection.connect_timeout = PROBE_REQUEST_TIMEOUT;
    cc.connection.client_id = "nemesis".to_string();
    let query = async {
        let cluster = ClientCluster::connect(cc).await.ok()?;
        let m = cluster.refresh_metadata(topics).await.ok()?;
        Some(read(&m))
    };
    timeout(PROBE_TIMEOUT, query).await.ok().flatten()
}

/// (leader id, replicas) of partitions `0..partitions` of `topic`; a
/// partition the metadata does not know is (-1, []).
pub fn leaders(m: &MetadataSnapshot, topic: &str, partitions: u32) -> Vec<(i32, Vec<i32>)> {
    (0..partitions as i32)
        .map(|p| match m.partition(topic, p) {
            Some(info) => (info.leader, info.replicas.clone()),
            None => (-1, Vec::new()),
        })
        .collect()
}

/// (partition, sorted ISR) of partitions `0..partitions` of `topic`.
pub fn isrs(m: &MetadataSnapshot, topic: &str, partitions: u32) -> Vec<(i32, Vec<i32>)> {
    (0..partitions as i32)
        .map(|p| {
            let mut isr = m
                .partition(topic, p)
                .map(|i| i.isr.clone())
                .unwrap_or_default();
            isr.sort_unstable();
            (p, isr)
        })
        .collect()
}

//! The API versions this client implements, and the negotiation against what
//! a broker advertises in ApiVersions.
//!
//! A version is listed only when the client fills every field that version
//! needs: e.g. Fetch stops at v12 and Produce at v11 because later versions
//! address topics by id, which this client does not track yet.

use std::collections::BTreeMap;

use kafka_protocol::messages::ApiKey;

/// (api, lowest, highest) versions this client can speak.
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    // Group administration (client/group.rs).
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    // Transactions (client/producer/transactional.rs).
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 3),
    (ApiKey::EndTxn, 0, 3),
    (ApiKey::TxnOffsetCommit, 0, 3),
];

/// The version agreed for each API both sides support: the highest version in
/// the intersection of the two ranges.
#[derive(Debug, Clone, Default)]
pub struct Negotiated {
    versions: BTreeMap<i16, i16>,
}

impl Negotiated {
    /// Intersect the client table with a broker's `(api_key, min, max)` list.
    pub fn from_broker(broker: &[(i16, i16, i16)]) -> Self {
        let mut versions = BTreeMap::new();
        for &(api, lo, hi) in CLIENT_VERSIONS {
            let key = api as i16;
            if let Some(&(_, blo, bhi)) = broker.iter().find(|(k, _, _)| *k == key) {
                let (min, max) = (lo.max(blo), hi.min(bhi));
                if min <= max {
                    versions.insert(key, max);
                }
            }
        }
        Negotiated { versions }
    }

    /// The version to use for `api`, or `None` when the two sides share none.
    pub fn version(&self, api: ApiKey) -> Option<i16> {
        self.version_of_key(api as i16)
    }

    pub fn version_of_key(&self, api_key: i16) -> Option<i16> {
        self.versions.get(&api_key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_common_version() {
        let n = Negotiated::from_broker(&[
            (ApiKey::Produce as i16, 0, 9),
            (ApiKey::Fetch as i16, 13, 17),
            (ApiKey::Metadata as i16, 0, 13),
        ]);
        assert_eq!(n.version(ApiKey::Produce), Some(9));
        assert_eq!(n.version(ApiKey::Fetch), None, "no overlap");
        assert_eq!(n.version(ApiKey::Metadata), Some(12));
        assert_eq!(n.version(ApiKey::CreateTopics), None, "not advertised");
    }
}

//! The API version table: the (API, versions) pairs Weir advertises in
//! ApiVersions. It is honest: a version appears only when its semantics are
//! implemented by a handler in `broker/handlers/`.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// (API, lowest version, highest version) Weir serves.
///
/// Why these ceilings: Produce stops at 11 (12 is transactions v2, 13 names
/// topics by id); Fetch stops at 16 (17 adds replica directories for
/// followers); ListOffsets stops at 7 (8 adds tiered-storage timestamps);
/// Metadata stops at 12 (13 moves errors to the top level for KIP-1102 rebootstrap);
/// ApiVersions stops at 3; DescribeCluster at 1 (2 lists fenced brokers).
/// Groups (classic protocol): FindCoordinator stops at 4 (5-6 add
/// transaction and share-group keys); DescribeGroups at 5 (6 adds KIP-848
/// error messages); OffsetCommit starts at 2 and OffsetFetch at 1 (the
/// codec's floor: Kafka 4 dropped the ZooKeeper-era versions);
/// OffsetForLeaderEpoch starts at 2 for the same reason.
pub const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    // kafka-protocol 0.18 (Kafka 4.x schemas) only encodes v1.
    (ApiKey::WriteTxnMarkers, 1, 1),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
];

/// The (min, max) versions served for `key`, or None when the API is not served.
pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, lo, hi)| (lo, hi))
}

/// Whether `key` at `version` is served.
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    matches!(supported_versions(key), Some((lo, hi)) if (lo..=hi).contains(&version))
}

/// The ApiVersions response body listing every served API.
pub fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|&(k, lo, hi)| {
            ApiVersion::default()
                .with_api_key(k as i16)
                .with_min_version(lo)
                .with_max_version(hi)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_within_the_codec_ranges() {
        for &(k, lo, hi) in SUPPORTED_APIS {
            let codec = k.valid_versions();
            assert!(lo <= hi, "{k:?}");
            assert!(
                codec.min <= lo && hi <= codec.max,
                "{k:?} outside codec range"
            );
        }
        assert!(is_supported(ApiKey::Produce, 9));
        assert!(!is_supported(ApiKey::Produce, 13));
        assert!(is_supported(ApiKey::FindCoordinator, 1));
        assert!(!is_supported(ApiKey::ConsumerGroupHeartbeat, 0));
    }
}

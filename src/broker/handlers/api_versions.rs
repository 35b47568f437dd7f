//! ApiVersions: the version table (see `protocol::versions`).

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::protocol::{api_versions_response, error_codes as ec};

pub fn handle(_request: ApiVersionsRequest) -> ApiVersionsResponse {
    api_versions_response(ec::NONE)
}

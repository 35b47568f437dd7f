//! Response encoding: size prefix, response header (at the version the API
//! dictates), body.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::protocol::{Encodable, HeaderVersion};

use super::error_codes::UNSUPPORTED_VERSION;
use super::versions::api_versions_response;

/// Append one framed response to `out`. On an encode error `out` is left as it was.
pub fn encode_response<R: Encodable + HeaderVersion>(
    out: &mut BytesMut,
    correlation_id: i32,
    version: i16,
    body: &R,
) -> anyhow::Result<()> {
    let start = out.len();
    out.put_i32(0); // size, patched below once known
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let result = header
        .encode(out, R::header_version(version))
        .and_then(|_| body.encode(out, version));
    if let Err(e) = result {
        out.truncate(start);
        return Err(e);
    }
    let size = out.len() - start - 4;
    let size = i32::try_from(size).map_err(|_| anyhow::anyhow!("response of {size} bytes"))?;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// The answer to ApiVersions at a version we don't serve: error 35 in a v0
/// body (header v0), listing what we do serve so the client can retry.
pub fn unsupported_api_versions_response(out: &mut BytesMut, correlation_id: i32) {
    let body = api_versions_response(UNSUPPORTED_VERSION);
    // v0 of a struct we build ourselves always encodes.
    if let Err(e) = encode_response(out, correlation_id, 0, &body) {
        tracing::error!(error = %e, "encoding ApiVersions v0 failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;
    use kafka_protocol::messages::ApiVersionsResponse;
    use kafka_protocol::protocol::Decodable;

    #[test]
    fn unsupported_api_versions_is_v0() {
        let mut out = BytesMut::new();
        unsupported_api_versions_response(&mut out, 7);
        let size = out.get_i32() as usize;
        assert_eq!(size, out.len());
        assert_eq!(out.get_i32(), 7);
        let body = ApiVersionsResponse::decode(&mut out, 0).unwrap();
        assert_eq!(body.error_code, 35);
        assert!(!body.api_keys.is_empty());
    }
}

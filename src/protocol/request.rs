//! Request header decoding: API key and version first (their position is
//! fixed), then the header at the version the API dictates.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

use super::versions::is_supported;

/// A request whose header is decoded; `body` holds the API-specific bytes.
#[derive(Debug)]
pub struct RequestFrame {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: Bytes,
}

impl RequestFrame {
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }

    /// Decode the body as `T` at the request's version.
    pub fn decode_body<T: Decodable>(&mut self) -> Result<T, RequestError> {
        T::decode(&mut self.body, self.version).map_err(|e| RequestError::Malformed(e.to_string()))
    }
}

/// What can go wrong before a handler runs.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// ApiVersions at a version Weir does not serve: answer with error 35 in a
    /// v0 body (clients then retry at a version we list).
    #[error("ApiVersions v{version} not supported")]
    UnsupportedApiVersions { correlation_id: i32, version: i16 },
    /// Any other API at a version (or an API) Weir does not serve: close.
    #[error("API key {api_key} v{version} not supported")]
    Unsupported { api_key: i16, version: i16 },
    /// A header or body that does not decode: close.
    #[error("malformed request: {0}")]
    Malformed(String),
    /// The response does not encode at the request's version (a handler bug): close.
    #[error("response encoding failed: {0}")]
    Encode(String),
}

/// Bytes before the first variable-length header field: api key, version, correlation id.
const FIXED_HEADER_BYTES: usize = 8;

/// Decode the header of one frame (without its size prefix).
pub fn decode_request_frame(mut frame: Bytes) -> Result<RequestFrame, RequestError> {
    if frame.len() < FIXED_HEADER_BYTES {
        return Err(RequestError::Malformed(format!(
            "frame of {} bytes is shorter than a request header",
            frame.len()
        )));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        return Err(RequestError::Unsupported {
            api_key: raw_key,
            version,
        });
    };
    if !is_supported(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            return Err(RequestError::UnsupportedApiVersions {
                correlation_id,
                version,
            });
        }
        return Err(RequestError::Unsupported {
            api_key: raw_key,
            version,
        });
    }
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| RequestError::Malformed(format!("request header: {e}")))?;
    // The codec reads exactly the header; whatever remains is the body.
    let _ = frame.remaining();
    Ok(RequestFrame {
        api_key,
        version,
        header,
        body: frame,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::{Encodable, StrBytes};

    fn encode<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .unwrap();
        body.encode(&mut buf, version).unwrap();
        buf.freeze()
    }

    #[test]
    fn decodes_header_and_body() {
        let f = encode(ApiKey::Metadata, 9, &MetadataRequest::default());
        let mut r = decode_request_frame(f).unwrap();
        assert_eq!(r.api_key, ApiKey::Metadata);
        assert_eq!(r.correlation_id(), 42);
        let m: MetadataRequest = r.decode_body().unwrap();
        assert_eq!(m, MetadataRequest::default());
    }

    #[test]
    fn unsupported_and_malformed() {
        let f = encode(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let mut raw = BytesMut::from(&f[..]);
        raw[3] = 99; // version 99
        match decode_request_frame(raw.freeze()) {
            Err(RequestError::UnsupportedApiVersions {
                correlation_id: 42,
                version: 99,
            }) => {}
            other => panic!("{other:?}"),
        }
        let f = encode(ApiKey::Metadata, 9, &MetadataRequest::default());
        let mut raw = BytesMut::from(&f[..]);
        raw[3] = 77;
        assert!(matches!(
            decode_request_frame(raw.freeze()),
            Err(RequestError::Unsupported { .. })
        ));
        assert!(matches!(
            decode_request_frame(Bytes::from_static(&[0, 3, 0])),
            Err(RequestError::Malformed(_))
        ));
        // A client id length running past the end of the frame.
        assert!(matches!(
            decode_request_frame(Bytes::from_static(&[0, 3, 0, 1, 0, 0, 0, 1, 0x7f, 0x7f])),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            decode_request_frame(Bytes::from_static(&[0x7f, 0x7f, 0, 1, 0, 0, 0, 1])),
            Err(RequestError::Unsupported { .. })
        ));
    }
}

//! The Kafka wire protocol: framing, request headers, the API version table,
//! response encoding and error codes.
//!
//! **Architecture Invariant:** this module knows nothing of sockets, tasks or
//! the broker's state: bytes in, bytes out, so every piece is unit tested on
//! plain buffers. Message layouts come from the `kafka-protocol` crate; this
//! module only decides *which* layout (API key, version, header version).

pub mod error_codes;
pub mod frame;
pub mod request;
pub mod response;
pub mod versions;

pub use frame::{FrameError, FRAME_PREFIX_BYTES};
pub use request::{decode_request_frame, RequestError, RequestFrame};
pub use response::{encode_response, unsupported_api_versions_response};
pub use versions::{api_versions_response, supported_versions, SUPPORTED_APIS};

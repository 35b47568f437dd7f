//! The one error type of the client. Kafka errors keep their wire code and
//! their protocol name (`NOT_LEADER_OR_FOLLOWER`), so callers can branch on
//! the code and users see the name they would search for.

use kafka_protocol::error::ResponseError;

/// Everything a client call can fail with. `Clone` because one failed batch
/// fails every record future waiting on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The broker answered with a Kafka error code.
    #[error("{name} (code {code}){}", .message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        code: i16,
        name: String,
        message: Option<String>,
    },
    /// Could not open a TCP connection.
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The connection broke while a request was outstanding.
    #[error("connection to {addr} lost: {reason}")]
    Disconnected { addr: String, reason: String },
    /// No answer within the deadline.
    #[error("{what} timed out after {ms} ms")]
    Timeout { what: String, ms: u64 },
    /// The broker sent bytes we cannot decode, or the client could not encode.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker does not implement an API (version) the call needs.
    #[error("unsupported by broker: {0}")]
    Unsupported(String),
    /// A bad client configuration or argument.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A group member has no committed offset for a partition and
    /// auto.offset.reset is none.
    #[error("no committed offset for {topic}-{partition} and auto.offset.reset=none")]
    NoOffsetForPartition { topic: String, partition: i32 },
    /// The producer or consumer was closed.
    #[error("client closed")]
    Closed,
}

impl ClientError {
    /// The error for a non-zero Kafka error code.
    pub fn kafka(code: i16) -> Self {
        Self::kafka_with_message(code, None)
    }

    pub fn kafka_with_message(code: i16, message: Option<String>) -> Self {
        ClientError::Kafka {
            code,
            name: error_name(code),
            message: message.filter(|m| !m.is_empty()),
        }
    }

    /// `Ok(())` for code 0, the Kafka error otherwise.
    pub fn check(code: i16) -> Result<(), ClientError> {
        if code == 0 {
            Ok(())
        } else {
            Err(Self::kafka(code))
        }
    }

    /// The Kafka error code, when the broker sent one.
    pub fn code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Worth retrying: a transient broker state, a lost connection or a timeout.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } => is_retriable_code(*code),
            ClientError::Connect { .. }
            | ClientError::Disconnected { .. }
            | ClientError::Timeout { .. } => true,
            _ => false,
        }
    }

    /// The error means our metadata (leader, partition count) may be stale:
    /// the leader moved or is unknown, the broker's log dir failed (Kafka
    /// moves the leadership away), or the broker stopped answering (dead,
    /// paused or cut off, so its partitions will get new leaders). As in
    /// Kafka's clients, refresh before the retry.
    pub fn invalidates_metadata(&self) -> bool {
        match self {
            ClientError::Kafka { code, .. } => matches!(
                *code,
                codes::UNKNOWN_TOPIC_OR_PARTITION
                    | codes::LEADER_NOT_AVAILABLE
                    | codes::NOT_LEADER_OR_FOLLOWER
                    | codes::FENCED_LEADER_EPOCH
                    | codes::UNKNOWN_LEADER_EPOCH
                    | codes::NOT_CONTROLLER
                    | codes::KAFKA_STORAGE_ERROR
            ),
            ClientError::Connect { .. }
            | ClientError::Disconnected { .. }
            | ClientError::Timeout { .. } => true,
            _ => false,
        }
    }
}

/// Kafka error codes the client branches on.
pub mod codes {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const UNKNOWN_PRODUCER_ID: i16 = 59;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const NOT_CONTROLLER: i16 = 41;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
}

pub fn is_retriable_code(code: i16) -> bool {
    ResponseError::try_from_code(code)
        .map(|e| e.is_retriable())
        .unwrap_or(false)
}

/// Kafka's name for an error code, e.g. `NOT_LEADER_OR_FOLLOWER`.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_string(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        Some(e) => screaming_snake(&format!("{e}")),
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(0), "NONE");
    }

    #[test]
    fn retriable_and_metadata() {
        let e = ClientError::kafka(6);
        assert!(e.is_retriable());
        assert!(e.invalidates_metadata());
        assert_eq!(e.code(), Some(6));
        assert!(!ClientError::kafka(36).is_retriable());
        // The cluster's transient states: retried; the ones naming a moved
        // or failed leader also refresh metadata first.
        for code in [5, 6, 7, 19, 20, 56, 74, 75] {
            assert!(ClientError::kafka(code).is_retriable(), "code {code}");
        }
        for code in [5, 6, 56, 74, 75] {
            assert!(
                ClientError::kafka(code).invalidates_metadata(),
                "code {code}"
            );
        }
        for code in [7, 19, 20] {
            assert!(
                !ClientError::kafka(code).invalidates_metadata(),
                "code {code}"
            );
        }
        assert_eq!(
            ClientError::kafka(36).to_string(),
            "TOPIC_ALREADY_EXISTS (code 36)"
        );
    }
}

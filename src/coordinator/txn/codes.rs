//! Kafka error codes the transaction APIs answer with (from Kafka's Errors.java).

pub const NONE: i16 = 0;
pub const NOT_COORDINATOR: i16 = 16;
pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
pub const INVALID_PRODUCER_EPOCH: i16 = 47;
pub const INVALID_TXN_STATE: i16 = 48;
pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
pub const CONCURRENT_TRANSACTIONS: i16 = 51;
pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
pub const PRODUCER_FENCED: i16 = 90;
pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
pub const INVALID_REQUEST: i16 = 42;

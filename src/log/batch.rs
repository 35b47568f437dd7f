//! RecordBatch v2 header: parsing, validation and in-place patching.
//!
//! CONTRACT (filled in by the log work):
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12,
//! magic i8 @16, crc u32 @17 (CRC32C of bytes 21..end), attributes i16 @21,
//! lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35,
//! producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53, recordCount i32 @57,
//! records @61.

/// Size of the RecordBatch v2 header.
pub const HEADER_BYTES: usize = 61;

//! Clocks. In the simulator both clocks are virtual (madsim intercepts
//! `clock_gettime`), so a seed fixes every timestamp a node observes.

use std::time::{SystemTime, UNIX_EPOCH};

pub use tokio::time::{sleep, sleep_until, timeout, Duration, Instant};

/// Wall-clock time in milliseconds since the Unix epoch, the unit Kafka uses
/// for record timestamps, segment.ms and retention.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A monotonic instant, for measuring elapsed time (timeouts, latency).
pub fn now() -> Instant {
    Instant::now()
}

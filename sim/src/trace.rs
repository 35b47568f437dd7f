//! The event trace of one run: every fault, every client operation and its
//! result, one line each, stamped with simulated time. Its hash (FNV-1a over
//! the lines, a fixed function, never std's randomly keyed hasher) is what
//! `check-determinism` compares: the same seed must give the same hash.

use std::fmt::Write as _;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Lines kept for printing; beyond this only the hash is updated, so a long
/// run cannot exhaust memory.
pub const TRACE_LINES_MAX: usize = 2_000_000;

#[derive(Debug, Clone)]
pub struct Trace {
    lines: Vec<String>,
    hash: u64,
    events: u64,
    /// Simulated ms of the latest event.
    last_ms: u64,
    /// Keep lines for printing (replay --trace), or hash them only.
    keep: bool,
}

impl Trace {
    pub fn new(keep: bool) -> Trace {
        Trace {
            lines: Vec::new(),
            hash: FNV_OFFSET,
            events: 0,
            last_ms: 0,
            keep,
        }
    }

    /// Record one event at `at_ms` simulated milliseconds since the run began.
    pub fn record(&mut self, at_ms: u64, who: &str, what: &str) {
        let mut line = String::with_capacity(32 + who.len() + what.len());
        let _ = write!(
            line,
            "[{:>6}.{:03}s] {who}: {what}",
            at_ms / 1000,
            at_ms % 1000
        );
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            self.hash ^= b as u64;
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
        self.events += 1;
        self.last_ms = at_ms;
        if self.keep && self.lines.len() < TRACE_LINES_MAX {
            self.lines.push(line);
        }
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn events(&self) -> u64 {
        self.events
    }

    /// Simulated ms of the latest event (how far a run that died got).
    pub fn last_ms(&self) -> u64 {
        self.last_ms
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_every_line_and_its_order() {
        let mut a = Trace::new(true);
        a.record(1, "n1", "crash");
        a.record(2, "p0", "send");
        let mut b = Trace::new(false);
        b.record(1, "n1", "crash");
        b.record(2, "p0", "send");
        assert_eq!(a.hash(), b.hash());
        let mut c = Trace::new(false);
        c.record(2, "p0", "send");
        c.record(1, "n1", "crash");
        assert_ne!(a.hash(), c.hash());
        assert_eq!(a.lines().len(), 2);
        assert!(b.lines().is_empty());
    }
}

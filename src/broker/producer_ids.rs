//! Producer-id allocation for idempotent producers.
//!
//! The controller hands each broker blocks of ids (committed in the
//! metadata log before any id from them is used, so no id is ever handed
//! out twice across brokers, restarts or controller failovers; ids left in
//! a block when a broker stops are skipped, as in Kafka). The broker serves
//! InitProducerId from its current block and asks for a new one when it
//! runs out.

/// The ids this broker may hand out: `next..end`.
#[derive(Debug, Default)]
pub struct ProducerIdBlock {
    next: i64,
    end: i64,
}

impl ProducerIdBlock {
    /// The next id of the block, or None when it is used up.
    pub fn take(&mut self) -> Option<i64> {
        if self.next >= self.end {
            return None;
        }
        let id = self.next;
        self.next += 1;
        Some(id)
    }

    pub fn is_used_up(&self) -> bool {
        self.next >= self.end
    }

    /// Replace the used-up block with a fresh one from the controller.
    pub fn refill(&mut self, first: i64, count: i64) {
        assert!(
            first >= self.end && count > 0,
            "producer id invariant: a new block starts past every id this broker handed out"
        );
        self.next = first;
        self.end = first + count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_hands_out_each_id_once() {
        let mut b = ProducerIdBlock::default();
        assert_eq!(b.take(), None);
        b.refill(1000, 2);
        assert_eq!(
            (b.take(), b.take(), b.take()),
            (Some(1000), Some(1001), None)
        );
        b.refill(3000, 1);
        assert_eq!(b.take(), Some(3000));
    }
}

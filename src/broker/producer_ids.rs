//! Producer-id allocation for idempotent producers.
//!
//! Ids are handed out from blocks of [`PRODUCER_ID_BLOCK_SIZE`]; the end of
//! the current block is persisted *before* any id from it is used, so after a
//! crash or restart allocation resumes past every id ever handed out and an
//! id never repeats (ids of an unfinished block are skipped, as in Kafka).

use std::io;

use super::store::MetaStore;

/// Ids reserved per persisted block.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

pub struct ProducerIds {
    next: i64,
    block_end: i64,
}

impl ProducerIds {
    pub fn open(store: &MetaStore) -> io::Result<ProducerIds> {
        let end = store.load_producer_id_block_end()?;
        Ok(ProducerIds {
            next: end,
            block_end: end,
        })
    }

    /// A producer id never returned before (by this broker's disk).
    pub fn allocate(&mut self, store: &MetaStore) -> io::Result<i64> {
        if self.next >= self.block_end {
            let end = self.next + PRODUCER_ID_BLOCK_SIZE;
            store.save_producer_id_block_end(end)?;
            self.block_end = end;
        }
        let id = self.next;
        self.next += 1;
        assert!(
            id < self.block_end,
            "producer id allocated beyond the persisted block"
        );
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::RealDisk;
    use std::sync::Arc;

    #[test]
    fn ids_never_repeat_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(Arc::new(RealDisk::new()), dir.path()).unwrap();
        let mut a = ProducerIds::open(&store).unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.allocate(&store).unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        let mut b = ProducerIds::open(&store).unwrap();
        assert_eq!(b.allocate(&store).unwrap(), PRODUCER_ID_BLOCK_SIZE);
    }
}

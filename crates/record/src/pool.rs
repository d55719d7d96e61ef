//! Cleared records, reused from exchange to exchange so that in a steady
//! state the call's path allocates none and no thread frees what another
//! allocated.

use std::sync::{Mutex, PoisonError};

use crate::captured::Captured;

/// Records cleared by the writer thread, for the next exchanges: in a
/// steady state the call's path allocates none and frees none.
#[derive(Debug, Default)]
pub struct Pool {
    // Boxed: a record travels the queue as a box, which is what is reused.
    #[allow(clippy::vec_box)]
    free: Mutex<Vec<Box<Captured>>>,
}

/// Records kept for reuse at most. Each keeps buffers of at most 8 KiB
/// (`recording::KEEP_CAPACITY`: bigger ones are freed), so the pool holds a
/// few MiB at worst and well under one for typical calls.
const POOL_MAX: usize = 512;

/// Records the writer gives back at once.
pub(crate) const GIVE_BATCH: usize = 8;

impl Pool {
    /// A cleared record.
    pub fn take(&self) -> Box<Captured> {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    #[allow(clippy::vec_box)] // see `free`
    pub(crate) fn give(&self, batch: &mut Vec<Box<Captured>>) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let room = POOL_MAX.saturating_sub(free.len());
        let keep = batch.len().min(room);
        free.extend(batch.drain(..keep));
        drop(free);
        batch.clear();
    }
}

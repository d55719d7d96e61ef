//! How a store's own thread takes work from its queue without making
//! every producer wake it.
//!
//! A thread blocked in `recv` must be woken by the producer: a futex call
//! and a context switch for every item. At tens of thousands of exchanges
//! a second that costs more than storing them. A [`Drain`] instead takes
//! everything queued without blocking, and when the queue is empty sleeps
//! for a short, growing time: a busy queue is drained in batches with no
//! wake-ups at all, an idle one costs a few wake-ups a second. Producers
//! keep using a plain bounded `std::sync::mpsc::sync_channel`.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

/// The first sleep after the queue runs dry: long enough that a busy
/// queue is taken in batches, short next to a tape block's 100 ms.
const FIRST_NAP: Duration = Duration::from_millis(1);

/// What [`Drain::next`] found.
#[derive(Debug)]
pub enum Next<T> {
    /// An item.
    Item(T),
    /// The deadline passed with the queue empty.
    Timeout,
    /// Every sender is gone and the queue is empty.
    Closed,
}

/// The receiving side of a store's queue, with the sleeping policy.
#[derive(Debug)]
pub struct Drain<T> {
    rx: Receiver<T>,
    nap: Duration,
    longest_nap: Duration,
}

impl<T> Drain<T> {
    /// Drains `rx`; an item waits at most `longest_nap` (plus the
    /// scheduler's delay) before the thread looks again.
    pub fn new(rx: Receiver<T>, longest_nap: Duration) -> Self {
        Drain {
            rx,
            nap: FIRST_NAP.min(longest_nap),
            longest_nap,
        }
    }

    /// The next item, waiting at most `deadline` (`None`: as long as it
    /// takes).
    pub fn next(&mut self, deadline: Option<Duration>) -> Next<T> {
        let start = std::time::Instant::now();
        loop {
            match self.rx.try_recv() {
                Ok(item) => {
                    self.nap = FIRST_NAP.min(self.longest_nap);
                    return Next::Item(item);
                }
                Err(TryRecvError::Disconnected) => return Next::Closed,
                Err(TryRecvError::Empty) => {}
            }
            let mut nap = self.nap;
            if let Some(deadline) = deadline {
                let left = deadline.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Next::Timeout;
                }
                nap = nap.min(left);
            }
            // A plain sleep, never a wait inside the channel: a producer
            // that finds no receiver waiting does not make a system call.
            std::thread::sleep(nap);
            self.nap = (self.nap * 2).min(self.longest_nap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_in_order_then_closed() {
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        let mut drain = Drain::new(rx, Duration::from_millis(5));
        tx.send(1).unwrap();
        tx.send(2).unwrap();
        assert!(matches!(drain.next(None), Next::Item(1)));
        assert!(matches!(drain.next(None), Next::Item(2)));
        assert!(matches!(
            drain.next(Some(Duration::from_millis(3))),
            Next::Timeout
        ));
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(3).unwrap();
        });
        assert!(matches!(drain.next(None), Next::Item(3)));
        sender.join().unwrap();
        assert!(matches!(drain.next(None), Next::Closed));
    }
}

//! The storage traits: where exchanges go ([`Sink`]) and come from
//! ([`Source`]).
//!
//! Tapes, Kafka topics and in-memory stores implement them, so capture,
//! replay and inspection code never names a concrete store.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use crate::pack::{Packed, PackedError, Packer, PlainPacker};
use crate::pb::Exchange;

/// A store error, with the store's name (a path, a topic) in its message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Part of the store is damaged and was skipped; reading goes on after
    /// it. `detail` says exactly what was skipped and where.
    #[error("{store}: {detail}")]
    Damaged {
        /// The store, e.g. a tape's path.
        store: String,
        /// What was skipped, e.g. "block 12 at offset 65536 (1048 bytes) fails its checksum".
        detail: String,
    },
    /// The store could not write exchanges it had taken (a full disk);
    /// it is intact without them and takes more: a later write may
    /// succeed. A store that reports a [`SinkTally`] counts them there.
    #[error("{store}: {detail}")]
    Unwritten {
        /// The store, e.g. a tape's path.
        store: String,
        /// What was lost, and why.
        detail: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The store cannot be read or written.
    #[error("{store}: {detail}")]
    Failed {
        /// The store, e.g. a tape's path.
        store: String,
        /// What went wrong.
        detail: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl StoreError {
    /// Whether reading can go on after this error (damage was skipped).
    pub fn is_damage(&self) -> bool {
        matches!(self, StoreError::Damaged { .. })
    }

    /// Whether the store lost exchanges it had taken but is intact and
    /// goes on (see [`StoreError::Unwritten`]).
    pub fn is_unwritten(&self) -> bool {
        matches!(self, StoreError::Unwritten { .. })
    }

    /// A fatal error without an underlying cause.
    pub fn failed(store: impl Into<String>, detail: impl Into<String>) -> Self {
        StoreError::Failed {
            store: store.into(),
            detail: detail.into(),
            source: None,
        }
    }
}

/// What a sink that holds exchanges before writing them (a tape fills a
/// block) did with every exchange handed to it: each is counted once, in
/// one of these, by the time [`Sink::close`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkTally {
    /// Written.
    pub written: u64,
    /// Taken, then lost: the write that held them failed (a full disk).
    pub unwritten: u64,
    /// Refused when handed over (too large, the sink closed).
    pub refused: u64,
}

/// Where recorded exchanges go.
pub trait Sink: Send {
    /// Hands one exchange to the store. It may not be durable until
    /// [`Sink::sync`] returns.
    fn append(&mut self, exchange: Exchange) -> Result<(), StoreError>;

    /// Hands one exchange to the store as its encoding (what
    /// [`codec::encode`](crate::codec::encode) writes), recorded at
    /// `recorded_at_ns`. Stores that keep records as bytes take them as
    /// they are; the others decode them.
    fn append_encoded(&mut self, record: &[u8], recorded_at_ns: u64) -> Result<(), StoreError> {
        let _ = recorded_at_ns;
        self.append(decode_record(record)?)
    }

    /// Does what is due by time for a store that works on its caller's
    /// thread (an inline tape seals a block that has waited its age).
    /// Writers that own such a store call it every few milliseconds,
    /// also while idle.
    fn tick(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    /// A packer for a producer's thread, whose packs this store takes
    /// ([`Sink::append_packed`]). Stores with no packing of their own get
    /// plain packs.
    fn packer(&self) -> Box<dyn Packer> {
        Box::new(PlainPacker::default())
    }

    /// Stores a pack made by this store's [`Sink::packer`]. The default
    /// decodes a plain pack's records and appends them one by one
    /// ([`Sink::append`]), in order, stopping at the first failure; a
    /// store that takes records as bytes (`append_encoded`) overrides
    /// this too.
    fn append_packed(&mut self, packed: Packed) -> Result<(), PackedError> {
        let failed = |stored, error| PackedError { stored, error };
        let records = packed.plain_records().map_err(|e| failed(0, e))?;
        for (stored, record) in (0..).zip(records) {
            decode_record(record)
                .and_then(|exchange| self.append(exchange))
                .map_err(|e| failed(stored, e))?;
        }
        Ok(())
    }

    /// Makes everything appended so far durable (on a tape: written and
    /// fsynced).
    fn sync(&mut self) -> Result<(), StoreError>;

    /// Syncs and releases the store. Appending after `close` is an error.
    fn close(&mut self) -> Result<(), StoreError> {
        self.sync()
    }

    /// Bytes the store has written so far, where it knows (a tape: the
    /// file's size), for progress and metrics.
    fn bytes_written(&self) -> Option<u64> {
        None
    }

    /// What became of the exchanges handed over so far, for a store that
    /// writes them after taking them (a tape): an `Ok` from `append*`
    /// then only says the exchange was taken. `None` (the default): an
    /// `Ok` says it is stored, an `Err` that it is not.
    fn tally(&self) -> Option<SinkTally> {
        None
    }
}

/// A record given as its encoding, decoded for a store that keeps
/// exchanges.
fn decode_record(record: &[u8]) -> Result<Exchange, StoreError> {
    crate::codec::decode(record).map_err(|e| StoreError::Failed {
        store: "record".into(),
        detail: e.to_string(),
        source: Some(Box::new(e)),
    })
}

/// Where exchanges are read from, in store order.
///
/// A source is an iterator of exchanges. An `Err` that
/// [`is_damage`](StoreError::is_damage) reports skipped data and the next
/// call goes on after it; any other `Err` ends the source.
pub trait Source: Iterator<Item = Result<Exchange, StoreError>> + Send {}

impl<T: Iterator<Item = Result<Exchange, StoreError>> + Send> Source for T {}

/// A source seen through its damage: yields exchanges and fatal errors,
/// and keeps the damage reports (one line each) for the caller to print
/// once it is done.
pub struct Intact<'a> {
    source: &'a mut dyn Source,
    damage: Vec<String>,
}

impl<'a> Intact<'a> {
    /// Wraps `source`.
    pub fn new(source: &'a mut dyn Source) -> Self {
        Intact {
            source,
            damage: Vec::new(),
        }
    }

    /// The damage reported so far.
    pub fn damage(&self) -> &[String] {
        &self.damage
    }

    /// The damage reported, once reading is over.
    pub fn into_damage(self) -> Vec<String> {
        self.damage
    }
}

impl Iterator for Intact<'_> {
    type Item = Result<Exchange, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.source.next()? {
                Err(error) if error.is_damage() => self.damage.push(error.to_string()),
                other => return Some(other),
            }
        }
    }
}

/// A sink that keeps exchanges in memory; clones share the same contents.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    exchanges: Arc<Mutex<Vec<Exchange>>>,
    closed: bool,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of what was appended so far, in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A source over what was appended so far.
    pub fn source(&self) -> MemorySource {
        MemorySource::new(self.exchanges())
    }
}

impl Sink for MemorySink {
    fn append(&mut self, exchange: Exchange) -> Result<(), StoreError> {
        if self.closed {
            return Err(StoreError::failed("memory", "append after close"));
        }
        self.exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(exchange);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        Ok(())
    }

    fn close(&mut self) -> Result<(), StoreError> {
        self.closed = true;
        Ok(())
    }
}

/// A source over exchanges held in memory.
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    exchanges: VecDeque<Exchange>,
}

impl MemorySource {
    /// A source yielding `exchanges` in order.
    pub fn new(exchanges: impl IntoIterator<Item = Exchange>) -> Self {
        MemorySource {
            exchanges: exchanges.into_iter().collect(),
        }
    }
}

impl Iterator for MemorySource {
    type Item = Result<Exchange, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.exchanges.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(source: &mut dyn Source) -> Vec<Exchange> {
        source.filter_map(Result::ok).collect()
    }

    #[test]
    fn intact_keeps_damage_aside() {
        let items = vec![
            Ok(Exchange {
                recorded_at_ns: 1,
                ..Default::default()
            }),
            Err(StoreError::Damaged {
                store: "t".into(),
                detail: "block 1 skipped".into(),
            }),
            Ok(Exchange {
                recorded_at_ns: 2,
                ..Default::default()
            }),
            Err(StoreError::failed("t", "gone")),
        ];
        let mut source = items.into_iter();
        let mut intact = Intact::new(&mut source);
        let got: Vec<_> = intact.by_ref().collect();
        assert_eq!(got.len(), 3);
        assert!(got[2].is_err());
        assert_eq!(intact.into_damage(), vec!["t: block 1 skipped".to_string()]);
    }

    #[test]
    fn memory_sink_feeds_a_source() {
        let mut sink = MemorySink::new();
        let boxed: &mut dyn Sink = &mut sink;
        for i in 0..3 {
            boxed
                .append(Exchange {
                    recorded_at_ns: i,
                    ..Default::default()
                })
                .expect("append");
        }
        boxed.close().expect("close");
        assert!(
            boxed.append(Exchange::default()).is_err(),
            "closed sink refuses appends"
        );
        let got = drain(&mut sink.source());
        assert_eq!(
            got.iter().map(|e| e.recorded_at_ns).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn a_sink_takes_records_as_bytes() {
        let exchange = Exchange {
            recorded_at_ns: 9,
            comment: "as bytes".into(),
            ..Default::default()
        };
        let mut sink = MemorySink::new();
        sink.append_encoded(&crate::codec::encode_to_vec(&exchange), 9)
            .expect("a valid record");
        let error = sink
            .append_encoded(&[0xff, 0xff, 0xff], 10)
            .expect_err("not a record");
        assert!(
            error
                .to_string()
                .contains("not a valid reprise.v1.Exchange record"),
            "{error}"
        );
        assert_eq!(drain(&mut sink.source()), [exchange]);
    }
}

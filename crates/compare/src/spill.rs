//! An input cut into parts by pairing key, so that one part of the
//! recording at a time is held in memory. The parts are spilled to disk
//! as tapes ([`TapeWriter`], read back with [`TapeReader`]): plain blocks
//! (no zstd: the files live only as long as the comparison), written on
//! the caller's thread, never fsynced. With one part an input is read in
//! place and nothing is spilled.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reprise_model::{Direction, Exchange, Intact};
use reprise_tape::{ReaderOptions, TapeReader, TapeWriter, WriterOptions};

use crate::pairing::{OpenInput, PairingError, Side};

/// Most parts a comparison is cut into.
pub(crate) const MAX_PARTS: usize = 1024;

/// What a recorded exchange needs to be compared and grouped: its
/// response, its response messages and its endpoint. The request's
/// headers, body and messages are dropped to keep the map small.
fn for_comparison(mut exchange: Exchange) -> Exchange {
    if let Some(request) = exchange.request.as_mut() {
        request.headers = Vec::new();
        request.trailers = Vec::new();
        request.body = Default::default();
    }
    exchange
        .messages
        .retain(|m| m.direction() != Direction::Request);
    exchange
}

/// What a downstream call needs to be paired and compared: its request
/// (whole) and messages, its link and what answered it. The response (a
/// database call's rows or reply) is dropped: only what the service sent
/// is compared.
fn for_calls(mut exchange: Exchange) -> Exchange {
    exchange.response = None;
    if let Some(db) = exchange.db.as_mut() {
        crate::db::strip_answer(db);
    }
    exchange
        .messages
        .retain(|m| m.direction() != Direction::Response);
    exchange
}

impl Side {
    /// The exchange as it takes part, and its key; `None` when it does
    /// not. A recording takes part with its inbound exchanges, by their
    /// id; a replay's results with the inbound exchanges that replay one,
    /// by the id they replay; downstream calls by the id of the recorded
    /// exchange they were made for (empty when unlinked).
    pub(crate) fn admit(self, exchange: Exchange) -> Option<(Vec<u8>, Exchange)> {
        match self {
            Side::Recorded if !exchange.is_downstream() => {
                Some((exchange.id.clone(), for_comparison(exchange)))
            }
            Side::Recorded => None,
            Side::Replayed if exchange.is_downstream() => None,
            Side::Replayed => {
                let key = exchange.replay.as_ref()?.recorded_id.clone();
                Some((key, exchange))
            }
            Side::Downstream if exchange.is_downstream() => {
                Some((exchange.parent_id.clone(), for_calls(exchange)))
            }
            Side::Downstream => None,
        }
    }
}

/// The part a key falls in (FNV-1a: stable, no dependency).
pub(crate) fn part_of(key: &[u8], parts: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    usize::try_from(hash % parts.max(1) as u64).unwrap_or(0)
}

/// Parts to cut a recording into so that one part's responses fit in
/// `max_memory`. The recording is read once to weigh what comparing
/// holds of each exchange: a decoded exchange takes about three times its
/// encoded size in memory (headers as separate allocations, the map's
/// own entry), plus a fixed kilobyte. Each of `calls` (the recording
/// again, and the calls a mock recorded) is read once more when given:
/// the downstream calls one part holds with its exchanges weigh the same
/// way (unlinked calls are never held: they weigh nothing).
pub(crate) fn parts_for(
    recorded: &Path,
    calls: &[&Path],
    inputs: &dyn OpenInput,
    max_memory: usize,
    damage: &mut Vec<String>,
) -> Result<usize, PairingError> {
    let mut weight = 0u64;
    let inputs_weighed = std::iter::once((recorded, Side::Recorded))
        .chain(calls.iter().map(|path| (*path, Side::Downstream)));
    for (path, side) in inputs_weighed {
        let mut source = inputs.open(path, side).map_err(PairingError::Open)?;
        let mut intact = Intact::new(source.as_mut());
        for exchange in intact.by_ref() {
            if let Some((key, exchange)) = side.admit(exchange?)
                && !key.is_empty()
            {
                weight += reprise_model::encoded_len(&exchange) as u64 * 3 + 1024;
            }
        }
        damage.extend(intact.into_damage());
    }
    let parts = weight.div_ceil(max_memory.max(1) as u64);
    Ok(usize::try_from(parts)
        .unwrap_or(MAX_PARTS)
        .clamp(1, MAX_PARTS))
}

/// How inputs are cut: into `parts` tapes under `dir`.
pub(crate) struct Spill<'d> {
    dir: &'d Path,
    parts: usize,
    options: WriterOptions,
}

impl<'d> Spill<'d> {
    /// Cuts into `parts` under `dir`. Every part's writer holds one open
    /// block while an input is split (and nothing else is held then): the
    /// blocks together stay within `max_memory`, from 4 KiB to 16 KiB each.
    /// Small blocks: each part's block and its sealed copy are held at
    /// once, and with 256 KiB blocks the spill peaked 20 MiB above the
    /// length-prefixed files it replaced (`bench/diff-memory.sh`; 16 KiB:
    /// within 3 MiB, as fast).
    pub(crate) fn new(dir: &'d Path, parts: usize, max_memory: usize) -> Self {
        let options = WriterOptions {
            block_bytes: (max_memory / parts.max(1)).clamp(4 << 10, 16 << 10),
            // Sealed by size alone: the age bound is for followers of a
            // tape being recorded, and none follows these.
            block_age: Duration::from_secs(24 * 3600),
            // Plain blocks: compressing costs more time than the disk saves.
            zstd_level: None,
            inline: true,
            // Scratch files, gone with the process: no fsync.
            durable: false,
            ..WriterOptions::default()
        };
        Spill {
            dir,
            parts,
            options,
        }
    }

    /// How many parts.
    pub(crate) fn parts(&self) -> usize {
        self.parts
    }
}

/// An input cut into parts by key: with one part it is read in place,
/// else its exchanges that take part are spilled to one tape per part.
pub(crate) struct PartedInput<'a> {
    path: &'a Path,
    side: Side,
    inputs: &'a dyn OpenInput,
    /// The parts' tapes, one per part; empty when there is one part.
    parts: Vec<PathBuf>,
    /// Exchanges that took part.
    count: u64,
    /// Exchanges read, taking part or not.
    read: u64,
}

impl<'a> PartedInput<'a> {
    /// Reads `path` once and spills its exchanges into `spill`'s parts,
    /// tapes named after `name` (nothing with one part).
    pub(crate) fn split(
        path: &'a Path,
        side: Side,
        inputs: &'a dyn OpenInput,
        spill: &Spill<'_>,
        name: &str,
        damage: &mut Vec<String>,
    ) -> Result<PartedInput<'a>, PairingError> {
        let mut parted = PartedInput {
            path,
            side,
            inputs,
            parts: Vec::new(),
            count: 0,
            read: 0,
        };
        let parts = spill.parts;
        if parts <= 1 {
            // Read in place, and counted on the first reading.
            return Ok(parted);
        }
        let mut writers = Vec::with_capacity(parts);
        for i in 0..parts {
            let file = spill.dir.join(format!("{name}-{i}.tape"));
            writers.push(TapeWriter::create(&file, spill.options.clone())?);
            parted.parts.push(file);
        }
        let mut source = inputs.open(path, side).map_err(PairingError::Open)?;
        let mut intact = Intact::new(source.as_mut());
        for exchange in intact.by_ref() {
            parted.read += 1;
            let Some((key, exchange)) = side.admit(exchange?) else {
                continue;
            };
            parted.count += 1;
            writers[part_of(&key, parts)].write(&exchange)?;
        }
        damage.extend(intact.into_damage());
        for mut writer in writers {
            writer.finish()?;
        }
        Ok(parted)
    }

    /// Hands each exchange of part `part` (with its key) to `each`.
    pub(crate) fn for_each(
        &mut self,
        part: usize,
        damage: &mut Vec<String>,
        mut each: impl FnMut((Vec<u8>, Exchange)),
    ) -> Result<(), PairingError> {
        if self.parts.is_empty() {
            let mut source = self
                .inputs
                .open(self.path, self.side)
                .map_err(PairingError::Open)?;
            let mut intact = Intact::new(source.as_mut());
            let (mut count, mut read) = (0, 0);
            for exchange in intact.by_ref() {
                read += 1;
                if let Some(admitted) = self.side.admit(exchange?) {
                    count += 1;
                    each(admitted);
                }
            }
            damage.extend(intact.into_damage());
            self.count = count;
            self.read = read;
            return Ok(());
        }
        let Some(file) = self.parts.get(part) else {
            // No such part: nothing falls in it.
            return Ok(());
        };
        // A part is this process's own file: any fault in it (damage
        // included) ends the comparison.
        // No read-ahead: its blocks decoded ahead would sit next to the
        // part's map, over the budget.
        let options = ReaderOptions {
            read_ahead: false,
            ..ReaderOptions::default()
        };
        let mut reader = TapeReader::open_with(file, options)?;
        while let Some(exchange) = reader.next_exchange() {
            if let Some(admitted) = self.side.admit(exchange?) {
                each(admitted);
            }
        }
        Ok(())
    }

    /// The recorded exchanges of part `part`, by id.
    pub(crate) fn load(
        &mut self,
        part: usize,
        damage: &mut Vec<String>,
    ) -> Result<HashMap<Vec<u8>, Exchange>, PairingError> {
        let mut map = HashMap::new();
        self.for_each(part, damage, |(key, exchange)| {
            map.insert(key, exchange);
        })?;
        Ok(map)
    }

    /// An error when the input held exchanges and none was a downstream
    /// call (for the calls a mock recorded: an empty one is a build that
    /// made no call).
    pub(crate) fn must_hold_calls(&self) -> Result<(), PairingError> {
        if self.read > 0 && self.count == 0 {
            return Err(PairingError::NoCalls {
                path: self.path.to_path_buf(),
            });
        }
        Ok(())
    }

    /// Whether some exchange took part.
    pub(crate) fn holds_replays(&self) -> bool {
        self.count > 0
    }

    /// An error unless some exchange took part (for a replay's results).
    pub(crate) fn must_hold_replays(&self) -> Result<(), PairingError> {
        if self.count == 0 {
            return Err(PairingError::NoReplays {
                path: self.path.to_path_buf(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use reprise_model::{Header, MemorySource, Replay, Request, Source};

    use super::*;
    use crate::pairing::OpenError;

    fn replayed(i: u32) -> Exchange {
        Exchange {
            id: (1000 + i).to_be_bytes().to_vec(),
            request: Some(Request {
                method: "GET".into(),
                path: "/x".into(),
                headers: vec![Header::new("x-kept", "for a replay")],
                ..Default::default()
            }),
            replay: Some(Replay {
                recorded_id: i.to_be_bytes().to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_key_falls_in_one_part_always() {
        for parts in [1, 2, 7, MAX_PARTS] {
            for i in 0u32..200 {
                let key = i.to_be_bytes();
                let part = part_of(&key, parts);
                assert!(part < parts);
                assert_eq!(part, part_of(&key, parts));
            }
        }
        // FNV-1a: the offset basis for no key; spread over the parts.
        assert_eq!(part_of(b"", 1 << 20), 0xcbf2_9ce4_8422_2325 % (1 << 20));
        let used: std::collections::HashSet<usize> =
            (0u32..200).map(|i| part_of(&i.to_be_bytes(), 7)).collect();
        assert_eq!(used.len(), 7);
    }

    #[test]
    fn parts_are_private_tapes_each_holding_its_keys() {
        let open = |_: &Path, _: Side| -> Result<Box<dyn Source>, OpenError> {
            Ok(Box::new(MemorySource::new((0..100).map(replayed))))
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut damage = Vec::new();
        let path = Path::new("results");
        let spill = Spill::new(dir.path(), 5, 1 << 20);
        let mut parted =
            PartedInput::split(path, Side::Replayed, &open, &spill, "replayed", &mut damage)
                .expect("split");
        assert_eq!(parted.count, 100);
        assert_eq!(parted.parts.len(), 5);
        let mut total = 0;
        for (part, file) in parted.parts.clone().iter().enumerate() {
            let mode = std::fs::metadata(file)
                .expect("a part")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
            parted
                .for_each(part, &mut damage, |(key, exchange)| {
                    assert_eq!(part_of(&key, 5), part);
                    assert_eq!(exchange.replay.map(|r| r.recorded_id), Some(key));
                    // A replay's results are kept whole.
                    let request = exchange.request.unwrap_or_default();
                    assert_eq!(request.headers.len(), 1);
                    total += 1;
                })
                .expect("a part reads back");
        }
        assert_eq!(total, 100);
        assert!(damage.is_empty());
        parted.must_hold_replays().expect("it holds replays");
    }

    #[test]
    fn a_recording_takes_part_with_its_inbound_exchanges_responses_only() {
        let inbound = Exchange {
            id: b"a".to_vec(),
            request: Some(Request {
                method: "POST".into(),
                path: "/orders".into(),
                headers: vec![Header::new("x-big", "dropped")],
                body: b"dropped".to_vec().into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (key, kept) = Side::Recorded.admit(inbound).expect("inbound takes part");
        assert_eq!(key, b"a");
        let request = kept.request.unwrap_or_default();
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/orders")
        );
        assert!(request.headers.is_empty() && request.body.is_empty());
        let downstream = Exchange {
            parent_id: b"a".to_vec(),
            ..Default::default()
        };
        assert!(Side::Recorded.admit(downstream).is_none());
        assert!(Side::Replayed.admit(Exchange::default()).is_none());
    }
}

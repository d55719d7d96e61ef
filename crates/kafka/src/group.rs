//! [`GroupSource`]: a topic shared by a group of readers (`reprise replay
//! kafka://.../TOPIC?group=NAME` on several machines), each reading the
//! partitions the group gives it.
//!
//! Offsets are committed once the reader's user says an exchange is
//! settled ([`Acks::settled`]: its call sent and its result written, or
//! left out on purpose): at-least-once. For each partition the committed
//! offset is the first exchange handed out and not yet settled (or the
//! one after the last handed out), so a member that dies leaves its
//! unsettled exchanges to the member that takes its partitions over. An
//! exchange handed out twice to one member (after a rebalance) is
//! settled at once and counted as a duplicate; across members, `reprise
//! diff` counts each recorded exchange once.
//!
//! Without `follow`, a member ends when every partition of the topic
//! has been committed by the group up to the end offsets seen when it
//! joined: it stays while others work, and takes their partitions over
//! if they die.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError as RdError;
use rdkafka::message::{BorrowedMessage, Message};
use reprise_model::{Exchange, StoreError};

use crate::address::{KafkaAddress, KafkaOptions, Start};
use crate::client::{self, LastError};
use crate::error::KafkaError;
use crate::source::{SourceOptions, decode_message};

/// How often, at most, settled exchanges are committed while reading.
const COMMIT_EVERY: Duration = Duration::from_millis(200);

/// How often a member that has nothing to read asks whether the group
/// is done.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// What a member has handed out and not yet seen settled.
#[derive(Default)]
struct Pending {
    /// Handed out, by exchange id: where it came from.
    by_id: HashMap<Vec<u8>, (i32, i64)>,
    /// Offsets handed out and not settled, per partition.
    open: HashMap<i32, BTreeSet<i64>>,
    /// The offset after the last one handed out (or settled at once),
    /// per partition.
    next: HashMap<i32, i64>,
    /// What was committed last, per partition.
    committed: HashMap<i32, i64>,
    /// Every id handed out by this member.
    seen: HashSet<Vec<u8>>,
    /// Settled since the last commit.
    dirty: bool,
}

impl Pending {
    /// The offsets to commit now: per partition, the first unsettled
    /// offset, else the one after the last handed out; only those that
    /// moved. `only`: these partitions (a revocation).
    fn due(&mut self, topic: &str, only: Option<&[i32]>) -> Option<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        let partitions: Vec<i32> = self.next.keys().copied().collect();
        for partition in partitions {
            if only.is_some_and(|only| !only.contains(&partition)) {
                continue;
            }
            let first_open = self
                .open
                .get(&partition)
                .and_then(|open| open.first().copied());
            let Some(at) = first_open.or_else(|| self.next.get(&partition).copied()) else {
                continue;
            };
            if self.committed.get(&partition) == Some(&at) {
                continue;
            }
            if list
                .add_partition_offset(topic, partition, Offset::Offset(at))
                .is_ok()
            {
                self.committed.insert(partition, at);
            }
        }
        self.dirty = false;
        (list.count() > 0).then_some(list)
    }

    /// Forgets what was handed out from `partitions` (revoked: their
    /// new owner reads them from the last commit).
    fn forget(&mut self, partitions: &[i32]) {
        self.by_id.retain(|_, (p, _)| !partitions.contains(p));
        for partition in partitions {
            self.open.remove(partition);
            self.next.remove(partition);
            self.committed.remove(partition);
        }
    }
}

/// The group member's share of the work, settled by its user.
struct Shared {
    pending: Mutex<Pending>,
    duplicates: AtomicU64,
    topic: String,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The consumer's context: remembers the last error, and commits what is
/// settled of the partitions a rebalance takes away.
struct GroupContext {
    last_error: LastError,
    shared: Arc<Shared>,
}

client::remembering_context!(GroupContext);

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let partitions: Vec<i32> = revoked.elements().iter().map(|e| e.partition()).collect();
            let mut pending = self.shared.lock();
            if let Some(list) = pending.due(&self.shared.topic, Some(&partitions)) {
                let _ = consumer.commit(&list, CommitMode::Sync);
            }
            pending.forget(&partitions);
        }
    }
}

/// Where a group member says an exchange it was handed is settled.
#[derive(Clone)]
pub struct Acks {
    shared: Arc<Shared>,
    consumer: Arc<BaseConsumer<GroupContext>>,
}

impl std::fmt::Debug for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acks")
            .field("topic", &self.shared.topic)
            .finish_non_exhaustive()
    }
}

impl Acks {
    /// The exchange `id` is settled: its offset may be committed.
    pub fn settled(&self, id: &[u8]) {
        let mut pending = self.shared.lock();
        if let Some((partition, offset)) = pending.by_id.remove(id) {
            if let Some(open) = pending.open.get_mut(&partition) {
                open.remove(&offset);
            }
            pending.dirty = true;
        }
    }

    /// Exchanges handed to this member twice (after a rebalance), settled
    /// at once and not handed out again.
    pub fn duplicates(&self) -> u64 {
        self.shared.duplicates.load(Ordering::Relaxed)
    }

    /// Commits what is settled, and waits for the commit: at the end of a
    /// run.
    pub fn finish(&self) -> Result<(), KafkaError> {
        let due = self.shared.lock().due(&self.shared.topic, None);
        match due {
            Some(list) => {
                self.consumer
                    .commit(&list, CommitMode::Sync)
                    .map_err(|e| KafkaError::Client {
                        address: self.shared.topic.clone(),
                        detail: format!("cannot commit the group's offsets: {e}"),
                    })
            }
            None => Ok(()),
        }
    }
}

/// A topic read by one member of a consumer group.
pub struct GroupSource {
    consumer: Arc<BaseConsumer<GroupContext>>,
    shared: Arc<Shared>,
    address: KafkaAddress,
    /// Every partition's end when this member joined, and its start.
    ends: HashMap<i32, (i64, i64)>,
    follow: bool,
    stop: Option<Arc<AtomicBool>>,
    last_commit: Instant,
    last_look: Instant,
    finished: bool,
}

impl std::fmt::Debug for GroupSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupSource")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl GroupSource {
    /// Joins `address`'s group (`group=NAME`) to read its topic: a clear
    /// error when no broker answers within `options.connect_timeout` or
    /// the topic is not there. Settle what it hands out through the
    /// [`Acks`] it gives.
    pub fn join(
        address: &KafkaAddress,
        settings: &KafkaOptions,
        options: SourceOptions,
    ) -> Result<(GroupSource, Acks), KafkaError> {
        let Some(group) = &address.group else {
            return Err(KafkaError::Address {
                address: address.to_string(),
                why: "no group=NAME to join".into(),
            });
        };
        let reset = match address.from.unwrap_or(Start::Beginning) {
            Start::Beginning => "earliest",
            Start::End => "latest",
            Start::Time(_) => {
                return Err(KafkaError::Address {
                    address: address.to_string(),
                    why: "from=TIME does not go with group= (a group starts where it last committed, else at from=beginning or end)".into(),
                });
            }
        };
        let mut config = client::config(address);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", reset)
            .set("enable.partition.eof", "false");
        settings.apply(&mut config);
        let shared = Arc::new(Shared {
            pending: Mutex::default(),
            duplicates: AtomicU64::new(0),
            topic: address.topic.clone(),
        });
        let context = GroupContext {
            last_error: LastError::default(),
            shared: Arc::clone(&shared),
        };
        let consumer: BaseConsumer<GroupContext> = config
            .create_with_context(context)
            .map_err(|e| client::refused(address, &e))?;
        let timeout = options.connect_timeout;
        let partitions = client::partitions(consumer.client(), address, timeout)?;
        let lost = |error: RdError| KafkaError::Client {
            address: address.to_string(),
            detail: error.to_string(),
        };
        let ends: HashMap<i32, (i64, i64)> = client::ends(address, settings, &partitions, timeout)?
            .into_iter()
            .map(|(partition, (low, end))| (partition, (end, low)))
            .collect();
        consumer.subscribe(&[&address.topic]).map_err(lost)?;
        let consumer = Arc::new(consumer);
        let acks = Acks {
            shared: Arc::clone(&shared),
            consumer: Arc::clone(&consumer),
        };
        let source = GroupSource {
            consumer,
            shared,
            address: address.clone(),
            ends,
            follow: options.follow.is_some(),
            stop: options.follow.or(options.stop),
            last_commit: Instant::now(),
            last_look: Instant::now(),
            finished: false,
        };
        Ok((source, acks))
    }

    fn stopped(&self) -> bool {
        self.stop
            .as_ref()
            .is_some_and(|stop| stop.load(Ordering::Relaxed))
    }

    fn commit_settled(&mut self, force: bool) {
        if !force && self.last_commit.elapsed() < COMMIT_EVERY {
            return;
        }
        let due = {
            let mut pending = self.shared.lock();
            if !pending.dirty && !force {
                return;
            }
            pending.due(&self.address.topic, None)
        };
        self.last_commit = Instant::now();
        if let Some(list) = due {
            let _ = self.consumer.commit(&list, CommitMode::Async);
        }
    }

    /// Whether the group has committed every partition up to its end.
    fn group_done(&mut self) -> Result<bool, StoreError> {
        let mut list = TopicPartitionList::new();
        for &partition in self.ends.keys() {
            list.add_partition(&self.address.topic, partition);
        }
        let committed = self
            .consumer
            .committed_offsets(list, Duration::from_secs(10))
            .map_err(|e| {
                StoreError::failed(
                    self.address.to_string(),
                    format!("cannot read the group's offsets: {e}"),
                )
            })?;
        Ok(committed.elements().iter().all(|element| {
            let (end, low) = self
                .ends
                .get(&element.partition())
                .copied()
                .unwrap_or((0, 0));
            end <= low || matches!(element.offset(), Offset::Offset(at) if at >= end)
        }))
    }

    /// Hands out the exchange a message holds, once per id; a duplicate
    /// or a message that holds none is settled at once.
    fn hand_out(&self, message: &BorrowedMessage<'_>) -> Option<Result<Exchange, StoreError>> {
        let (partition, offset) = (message.partition(), message.offset());
        let decoded = decode_message(&self.address, message);
        let mut pending = self.shared.lock();
        let next = pending.next.entry(partition).or_insert(offset + 1);
        *next = (*next).max(offset + 1);
        match decoded {
            Ok(exchange) => {
                if !pending.seen.insert(exchange.id.clone()) {
                    self.shared.duplicates.fetch_add(1, Ordering::Relaxed);
                    pending.dirty = true;
                    return None;
                }
                pending.open.entry(partition).or_default().insert(offset);
                pending
                    .by_id
                    .insert(exchange.id.clone(), (partition, offset));
                Some(Ok(exchange))
            }
            Err(damage) => {
                pending.dirty = true;
                Some(Err(damage))
            }
        }
    }
}

impl Iterator for GroupSource {
    type Item = Result<Exchange, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        loop {
            self.commit_settled(false);
            if self.stopped() {
                self.commit_settled(true);
                self.finished = true;
                return None;
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let end = self
                        .ends
                        .get(&message.partition())
                        .map_or(0, |(end, _)| *end);
                    // Past where this run reads: left for a later run of
                    // the group.
                    let past_end = !self.follow && message.offset() >= end;
                    if !past_end && let Some(item) = self.hand_out(&message) {
                        return Some(item);
                    }
                }
                Some(Err(error)) => {
                    self.consumer.context().last_error.set(error.to_string());
                }
                None => {}
            }
            if !self.follow && self.last_look.elapsed() >= LOOK_EVERY {
                self.last_look = Instant::now();
                self.commit_settled(true);
                match self.group_done() {
                    Ok(true) => {
                        self.finished = true;
                        return None;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        self.finished = true;
                        return Some(Err(error));
                    }
                }
            }
        }
    }
}

//! The durable queue: mapped, hashed, ready-to-send events on disk until the destination
//! accepted them (or refused them for good).
//!
//! # Design constraints
//!
//! - Store: one redb file (`queue.path`/`queue.redb`; `:memory:` = in memory, for tests and
//!   benchmarks). redb is an embedded, pure-Rust, ACID B-tree with copy-on-write pages and
//!   checksummed commits, so a `kill -9` leaves the last committed state. Tables: `events`
//!   (sequence → record) and `dead` (sequence → dead letter). Records: `record.rs`.
//! - One writer: a dedicated OS thread owns every write transaction. Appends are **group
//!   committed**: the thread takes every append waiting for it (up to [`MAX_GROUP`]), writes
//!   them in one transaction and commits once (`Durability::Immediate`: fsync), then acks
//!   them all. Many concurrent requests share one fsync; an ingest request is answered only
//!   after its commit returned.
//! - Who deletes: the dispatcher, through [`Queue::settle`], after the destination's 2xx (or a
//!   final refusal, which moves the event to `dead` in the same transaction). A crash between
//!   delivery and delete resends the event: at-least-once, deduplicated by `event_id`.
//! - Size cap: `queue.max_bytes` counts record bytes of pending events; an append that would
//!   pass it fails with [`QueueError::Full`] (ingest answers 503), never a silent drop.
//! - Concurrency mode `SingleWriter`: while the gateway runs, `tagbridge queue stats` can open
//!   the file read-only; writes from another process (`replay-dead`) need the gateway stopped.
//! - Only hashed, ready-to-send events reach the disk; no credential does (the route is found
//!   from the tag name at dispatch time).

mod record;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc as std_mpsc, Arc,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use redb::{
    backends::InMemoryBackend, ConcurrencyMode, Database, Durability, ReadableDatabase,
    ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::Serialize;
use tokio::sync::oneshot;

pub use record::{DeadLetter, DeadReason, EventBody, QueuedEvent};

/// Sequence number of a queued event (its key; increasing).
pub type Seq = u64;

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const DEAD: TableDefinition<u64, &[u8]> = TableDefinition::new("dead");

/// Most operations one commit groups.
pub const MAX_GROUP: usize = 4096;

/// redb's page cache: the dispatcher reads recent records back, so a small cache serves
/// it; a larger one only adds resident memory (redb's default is 1 GiB).
const CACHE_BYTES: usize = 16 << 20;

/// The file name inside `queue.path`.
pub const FILE_NAME: &str = "queue.redb";

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is full ({max_bytes} bytes)")]
    Full { max_bytes: u64 },
    #[error("queue storage error: {0}")]
    Storage(String),
    #[error("the queue is closed")]
    Closed,
    #[error("the queue at {0} is in use by a running gateway; stop it first")]
    InUse(PathBuf),
}

fn storage<E: std::fmt::Display>(e: E) -> QueueError {
    QueueError::Storage(e.to_string())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the queue holds under a sequence number.
#[derive(Debug, Clone)]
pub enum Stored {
    Event(QueuedEvent),
    /// Present but undecodable.
    Corrupt,
    /// Not (or no longer) in the queue: settled already.
    Missing,
}

impl Stored {
    /// The event, if it could be read.
    pub fn event(self) -> Option<QueuedEvent> {
        match self {
            Stored::Event(e) => Some(e),
            Stored::Corrupt | Stored::Missing => None,
        }
    }
}

/// A pending event as the dispatcher's index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub seq: Seq,
    pub tag: String,
    pub received_ms: u64,
    pub bytes: u64,
}

enum WriteOp {
    Append {
        records: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<Vec<Seq>, QueueError>>,
    },
    Settle {
        delete: Vec<(Seq, u64)>,
        dead: Vec<(Seq, u64, DeadLetter)>,
        reply: oneshot::Sender<Result<(), QueueError>>,
    },
}

/// Handle to the queue. Cheap to clone; when the last handle is dropped the writer thread
/// finishes its current commit and the file is closed.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    writer: Option<std_mpsc::Sender<WriteOp>>,
    thread: Option<std::thread::JoinHandle<()>>,
    bytes: Arc<AtomicU64>,
    max_bytes: u64,
    /// Commits (fsyncs) so far.
    commits: Arc<AtomicU64>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop; joining releases its hold on the file.
        self.writer.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What `tagbridge queue stats` prints.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub depth: u64,
    pub bytes: u64,
    pub oldest_age_s: Option<u64>,
    pub dead_letters: u64,
    pub dead_by_reason: BTreeMap<String, u64>,
}

fn open_db(path: &Path, mode: ConcurrencyMode) -> Result<Database, QueueError> {
    if path.as_os_str() == ":memory:" {
        return Database::builder()
            .create_with_backend(InMemoryBackend::new())
            .map_err(storage);
    }
    std::fs::create_dir_all(path)
        .map_err(|e| QueueError::Storage(format!("cannot create {}: {e}", path.display())))?;
    let file = path.join(FILE_NAME);
    Database::builder()
        .set_concurrency_mode(mode)
        .set_cache_size(CACHE_BYTES)
        .create(&file)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => QueueError::InUse(file.clone()),
            other => QueueError::Storage(format!("cannot open {}: {other}", file.display())),
        })
}

impl Queue {
    /// Opens (or creates) the queue and returns what is pending, oldest first.
    ///
    /// # Errors
    /// When the store cannot be opened (or another gateway holds it).
    pub fn open(path: &Path, max_bytes: u64) -> Result<(Queue, Vec<Pending>), QueueError> {
        let db = open_db(path, ConcurrencyMode::SingleWriter)?;
        {
            let tx = db.begin_write().map_err(storage)?;
            tx.open_table(EVENTS).map_err(storage)?;
            tx.open_table(DEAD).map_err(storage)?;
            tx.commit().map_err(storage)?;
        }
        let mut pending = Vec::new();
        let mut total = 0u64;
        {
            let rx = db.begin_read().map_err(storage)?;
            let table = rx.open_table(EVENTS).map_err(storage)?;
            for row in table.iter().map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                let bytes = v.value();
                let (tag, received_ms) = QueuedEvent::peek(bytes).unwrap_or(("", 0));
                total += bytes.len() as u64;
                pending.push(Pending {
                    seq: k.value(),
                    tag: tag.to_owned(),
                    received_ms,
                    bytes: bytes.len() as u64,
                });
            }
        }
        let next = {
            let rx = db.begin_read().map_err(storage)?;
            let last_event = rx
                .open_table(EVENTS)
                .map_err(storage)?
                .last()
                .map_err(storage)?
                .map(|(k, _)| k.value());
            let last_dead = rx
                .open_table(DEAD)
                .map_err(storage)?
                .last()
                .map_err(storage)?
                .map(|(k, _)| k.value());
            last_event.max(last_dead).map_or(1, |s| s + 1)
        };
        let db = Arc::new(db);
        let (writer, ops) = std_mpsc::channel();
        let bytes = Arc::new(AtomicU64::new(total));
        let commits = Arc::new(AtomicU64::new(0));
        let state = WriterState {
            db: db.clone(),
            next,
            bytes: bytes.clone(),
            commits: commits.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("queue-writer".into())
            .spawn(move || writer_loop(state, ops))
            .map_err(storage)?;
        Ok((
            Queue {
                inner: Arc::new(Inner {
                    db,
                    writer: Some(writer),
                    thread: Some(thread),
                    bytes,
                    max_bytes,
                    commits,
                }),
            },
            pending,
        ))
    }

    /// Appends events durably (group commit); resolves once they are on disk.
    ///
    /// # Errors
    /// [`QueueError::Full`] past `queue.max_bytes`; storage errors.
    pub async fn append(&self, events: &[QueuedEvent]) -> Result<Vec<(Seq, u64)>, QueueError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<Vec<u8>> = events.iter().map(QueuedEvent::encode).collect();
        let inner = &self.inner;
        let size: u64 = records.iter().map(|r| r.len() as u64).sum();
        let before = inner.bytes.fetch_add(size, Ordering::AcqRel);
        if before + size > inner.max_bytes {
            inner.bytes.fetch_sub(size, Ordering::AcqRel);
            metrics::counter!("tagbridge_queue_full_total").increment(1);
            return Err(QueueError::Full {
                max_bytes: inner.max_bytes,
            });
        }
        let sizes: Vec<u64> = records.iter().map(|r| r.len() as u64).collect();
        let (reply, rx) = oneshot::channel();
        let result = match self.send(WriteOp::Append { records, reply }) {
            Ok(()) => rx.await.unwrap_or(Err(QueueError::Closed)),
            Err(e) => Err(e),
        };
        match result {
            Ok(seqs) => Ok(seqs.into_iter().zip(sizes).collect()),
            Err(e) => {
                inner.bytes.fetch_sub(size, Ordering::AcqRel);
                Err(e)
            }
        }
    }

    fn send(&self, op: WriteOp) -> Result<(), QueueError> {
        match &self.inner.writer {
            Some(w) => w.send(op).map_err(|_| QueueError::Closed),
            None => Err(QueueError::Closed),
        }
    }

    /// Reads records: one [`Stored`] per requested sequence, in the same order, so callers
    /// zip the answer with what they asked for.
    ///
    /// # Errors
    /// Storage errors.
    pub fn read(&self, seqs: &[Seq]) -> Result<Vec<Stored>, QueueError> {
        let rx = self.inner.db.begin_read().map_err(storage)?;
        let table = rx.open_table(EVENTS).map_err(storage)?;
        seqs.iter()
            .map(|&seq| {
                Ok(match table.get(seq).map_err(storage)? {
                    None => Stored::Missing,
                    Some(v) => {
                        QueuedEvent::decode(v.value()).map_or(Stored::Corrupt, Stored::Event)
                    }
                })
            })
            .collect()
    }

    /// [`Queue::read`] on a blocking thread (redb reads do file I/O).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn read_blocking(&self, seqs: Vec<Seq>) -> Result<Vec<Stored>, QueueError> {
        let queue = self.clone();
        tokio::task::spawn_blocking(move || queue.read(&seqs))
            .await
            .map_err(storage)?
    }

    /// Deletes delivered events and moves refused ones to the dead letters, in one commit.
    /// `delete` and `dead` carry each event's record size (for the size cap).
    ///
    /// # Errors
    /// Storage errors (the events then stay queued and are sent again later).
    pub async fn settle(
        &self,
        delete: Vec<(Seq, u64)>,
        dead: Vec<(Seq, u64, DeadLetter)>,
    ) -> Result<(), QueueError> {
        if delete.is_empty() && dead.is_empty() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        self.send(WriteOp::Settle {
            delete,
            dead,
            reply,
        })?;
        rx.await.unwrap_or(Err(QueueError::Closed))
    }

    /// Commits (each one fsync) since the queue was opened.
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::Acquire)
    }

    /// Bytes of pending records.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Acquire)
    }

    /// Depth, age and dead letters, from this handle.
    ///
    /// # Errors
    /// Storage errors.
    pub fn stats(&self) -> Result<Stats, QueueError> {
        stats_of(self.inner.db.as_ref())
    }
}

fn stats_of(db: &impl ReadableDatabase) -> Result<Stats, QueueError> {
    let rx = db.begin_read().map_err(storage)?;
    let mut stats = Stats::default();
    // A file written before these tables existed has none: zero, not an error.
    if let Ok(events) = rx.open_table(EVENTS) {
        stats.depth = events.len().map_err(storage)?;
        let mut oldest: Option<u64> = None;
        for row in events.iter().map_err(storage)? {
            let (_, v) = row.map_err(storage)?;
            stats.bytes += v.value().len() as u64;
            if let Some((_, ms)) = QueuedEvent::peek(v.value()) {
                oldest = Some(oldest.map_or(ms, |o| o.min(ms)));
            }
        }
        stats.oldest_age_s = oldest.map(|ms| now_ms().saturating_sub(ms) / 1000);
    }
    if let Ok(dead) = rx.open_table(DEAD) {
        for row in dead.iter().map_err(storage)? {
            let (_, v) = row.map_err(storage)?;
            let reason = serde_json::from_slice::<DeadLetter>(v.value())
                .map(|d| d.reason.as_str())
                .unwrap_or("corrupt");
            *stats.dead_by_reason.entry(reason.to_owned()).or_default() += 1;
            stats.dead_letters += 1;
        }
    }
    Ok(stats)
}

/// `tagbridge queue stats`: opens the queue read-only (works while the gateway runs).
///
/// # Errors
/// When the queue cannot be opened.
pub fn stats_at(path: &Path) -> Result<Stats, QueueError> {
    let file = path.join(FILE_NAME);
    if !file.exists() {
        return Ok(Stats::default());
    }
    let db = Database::builder()
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .open_read_only(&file)
        .map_err(|e| QueueError::Storage(format!("cannot open {}: {e}", file.display())))?;
    stats_of(&db)
}

/// Dead letters, oldest first (at most `limit`), read-only (works while the gateway runs).
///
/// # Errors
/// When the queue cannot be opened.
pub fn dead_letters_at(path: &Path, limit: usize) -> Result<Vec<(Seq, DeadLetter)>, QueueError> {
    let file = path.join(FILE_NAME);
    if !file.exists() {
        return Ok(Vec::new());
    }
    let db = Database::builder()
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .open_read_only(&file)
        .map_err(|e| QueueError::Storage(format!("cannot open {}: {e}", file.display())))?;
    let rx = db.begin_read().map_err(storage)?;
    let Ok(dead) = rx.open_table(DEAD) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for row in dead.iter().map_err(storage)?.take(limit) {
        let (k, v) = row.map_err(storage)?;
        if let Ok(letter) = serde_json::from_slice::<DeadLetter>(v.value()) {
            out.push((k.value(), letter));
        }
    }
    Ok(out)
}

/// `tagbridge queue replay-dead`: moves every dead letter with a readable event back into
/// the queue (e.g. after fixing a token). Needs the gateway stopped. Returns how many.
///
/// # Errors
/// When the queue is in use or cannot be written.
pub fn replay_dead(path: &Path) -> Result<u64, QueueError> {
    let db = open_db(path, ConcurrencyMode::ExclusiveWriter)?;
    let mut tx = db.begin_write().map_err(storage)?;
    tx.set_durability(Durability::Immediate).map_err(storage)?;
    let mut moved = 0;
    {
        let mut dead = tx.open_table(DEAD).map_err(storage)?;
        let mut events = tx.open_table(EVENTS).map_err(storage)?;
        let next_event = events.last().map_err(storage)?.map(|(k, _)| k.value());
        let next_dead = dead.last().map_err(storage)?.map(|(k, _)| k.value());
        let mut next = next_event.max(next_dead).map_or(1, |s| s + 1);
        let mut keys = Vec::new();
        for row in dead.iter().map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            if let Ok(letter) = serde_json::from_slice::<DeadLetter>(v.value()) {
                if let Some(record) = letter.record {
                    keys.push((k.value(), record.encode()));
                }
            }
        }
        for (key, record) in keys {
            events.insert(next, record.as_slice()).map_err(storage)?;
            dead.remove(key).map_err(storage)?;
            next += 1;
            moved += 1;
        }
    }
    tx.commit().map_err(storage)?;
    Ok(moved)
}

struct WriterState {
    db: Arc<Database>,
    next: Seq,
    bytes: Arc<AtomicU64>,
    commits: Arc<AtomicU64>,
}

fn writer_loop(state: WriterState, ops: std_mpsc::Receiver<WriteOp>) {
    let WriterState {
        db,
        mut next,
        bytes,
        commits,
    } = state;
    while let Ok(first) = ops.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match ops.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        let start = next;
        let result = commit_group(&db, &group, &mut next);
        if result.is_err() {
            next = start;
        }
        commits.fetch_add(1, Ordering::AcqRel);
        metrics::counter!("tagbridge_queue_commits_total").increment(1);
        let mut seq = start;
        for op in group {
            match op {
                WriteOp::Append { records, reply } => {
                    let n = records.len() as u64;
                    let r = match &result {
                        Ok(()) => Ok((seq..seq + n).collect()),
                        Err(e) => Err(QueueError::Storage(e.to_string())),
                    };
                    seq += n;
                    let _ = reply.send(r);
                }
                WriteOp::Settle {
                    delete,
                    dead,
                    reply,
                } => {
                    let r = match &result {
                        Ok(()) => {
                            let freed: u64 = delete.iter().map(|(_, b)| b).sum::<u64>()
                                + dead.iter().map(|(_, b, _)| b).sum::<u64>();
                            bytes.fetch_sub(
                                freed.min(bytes.load(Ordering::Acquire)),
                                Ordering::AcqRel,
                            );
                            Ok(())
                        }
                        Err(e) => Err(QueueError::Storage(e.to_string())),
                    };
                    let _ = reply.send(r);
                }
            }
        }
    }
}

fn commit_group(db: &Database, group: &[WriteOp], next: &mut Seq) -> Result<(), QueueError> {
    let mut tx = db.begin_write().map_err(storage)?;
    tx.set_durability(Durability::Immediate).map_err(storage)?;
    {
        let mut events = tx.open_table(EVENTS).map_err(storage)?;
        let mut dead_table = tx.open_table(DEAD).map_err(storage)?;
        for op in group {
            match op {
                WriteOp::Append { records, .. } => {
                    for r in records {
                        events.insert(*next, r.as_slice()).map_err(storage)?;
                        *next += 1;
                    }
                }
                WriteOp::Settle { delete, dead, .. } => {
                    for (seq, _) in delete {
                        events.remove(*seq).map_err(storage)?;
                    }
                    for (seq, _, letter) in dead {
                        events.remove(*seq).map_err(storage)?;
                        let json = serde_json::to_vec(letter).map_err(storage)?;
                        dead_table.insert(*seq, json.as_slice()).map_err(storage)?;
                    }
                }
            }
        }
    }
    tx.commit().map_err(storage)
}

#[cfg(test)]
mod tests;

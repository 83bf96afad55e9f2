//! The durable queue: mapped, hashed, ready-to-send events on disk until their destination
//! accepted them (or refused them for good).
//!
//! # Design constraints
//!
//! - **Store.** An append-only log of segment files in `queue.path` (`":memory:"` keeps them
//!   in memory: tests and benchmarks, not durable). Formats: [`format`]. Events go to
//!   `q-<id>.log`; the frame offsets of settled events of that segment go to `q-<id>.ack`;
//!   dead letters go to `dead-<id>.log`. Every frame carries a CRC, so a torn or damaged
//!   frame is never read as data.
//! - **Appends.** A request hands its framed events to the writer thread, which appends
//!   every request waiting for it with one `write` (group commit). With
//!   `queue.sync_interval_ms: 0` (default) the group is `fdatasync`ed before its requests
//!   are answered: concurrent requests share one sync. With `N > 0` they are answered after
//!   the `write` (the events survive `kill -9`) and the writer syncs every N ms (a power loss
//!   can cost the last N ms).
//! - **Nothing stranded.** The writer itself makes written events pending for the
//!   dispatcher, in the same step as the write; a client that disconnects cannot separate
//!   the two.
//! - **Who deletes.** The dispatcher [`leases`](Queue::lease) events for a batch and
//!   [`settles`](Queue::settle) them after the destination's answer: delivered events are
//!   acked, refused ones are written to the dead letters first and then acked. A segment
//!   whose events are all settled is deleted whole; a sealed segment that is more than half
//!   settled is compacted (its live events copied forward, then deleted), so one stuck route
//!   cannot pin the disk. A crash between delivery and ack resends the event: at-least-once,
//!   deduplicated downstream by `event_id`.
//! - **Caps.** `queue.max_bytes` bounds pending event bytes: past it appends fail with
//!   [`QueueError::Full`] (ingest answers 503). Dead letters are capped by
//!   `queue.dead_letter_max_bytes`, oldest evicted first and counted. Appends also stop while
//!   the volume has less than `queue.min_free_bytes` free. Disk use stays below
//!   `2 × max_bytes + dead_letter_max_bytes + 3 segments`, plus ack files (4 bytes per event).
//! - **Faults heal.** A failed write or sync (full disk, I/O error) is undone (the segment is
//!   truncated back to its last good length), refuses appends with
//!   [`QueueError::Unwritable`], and is retried every second by the sync thread; when a
//!   write succeeds again appends resume, without a restart.
//! - **Recovery.** Opening reads every segment and its acks and rebuilds the index (≈32 bytes
//!   per pending event). An incomplete frame at the end of the newest segment (a write cut by
//!   a crash) is truncated. A segment with any other damage is renamed
//!   `<name>.corrupt-<unix seconds>` (never deleted) after its intact events were copied into
//!   a new segment; `tagbridge queue salvage --from FILE` does the same for any file.
//! - **One writer.** A `LOCK` file (`flock`) keeps a second gateway off the directory;
//!   `tagbridge queue stats` only reads and works while the gateway runs.
//! - Only hashed, ready-to-send events reach the disk; no credential does (the route is
//!   found from the tag name at dispatch time).

pub mod format;
mod index;
mod log;
mod open;
pub mod storage;

use std::{
    collections::BTreeMap,
    fs::File,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::{oneshot, Notify};

pub use index::Entry;
pub use open::{
    dead_letters_at, replay_dead, salvage, stats_at, OpenReport, ReplayReport, SalvageReport,
};
use storage::{FileStorage, MemStorage, Storage};

use crate::support::now_ms;

/// Index of a dispatch route (assigned from the config at start-up).
pub type RouteId = usize;

/// Name of the lock file in `queue.path`.
pub const LOCK_FILE: &str = "LOCK";

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    #[error("the queue is full ({max_bytes} bytes)")]
    Full { max_bytes: u64 },
    #[error("the queue volume has less than {min_free_bytes} bytes free")]
    LowDisk { min_free_bytes: u64 },
    #[error("the queue cannot write: {0}")]
    Unwritable(String),
    #[error("queue storage error: {0}")]
    Storage(String),
    #[error("the queue is closed")]
    Closed,
    #[error("the queue at {0} is in use by a running gateway; stop it first")]
    InUse(PathBuf),
}

/// Whether the queue takes new events (`/readyz`, metrics, the debug page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    Writable,
    /// `queue.max_bytes` reached.
    Full,
    /// Less than `queue.min_free_bytes` free on the volume.
    LowDisk,
    /// The last write or sync failed; retried every second.
    Unwritable,
}

impl QueueState {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Writable => "writable",
            QueueState::Full => "full",
            QueueState::LowDisk => "low_disk",
            QueueState::Unwritable => "unwritable",
        }
    }
}

/// Why an event was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DeadReason {
    /// The destination accepted the batch but marked this event failed.
    EventFailed,
    /// The destination refused it with a permanent status (400, 401, 403, 422, ...).
    Refused,
    /// Still failing after `dispatch.retry.give_up_after_s`.
    GaveUp,
    /// The tag is no longer in the config.
    UnknownTag,
    /// The stored record could not be read back.
    Corrupt,
    /// Larger than the destination accepts in one request.
    TooLarge,
}

impl DeadReason {
    pub const ALL: [DeadReason; 6] = [
        DeadReason::EventFailed,
        DeadReason::Refused,
        DeadReason::GaveUp,
        DeadReason::UnknownTag,
        DeadReason::Corrupt,
        DeadReason::TooLarge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::EventFailed => "event_failed",
            DeadReason::Refused => "refused",
            DeadReason::GaveUp => "gave_up",
            DeadReason::UnknownTag => "unknown_tag",
            DeadReason::Corrupt => "corrupt",
            DeadReason::TooLarge => "too_large",
        }
    }
    fn code(self) -> u8 {
        match self {
            DeadReason::EventFailed => 1,
            DeadReason::Refused => 2,
            DeadReason::GaveUp => 3,
            DeadReason::UnknownTag => 4,
            DeadReason::Corrupt => 5,
            DeadReason::TooLarge => 6,
        }
    }
    fn from_code(c: u8) -> DeadReason {
        match c {
            1 => DeadReason::EventFailed,
            2 => DeadReason::Refused,
            3 => DeadReason::GaveUp,
            4 => DeadReason::UnknownTag,
            6 => DeadReason::TooLarge,
            _ => DeadReason::Corrupt,
        }
    }
}

/// The outcome of one event, for callers waiting for it (`wait_for_response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The destination accepted it.
    Sent,
    /// The destination refused it for good (dead-lettered); the text says why.
    Failed(String),
}

/// A dead letter to write: why, the destination's answer, and the event's stored payload.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub reason: DeadReason,
    /// HTTP status of the answer, when there was one.
    pub status: Option<u16>,
    /// The destination's message (never a credential).
    pub message: String,
}

/// A dead letter as listed by `tagbridge queue` commands.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterInfo {
    pub reason: DeadReason,
    pub status: Option<u16>,
    pub message: String,
    pub dead_at_ms: u64,
    pub tag: Option<String>,
    pub event_id: Option<String>,
    pub event_name: Option<String>,
}

/// Settings of an open queue.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    pub max_bytes: u64,
    pub dead_letter_max_bytes: u64,
    pub min_free_bytes: u64,
    /// `None`: answer after `fdatasync`; `Some(d)`: answer after the write, sync every `d`.
    pub sync_interval: Option<Duration>,
    /// Size at which the active segment is sealed and a new one started.
    pub segment_bytes: u64,
    pub dead_segment_bytes: u64,
}

impl QueueOptions {
    /// Options for `max_bytes` and `dead_letter_max_bytes`, segment sizes derived from them.
    pub fn new(max_bytes: u64, dead_letter_max_bytes: u64) -> Self {
        Self {
            max_bytes,
            dead_letter_max_bytes,
            min_free_bytes: 0,
            sync_interval: None,
            segment_bytes: (max_bytes / 64).clamp(256 << 10, 8 << 20),
            dead_segment_bytes: (dead_letter_max_bytes / 16).clamp(64 << 10, 8 << 20),
        }
    }
}

/// A pending event as a segment holds it.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    payload: Vec<u8>,
    /// Where the fields are in `payload` (read once).
    fields: format::EventFields,
}

impl StoredEvent {
    /// Checks and keeps a payload.
    pub(crate) fn new(payload: Vec<u8>) -> Option<Self> {
        let fields = format::EventFields::of(&payload)?;
        Some(Self { payload, fields })
    }

    /// The record's fields.
    pub fn view(&self) -> format::EventView<'_> {
        self.fields.view(&self.payload)
    }
    /// The event's body (the destination's JSON), without checking the texts [`view`]
    /// reads.
    ///
    /// [`view`]: Self::view
    pub fn body(&self) -> &[u8] {
        self.fields.body(&self.payload)
    }

    /// Whether the event's tag logs its requests and responses.
    pub fn logs(&self) -> bool {
        self.fields.logs()
    }

    /// The tag that queued the event.
    pub fn tag(&self) -> &str {
        self.fields.tag(&self.payload)
    }

    /// The stored payload (what a dead letter keeps).
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

/// Events of one request, framed, ready for one append. Built by the pipeline.
#[derive(Default)]
pub struct AppendBatch {
    buf: Vec<u8>,
    records: Vec<BatchRecord>,
}

struct BatchRecord {
    route: RouteId,
    seq: u64,
    at: u32,
    len: u32,
    received_ms: u64,
    reply: Option<oneshot::Sender<Delivery>>,
}

impl AppendBatch {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
    pub fn len(&self) -> usize {
        self.records.len()
    }
    /// Bytes the batch adds to the queue.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// An empty batch with room for `bytes` of frames.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            buf: Vec::with_capacity(bytes),
            records: Vec::new(),
        }
    }

    /// Frames one event: its header fields, then `body` (the destination event's JSON).
    /// Returns the event's sequence number.
    pub fn push(
        &mut self,
        queue: &Queue,
        route: RouteId,
        head: format::EventHead<'_>,
        body: &[u8],
        reply: Option<oneshot::Sender<Delivery>>,
    ) -> u64 {
        let seq = queue.shared.next_seq.fetch_add(1, Ordering::Relaxed);
        let at = format::begin_frame(&mut self.buf);
        format::put_event_head(&mut self.buf, &format::EventHead { seq, ..head });
        self.buf.extend_from_slice(body);
        format::finish_frame(&mut self.buf, at);
        self.records.push(BatchRecord {
            route,
            seq,
            at: u32::try_from(at).unwrap_or(u32::MAX),
            len: u32::try_from(self.buf.len() - at).unwrap_or(u32::MAX),
            received_ms: head.received_ms,
            reply,
        });
        seq
    }
}

/// What an append promises: nothing to wait for (an empty append), or durable once this
/// resolves.
pub enum Commit {
    Done,
    /// Resolves when the group commit holding the events is durable: `fdatasync`ed
    /// (`sync_interval_ms: 0`) or written to the OS (`sync_interval_ms > 0`); or failed.
    Syncing(oneshot::Receiver<Result<(), QueueError>>),
}

impl Commit {
    /// Waits until the events are durable.
    ///
    /// # Errors
    /// When the sync failed: the events were removed again and will not be delivered.
    pub async fn durable(self) -> Result<(), QueueError> {
        match self {
            Commit::Done => Ok(()),
            Commit::Syncing(rx) => rx.await.unwrap_or(Err(QueueError::Closed)),
        }
    }
}

/// What the dispatcher sees of one route.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteStatus {
    /// Pending (not leased) events.
    pub pending: usize,
    pub pending_bytes: u64,
    /// When the oldest pending event started waiting for a batch.
    pub since: Option<Instant>,
    /// `received_ms` of the oldest pending event.
    pub oldest_ms: Option<u64>,
}

/// What `tagbridge queue stats`, `/metrics` and the debug page show.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub depth: u64,
    pub bytes: u64,
    pub oldest_age_s: Option<u64>,
    pub dead_letters: u64,
    pub dead_by_reason: BTreeMap<String, u64>,
    pub dead_letter_bytes: u64,
    pub dead_letters_evicted: u64,
    /// Bytes of all queue files (segments, acks, dead letters).
    pub disk_bytes: u64,
}

/// Handle to the queue. Cheap to clone.
#[derive(Clone)]
pub struct Queue {
    shared: Arc<Shared>,
}

struct Shared {
    storage: Arc<dyn Storage>,
    opts: QueueOptions,
    next_seq: AtomicU64,
    log: Mutex<log::Log>,
    index: Mutex<index::Index>,
    dead: Mutex<index::DeadStore>,
    /// Requests waiting for the writer thread, and its wake-up.
    inbox: (Mutex<log::Inbox>, Condvar),
    /// Wakes the dispatcher when events become pending.
    notify: Notify,
    /// The last write or sync failed (until a write succeeds again).
    failed: AtomicBool,
    /// Less than `min_free_bytes` free on the volume.
    low_disk: AtomicBool,
    /// Bytes of unsettled events, including written-but-unsynced ones (for the size cap).
    live_bytes: AtomicU64,
    commits: AtomicU64,
    closed: AtomicBool,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    _lock: Option<File>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a queue lock was held leaves consistent data behind (every critical
    // section updates memory after its I/O succeeded), so the poison flag is cleared.
    m.lock().unwrap_or_else(|p| {
        m.clear_poison();
        p.into_inner()
    })
}

impl Queue {
    /// Opens the queue at `path` (`":memory:"`: in memory). `route_of` maps a stored tag name
    /// to its route; events of unknown tags are dead-lettered (`unknown_tag`).
    ///
    /// # Errors
    /// When the directory cannot be used or another gateway holds it.
    pub fn open_path(
        path: &Path,
        opts: QueueOptions,
        routes: usize,
        route_of: &dyn Fn(&str) -> Option<RouteId>,
    ) -> Result<(Queue, OpenReport), QueueError> {
        if path.as_os_str() == ":memory:" {
            return Self::open(
                Arc::new(MemStorage::default()),
                None,
                opts,
                routes,
                route_of,
            );
        }
        let storage = FileStorage::new(path)
            .map_err(|e| QueueError::Storage(format!("cannot create {}: {e}", path.display())))?;
        let lock = take_lock(path)?;
        Self::open(Arc::new(storage), Some(lock), opts, routes, route_of)
    }

    /// Opens the queue on any storage (tests inject faults this way).
    ///
    /// # Errors
    /// When the storage cannot be read or a first segment cannot be created.
    pub fn open(
        storage: Arc<dyn Storage>,
        lock: Option<File>,
        opts: QueueOptions,
        routes: usize,
        route_of: &dyn Fn(&str) -> Option<RouteId>,
    ) -> Result<(Queue, OpenReport), QueueError> {
        open::open(storage, lock, opts, routes, route_of)
    }

    /// The next sequence number (for tests and tools).
    pub fn next_seq(&self) -> u64 {
        self.shared.next_seq.load(Ordering::Relaxed)
    }

    /// Appends a request's events with one write. With per-commit sync the returned
    /// [`Commit`] resolves once they are synced; the events reach the dispatcher either way,
    /// even if the caller stops waiting.
    ///
    /// # Errors
    /// [`QueueError::Full`], [`QueueError::LowDisk`], [`QueueError::Unwritable`]: nothing of
    /// the batch was kept.
    pub fn append(&self, batch: AppendBatch) -> Result<Commit, QueueError> {
        log::append(&self.shared, batch)
    }

    /// Waits until events may be pending for some route.
    pub async fn notified(&self) {
        self.shared.notify.notified().await;
    }

    /// Wake the dispatcher when `route` has this many events pending (a full batch).
    pub fn set_wake_threshold(&self, route: RouteId, events: usize) {
        if let Some(r) = lock(&self.shared.index).routes.get_mut(route) {
            r.wake_at = events;
        }
    }

    pub fn route_status(&self, route: RouteId) -> RouteStatus {
        lock(&self.shared.index).route_status(route)
    }

    /// Takes up to `max_events` / `max_bytes` of the oldest pending events of a route for a
    /// batch (at least one event, even a larger one). They stay in the queue until settled or
    /// released.
    pub fn lease(&self, route: RouteId, max_events: usize, max_bytes: u64) -> Vec<Entry> {
        lock(&self.shared.index).lease(route, max_events, max_bytes)
    }

    /// Puts leased events back at the front of their route (a retry).
    pub fn release(&self, route: RouteId, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        lock(&self.shared.index).release(route, entries);
        self.shared.notify.notify_one();
    }

    /// Puts every leased event back (after a dispatcher restart).
    pub fn release_all(&self) {
        lock(&self.shared.index).release_all();
        self.shared.notify.notify_one();
    }

    /// Reads leased events back; `None` where a record cannot be read (it is then
    /// dead-lettered as `corrupt` by the caller).
    pub fn read(&self, entries: &[Entry]) -> Vec<Option<StoredEvent>> {
        index::read(&self.shared, entries)
    }

    /// Settles leased events: `delivered` are acked; each of `dead` is written to the dead
    /// letters with its payload, then acked. Waiting callers get their outcome.
    ///
    /// # Errors
    /// When the dead letters cannot be written: those events stay leased and the caller
    /// releases them for a later retry. Delivered events are settled in any case.
    pub fn settle(
        &self,
        route: RouteId,
        delivered: &[Entry],
        dead: &[(Entry, DeadLetter, Option<&[u8]>)],
    ) -> Result<(), QueueError> {
        index::settle(&self.shared, route, delivered, dead)
    }

    pub fn state(&self) -> QueueState {
        self.shared.state_now()
    }

    /// `fdatasync`s so far (group commits per commit sync; periodic syncs otherwise).
    pub fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Acquire)
    }

    /// Bytes of pending events.
    pub fn bytes(&self) -> u64 {
        lock(&self.shared.index).pending_bytes
    }

    /// Pending plus leased events.
    pub fn depth(&self) -> usize {
        lock(&self.shared.index).depth()
    }

    pub fn stats(&self) -> Stats {
        let active = lock(&self.shared.log)
            .active
            .as_ref()
            .map(|a| (a.id, a.len));
        let (depth, bytes, oldest, disk) = {
            let i = lock(&self.shared.index);
            (
                i.depth() as u64,
                i.pending_bytes,
                i.oldest_ms(),
                i.disk_bytes(active),
            )
        };
        let d = lock(&self.shared.dead);
        Stats {
            depth,
            bytes,
            oldest_age_s: oldest.map(|ms| now_ms().saturating_sub(ms) / 1000),
            dead_letters: d.count(),
            dead_by_reason: d.by_reason(),
            dead_letter_bytes: d.total_bytes,
            dead_letters_evicted: d.evicted,
            disk_bytes: disk + d.total_bytes,
        }
    }

    /// Stops the sync thread after a last sync. Later appends fail with
    /// [`QueueError::Closed`]. Idempotent.
    pub fn close(&self) {
        log::close(&self.shared);
    }
}

fn take_lock(path: &Path) -> Result<File, QueueError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.join(LOCK_FILE))
        .map_err(|e| QueueError::Storage(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(QueueError::InUse(path.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(QueueError::Storage(format!(
            "cannot lock {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests;

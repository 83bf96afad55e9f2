//! The append side: requests hand their framed events to the writer thread, which appends
//! every waiting request with one `write` (then, per commit sync, one `fdatasync`), makes
//! the events pending for the dispatcher, and answers the requests: group commit. The same
//! thread syncs periodically (interval mode), rolls segments, heals after write failures
//! (full disk, I/O errors), watches free space and compacts sparse segments.

use std::{
    sync::{atomic::Ordering, Arc, MutexGuard, Weak},
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::{
    format::{self, Kind},
    index::{events_name, remove_segment, Entry, SegMeta},
    lock,
    storage::SegmentFile,
    AppendBatch, BatchRecord, Commit, Delivery, QueueError, QueueState, Shared,
};

/// How often a failed queue tries to write again, and the writer looks around.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How often free space is read.
const FREE_SPACE_EVERY: Duration = Duration::from_millis(100);

pub(super) struct Active {
    pub id: u32,
    pub file: Arc<dyn SegmentFile>,
    /// Bytes written (the logical end; the file is truncated back to it after a failure).
    pub len: u64,
    /// Bytes known durable.
    pub synced: u64,
}

/// A request's events waiting for the writer.
pub(super) struct Pending {
    buf: Vec<u8>,
    records: Vec<BatchRecord>,
    reply: oneshot::Sender<Result<(), QueueError>>,
}

/// What requests hand to the writer (behind `Shared::inbox`).
#[derive(Default)]
pub(super) struct Inbox {
    items: Vec<Pending>,
}

/// The writer's state (locked by the writer while it writes; by stats and close otherwise).
#[derive(Default)]
pub(super) struct Log {
    pub active: Option<Active>,
    pub next_segment: u32,
    /// A segment whose failed write could not be cut back: sealed at the next roll.
    broken: Option<Active>,
    /// Written since the last sync (interval mode).
    dirty: bool,
    last_sync: Option<Instant>,
    /// The last write or sync failure, while the queue is unwritable.
    failure: Option<Failure>,
    last_free_check: Option<Instant>,
    last_state: Option<QueueState>,
    /// Reused for concatenating a group.
    scratch: Vec<u8>,
}

struct Failure {
    error: String,
    last_try: Instant,
}

fn io_reason(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSPC) => "no space left on the queue volume".into(),
        Some(libc::EDQUOT) => "disk quota exceeded on the queue volume".into(),
        Some(libc::EIO) => "I/O error on the queue volume".into(),
        _ => e.to_string(),
    }
}

impl Log {
    pub(super) fn new(next_segment: u32) -> Self {
        Self {
            next_segment,
            ..Self::default()
        }
    }
}

impl Shared {
    pub(super) fn state_now(&self) -> QueueState {
        if self.failed.load(Ordering::Acquire) {
            QueueState::Unwritable
        } else if self.low_disk.load(Ordering::Acquire) {
            QueueState::LowDisk
        } else if self.live_bytes.load(Ordering::Acquire) >= self.full_mark() {
            QueueState::Full
        } else {
            QueueState::Writable
        }
    }

    /// Pending bytes from which the queue counts as full for readiness: the cap minus room
    /// for one large request.
    fn full_mark(&self) -> u64 {
        self.opts
            .max_bytes
            .saturating_sub((self.opts.max_bytes / 100).min(1 << 20))
    }

    fn fail(&self, log: &mut Log, error: String) {
        metrics::counter!("tagbridge_queue_write_errors_total").increment(1);
        if log.failure.is_none() {
            tracing::error!(error = %error, "Queue write failed: new events are refused (503) until it can write again; retrying every second.");
        }
        log.failure = Some(Failure {
            error,
            last_try: Instant::now(),
        });
        self.failed.store(true, Ordering::Release);
    }

    fn recovered(&self, log: &mut Log) {
        if log.failure.take().is_some() {
            tracing::info!("Queue writes again: accepting events.");
            self.failed.store(false, Ordering::Release);
        }
    }

    /// Reads free space (at most every [`FREE_SPACE_EVERY`] unless `now`) and sets the
    /// low-disk flag.
    fn check_free(&self, log: &mut Log, now: bool) {
        if self.opts.min_free_bytes == 0 {
            return;
        }
        if !now
            && log
                .last_free_check
                .is_some_and(|t| t.elapsed() < FREE_SPACE_EVERY)
        {
            return;
        }
        log.last_free_check = Some(Instant::now());
        let low = self
            .storage
            .free_bytes()
            .is_some_and(|f| f < self.opts.min_free_bytes);
        self.low_disk.store(low, Ordering::Release);
    }
}

/// Hands a request's events to the writer. Refuses at once when the queue is full, low on
/// disk or unwritable; otherwise the returned [`Commit`] resolves once they are written
/// (and synced, per commit sync). The events reach the dispatcher either way, even if the
/// caller stops waiting.
pub(super) fn append(shared: &Shared, batch: AppendBatch) -> Result<Commit, QueueError> {
    if batch.records.is_empty() {
        return Ok(Commit::Done);
    }
    if shared.closed.load(Ordering::Acquire) {
        return Err(QueueError::Closed);
    }
    if shared.failed.load(Ordering::Acquire) {
        return Err(QueueError::Unwritable(
            "the last write failed; retrying every second".into(),
        ));
    }
    if shared.low_disk.load(Ordering::Acquire) {
        return Err(QueueError::LowDisk {
            min_free_bytes: shared.opts.min_free_bytes,
        });
    }
    let size = batch.buf.len() as u64;
    let before = shared.live_bytes.fetch_add(size, Ordering::AcqRel);
    if before + size > shared.opts.max_bytes {
        shared.live_bytes_sub(size);
        metrics::counter!("tagbridge_queue_full_total").increment(1);
        return Err(QueueError::Full {
            max_bytes: shared.opts.max_bytes,
        });
    }
    let (reply, rx) = oneshot::channel();
    let (inbox, cv) = &shared.inbox;
    lock(inbox).items.push(Pending {
        buf: batch.buf,
        records: batch.records,
        reply,
    });
    // Interval mode answers after the write, which costs a few microseconds: when nobody
    // holds the log (the writer thread syncing, or another request writing), this request
    // writes the waiting group itself instead of waking the writer thread and waiting for
    // it. Commit mode leaves the write and its `fdatasync` to the writer thread: a sync
    // must not block a runtime worker.
    if shared.opts.sync_interval.is_some() && !shared.closed.load(Ordering::Acquire) {
        // A roll (it syncs the sealed segment) and a failed queue stay with the writer.
        let log = shared.log.try_lock().ok().filter(|log| {
            log.failure.is_none()
                && log
                    .active
                    .as_ref()
                    .is_some_and(|a| a.len < shared.opts.segment_bytes)
        });
        if let Some(mut log) = log {
            let items = std::mem::take(&mut lock(inbox).items);
            if !items.is_empty() {
                let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    commit_group(shared, &mut log, items);
                }));
                if done.is_err() {
                    writer_panicked();
                }
            }
            return Ok(Commit::Syncing(rx));
        }
    }
    cv.notify_one();
    Ok(Commit::Syncing(rx))
}

/// Seals the active segment (after syncing it) and starts a new one.
fn roll(shared: &Shared, log: &mut Log) -> Result<(), String> {
    if let Some(old) = log.active.take().or_else(|| log.broken.take()) {
        let synced = old.file.sync();
        seal(shared, &old);
        if let Err(e) = synced {
            return Err(io_reason(&e));
        }
    }
    let id = log.next_segment.max(1);
    let name = events_name(id);
    let file = shared.storage.create(&name).map_err(|e| io_reason(&e))?;
    let header = format::header(Kind::Events, u64::from(id));
    if let Err(e) = file
        .append(&header)
        .and_then(|()| shared.storage.sync_dir())
    {
        let _ = shared.storage.remove(&name);
        return Err(io_reason(&e));
    }
    log.next_segment = id + 1;
    lock(&shared.index).segs.insert(
        id,
        SegMeta {
            file: file.clone(),
            live: 0,
            live_bytes: 0,
            size: header.len() as u64,
            sealed: false,
            leased: 0,
            acks: None,
            ack_bytes: 0,
        },
    );
    log.active = Some(Active {
        id,
        file,
        len: header.len() as u64,
        synced: 0,
    });
    Ok(())
}

fn seal(shared: &Shared, old: &Active) {
    let mut index = lock(&shared.index);
    let done = match index.segs.get_mut(&old.id) {
        Some(seg) => {
            seg.sealed = true;
            seg.size = old.len;
            seg.live == 0
        }
        None => false,
    };
    if done {
        remove_segment(shared.storage.as_ref(), &mut index, old.id);
    }
}

/// Makes sure there is an active segment with room.
fn ensure_active(shared: &Shared, log: &mut Log) -> Result<(), String> {
    let needs_roll = log
        .active
        .as_ref()
        .is_none_or(|a| a.len >= shared.opts.segment_bytes);
    if needs_roll {
        roll(shared, log)?;
    }
    Ok(())
}

/// Appends to the active segment, without rolling and without touching the index. After a
/// failed write the segment is cut back to where it was; when even that fails it is set
/// aside (sealed at the next roll, its damaged tail skipped by a later start), because the
/// next append would land after the partial write.
fn write_active(log: &mut Log, buf: &[u8]) -> Result<(u32, u64), String> {
    let Some(active) = log.active.as_mut() else {
        return Err("no active segment".into());
    };
    let base = active.len;
    if let Err(e) = active.file.append(buf) {
        if active.file.truncate(base).is_err() {
            log.broken = log.active.take();
        }
        return Err(io_reason(&e));
    }
    active.len += buf.len() as u64;
    Ok((active.id, base))
}

/// Cuts the active segment back to `keep`, where the write whose sync failed began: what
/// that write added is in doubt and was never acknowledged. Not to the last synced length:
/// in interval mode, the events written (and acknowledged) since the last sync are before
/// `keep` and stay.
fn cut_back(log: &mut Log, keep: u64) {
    if let Some(a) = log.active.as_mut() {
        let keep = keep.max(a.synced).max(format::HEADER_LEN as u64);
        if a.file.truncate(keep).is_ok() {
            a.len = keep;
        } else {
            log.broken = log.active.take();
        }
    }
}

/// Makes written events pending for the dispatcher.
fn publish(shared: &Shared, entries: &[Entry], waiters: Vec<(u64, oneshot::Sender<Delivery>)>) {
    let wake = {
        let mut index = lock(&shared.index);
        let now = Instant::now();
        let mut wake = false;
        for e in entries {
            wake |= index.push(*e, now);
        }
        index.waiters.extend(waiters);
        wake
    };
    if wake {
        shared.notify.notify_one();
    }
}

/// Refuses a group: nothing of it is kept.
fn refuse(shared: &Shared, items: Vec<Pending>, error: &QueueError) {
    let bytes: u64 = items.iter().map(|p| p.buf.len() as u64).sum();
    shared.live_bytes_sub(bytes);
    for p in items {
        let _ = p.reply.send(Err(error.clone()));
    }
}

/// One group commit: every waiting request's events in one write (and one sync).
fn commit_group(shared: &Shared, log: &mut Log, items: Vec<Pending>) {
    if let Some(f) = &log.failure {
        let error = QueueError::Unwritable(f.error.clone());
        return refuse(shared, items, &error);
    }
    if let Err(reason) = ensure_active(shared, log) {
        shared.fail(log, reason.clone());
        return refuse(shared, items, &QueueError::Unwritable(reason));
    }
    let mut scratch = std::mem::take(&mut log.scratch);
    scratch.clear();
    let mut starts = Vec::with_capacity(items.len());
    for p in &items {
        starts.push(scratch.len() as u64);
        scratch.extend_from_slice(&p.buf);
    }
    let written = write_active(log, &scratch);
    scratch.truncate(0);
    if scratch.capacity() > 8 << 20 {
        scratch.shrink_to(1 << 20);
    }
    log.scratch = scratch;
    let (seg, base) = match written {
        Ok(at) => at,
        Err(reason) => {
            shared.fail(log, reason.clone());
            return refuse(shared, items, &QueueError::Unwritable(reason));
        }
    };
    if shared.opts.sync_interval.is_none() {
        let synced = log.active.as_ref().map(|a| a.file.sync());
        if let Some(Err(e)) = synced {
            let reason = io_reason(&e);
            cut_back(log, base);
            shared.fail(log, reason.clone());
            return refuse(shared, items, &QueueError::Unwritable(reason));
        }
        if let Some(a) = log.active.as_mut() {
            a.synced = a.len;
        }
        shared.commits.fetch_add(1, Ordering::AcqRel);
        metrics::counter!("tagbridge_queue_commits_total").increment(1);
    } else {
        log.dirty = true;
    }
    shared.recovered(log);
    let mut entries = Vec::with_capacity(items.iter().map(|p| p.records.len()).sum());
    let mut waiters = Vec::new();
    let mut replies = Vec::with_capacity(items.len());
    for (p, start) in items.into_iter().zip(starts) {
        let at = base + start;
        for r in p.records {
            entries.push(Entry {
                seq: r.seq,
                received_ms: r.received_ms,
                seg,
                off: u32::try_from(at + u64::from(r.at)).unwrap_or(u32::MAX),
                len: r.len,
                route: u16::try_from(r.route).unwrap_or(u16::MAX),
            });
            if let Some(w) = r.reply {
                waiters.push((r.seq, w));
            }
        }
        replies.push(p.reply);
    }
    publish(shared, &entries, waiters);
    for r in replies {
        let _ = r.send(Ok(()));
    }
}

/// Interval mode: syncs what was written since the last sync, when the interval is over.
///
/// The `fdatasync` runs without the log's lock: requests keep writing their events (the
/// inline group commit keeps working) while the disk flushes 100 ms of writes, instead of
/// waiting for it. What was written by then is marked durable; later writes are synced
/// next time.
fn periodic_sync(shared: &Shared, log: MutexGuard<'_, Log>, force: bool) {
    let Some(interval) = shared.opts.sync_interval else {
        return;
    };
    let due = force || log.last_sync.is_none_or(|t| t.elapsed() >= interval);
    if !log.dirty || !due || log.failure.is_some() {
        return;
    }
    let Some((id, file, upto)) = log.active.as_ref().map(|a| (a.id, a.file.clone(), a.len)) else {
        return;
    };
    drop(log);
    let result = file.sync();
    let mut log = lock(&shared.log);
    match result {
        Ok(()) => {
            let mut caught_up = false;
            if let Some(a) = log.active.as_mut().filter(|a| a.id == id) {
                // A failed write in between may have cut the segment back.
                a.synced = a.synced.max(upto.min(a.len));
                caught_up = a.len == upto;
            }
            if caught_up {
                log.dirty = false;
            }
            log.last_sync = Some(Instant::now());
            shared.commits.fetch_add(1, Ordering::AcqRel);
            metrics::counter!("tagbridge_queue_commits_total").increment(1);
        }
        // The events were acknowledged already; they are in the page cache and still get
        // delivered. New events are refused until a write and sync succeed again.
        Err(e) => shared.fail(&mut log, io_reason(&e)),
    }
}

/// Starts the writer thread. It holds only a weak reference: it ends when the queue is
/// dropped or closed.
pub(super) fn spawn_writer(shared: &Arc<Shared>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("queue-writer".into())
        .spawn(move || writer_loop(&weak))
}

/// Commit mode, under load (the previous group was committed less than [`BUSY`] ago): a
/// small group waits up to [`COMMIT_DELAY`] for more requests to join it, up to
/// [`GROUP_TARGET`] — PostgreSQL's `commit_delay`. Fewer, larger group commits cost less
/// CPU (each `fdatasync` and each round of wake-ups is shared by more requests): ~7–9 % more
/// requests/s on the gtag benchmark at `sync_interval_ms: 0`, p99 unchanged. An idle gateway
/// never waits.
const COMMIT_DELAY: Duration = Duration::from_micros(200);
const BUSY: Duration = Duration::from_millis(2);
const GROUP_TARGET: usize = 16;

/// A group commit panicked (on the writer thread, or in a request in interval mode): the
/// requests of that group were answered with an error; writing carries on.
fn writer_panicked() {
    metrics::counter!("tagbridge_task_restarts_total", "task" => "queue_writer").increment(1);
    tracing::error!("The queue's writer panicked; the requests of that group were answered with an error; it carries on.");
}

fn writer_loop(weak: &Weak<Shared>) {
    let mut last_maintenance = Instant::now();
    let mut last_commit: Option<Instant> = None;
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        // Only writes that wait for a sync make a deadline (an idle or failed queue sleeps
        // its whole interval).
        let since_sync = match shared.opts.sync_interval {
            Some(_) => {
                let log = lock(&shared.log);
                (log.dirty && log.failure.is_none())
                    .then(|| log.last_sync.map(|t| t.elapsed()))
                    .flatten()
            }
            None => None,
        };
        let wait = idle_wait(shared.opts.sync_interval, since_sync);
        let items = {
            let (inbox, cv) = &shared.inbox;
            let mut guard = lock(inbox);
            if guard.items.is_empty() && !shared.closed.load(Ordering::Acquire) {
                guard = cv
                    .wait_timeout(guard, wait)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            if shared.opts.sync_interval.is_none()
                && !guard.items.is_empty()
                && last_commit.is_some_and(|t| t.elapsed() < BUSY)
            {
                let deadline = Instant::now() + COMMIT_DELAY;
                while guard.items.len() < GROUP_TARGET {
                    let now = Instant::now();
                    if now >= deadline || shared.closed.load(Ordering::Acquire) {
                        break;
                    }
                    guard = cv
                        .wait_timeout(guard, deadline - now)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
            }
            std::mem::take(&mut guard.items)
        };
        let had_items = !items.is_empty();
        let closing = shared.closed.load(Ordering::Acquire);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut log = lock(&shared.log);
            if !items.is_empty() {
                commit_group(&shared, &mut log, items);
            }
            shared.check_free(&mut log, false);
            periodic_sync(&shared, log, closing);
            if closing || last_maintenance.elapsed() >= RETRY_EVERY {
                last_maintenance = Instant::now();
                maintain(&shared);
            }
        }));
        if had_items {
            last_commit = Some(Instant::now());
        }
        if result.is_err() {
            writer_panicked();
        }
        if closing && lock(&shared.inbox.0).items.is_empty() {
            return;
        }
    }
}

/// How long the writer sleeps when nothing waits: in interval mode until the next sync is
/// due (`since_sync`: the time since the last sync, while unsynced writes wait), so that a
/// wake-up just before it does not push the sync to almost twice the interval; at most
/// [`RETRY_EVERY`]; in commit mode 250 ms (it only looks around).
pub(super) fn idle_wait(sync_interval: Option<Duration>, since_sync: Option<Duration>) -> Duration {
    let wait = match (sync_interval, since_sync) {
        (Some(iv), Some(since)) => iv.saturating_sub(since),
        (Some(iv), None) => iv,
        (None, _) => Duration::from_millis(250),
    };
    // Never a busy loop: at least a millisecond between looks.
    wait.clamp(Duration::from_millis(1), RETRY_EVERY)
}

/// Once a second: retry writing after a failure, re-read free space, log state changes,
/// compact one segment.
fn maintain(shared: &Shared) {
    {
        let mut log = lock(&shared.log);
        if log
            .failure
            .as_ref()
            .is_some_and(|f| f.last_try.elapsed() >= RETRY_EVERY)
        {
            probe(shared, &mut log);
        }
        shared.check_free(&mut log, true);
        let state = shared.state_now();
        if log.last_state != Some(state) {
            if log.last_state.is_some() {
                tracing::warn!(state = state.as_str(), "Queue state changed.");
            }
            metrics::counter!("tagbridge_queue_state_changes_total", "state" => state.as_str())
                .increment(1);
            log.last_state = Some(state);
        }
        for s in [
            QueueState::Writable,
            QueueState::Full,
            QueueState::LowDisk,
            QueueState::Unwritable,
        ] {
            metrics::gauge!("tagbridge_queue_state", "state" => s.as_str()).set(if s == state {
                1.0
            } else {
                0.0
            });
        }
    }
    compact_one(shared);
}

/// Tries a tiny write and a sync; success makes the queue writable again.
fn probe(shared: &Shared, log: &mut Log) {
    let mut frame = Vec::new();
    let at = format::begin_frame(&mut frame);
    frame.push(0); // padding record: readers skip it
    format::finish_frame(&mut frame, at);
    let attempt = ensure_active(shared, log).and_then(|()| write_active(log, &frame).map(|_| ()));
    let attempt = attempt.and_then(|()| match log.active.as_ref().map(|a| a.file.sync()) {
        Some(Err(e)) => Err(io_reason(&e)),
        _ => Ok(()),
    });
    match attempt {
        Ok(()) => {
            if let Some(a) = log.active.as_mut() {
                a.synced = a.len;
            }
            shared.recovered(log);
        }
        Err(reason) => shared.fail(log, reason),
    }
}

/// Copies the live events of one mostly-settled sealed segment forward, then deletes it.
/// Holds the log and index locks throughout, so no event of the segment can be leased while
/// it moves.
fn compact_one(shared: &Shared) {
    let candidate = {
        let index = lock(&shared.index);
        index
            .segs
            .iter()
            .find(|(_, s)| {
                s.sealed
                    && s.live > 0
                    && s.leased == 0
                    && s.live_bytes.saturating_mul(2) < s.size
                    && s.size >= shared.opts.segment_bytes / 2
            })
            .map(|(id, _)| *id)
    };
    let Some(old) = candidate else {
        return;
    };
    let mut log = lock(&shared.log);
    if log.failure.is_some() {
        return;
    }
    if let Err(reason) = ensure_active(shared, &mut log) {
        shared.fail(&mut log, reason);
        return;
    }
    let mut index = lock(&shared.index);
    let Some(meta) = index.segs.get(&old).filter(|m| m.leased == 0) else {
        return;
    };
    let file = meta.file.clone();
    // Where the live events are: (route, position in its pending list, offset in `buf`).
    let mut moves = Vec::new();
    let mut buf = Vec::new();
    for (r, route) in index.routes.iter().enumerate() {
        for (i, e) in route
            .pending
            .iter()
            .enumerate()
            .filter(|(_, e)| e.seg == old)
        {
            let start = buf.len();
            buf.resize(start + e.len as usize, 0);
            if file.read_at(u64::from(e.off), &mut buf[start..]).is_err()
                || format::frame_at(&buf, start).is_none()
            {
                return; // left as it is; a restart deals with an unreadable record
            }
            moves.push((r, i, start as u64));
        }
    }
    let (seg, base) = match write_active(&mut log, &buf) {
        Ok(at) => at,
        Err(reason) => {
            shared.fail(&mut log, reason);
            return;
        }
    };
    // The copies must be durable before the original goes.
    if let Some(Err(e)) = log.active.as_ref().map(|a| a.file.sync()) {
        let reason = io_reason(&e);
        cut_back(&mut log, base);
        shared.fail(&mut log, reason);
        return;
    }
    if let Some(a) = log.active.as_mut() {
        a.synced = a.len;
    }
    let mut moved_bytes = 0;
    for &(r, i, rel) in &moves {
        if let Some(e) = index.routes[r].pending.get_mut(i) {
            e.seg = seg;
            e.off = u32::try_from(base + rel).unwrap_or(u32::MAX);
            moved_bytes += e.bytes();
        }
    }
    if let Some(s) = index.segs.get_mut(&seg) {
        s.live += moves.len() as u32;
        s.live_bytes += moved_bytes;
    }
    remove_segment(shared.storage.as_ref(), &mut index, old);
    tracing::debug!(
        segment = old,
        events = moves.len(),
        "Compacted a queue segment."
    );
}

/// Writes and syncs whatever waits now (recovery uses it before the writer thread runs).
pub(super) fn flush_now(shared: &Shared) -> Result<(), QueueError> {
    let items = std::mem::take(&mut lock(&shared.inbox.0).items);
    let mut log = lock(&shared.log);
    if !items.is_empty() {
        commit_group(shared, &mut log, items);
    }
    if let Some(f) = &log.failure {
        return Err(QueueError::Unwritable(f.error.clone()));
    }
    match log.active.as_ref().map(|a| a.file.sync()) {
        Some(Err(e)) => Err(QueueError::Unwritable(io_reason(&e))),
        _ => {
            if let Some(a) = log.active.as_mut() {
                a.synced = a.len;
            }
            log.dirty = false;
            Ok(())
        }
    }
}

/// Closes the queue: the writer finishes what waits, syncs, and ends.
pub(super) fn close(shared: &Shared) {
    if shared.closed.swap(true, Ordering::AcqRel) {
        return;
    }
    shared.inbox.1.notify_all();
    let handle = lock(&shared.writer_thread).take();
    if let Some(h) = handle {
        let _ = h.join();
    }
    // Whatever the thread did not write (it may have ended early).
    let _ = flush_now(shared);
}

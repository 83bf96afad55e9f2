//! The append side: the active segment, group commit, the sync thread, and healing after
//! write failures (full disk, I/O errors).

use std::{
    sync::{atomic::Ordering, Arc, Weak},
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::{
    format::{self, Kind},
    index::{events_name, remove_segment, Entry, SegMeta},
    lock,
    storage::SegmentFile,
    AppendBatch, Commit, Delivery, QueueError, QueueState, Shared,
};

/// How often a failed queue tries to write again, and the sync thread looks around.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How long a free-space reading is trusted on the append path.
const FREE_SPACE_TTL: Duration = Duration::from_millis(100);

pub(super) struct Active {
    pub id: u32,
    pub file: Arc<dyn SegmentFile>,
    /// Bytes written (the logical end; the file is truncated back to it after a failure).
    pub len: u64,
    /// Bytes known durable.
    pub synced: u64,
}

/// Events written but not yet synced (per-commit sync mode).
struct Unsynced {
    /// Order of the append (for knowing which ones a sync covered).
    no: u64,
    seg: u32,
    bytes: u64,
    entries: Vec<Entry>,
    waiters: Vec<(u64, oneshot::Sender<Delivery>)>,
    reply: oneshot::Sender<Result<(), QueueError>>,
}

#[derive(Default)]
pub(super) struct Log {
    pub active: Option<Active>,
    pub next_segment: u32,
    unsynced: Vec<Unsynced>,
    appends: u64,
    /// A segment whose failed write could not be cut back: sealed at the next roll.
    broken: Option<Active>,
    /// Written since the last sync (interval mode).
    dirty: bool,
    /// The last write or sync failure, while the queue is unwritable.
    failure: Option<Failure>,
    free: Option<(Instant, Option<u64>)>,
    last_state: Option<QueueState>,
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

    /// Free space check with a short-lived cache; updates the low-disk flag.
    fn check_free(&self, log: &mut Log, need: u64, fresh: bool) -> bool {
        if self.opts.min_free_bytes == 0 {
            self.low_disk.store(false, Ordering::Release);
            return true;
        }
        let now = Instant::now();
        let free = match log.free {
            Some((at, free)) if !fresh && now.duration_since(at) < FREE_SPACE_TTL => free,
            _ => {
                let free = self.storage.free_bytes();
                log.free = Some((now, free));
                free
            }
        };
        let low = free.is_some_and(|f| f < self.opts.min_free_bytes);
        self.low_disk.store(low, Ordering::Release);
        free.is_none_or(|f| f >= self.opts.min_free_bytes.saturating_add(need))
    }
}

/// Seals the active segment (after syncing it) and starts a new one.
fn roll(shared: &Shared, log: &mut Log) -> Result<(), String> {
    if let Some(old) = log.active.take().or_else(|| log.broken.take()) {
        if let Err(e) = old.file.sync() {
            let reason = io_reason(&e);
            fail_unsynced(shared, log, Some(&old), &reason);
            seal(shared, &old);
            return Err(reason);
        }
        complete_unsynced(shared, log, Some(old.id));
        seal(shared, &old);
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

/// Writes `buf` at the end of the active segment (rolling first when it is full). Returns
/// where it starts. On failure the segment is cut back and the queue is unwritable.
fn write(shared: &Shared, log: &mut Log, buf: &[u8]) -> Result<(u32, u64), QueueError> {
    let needs_roll = log
        .active
        .as_ref()
        .is_none_or(|a| a.len >= shared.opts.segment_bytes);
    if needs_roll {
        if let Err(reason) = roll(shared, log) {
            shared.fail(log, reason.clone());
            return Err(QueueError::Unwritable(reason));
        }
    }
    match write_active(log, buf) {
        Ok(at) => {
            shared.recovered(log);
            Ok(at)
        }
        Err(reason) => {
            shared.fail(log, reason.clone());
            Err(QueueError::Unwritable(reason))
        }
    }
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

pub(super) fn append(shared: &Shared, batch: AppendBatch) -> Result<Commit, QueueError> {
    if batch.records.is_empty() {
        return Ok(Commit::Done);
    }
    if shared.closed.load(Ordering::Acquire) {
        return Err(QueueError::Closed);
    }
    let size = batch.buf.len() as u64;
    let mut log = lock(&shared.log);
    if shared.live_bytes.load(Ordering::Acquire) + size > shared.opts.max_bytes {
        metrics::counter!("tagbridge_queue_full_total").increment(1);
        return Err(QueueError::Full {
            max_bytes: shared.opts.max_bytes,
        });
    }
    if let Some(f) = &log.failure {
        if f.last_try.elapsed() < RETRY_EVERY {
            return Err(QueueError::Unwritable(f.error.clone()));
        }
    }
    if !shared.check_free(&mut log, size, false) {
        return Err(QueueError::LowDisk {
            min_free_bytes: shared.opts.min_free_bytes,
        });
    }
    let (seg, base) = write(shared, &mut log, &batch.buf)?;
    shared.live_bytes.fetch_add(size, Ordering::AcqRel);
    let base = u32::try_from(base).unwrap_or(u32::MAX);
    let mut entries = Vec::with_capacity(batch.records.len());
    let mut waiters = Vec::new();
    for r in batch.records {
        entries.push(Entry {
            seq: r.seq,
            received_ms: r.received_ms,
            seg,
            off: base.saturating_add(r.at),
            len: r.len,
            route: u16::try_from(r.route).unwrap_or(u16::MAX),
        });
        if let Some(w) = r.reply {
            waiters.push((r.seq, w));
        }
    }
    match shared.opts.sync_interval {
        Some(_) => {
            log.dirty = true;
            drop(log);
            publish(shared, &entries, waiters);
            Ok(Commit::Done)
        }
        None => {
            let (reply, rx) = oneshot::channel();
            log.appends += 1;
            let no = log.appends;
            log.unsynced.push(Unsynced {
                no,
                seg,
                bytes: size,
                entries,
                waiters,
                reply,
            });
            drop(log);
            let (flag, cv) = &shared.wake;
            *lock(flag) = true;
            cv.notify_one();
            Ok(Commit::Syncing(rx))
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

/// Completes the unsynced appends of segment `only` (all when `None`): they are durable.
fn complete_unsynced(shared: &Shared, log: &mut Log, only: Option<u32>) {
    let (done, keep): (Vec<Unsynced>, Vec<Unsynced>) = std::mem::take(&mut log.unsynced)
        .into_iter()
        .partition(|u| only.is_none_or(|id| u.seg == id));
    log.unsynced = keep;
    for u in done {
        publish(shared, &u.entries, u.waiters);
        let _ = u.reply.send(Ok(()));
    }
}

/// Fails every unsynced append (the sync failed): their bytes are cut from `seg` (or the
/// active segment) and their callers get an error; nothing of them will be delivered.
fn fail_unsynced(shared: &Shared, log: &mut Log, seg: Option<&Active>, reason: &str) {
    let failed = std::mem::take(&mut log.unsynced);
    let bytes: u64 = failed.iter().map(|u| u.bytes).sum();
    shared.live_bytes_sub(bytes);
    let keep = |a: &Active| a.synced.max(format::HEADER_LEN as u64);
    match seg {
        Some(a) => {
            let _ = a.file.truncate(keep(a));
        }
        None => {
            if let Some(a) = log.active.as_mut() {
                if a.file.truncate(keep(a)).is_ok() {
                    a.len = keep(a);
                } else {
                    log.broken = log.active.take();
                }
            }
        }
    }
    for u in failed {
        let _ = u.reply.send(Err(QueueError::Unwritable(reason.to_owned())));
    }
}

/// Starts the sync thread. It holds only a weak reference: it ends when the queue is
/// dropped or closed.
pub(super) fn spawn_sync_thread(
    shared: &Arc<Shared>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let weak = Arc::downgrade(shared);
    std::thread::Builder::new()
        .name("queue-sync".into())
        .spawn(move || sync_loop(&weak))
}

fn sync_loop(weak: &Weak<Shared>) {
    let mut last_maintenance = Instant::now();
    loop {
        let Some(shared) = weak.upgrade() else {
            return;
        };
        let wait = shared
            .opts
            .sync_interval
            .unwrap_or(Duration::from_millis(250))
            .min(RETRY_EVERY);
        {
            let (flag, cv) = &shared.wake;
            let mut woken = lock(flag);
            if !*woken && !shared.closed.load(Ordering::Acquire) {
                woken = cv
                    .wait_timeout(woken, wait)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0);
            }
            *woken = false;
        }
        let closing = shared.closed.load(Ordering::Acquire);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            sync_once(&shared);
            if closing || last_maintenance.elapsed() >= RETRY_EVERY {
                last_maintenance = Instant::now();
                maintain(&shared);
            }
        }));
        if result.is_err() {
            metrics::counter!("tagbridge_task_restarts_total", "task" => "queue_sync").increment(1);
            tracing::error!("The queue's sync thread panicked; it carries on.");
        }
        if closing {
            return;
        }
    }
}

/// One group commit: syncs what was written since the last one.
fn sync_once(shared: &Shared) {
    let (file, id, len, covered) = {
        let log = lock(&shared.log);
        let Some(a) = log.active.as_ref() else {
            return;
        };
        let wanted = match shared.opts.sync_interval {
            None => !log.unsynced.is_empty(),
            Some(_) => log.dirty,
        };
        if !wanted || log.failure.is_some() {
            return;
        }
        (a.file.clone(), a.id, a.len, log.appends)
    };
    let result = file.sync();
    let mut log = lock(&shared.log);
    match result {
        Ok(()) => {
            shared.commits.fetch_add(1, Ordering::AcqRel);
            metrics::counter!("tagbridge_queue_commits_total").increment(1);
            if let Some(a) = log.active.as_mut().filter(|a| a.id == id) {
                a.synced = a.synced.max(len);
            }
            log.dirty = false;
            // Appends that arrived during the sync wait for the next one.
            let (done, keep): (Vec<Unsynced>, Vec<Unsynced>) = std::mem::take(&mut log.unsynced)
                .into_iter()
                .partition(|u| u.seg == id && u.no <= covered);
            log.unsynced = keep;
            for u in done {
                publish(shared, &u.entries, u.waiters);
                let _ = u.reply.send(Ok(()));
            }
        }
        Err(e) => {
            let reason = io_reason(&e);
            if shared.opts.sync_interval.is_none() {
                fail_unsynced(shared, &mut log, None, &reason);
            }
            shared.fail(&mut log, reason);
        }
    }
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
        shared.check_free(&mut log, 0, true);
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
            super::QueueState::Writable,
            super::QueueState::Full,
            super::QueueState::LowDisk,
            super::QueueState::Unwritable,
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
    let failure = log.failure.take();
    let mut ok = write(shared, log, &frame).is_ok();
    if ok {
        let synced = log.active.as_ref().map(|a| a.file.sync());
        if let Some(Err(e)) = synced {
            shared.fail(log, io_reason(&e));
            ok = false;
        }
    }
    if ok {
        if let Some(a) = log.active.as_mut() {
            a.synced = a.len;
        }
        shared.failed.store(false, Ordering::Release);
        tracing::info!("Queue writes again: accepting events.");
    } else if log.failure.is_none() {
        log.failure = failure.map(|f| Failure {
            last_try: Instant::now(),
            ..f
        });
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
    let needs_roll = log
        .active
        .as_ref()
        .is_none_or(|a| a.len >= shared.opts.segment_bytes);
    if needs_roll {
        if let Err(reason) = roll(shared, &mut log) {
            shared.fail(&mut log, reason);
            return;
        }
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
        drop(index);
        fail_unsynced(shared, &mut log, None, &reason);
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

/// Syncs the active segment now and completes every append waiting for it.
pub(super) fn sync_now(shared: &Shared) -> Result<(), QueueError> {
    let mut log = lock(&shared.log);
    let Some(a) = log.active.as_ref() else {
        return Ok(());
    };
    match a.file.sync() {
        Ok(()) => {
            if let Some(a) = log.active.as_mut() {
                a.synced = a.len;
            }
            log.dirty = false;
            complete_unsynced(shared, &mut log, None);
            Ok(())
        }
        Err(e) => {
            let reason = io_reason(&e);
            fail_unsynced(shared, &mut log, None, &reason);
            shared.fail(&mut log, reason.clone());
            Err(QueueError::Unwritable(reason))
        }
    }
}

/// Closes the queue: a last sync, then the sync thread ends.
pub(super) fn close(shared: &Shared) {
    if shared.closed.swap(true, Ordering::AcqRel) {
        return;
    }
    {
        let (flag, cv) = &shared.wake;
        *lock(flag) = true;
        cv.notify_all();
    }
    let handle = lock(&shared.sync_thread).take();
    if let Some(h) = handle {
        let _ = h.join();
    }
    // Whatever the thread did not sync (it may have ended early): sync now.
    let mut log = lock(&shared.log);
    if let Some(a) = log.active.as_ref() {
        let dirty = log.dirty || !log.unsynced.is_empty();
        if dirty && a.file.sync().is_ok() {
            log.dirty = false;
            complete_unsynced(shared, &mut log, None);
        }
    }
}

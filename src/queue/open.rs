//! Opening the queue (recovery) and the offline tools: `stats`, dead-letter listing,
//! `replay-dead`, `salvage`.

use std::{
    collections::{BTreeMap, VecDeque},
    fs::File,
    io,
    path::Path,
    sync::{
        atomic::{AtomicBool, AtomicU64},
        Arc, Condvar, Mutex,
    },
    time::Instant,
};

use tokio::sync::Notify;

use super::{
    format::{self, Item, Kind},
    index::{
        acks_name, dead_info, dead_name, events_name, DeadSeg, DeadStore, Entry, Index, SegMeta,
    },
    lock, log,
    storage::{FileStorage, Storage},
    take_lock, DeadLetterInfo, DeadReason, Queue, QueueError, QueueOptions, RouteId, Shared, Stats,
};
use crate::support::now_ms;

/// What opening found.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    /// Pending events found (ready for the dispatcher).
    pub recovered: usize,
    /// Bytes of an incomplete last write cut from the newest segment.
    pub truncated_bytes: u64,
    /// Damaged files moved aside (`<name>.corrupt-<unix seconds>`), as paths.
    pub corrupt_files: Vec<String>,
    /// Intact events copied out of damaged files.
    pub salvaged: usize,
    /// Events of tags no longer configured, dead-lettered.
    pub unknown_tag: usize,
}

enum Name {
    Events(u32),
    Acks(u32),
    Dead(u64),
}

fn parse_name(name: &str) -> Option<Name> {
    fn num(s: &str) -> Option<&str> {
        (s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
    }
    if let Some(rest) = name.strip_prefix("q-") {
        if let Some(id) = rest.strip_suffix(".log").and_then(num) {
            return id.parse().ok().map(Name::Events);
        }
        if let Some(id) = rest.strip_suffix(".ack").and_then(num) {
            return id.parse().ok().map(Name::Acks);
        }
    }
    name.strip_prefix("dead-")
        .and_then(|r| r.strip_suffix(".log"))
        .and_then(num)
        .and_then(|id| id.parse().ok())
        .map(Name::Dead)
}

struct Listing {
    events: Vec<u32>,
    acks: Vec<u32>,
    dead: Vec<u64>,
}

fn list(storage: &dyn Storage) -> Result<Listing, QueueError> {
    let mut l = Listing {
        events: Vec::new(),
        acks: Vec::new(),
        dead: Vec::new(),
    };
    for name in storage
        .list()
        .map_err(|e| QueueError::Storage(format!("cannot list the queue directory: {e}")))?
    {
        match parse_name(&name) {
            Some(Name::Events(id)) => l.events.push(id),
            Some(Name::Acks(id)) => l.acks.push(id),
            Some(Name::Dead(id)) => l.dead.push(id),
            None => {}
        }
    }
    l.events.sort_unstable();
    l.acks.sort_unstable();
    l.dead.sort_unstable();
    Ok(l)
}

/// The acked frame offsets of an events segment (sorted). Damaged ack frames are skipped:
/// their events are then sent again, never lost.
fn read_acks(storage: &dyn Storage, id: u32, buf: &mut Vec<u8>) -> Vec<u32> {
    let mut offsets = Vec::new();
    if storage.read_all(&acks_name(id), buf).is_ok() {
        for item in format::scan(buf, format::HEADER_LEN.min(buf.len())) {
            if let Item::Frame { payload, .. } = item {
                format::read_acks(payload, &mut offsets);
            }
        }
    }
    offsets.sort_unstable();
    offsets.dedup();
    offsets
}

/// One events segment as read.
struct SegScan {
    /// Unacked intact event frames: (offset, frame length).
    live: Vec<(u32, u32)>,
    /// Whether any region is damaged (other than `torn_at`).
    damaged: bool,
    /// Where an incomplete last frame starts (newest segment only).
    torn_at: Option<usize>,
}

fn scan_segment(buf: &[u8], acks: &[u32], newest: bool) -> SegScan {
    let header_ok = format::header_ok(buf, Kind::Events);
    let start = if header_ok { format::HEADER_LEN } else { 0 };
    let mut s = SegScan {
        live: Vec::new(),
        damaged: !header_ok,
        torn_at: None,
    };
    let items: Vec<Item> = format::scan(buf, start).collect();
    let last = items.len().saturating_sub(1);
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Item::Frame { offset, payload } => {
                if format::read_event(payload).is_some() {
                    let off = u32::try_from(offset).unwrap_or(u32::MAX);
                    if acks.binary_search(&off).is_err() {
                        let len = (format::FRAME_HEADER + payload.len()) as u32;
                        s.live.push((off, len));
                    }
                }
            }
            Item::Damage { offset, .. } => {
                if i == last && newest && header_ok {
                    s.torn_at = Some(offset);
                } else {
                    s.damaged = true;
                }
            }
        }
    }
    s
}

fn aside_name(name: &str, ts: u64) -> String {
    format!("{name}.corrupt-{ts}")
}

/// Appends an ack frame for `offsets` to the (moved-aside) ack file `name` of segment `id`.
fn mark_acked(storage: &dyn Storage, id: u32, name: &str, offsets: &[u32]) -> io::Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let file = match storage.open(name) {
        Ok(f) => f,
        Err(_) => {
            let f = storage.create(name)?;
            f.append(&format::header(Kind::Acks, u64::from(id)))?;
            f
        }
    };
    let mut frame = Vec::with_capacity(format::FRAME_HEADER + 5 + 4 * offsets.len());
    let at = format::begin_frame(&mut frame);
    format::put_acks(&mut frame, offsets);
    format::finish_frame(&mut frame, at);
    file.append(&frame)?;
    file.sync()
}

pub(super) fn open(
    storage: Arc<dyn Storage>,
    lock_file: Option<File>,
    opts: QueueOptions,
    routes: usize,
    route_of: &dyn Fn(&str) -> Option<RouteId>,
) -> Result<(Queue, OpenReport), QueueError> {
    let started = Instant::now();
    let listing = list(storage.as_ref())?;
    let mut report = OpenReport::default();
    let ts = now_ms() / 1000;
    let mut dead = load_dead(storage.as_ref(), &listing.dead, ts, &mut report);
    let mut index = Index::new(routes);
    let mut buf = Vec::new();
    let mut ack_buf = Vec::new();
    let mut max_seq = 0u64;
    let newest = listing.events.last().copied();
    // Intact events of damaged segments, re-appended once the queue is open.
    let mut salvage: Vec<u8> = Vec::new();
    let mut salvaged_seqs = 0usize;
    // For each segment moved aside: its ack file's new name and the offsets re-queued, so a
    // later `queue salvage --from` of the same file does not send them twice.
    let mut aside_acks: Vec<(u32, String, Vec<u32>)> = Vec::new();
    // Per route, one exactly sized chunk of index entries per segment (joined at the end).
    let mut per_route: Vec<Vec<Vec<Entry>>> = vec![Vec::new(); routes];
    let mut unknown: Vec<(DeadReason, Vec<u8>)> = Vec::new();

    for &id in &listing.events {
        let name = events_name(id);
        if let Err(e) = storage.read_all(&name, &mut buf) {
            tracing::error!(error = %e, file = %storage.describe(&name), "Cannot read a queue segment; leaving it in place.");
            continue;
        }
        let acks = read_acks(storage.as_ref(), id, &mut ack_buf);
        let scan = scan_segment(&buf, &acks, Some(id) == newest);
        if scan.damaged {
            aside_acks.push((
                id,
                aside_name(&acks_name(id), ts),
                scan.live.iter().map(|&(off, _)| off).collect(),
            ));
            for &(off, len) in &scan.live {
                let frame = &buf[off as usize..(off + len) as usize];
                salvage.extend_from_slice(frame);
                salvaged_seqs += 1;
                if let Some((p, _)) = format::frame_at(frame, 0) {
                    if let Some(e) = format::read_event(p) {
                        max_seq = max_seq.max(e.seq);
                    }
                }
            }
            let to = aside_name(&name, ts);
            match storage.rename(&name, &to) {
                Ok(()) => report.corrupt_files.push(storage.describe(&to)),
                Err(e) => {
                    tracing::error!(error = %e, file = %storage.describe(&name), "Cannot move a damaged queue file aside.")
                }
            }
            if listing.acks.contains(&id) {
                let acks = acks_name(id);
                let _ = storage.rename(&acks, &aside_name(&acks, ts));
            }
            metrics::counter!("tagbridge_queue_corrupt_files_total").increment(1);
            continue;
        }
        let mut size = buf.len() as u64;
        if let Some(at) = scan.torn_at {
            let cut = buf.len() - at;
            match storage.open(&name).and_then(|f| f.truncate(at as u64)) {
                Ok(()) => {
                    report.truncated_bytes += cut as u64;
                    size = at as u64;
                    tracing::warn!(bytes = cut, file = %storage.describe(&name), "Cut an incomplete write from the end of the queue (the gateway stopped in the middle of it; it was never acknowledged).");
                }
                Err(e) => tracing::error!(error = %e, "Cannot truncate an incomplete write."),
            }
        }
        let file = match storage.open(&name) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, file = %storage.describe(&name), "Cannot open a queue segment; leaving it in place.");
                continue;
            }
        };
        let mut meta = SegMeta {
            file,
            live: 0,
            live_bytes: 0,
            size,
            sealed: true,
            leased: 0,
            acks: None,
            ack_bytes: ack_buf.len() as u64,
        };
        let mut unknown_offsets = Vec::new();
        // The segment's events first, then one exactly sized chunk per route: the index of a
        // large backlog is start-up's biggest allocation (32 bytes per event), and growing
        // one vector would leave freed copies of it behind.
        let mut found: Vec<(RouteId, Entry)> = Vec::with_capacity(scan.live.len());
        for &(off, len) in &scan.live {
            let Some((payload, _)) = format::frame_at(&buf, off as usize) else {
                continue;
            };
            let Some(e) = format::read_event(payload) else {
                continue;
            };
            max_seq = max_seq.max(e.seq);
            match route_of(e.tag) {
                Some(route) if route < routes => {
                    meta.live += 1;
                    meta.live_bytes += u64::from(len);
                    found.push((
                        route,
                        Entry {
                            seq: e.seq,
                            received_ms: e.received_ms,
                            seg: id,
                            off,
                            len,
                            route: u16::try_from(route).unwrap_or(u16::MAX),
                        },
                    ));
                }
                _ => {
                    unknown.push((DeadReason::UnknownTag, payload.to_vec()));
                    unknown_offsets.push(off);
                }
            }
        }
        let mut per_route_count = vec![0usize; routes];
        for &(route, _) in &found {
            per_route_count[route] += 1;
        }
        let mut chunks: Vec<Vec<Entry>> = per_route_count
            .into_iter()
            .map(Vec::with_capacity)
            .collect();
        for (route, entry) in found {
            chunks[route].push(entry);
        }
        for (route, chunk) in chunks.into_iter().enumerate() {
            if !chunk.is_empty() {
                per_route[route].push(chunk);
            }
        }
        index.segs.insert(id, meta);
        if !unknown_offsets.is_empty() {
            // Written as dead letters below; acked here so they are not found again.
            pending_acks_push(&mut index, id, unknown_offsets);
        }
    }

    // Oldest first per route; a compaction interrupted by a crash can leave an event in two
    // segments: keep one (the later copy, from the higher segment id). An unstable sort on
    // (seq, segment) needs no scratch memory and is deterministic.
    for (route, chunks) in per_route.into_iter().enumerate() {
        let mut entries = Vec::with_capacity(chunks.iter().map(Vec::len).sum());
        for chunk in chunks {
            entries.extend_from_slice(&chunk);
        }
        entries.sort_unstable_by_key(|e| (e.seq, e.seg));
        let before = entries.len();
        entries.dedup_by(|later, earlier| {
            if later.seq == earlier.seq {
                *earlier = *later;
                true
            } else {
                false
            }
        });
        let duplicates = before - entries.len();
        if duplicates > 0 {
            tracing::info!(
                events = duplicates,
                "Dropped duplicate copies left by an interrupted compaction."
            );
        }
        let now = Instant::now();
        let bytes: u64 = entries.iter().map(Entry::bytes).sum();
        let r = &mut index.routes[route];
        if !entries.is_empty() {
            r.since.get_or_insert(now);
        }
        r.pending_bytes += bytes;
        index.pending_bytes += bytes;
        // The index is new (each route appears once here); Vec → VecDeque reuses the
        // allocation, so the index is not copied again.
        r.pending = VecDeque::from(entries);
    }
    // Counts per segment after dedup.
    for seg in index.segs.values_mut() {
        seg.live = 0;
        seg.live_bytes = 0;
    }
    let mut counts: BTreeMap<u32, (u32, u64)> = BTreeMap::new();
    for r in &index.routes {
        for e in &r.pending {
            let c = counts.entry(e.seg).or_default();
            c.0 += 1;
            c.1 += e.bytes();
        }
    }
    for (id, (n, b)) in counts {
        if let Some(seg) = index.segs.get_mut(&id) {
            seg.live = n;
            seg.live_bytes = b;
        }
    }
    report.recovered = index.depth();

    // Unknown tags → dead letters (then their acks are written).
    if !unknown.is_empty() {
        let mut frames = Vec::new();
        let mut reasons = Vec::new();
        for (reason, payload) in &unknown {
            let at = format::begin_frame(&mut frames);
            let tag = format::read_event(payload)
                .map(|e| e.tag.to_owned())
                .unwrap_or_default();
            format::put_dead(
                &mut frames,
                now_ms(),
                reason.code(),
                None,
                &format!("tag {tag:?} is not in the config"),
                payload,
            );
            format::finish_frame(&mut frames, at);
            reasons.push(*reason);
        }
        match dead.append(storage.as_ref(), &opts, &frames, &reasons) {
            Ok(()) => {
                report.unknown_tag = unknown.len();
                metrics::counter!("tagbridge_events_dead_lettered_total", "reason" => DeadReason::UnknownTag.as_str()).increment(unknown.len() as u64);
                tracing::warn!(events = unknown.len(), "Queued events of tags no longer in the config: dead-lettered (reason unknown_tag).");
                flush_pending_acks(storage.as_ref(), &mut index);
            }
            Err(e) => {
                tracing::error!(error = %e, "Cannot dead-letter events of removed tags; they stay in the queue until the next start.");
                index.pending_acks.clear();
            }
        }
    }

    // Segments with nothing left are deleted.
    let finished: Vec<u32> = index
        .segs
        .iter()
        .filter(|(_, s)| s.live == 0)
        .map(|(id, _)| *id)
        .collect();
    for id in finished {
        super::index::remove_segment(storage.as_ref(), &mut index, id);
    }

    let next_segment = listing
        .events
        .iter()
        .chain(&listing.acks)
        .max()
        .map_or(1, |m| m + 1);
    let live_bytes = index.pending_bytes;
    let shared = Arc::new(Shared {
        storage: storage.clone(),
        opts,
        next_seq: AtomicU64::new(max_seq + 1),
        log: Mutex::new(log::Log::new(next_segment)),
        index: Mutex::new(index),
        dead: Mutex::new(dead),
        inbox: (Mutex::new(log::Inbox::default()), Condvar::new()),
        notify: Notify::new(),
        failed: AtomicBool::new(false),
        low_disk: AtomicBool::new(false),
        live_bytes: AtomicU64::new(live_bytes),
        commits: AtomicU64::new(0),
        closed: AtomicBool::new(false),
        writer_thread: Mutex::new(None),
        _lock: lock_file,
    });
    let queue = Queue {
        shared: shared.clone(),
    };
    if !salvage.is_empty() {
        report.salvaged = requeue_frames(&queue, &salvage, route_of)?;
        for (id, name, offsets) in &aside_acks {
            if let Err(e) = mark_acked(storage.as_ref(), *id, name, offsets) {
                tracing::warn!(error = %e, file = %storage.describe(name), "Could not record which events of a damaged file were re-queued; `queue salvage --from` of it would send them again.");
            }
        }
        tracing::warn!(events = report.salvaged, of = salvaged_seqs, files = ?report.corrupt_files, "Damaged queue files moved aside; their intact events were re-queued.");
    }
    let thread = log::spawn_writer(&shared)
        .map_err(|e| QueueError::Storage(format!("cannot start the writer thread: {e}")))?;
    *lock(&shared.writer_thread) = Some(thread);
    if report.recovered > 0 {
        tracing::info!(
            events = report.recovered,
            ms = started.elapsed().as_millis() as u64,
            "Recovered queued events from a previous run."
        );
    }
    shared.notify.notify_one();
    Ok((queue, report))
}

fn pending_acks_push(index: &mut Index, seg: u32, offsets: Vec<u32>) {
    index.pending_acks.push((seg, offsets));
}

fn flush_pending_acks(storage: &dyn Storage, index: &mut Index) {
    for (seg, offsets) in std::mem::take(&mut index.pending_acks) {
        if let Some(meta) = index.segs.get_mut(&seg) {
            if let Err(e) = super::index::write_acks(storage, seg, meta, &offsets) {
                tracing::warn!(error = %e, "Could not record acks for dead-lettered events.");
            }
        }
    }
}

/// Re-appends intact event frames (with new sequence numbers), synced, through the normal
/// append path; events of unknown tags go to the dead letters. Returns how many were queued.
fn requeue_frames(
    queue: &Queue,
    frames: &[u8],
    route_of: &dyn Fn(&str) -> Option<RouteId>,
) -> Result<usize, QueueError> {
    let mut queued = 0;
    let mut batch = super::AppendBatch::default();
    let mut flush = |batch: super::AppendBatch| -> Result<(), QueueError> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len();
        let _commit = queue.append(batch)?;
        // Written and synced now, whatever the mode: the originals are about to be set aside.
        log::flush_now(&queue.shared)?;
        queued += n;
        Ok(())
    };
    for item in format::scan(frames, 0) {
        let Item::Frame { payload, .. } = item else {
            continue;
        };
        let Some(e) = format::read_event(payload) else {
            continue;
        };
        let Some(route) = route_of(e.tag) else {
            let _ = queue.settle_unrouted(payload);
            continue;
        };
        batch.push(
            queue,
            route,
            format::EventHead {
                seq: 0,
                received_ms: e.received_ms,
                log: e.log,
                tag: e.tag,
                event_id: e.event_id,
                event_name: e.event_name,
                trace_id: e.trace_id,
            },
            e.body,
            None,
        );
        if batch.bytes() >= 1 << 20 {
            flush(std::mem::take(&mut batch))?;
        }
    }
    flush(batch)?;
    Ok(queued)
}

impl Queue {
    /// Dead-letters a stored event payload whose tag has no route.
    fn settle_unrouted(&self, payload: &[u8]) -> Result<(), QueueError> {
        let tag = format::read_event(payload)
            .map(|e| e.tag.to_owned())
            .unwrap_or_default();
        let mut frames = Vec::new();
        let at = format::begin_frame(&mut frames);
        format::put_dead(
            &mut frames,
            now_ms(),
            DeadReason::UnknownTag.code(),
            None,
            &format!("tag {tag:?} is not in the config"),
            payload,
        );
        format::finish_frame(&mut frames, at);
        lock(&self.shared.dead)
            .append(
                self.shared.storage.as_ref(),
                &self.shared.opts,
                &frames,
                &[DeadReason::UnknownTag],
            )
            .map_err(|e| QueueError::Storage(e.to_string()))
    }
}

/// Loads the dead-letter segments (counts by reason); damaged ones are moved aside.
fn load_dead(storage: &dyn Storage, ids: &[u64], ts: u64, report: &mut OpenReport) -> DeadStore {
    let mut store = DeadStore {
        next_id: ids.last().map_or(1, |m| m + 1),
        ..DeadStore::default()
    };
    let mut buf = Vec::new();
    for &id in ids {
        let name = dead_name(id);
        if storage.read_all(&name, &mut buf).is_err() {
            continue;
        }
        let mut seg = DeadSeg {
            size: buf.len() as u64,
            ..DeadSeg::default()
        };
        let mut damaged = !format::header_ok(&buf, Kind::Dead);
        for item in format::scan(&buf, format::HEADER_LEN.min(buf.len())) {
            match item {
                Item::Frame { payload, .. } => {
                    if let Some(d) = format::read_dead(payload) {
                        *seg.by_reason
                            .entry(DeadReason::from_code(d.reason))
                            .or_default() += 1;
                    }
                }
                Item::Damage { .. } => damaged = true,
            }
        }
        if damaged {
            let to = aside_name(&name, ts);
            if storage.rename(&name, &to).is_ok() {
                report.corrupt_files.push(storage.describe(&to));
                metrics::counter!("tagbridge_queue_corrupt_files_total").increment(1);
                tracing::warn!(file = %storage.describe(&to), "A damaged dead-letter file was moved aside (`tagbridge queue salvage --include-dead --from FILE` re-queues its intact events).");
            }
            continue;
        }
        store.total_bytes += seg.size;
        store.segs.insert(id, seg);
    }
    store
}

/// Reads every file of a queue directory without taking the lock (works while the gateway
/// runs): pending events (unacked event frames), their bytes and age, dead letters.
fn scan_dir(path: &Path, mut each_dead: impl FnMut(&[u8])) -> Result<Stats, QueueError> {
    if !path.exists() {
        return Ok(Stats::default());
    }
    let storage = FileStorage::new(path).map_err(|e| QueueError::Storage(e.to_string()))?;
    let listing = list(&storage)?;
    let mut stats = Stats::default();
    let mut buf = Vec::new();
    let mut ack_buf = Vec::new();
    let mut oldest: Option<u64> = None;
    let mut seen = std::collections::HashSet::new();
    for &id in &listing.events {
        if storage.read_all(&events_name(id), &mut buf).is_err() {
            continue;
        }
        stats.disk_bytes += buf.len() as u64;
        let acks = read_acks(&storage, id, &mut ack_buf);
        stats.disk_bytes += ack_buf.len() as u64;
        for (off, len) in scan_segment(&buf, &acks, false).live {
            if let Some(e) =
                format::frame_at(&buf, off as usize).and_then(|(p, _)| format::read_event(p))
            {
                if seen.insert(e.seq) {
                    stats.depth += 1;
                    stats.bytes += u64::from(len);
                    oldest = Some(oldest.map_or(e.received_ms, |o| o.min(e.received_ms)));
                }
            }
        }
    }
    stats.oldest_age_s = oldest.map(|ms| now_ms().saturating_sub(ms) / 1000);
    for &id in &listing.dead {
        if storage.read_all(&dead_name(id), &mut buf).is_err() {
            continue;
        }
        stats.disk_bytes += buf.len() as u64;
        stats.dead_letter_bytes += buf.len() as u64;
        for item in format::scan(&buf, format::HEADER_LEN.min(buf.len())) {
            if let Item::Frame { payload, .. } = item {
                if let Some(d) = format::read_dead(payload) {
                    stats.dead_letters += 1;
                    *stats
                        .dead_by_reason
                        .entry(DeadReason::from_code(d.reason).as_str().to_owned())
                        .or_default() += 1;
                    each_dead(payload);
                }
            }
        }
    }
    Ok(stats)
}

/// `tagbridge queue stats`: read-only, works while the gateway runs.
///
/// # Errors
/// When the directory cannot be read.
pub fn stats_at(path: &Path) -> Result<Stats, QueueError> {
    scan_dir(path, |_| {})
}

/// Dead letters, oldest first (at most `limit`), read-only.
///
/// # Errors
/// When the directory cannot be read.
pub fn dead_letters_at(path: &Path, limit: usize) -> Result<Vec<DeadLetterInfo>, QueueError> {
    let mut out = Vec::new();
    scan_dir(path, |payload| {
        if out.len() < limit {
            if let Some(info) = dead_info(payload) {
                out.push(info);
            }
        }
    })?;
    Ok(out)
}

/// Appends event payloads as a new segment (fresh sequence numbers after every existing
/// one), synced. Needs the lock (gateway stopped).
fn append_offline(storage: &FileStorage, payloads: &[Vec<u8>]) -> Result<usize, QueueError> {
    if payloads.is_empty() {
        return Ok(0);
    }
    let listing = list(storage)?;
    let mut buf = Vec::new();
    let mut max_seq = 0;
    for &id in &listing.events {
        if storage.read_all(&events_name(id), &mut buf).is_ok() {
            for item in format::scan(&buf, 0) {
                if let Item::Frame { payload, .. } = item {
                    if let Some(e) = format::read_event(payload) {
                        max_seq = max_seq.max(e.seq);
                    }
                }
            }
        }
    }
    let id = listing
        .events
        .iter()
        .chain(&listing.acks)
        .max()
        .map_or(1, |m| m + 1);
    let mut out = format::header(Kind::Events, u64::from(id)).to_vec();
    let mut seq = max_seq + 1;
    for p in payloads {
        let Some(e) = format::read_event(p) else {
            continue;
        };
        let at = format::begin_frame(&mut out);
        format::put_event_head(
            &mut out,
            &format::EventHead {
                seq,
                received_ms: e.received_ms,
                log: e.log,
                tag: e.tag,
                event_id: e.event_id,
                event_name: e.event_name,
                trace_id: e.trace_id,
            },
        );
        out.extend_from_slice(e.body);
        format::finish_frame(&mut out, at);
        seq += 1;
    }
    let name = events_name(id);
    let io = |e: std::io::Error| {
        QueueError::Storage(format!("cannot write {}: {e}", storage.describe(&name)))
    };
    let file = storage.create(&name).map_err(io)?;
    file.append(&out).map_err(io)?;
    file.sync().map_err(io)?;
    storage.sync_dir().map_err(io)?;
    Ok((seq - max_seq - 1) as usize)
}

/// `tagbridge queue replay-dead`: moves every dead letter back into the queue (e.g. after
/// fixing a token). Needs the gateway stopped. Returns how many.
///
/// # Errors
/// When the queue is in use or cannot be written.
pub fn replay_dead(path: &Path) -> Result<ReplayReport, QueueError> {
    let storage = FileStorage::new(path).map_err(|e| QueueError::Storage(e.to_string()))?;
    let _lock = take_lock(path)?;
    let listing = list(&storage)?;
    let mut payloads = Vec::new();
    let mut replayed_files = Vec::new();
    let mut report = ReplayReport::default();
    let mut buf = Vec::new();
    for &id in &listing.dead {
        let name = dead_name(id);
        // A file is replayed whole or not at all: one that cannot be read, or holds damage or
        // a record that cannot go back to the queue, stays as it is (nothing is lost, and
        // nothing in it is queued twice by a later replay).
        let mut file_payloads = Vec::new();
        let mut whole = storage.read_all(&name, &mut buf).is_ok()
            && buf.len() >= format::HEADER_LEN
            && format::header_ok(&buf, Kind::Dead);
        if whole {
            for item in format::scan(&buf, format::HEADER_LEN) {
                let event = match item {
                    Item::Frame { payload, .. } => format::read_dead(payload)
                        .map(|d| d.event)
                        .filter(|e| format::read_event(e).is_some_and(|v| !v.tag.is_empty())),
                    Item::Damage { .. } => None,
                };
                match event {
                    Some(e) => file_payloads.push(e.to_vec()),
                    None => {
                        whole = false;
                        break;
                    }
                }
            }
        }
        if whole {
            payloads.append(&mut file_payloads);
            replayed_files.push(name);
        } else {
            report.kept_files.push(storage.describe(&name));
        }
    }
    report.replayed = append_offline(&storage, &payloads)? as u64;
    for name in replayed_files {
        storage
            .remove(&name)
            .map_err(|e| QueueError::Storage(e.to_string()))?;
    }
    Ok(report)
}

/// What `tagbridge queue replay-dead` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplayReport {
    /// Dead letters moved back into the queue.
    pub replayed: u64,
    /// Dead-letter files left as they were: unreadable, damaged, or holding a record that
    /// cannot be queued again (`tagbridge queue salvage --from FILE --include-dead` takes
    /// what is intact in them).
    pub kept_files: Vec<String>,
}

/// What `tagbridge queue salvage` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SalvageReport {
    /// Intact event records re-queued.
    pub requeued: usize,
    /// Events skipped because an ack file beside the input marks them delivered.
    pub already_settled: usize,
    /// Intact dead-letter records not re-queued (all of them without `--include-dead`).
    pub dead_letters_skipped: usize,
    /// Bytes that were not intact frames.
    pub damaged_bytes: u64,
}

/// `tagbridge queue salvage --from FILE`: re-queues every intact event record of any file
/// (a segment moved aside as `.corrupt-<ts>`, one copied from another volume). A matching
/// ack file beside it (`q-N.ack.corrupt-<ts>` for `q-N.log.corrupt-<ts>`) is honoured, so
/// delivered events are not sent again. Needs the gateway stopped.
///
/// # Errors
/// When the file cannot be read or the queue is in use or cannot be written.
pub fn salvage(path: &Path, from: &Path, include_dead: bool) -> Result<SalvageReport, QueueError> {
    let bytes = std::fs::read(from)
        .map_err(|e| QueueError::Storage(format!("cannot read {}: {e}", from.display())))?;
    let mut acked: Vec<u32> = Vec::new();
    if let Some(name) = from.file_name().and_then(|n| n.to_str()) {
        let ack_name = name.replacen(".log", ".ack", 1);
        if ack_name != name {
            if let Ok(ack) = std::fs::read(from.with_file_name(ack_name)) {
                for item in format::scan(&ack, 0) {
                    if let Item::Frame { payload, .. } = item {
                        format::read_acks(payload, &mut acked);
                    }
                }
            }
        }
    }
    acked.sort_unstable();
    let mut report = SalvageReport::default();
    let mut payloads = Vec::new();
    for item in format::scan(&bytes, 0) {
        match item {
            Item::Frame { offset, payload } => match format::payload_kind(payload) {
                Some(Kind::Events) => {
                    let off = u32::try_from(offset).unwrap_or(u32::MAX);
                    if acked.binary_search(&off).is_ok() {
                        report.already_settled += 1;
                    } else if format::read_event(payload).is_some() {
                        payloads.push(payload.to_vec());
                    }
                }
                Some(Kind::Dead) => match format::read_dead(payload) {
                    Some(d) if include_dead && format::read_event(d.event).is_some() => {
                        payloads.push(d.event.to_vec());
                    }
                    _ => report.dead_letters_skipped += 1,
                },
                _ => {}
            },
            Item::Damage { len, offset } => {
                // The segment header is not damage.
                if !(offset == 0 && len == format::HEADER_LEN && bytes.starts_with(&format::MAGIC))
                {
                    report.damaged_bytes += len as u64;
                }
            }
        }
    }
    let storage = FileStorage::new(path).map_err(|e| QueueError::Storage(e.to_string()))?;
    let _lock = take_lock(path)?;
    report.requeued = append_offline(&storage, &payloads)?;
    Ok(report)
}

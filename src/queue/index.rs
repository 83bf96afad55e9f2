//! The in-memory index of pending events (per route, oldest first), the segments they live
//! in, and the dead-letter store; reading leased events back and settling them.

use std::{
    cell::RefCell,
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use tokio::sync::oneshot;

use super::{
    format::{self, Kind},
    lock,
    storage::{SegmentFile, Storage},
    DeadLetter, DeadLetterInfo, DeadReason, Delivery, QueueError, RouteId, RouteStatus, Shared,
    StoredEvent,
};

/// A queued event as the index knows it: where it is, not what it is (≈32 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    /// Unix milliseconds when the gateway received the event.
    pub received_ms: u64,
    pub(super) seg: u32,
    pub(super) off: u32,
    pub(super) len: u32,
    pub(super) route: u16,
}

impl Entry {
    /// Bytes of the stored record.
    pub fn bytes(&self) -> u64 {
        u64::from(self.len)
    }
    pub fn route(&self) -> RouteId {
        usize::from(self.route)
    }
}

pub(super) fn events_name(id: u32) -> String {
    format!("q-{id:020}.log")
}
pub(super) fn acks_name(id: u32) -> String {
    format!("q-{id:020}.ack")
}
pub(super) fn dead_name(id: u64) -> String {
    format!("dead-{id:020}.log")
}

#[derive(Default)]
pub(super) struct RouteIdx {
    pub pending: VecDeque<Entry>,
    pub pending_bytes: u64,
    pub since: Option<Instant>,
    pub leased: HashMap<u64, Entry>,
    /// The dispatcher is woken when a route's pending count reaches this (a full batch), or
    /// when its first event becomes pending (its batch timer starts).
    pub wake_at: usize,
}

pub(super) struct SegMeta {
    pub file: Arc<dyn SegmentFile>,
    /// Unsettled events (pending, leased, or written but not yet synced).
    pub live: u32,
    pub live_bytes: u64,
    /// Bytes of the segment file.
    pub size: u64,
    pub sealed: bool,
    pub leased: u32,
    pub acks: Option<Arc<dyn SegmentFile>>,
    pub ack_bytes: u64,
}

pub(super) struct Index {
    pub routes: Vec<RouteIdx>,
    pub segs: BTreeMap<u32, SegMeta>,
    pub waiters: HashMap<u64, oneshot::Sender<Delivery>>,
    /// Bytes of unsettled events.
    pub pending_bytes: u64,
    /// Acks to write once the segments are open (recovery).
    pub pending_acks: Vec<(u32, Vec<u32>)>,
}

impl Index {
    pub fn new(routes: usize) -> Self {
        Self {
            routes: (0..routes).map(|_| RouteIdx::default()).collect(),
            segs: BTreeMap::new(),
            waiters: HashMap::new(),
            pending_bytes: 0,
            pending_acks: Vec::new(),
        }
    }

    /// A newly written event becomes pending. Returns whether the dispatcher must look.
    pub fn push(&mut self, e: Entry, now: Instant) -> bool {
        if let Some(seg) = self.segs.get_mut(&e.seg) {
            seg.live += 1;
            seg.live_bytes += e.bytes();
        }
        self.pending_bytes += e.bytes();
        let Some(r) = self.routes.get_mut(e.route()) else {
            return false;
        };
        r.pending.push_back(e);
        r.pending_bytes += e.bytes();
        r.since.get_or_insert(now);
        r.pending.len() == 1 || r.pending.len() == r.wake_at.max(1)
    }

    pub fn depth(&self) -> usize {
        self.routes
            .iter()
            .map(|r| r.pending.len() + r.leased.len())
            .sum()
    }

    pub fn oldest_ms(&self) -> Option<u64> {
        self.routes
            .iter()
            .flat_map(|r| {
                r.pending
                    .front()
                    .map(|e| e.received_ms)
                    .into_iter()
                    .chain(r.leased.values().map(|e| e.received_ms))
            })
            .min()
    }

    /// Bytes of segment and ack files; `active` = (id, length) of the segment being written.
    pub fn disk_bytes(&self, active: Option<(u32, u64)>) -> u64 {
        self.segs
            .iter()
            .map(|(id, s)| {
                let size = match active {
                    Some((a, len)) if a == *id => len,
                    _ => s.size,
                };
                size + s.ack_bytes
            })
            .sum()
    }

    pub fn route_status(&self, route: RouteId) -> RouteStatus {
        self.routes
            .get(route)
            .map_or_else(RouteStatus::default, |r| RouteStatus {
                pending: r.pending.len(),
                pending_bytes: r.pending_bytes,
                since: r.since,
                oldest_ms: r.pending.front().map(|e| e.received_ms),
            })
    }

    pub fn lease(&mut self, route: RouteId, max_events: usize, max_bytes: u64) -> Vec<Entry> {
        let Some(r) = self.routes.get_mut(route) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut bytes = 0u64;
        while let Some(e) = r.pending.front().copied() {
            if out.len() >= max_events || (!out.is_empty() && bytes + e.bytes() > max_bytes) {
                break;
            }
            r.pending.pop_front();
            bytes += e.bytes();
            r.leased.insert(e.seq, e);
            if let Some(seg) = self.segs.get_mut(&e.seg) {
                seg.leased += 1;
            }
            out.push(e);
        }
        r.pending_bytes = r.pending_bytes.saturating_sub(bytes);
        r.since = (!r.pending.is_empty()).then(Instant::now);
        out
    }

    pub fn release(&mut self, route: RouteId, entries: &[Entry]) {
        let Some(r) = self.routes.get_mut(route) else {
            return;
        };
        for e in entries.iter().rev() {
            if r.leased.remove(&e.seq).is_some() {
                r.pending.push_front(*e);
                r.pending_bytes += e.bytes();
                if let Some(seg) = self.segs.get_mut(&e.seg) {
                    seg.leased = seg.leased.saturating_sub(1);
                }
            }
        }
        if !r.pending.is_empty() {
            r.since.get_or_insert_with(Instant::now);
        }
    }

    pub fn release_all(&mut self) {
        for route in 0..self.routes.len() {
            let mut leased: Vec<Entry> = self.routes[route].leased.values().copied().collect();
            leased.sort_unstable_by_key(|e| e.seq);
            self.release(route, &leased);
        }
    }

    /// Removes a settled event from its route; returns whether it was there.
    fn take(&mut self, e: &Entry) -> bool {
        let Some(r) = self.routes.get_mut(e.route()) else {
            return false;
        };
        if r.leased.remove(&e.seq).is_some() {
            if let Some(seg) = self.segs.get_mut(&e.seg) {
                seg.leased = seg.leased.saturating_sub(1);
            }
            return true;
        }
        // Not leased (released by a dispatcher restart meanwhile): take it from pending.
        if let Some(pos) = r.pending.iter().position(|p| p.seq == e.seq) {
            r.pending.remove(pos);
            r.pending_bytes = r.pending_bytes.saturating_sub(e.bytes());
            return true;
        }
        false
    }
}

thread_local! {
    /// [`read`]'s buffer, kept between reads on the same thread: a fresh one per batch
    /// pays its zeroing and a page fault per 4 KiB every time.
    static SPAN_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Largest [`SPAN_BUF`] kept between reads (a default batch of 1,000 events fits).
const KEEP_SPAN_BUF: usize = 2 << 20;

/// Reads records back, one read per run of nearby records.
pub(super) fn read(shared: &Shared, entries: &[Entry]) -> Vec<Option<StoredEvent>> {
    let mut out: Vec<Option<StoredEvent>> = vec![None; entries.len()];
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by_key(|&i| (entries[i].seg, entries[i].off));
    let files: HashMap<u32, Arc<dyn SegmentFile>> = {
        let index = lock(&shared.index);
        order
            .iter()
            .filter_map(|&i| {
                let seg = entries[i].seg;
                index.segs.get(&seg).map(|m| (seg, m.file.clone()))
            })
            .collect()
    };
    const GAP: u64 = 64 << 10;
    const SPAN: u64 = 4 << 20;
    SPAN_BUF.with_borrow_mut(|buf| {
        let mut i = 0;
        while i < order.len() {
            let first = entries[order[i]];
            let start = u64::from(first.off);
            let mut end = start + first.bytes();
            let mut j = i + 1;
            while j < order.len() {
                let e = entries[order[j]];
                let (off, e_end) = (u64::from(e.off), u64::from(e.off) + e.bytes());
                if e.seg != first.seg || off > end + GAP || e_end - start > SPAN {
                    break;
                }
                end = end.max(e_end);
                j += 1;
            }
            if let Some(file) = files.get(&first.seg) {
                buf.resize((end - start) as usize, 0);
                if file.read_at(start, buf).is_ok() {
                    for &k in &order[i..j] {
                        let e = entries[k];
                        let rel = (u64::from(e.off) - start) as usize;
                        out[k] = format::frame_at(buf, rel)
                            .filter(|(_, len)| *len == e.len as usize)
                            .and_then(|(p, _)| StoredEvent::new(p.to_vec()));
                    }
                }
            }
            i = j;
        }
        if buf.capacity() > KEEP_SPAN_BUF {
            *buf = Vec::new();
        }
    });
    out
}

/// A dead-letter record for an entry whose payload could not be read.
fn placeholder_payload(e: &Entry) -> Vec<u8> {
    let mut p = Vec::new();
    format::put_event_head(
        &mut p,
        &format::EventHead {
            seq: e.seq,
            received_ms: e.received_ms,
            log: false,
            tag: "",
            event_id: "",
            event_name: "",
            trace_id: "",
        },
    );
    p.extend_from_slice(b"null");
    p
}

pub(super) fn settle(
    shared: &Shared,
    route: RouteId,
    delivered: &[Entry],
    dead: &[(Entry, DeadLetter, Option<&[u8]>)],
) -> Result<(), QueueError> {
    let mut dead_result = Ok(());
    let mut settled: Vec<(Entry, Delivery)> =
        delivered.iter().map(|e| (*e, Delivery::Sent)).collect();
    if !dead.is_empty() {
        let mut frames = Vec::new();
        let mut reasons = Vec::with_capacity(dead.len());
        let now = crate::support::now_ms();
        for (e, letter, payload) in dead {
            let owned;
            let payload = match payload {
                Some(p) => *p,
                None => {
                    owned = placeholder_payload(e);
                    &owned
                }
            };
            let at = format::begin_frame(&mut frames);
            format::put_dead(
                &mut frames,
                now,
                letter.reason.code(),
                letter.status,
                format::clip(&letter.message, 2048),
                payload,
            );
            format::finish_frame(&mut frames, at);
            reasons.push(letter.reason);
        }
        let written =
            lock(&shared.dead).append(shared.storage.as_ref(), &shared.opts, &frames, &reasons);
        match written {
            Ok(()) => {
                for (e, letter, _) in dead {
                    metrics::counter!("tagbridge_events_dead_lettered_total", "reason" => letter.reason.as_str()).increment(1);
                    settled.push((*e, Delivery::Failed(letter.message.clone())));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = dead.len(), "Could not write dead letters; the events stay queued and are retried.");
                dead_result = Err(QueueError::Storage(e.to_string()));
            }
        }
    }
    if settled.is_empty() {
        return dead_result;
    }
    let mut replies = Vec::new();
    {
        let mut index = lock(&shared.index);
        let mut by_seg: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        let mut freed = 0u64;
        for (e, outcome) in settled {
            debug_assert_eq!(e.route(), route);
            if !index.take(&e) {
                continue;
            }
            freed += e.bytes();
            if let Some(seg) = index.segs.get_mut(&e.seg) {
                seg.live = seg.live.saturating_sub(1);
                seg.live_bytes = seg.live_bytes.saturating_sub(e.bytes());
            }
            by_seg.entry(e.seg).or_default().push(e.off);
            if let Some(w) = index.waiters.remove(&e.seq) {
                replies.push((w, outcome));
            }
        }
        index.pending_bytes = index.pending_bytes.saturating_sub(freed);
        shared.live_bytes_sub(freed);
        for (seg_id, offsets) in by_seg {
            let finished = index
                .segs
                .get(&seg_id)
                .is_some_and(|s| s.sealed && s.live == 0);
            if finished {
                remove_segment(shared.storage.as_ref(), &mut index, seg_id);
                continue;
            }
            if let Some(seg) = index.segs.get_mut(&seg_id) {
                if let Err(e) = write_acks(shared.storage.as_ref(), seg_id, seg, &offsets) {
                    // The events are settled in memory; after a restart they would be sent
                    // again (at-least-once), so this is worth a line but not a failure.
                    tracing::warn!(error = %e, segment = seg_id, "Could not record acks; these events may be sent again after a restart.");
                }
            }
        }
    }
    for (w, outcome) in replies {
        let _ = w.send(outcome);
    }
    dead_result
}

pub(super) fn write_acks(
    storage: &dyn Storage,
    seg_id: u32,
    seg: &mut SegMeta,
    offsets: &[u32],
) -> std::io::Result<()> {
    let file = match &seg.acks {
        Some(f) => f.clone(),
        None => {
            let name = acks_name(seg_id);
            let f = match storage.open(&name) {
                Ok(f) => f,
                Err(_) => {
                    let f = storage.create(&name)?;
                    f.append(&format::header(Kind::Acks, u64::from(seg_id)))?;
                    seg.ack_bytes = format::HEADER_LEN as u64;
                    f
                }
            };
            seg.acks = Some(f.clone());
            f
        }
    };
    let mut frame = Vec::with_capacity(format::FRAME_HEADER + 5 + 4 * offsets.len());
    let at = format::begin_frame(&mut frame);
    format::put_acks(&mut frame, offsets);
    format::finish_frame(&mut frame, at);
    file.append(&frame)?;
    seg.ack_bytes += frame.len() as u64;
    Ok(())
}

/// Deletes a segment whose events are all settled, with its acks.
pub(super) fn remove_segment(storage: &dyn Storage, index: &mut Index, seg_id: u32) {
    index.segs.remove(&seg_id);
    for name in [events_name(seg_id), acks_name(seg_id)] {
        if let Err(e) = storage.remove(&name) {
            tracing::warn!(error = %e, file = %storage.describe(&name), "Could not delete a settled queue segment.");
        }
    }
}

/// The dead letters: segments of dead-letter records, oldest evicted past the cap.
#[derive(Default)]
pub(super) struct DeadStore {
    pub segs: BTreeMap<u64, DeadSeg>,
    pub active: Option<(u64, Arc<dyn SegmentFile>)>,
    pub next_id: u64,
    pub total_bytes: u64,
    pub evicted: u64,
}

#[derive(Default, Clone)]
pub(super) struct DeadSeg {
    pub size: u64,
    pub by_reason: BTreeMap<DeadReason, u64>,
}

impl DeadStore {
    pub fn count(&self) -> u64 {
        self.segs.values().flat_map(|s| s.by_reason.values()).sum()
    }

    pub fn by_reason(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for s in self.segs.values() {
            for (r, n) in &s.by_reason {
                *out.entry(r.as_str().to_owned()).or_default() += n;
            }
        }
        out
    }

    /// Appends dead-letter frames and syncs them (the caller then acknowledges the events
    /// or deletes their segment: the dead letters must be on disk first, power loss
    /// included); then evicts the oldest segments past the cap.
    pub fn append(
        &mut self,
        storage: &dyn Storage,
        opts: &super::QueueOptions,
        frames: &[u8],
        reasons: &[DeadReason],
    ) -> std::io::Result<()> {
        let roll = match (
            &self.active,
            self.active.as_ref().and_then(|(id, _)| self.segs.get(id)),
        ) {
            (Some(_), Some(seg)) => seg.size >= opts.dead_segment_bytes,
            _ => true,
        };
        if roll {
            let id = self.next_id.max(1);
            let name = dead_name(id);
            let file = storage.create(&name)?;
            // The new file's name must survive a power loss too.
            if let Err(e) = file
                .append(&format::header(Kind::Dead, id))
                .and_then(|()| storage.sync_dir())
            {
                let _ = storage.remove(&name);
                return Err(e);
            }
            self.next_id = id + 1;
            self.segs.insert(
                id,
                DeadSeg {
                    size: format::HEADER_LEN as u64,
                    ..DeadSeg::default()
                },
            );
            self.total_bytes += format::HEADER_LEN as u64;
            self.active = Some((id, file));
        }
        let Some((id, file)) = self.active.clone() else {
            return Err(std::io::Error::other("no dead-letter segment"));
        };
        let before = self.segs.get(&id).map_or(0, |s| s.size);
        if let Err(e) = file.append(frames).and_then(|()| file.sync()) {
            let _ = file.truncate(before);
            return Err(e);
        }
        if let Some(seg) = self.segs.get_mut(&id) {
            seg.size += frames.len() as u64;
            for r in reasons {
                *seg.by_reason.entry(*r).or_default() += 1;
            }
        }
        self.total_bytes += frames.len() as u64;
        self.evict(storage, opts.dead_letter_max_bytes);
        Ok(())
    }

    fn evict(&mut self, storage: &dyn Storage, cap: u64) {
        let active = self.active.as_ref().map(|(id, _)| *id);
        while self.total_bytes > cap {
            let Some((&oldest, _)) = self.segs.iter().find(|(id, _)| Some(**id) != active) else {
                break;
            };
            let Some(seg) = self.segs.remove(&oldest) else {
                break;
            };
            let n: u64 = seg.by_reason.values().sum();
            self.total_bytes = self.total_bytes.saturating_sub(seg.size);
            self.evicted += n;
            metrics::counter!("tagbridge_dead_letters_evicted_total").increment(n);
            let name = dead_name(oldest);
            tracing::warn!(dead_letters = n, file = %storage.describe(&name), "Dead letters over queue.dead_letter_max_bytes: oldest evicted.");
            if let Err(e) = storage.remove(&name) {
                tracing::warn!(error = %e, "Could not delete an evicted dead-letter segment.");
            }
        }
    }
}

/// A dead-letter record as listed.
pub(super) fn dead_info(payload: &[u8]) -> Option<DeadLetterInfo> {
    let d = format::read_dead(payload)?;
    let ev = format::read_event(d.event);
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Some(DeadLetterInfo {
        reason: DeadReason::from_code(d.reason),
        status: d.status,
        message: d.message.to_owned(),
        dead_at_ms: d.dead_at_ms,
        tag: ev.and_then(|e| nonempty(e.tag)),
        event_id: ev.and_then(|e| nonempty(e.event_id)),
        event_name: ev.and_then(|e| nonempty(e.event_name)),
    })
}

impl Shared {
    pub(super) fn live_bytes_sub(&self, n: u64) {
        let _ = self
            .live_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                Some(v.saturating_sub(n))
            });
    }
}

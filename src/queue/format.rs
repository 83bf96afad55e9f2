//! On-disk formats of the queue: segment headers, checksummed frames, and the three record
//! payloads (event, ack, dead letter). Pure functions over byte slices; no I/O.
//!
//! # Segment file
//!
//! ```text
//! header  "TBQ1" | version u8 = 1 | kind u8 ('E' events, 'A' acks, 'D' dead letters) | 0u16 | id u64 LE   (16 bytes)
//! frame*  mark u32 LE = 0x46524254 ("TBRF") | len u32 LE | crc32 u32 LE | payload (len bytes)
//! ```
//!
//! The CRC (CRC-32/ISO-HDLC, `crc32fast`) covers the four length bytes and the payload, so a
//! torn or overwritten frame never passes. The mark lets a reader find the next frame after
//! a damaged region: [`scan`] yields every intact frame of any byte string, whatever lies
//! between them. All integers are little-endian.
//!
//! # Payloads
//!
//! ```text
//! event  1u8 | seq u64 | received_ms u64 | flags u8 (bit 0: log) | tag: u8 len + bytes
//!        | event_id: u16 len + bytes | event_name: u8 len + bytes | trace_id: u8 len + bytes
//!        | body (the destination event, JSON text, to the end of the payload)
//! acks   2u8 | count u32 | offsets: count × u32 (frame offsets in the events segment)
//! dead   3u8 | dead_at_ms u64 | reason u8 | status u16 (0 = none) | message: u16 len + bytes
//!        | the event payload, as above
//! ```

/// First bytes of every segment file.
pub const MAGIC: [u8; 4] = *b"TBQ1";
pub const VERSION: u8 = 1;
/// Size of the segment header.
pub const HEADER_LEN: usize = 16;
/// Marks the start of a frame (`"TBRF"` read as a little-endian u32).
pub const FRAME_MARK: u32 = u32::from_le_bytes(*b"TBRF");
/// Size of a frame header (mark, length, CRC).
pub const FRAME_HEADER: usize = 12;
/// Largest payload a reader accepts; anything longer is damage (events are capped far lower).
pub const MAX_PAYLOAD: usize = 8 << 20;

const EVENT: u8 = 1;
const ACKS: u8 = 2;
const DEAD: u8 = 3;

/// What a segment file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Events,
    Acks,
    Dead,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Events => b'E',
            Kind::Acks => b'A',
            Kind::Dead => b'D',
        }
    }
}

/// The 16-byte header of a segment.
pub fn header(kind: Kind, id: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&MAGIC);
    h[4] = VERSION;
    h[5] = kind.byte();
    h[8..16].copy_from_slice(&id.to_le_bytes());
    h
}

/// Whether `bytes` starts with a valid header of `kind`.
pub fn header_ok(bytes: &[u8], kind: Kind) -> bool {
    bytes.len() >= HEADER_LEN
        && bytes[..4] == MAGIC
        && bytes[4] == VERSION
        && bytes[5] == kind.byte()
}

fn crc(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    h.finalize()
}

/// Starts a frame in `out`; write the payload after it, then call [`finish_frame`] with the
/// returned position. The payload is built in place: no copy.
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER]);
    at
}

/// Fills in the header of the frame begun at `at` (length and CRC of what follows it).
pub fn finish_frame(out: &mut [u8], at: usize) {
    let payload_len = out.len() - at - FRAME_HEADER;
    let len = u32::try_from(payload_len).unwrap_or(u32::MAX).to_le_bytes();
    let sum = crc(len, &out[at + FRAME_HEADER..]);
    out[at..at + 4].copy_from_slice(&FRAME_MARK.to_le_bytes());
    out[at + 4..at + 8].copy_from_slice(&len);
    out[at + 8..at + 12].copy_from_slice(&sum.to_le_bytes());
}

/// One frame found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// An intact frame: its offset in the scanned bytes and its payload.
    Frame { offset: usize, payload: &'a [u8] },
    /// Bytes that are not intact frames (`len` bytes from `offset`).
    Damage { offset: usize, len: usize },
}

/// Reads the frame at `at`, if one is intact there: (payload, total frame length).
pub fn frame_at(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let head = bytes.get(at..at.checked_add(FRAME_HEADER)?)?;
    let mark = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if mark != FRAME_MARK {
        return None;
    }
    let len_bytes = [head[4], head[5], head[6], head[7]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len > MAX_PAYLOAD {
        return None;
    }
    let start = at + FRAME_HEADER;
    let payload = bytes.get(start..start.checked_add(len)?)?;
    let sum = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    (crc(len_bytes, payload) == sum).then_some((payload, FRAME_HEADER + len))
}

/// Every intact frame of `bytes` from `start`, in order, with the damaged regions between
/// them. After damage the scan resumes at the next offset where an intact frame begins.
pub fn scan(bytes: &[u8], start: usize) -> Scan<'_> {
    Scan { bytes, at: start }
}

pub struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Scan<'a> {
    type Item = Item<'a>;

    fn next(&mut self) -> Option<Item<'a>> {
        if self.at >= self.bytes.len() {
            return None;
        }
        if let Some((payload, len)) = frame_at(self.bytes, self.at) {
            let offset = self.at;
            self.at += len;
            return Some(Item::Frame { offset, payload });
        }
        // Damage: look for the next intact frame (its mark first, then its checksum).
        let from = self.at;
        let mark = FRAME_MARK.to_le_bytes();
        let mut probe = from + 1;
        while let Some(pos) =
            memchr::memmem::find(&self.bytes[probe.min(self.bytes.len())..], &mark)
        {
            let candidate = probe + pos;
            if frame_at(self.bytes, candidate).is_some() {
                self.at = candidate;
                return Some(Item::Damage {
                    offset: from,
                    len: candidate - from,
                });
            }
            probe = candidate + 1;
        }
        self.at = self.bytes.len();
        Some(Item::Damage {
            offset: from,
            len: self.bytes.len() - from,
        })
    }
}

/// The fields of an event record, borrowed from a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventView<'a> {
    pub seq: u64,
    pub received_ms: u64,
    pub log: bool,
    pub tag: &'a str,
    pub event_id: &'a str,
    pub event_name: &'a str,
    pub trace_id: &'a str,
    pub body: &'a [u8],
}

/// Where the fields of an event payload are, found once (see [`EventFields::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFields {
    seq: u64,
    received_ms: u64,
    log: bool,
    tag: (u32, u32),
    event_id: (u32, u32),
    event_name: (u32, u32),
    trace_id: (u32, u32),
    body: u32,
}

impl EventFields {
    /// The fields of an event payload; `None` when it is not one.
    pub fn of(payload: &[u8]) -> Option<Self> {
        let v = read_event(payload)?;
        let base = payload.as_ptr() as usize;
        let range = |s: &[u8]| {
            let start = (s.as_ptr() as usize - base) as u32;
            (start, start + s.len() as u32)
        };
        Some(Self {
            seq: v.seq,
            received_ms: v.received_ms,
            log: v.log,
            tag: range(v.tag.as_bytes()),
            event_id: range(v.event_id.as_bytes()),
            event_name: range(v.event_name.as_bytes()),
            trace_id: range(v.trace_id.as_bytes()),
            body: range(v.body).0,
        })
    }

    /// The body within `payload` (the one these fields were found in).
    pub fn body<'p>(&self, payload: &'p [u8]) -> &'p [u8] {
        payload.get(self.body as usize..).unwrap_or(b"null")
    }

    pub fn logs(&self) -> bool {
        self.log
    }

    /// The tag's name within `payload`.
    pub fn tag<'p>(&self, payload: &'p [u8]) -> &'p str {
        text_at(payload, self.tag)
    }

    /// The view of `payload` (the one these fields were found in).
    pub fn view<'p>(&self, payload: &'p [u8]) -> EventView<'p> {
        let text = |range| text_at(payload, range);
        EventView {
            seq: self.seq,
            received_ms: self.received_ms,
            log: self.log,
            tag: text(self.tag),
            event_id: text(self.event_id),
            event_name: text(self.event_name),
            trace_id: text(self.trace_id),
            body: self.body(payload),
        }
    }
}

/// The text at `range` of `payload` (checked when the payload was read; checked again:
/// a range is only an offset).
fn text_at(payload: &[u8], (a, b): (u32, u32)) -> &str {
    payload
        .get(a as usize..b as usize)
        .and_then(|s| std::str::from_utf8(s).ok())
        .unwrap_or("")
}

fn put_u8_str(out: &mut Vec<u8>, s: &str) {
    let s = clip(s, u8::MAX as usize);
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

fn put_u16_str(out: &mut Vec<u8>, s: &str) {
    let s = clip(s, u16::MAX as usize);
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// `s` cut to at most `max` bytes on a char boundary.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Header fields of an event record (everything but the body).
#[derive(Debug, Clone, Copy)]
pub struct EventHead<'a> {
    pub seq: u64,
    pub received_ms: u64,
    pub log: bool,
    pub tag: &'a str,
    pub event_id: &'a str,
    pub event_name: &'a str,
    pub trace_id: &'a str,
}

/// Writes an event payload's fields up to the body; the caller appends the body after it.
pub fn put_event_head(out: &mut Vec<u8>, head: &EventHead<'_>) {
    out.push(EVENT);
    out.extend_from_slice(&head.seq.to_le_bytes());
    out.extend_from_slice(&head.received_ms.to_le_bytes());
    out.push(u8::from(head.log));
    put_u8_str(out, head.tag);
    put_u16_str(out, head.event_id);
    put_u8_str(out, head.event_name);
    put_u8_str(out, head.trace_id);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    }
    fn str8(&mut self) -> Option<&'a str> {
        let n = usize::from(self.u8()?);
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn str16(&mut self) -> Option<&'a str> {
        let n = usize::from(self.u16()?);
        std::str::from_utf8(self.take(n)?).ok()
    }
    fn rest(&mut self) -> &'a [u8] {
        let r = self.bytes.get(self.at..).unwrap_or_default();
        self.at = self.bytes.len();
        r
    }
}

/// Reads an event payload.
pub fn read_event(payload: &[u8]) -> Option<EventView<'_>> {
    let mut r = Reader {
        bytes: payload,
        at: 0,
    };
    if r.u8()? != EVENT {
        return None;
    }
    Some(EventView {
        seq: r.u64()?,
        received_ms: r.u64()?,
        log: r.u8()? & 1 == 1,
        tag: r.str8()?,
        event_id: r.str16()?,
        event_name: r.str8()?,
        trace_id: r.str8()?,
        body: r.rest(),
    })
}

/// Writes an acks payload for frame offsets of one events segment.
pub fn put_acks(out: &mut Vec<u8>, offsets: &[u32]) {
    out.push(ACKS);
    out.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
    for o in offsets {
        out.extend_from_slice(&o.to_le_bytes());
    }
}

/// Reads an acks payload into `into`.
pub fn read_acks(payload: &[u8], into: &mut Vec<u32>) -> bool {
    let mut r = Reader {
        bytes: payload,
        at: 0,
    };
    if r.u8() != Some(ACKS) {
        return false;
    }
    let Some(n) = r.u32() else {
        return false;
    };
    if payload.len() != 5 + 4 * n as usize {
        return false;
    }
    for _ in 0..n {
        if let Some(o) = r.u32() {
            into.push(o);
        }
    }
    true
}

/// The fields of a dead-letter record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadView<'a> {
    pub dead_at_ms: u64,
    pub reason: u8,
    pub status: Option<u16>,
    pub message: &'a str,
    /// The event payload (see [`read_event`]).
    pub event: &'a [u8],
}

/// Writes a dead-letter payload around an event payload.
pub fn put_dead(
    out: &mut Vec<u8>,
    dead_at_ms: u64,
    reason: u8,
    status: Option<u16>,
    message: &str,
    event: &[u8],
) {
    out.push(DEAD);
    out.extend_from_slice(&dead_at_ms.to_le_bytes());
    out.push(reason);
    out.extend_from_slice(&status.unwrap_or(0).to_le_bytes());
    put_u16_str(out, message);
    out.extend_from_slice(event);
}

/// Reads a dead-letter payload.
pub fn read_dead(payload: &[u8]) -> Option<DeadView<'_>> {
    let mut r = Reader {
        bytes: payload,
        at: 0,
    };
    if r.u8()? != DEAD {
        return None;
    }
    let dead_at_ms = r.u64()?;
    let reason = r.u8()?;
    let status = r.u16()?;
    let message = r.str16()?;
    Some(DeadView {
        dead_at_ms,
        reason,
        status: (status != 0).then_some(status),
        message,
        event: r.rest(),
    })
}

/// The record type of a payload (first byte), for tools that read any segment.
pub fn payload_kind(payload: &[u8]) -> Option<Kind> {
    match *payload.first()? {
        EVENT => Some(Kind::Events),
        ACKS => Some(Kind::Acks),
        DEAD => Some(Kind::Dead),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_frame(out: &mut Vec<u8>, seq: u64, body: &str) -> usize {
        let at = begin_frame(out);
        put_event_head(
            out,
            &EventHead {
                seq,
                received_ms: 1_700_000_000_123,
                log: true,
                tag: "pinterest",
                event_id: "T-1",
                event_name: "checkout",
                trace_id: "abc",
            },
        );
        out.extend_from_slice(body.as_bytes());
        finish_frame(out, at);
        at
    }

    #[test]
    fn event_round_trip() {
        let mut buf = header(Kind::Events, 7).to_vec();
        event_frame(&mut buf, 42, r#"{"event_name":"checkout"}"#);
        assert!(header_ok(&buf, Kind::Events));
        assert!(!header_ok(&buf, Kind::Dead));
        let items: Vec<Item> = scan(&buf, HEADER_LEN).collect();
        assert_eq!(items.len(), 1);
        let Item::Frame { offset, payload } = items[0] else {
            panic!("frame")
        };
        assert_eq!(offset, HEADER_LEN);
        let e = read_event(payload).unwrap();
        assert_eq!(
            (
                e.seq,
                e.received_ms,
                e.log,
                e.tag,
                e.event_id,
                e.event_name,
                e.trace_id
            ),
            (
                42,
                1_700_000_000_123,
                true,
                "pinterest",
                "T-1",
                "checkout",
                "abc"
            )
        );
        assert_eq!(e.body, br#"{"event_name":"checkout"}"#);
    }

    #[test]
    fn damage_is_skipped_and_reported() {
        let mut buf = Vec::new();
        let a = event_frame(&mut buf, 1, "{}");
        let b = event_frame(&mut buf, 2, r#"{"x":1}"#);
        let c = event_frame(&mut buf, 3, "{}");
        // Overwrite the middle frame's body: its CRC fails, the others stay readable.
        buf[b + FRAME_HEADER + 40] ^= 0xff;
        let items: Vec<Item> = scan(&buf, 0).collect();
        assert_eq!(items.len(), 3);
        assert!(matches!(items[0], Item::Frame { offset, .. } if offset == a));
        assert_eq!(
            items[1],
            Item::Damage {
                offset: b,
                len: c - b
            }
        );
        assert!(matches!(items[2], Item::Frame { offset, .. } if offset == c));
    }

    #[test]
    fn torn_tail_is_damage_to_the_end() {
        let mut buf = Vec::new();
        event_frame(&mut buf, 1, "{}");
        let full = buf.len();
        event_frame(&mut buf, 2, "{}");
        buf.truncate(full + 10);
        let items: Vec<Item> = scan(&buf, 0).collect();
        assert_eq!(
            items[1],
            Item::Damage {
                offset: full,
                len: 10
            }
        );
    }

    #[test]
    fn acks_and_dead_round_trip() {
        let mut p = Vec::new();
        put_acks(&mut p, &[16, 99, 4000]);
        let mut into = Vec::new();
        assert!(read_acks(&p, &mut into));
        assert_eq!(into, [16, 99, 4000]);
        assert!(!read_acks(&p[..p.len() - 1], &mut Vec::new()));

        let mut ev = Vec::new();
        put_event_head(
            &mut ev,
            &EventHead {
                seq: 5,
                received_ms: 9,
                log: false,
                tag: "t",
                event_id: "e",
                event_name: "n",
                trace_id: "",
            },
        );
        ev.extend_from_slice(b"{}");
        let mut d = Vec::new();
        put_dead(&mut d, 77, 2, Some(400), "HTTP 400: bad", &ev);
        let v = read_dead(&d).unwrap();
        assert_eq!(
            (v.dead_at_ms, v.reason, v.status, v.message),
            (77, 2, Some(400), "HTTP 400: bad")
        );
        assert_eq!(read_event(v.event).unwrap().seq, 5);
        assert_eq!(payload_kind(&d), Some(Kind::Dead));
    }

    #[test]
    fn clip_keeps_char_boundaries() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("abc", 10), "abc");
    }
}

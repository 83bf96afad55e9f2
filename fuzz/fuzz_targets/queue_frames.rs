//! The queue's on-disk frame format (`src/queue/format.rs`), two ways:
//!
//! 1. **Any bytes**: `scan` never panics, its items tile the input exactly (every byte is
//!    either in one intact frame or in one damaged region), every frame it yields passes
//!    `frame_at` at its offset, and the record readers never panic on its payloads.
//! 2. **Written, then damaged**: records built from the input are framed the way the queue
//!    writes them, then a region is overwritten with input bytes (a torn write, a bad
//!    sector). Every frame that lies wholly outside the damaged region must still be found,
//!    with its payload intact — that is what `tagbridge queue salvage` promises.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tagbridge::queue::format::{
    begin_frame, finish_frame, frame_at, payload_kind, put_event_head, read_acks, read_dead,
    read_event, scan, EventHead, Item, Kind,
};

fn check_any(bytes: &[u8]) {
    let mut next = 0usize;
    for item in scan(bytes, 0) {
        match item {
            Item::Frame { offset, payload } => {
                assert_eq!(offset, next, "frames and damage tile the input");
                let (p, len) = frame_at(bytes, offset).expect("a yielded frame is intact");
                assert_eq!(p, payload);
                next = offset + len;
                match payload_kind(payload) {
                    Some(Kind::Events) => {
                        let _ = read_event(payload);
                    }
                    Some(Kind::Acks) => {
                        let mut v = Vec::new();
                        let _ = read_acks(payload, &mut v);
                    }
                    Some(Kind::Dead) => {
                        if let Some(d) = read_dead(payload) {
                            let _ = read_event(d.event);
                        }
                    }
                    None => {}
                }
            }
            Item::Damage { offset, len } => {
                assert_eq!(offset, next, "frames and damage tile the input");
                assert!(len > 0);
                next = offset + len;
            }
        }
    }
    assert_eq!(next, bytes.len());
}

fn check_written_then_damaged(data: &[u8]) {
    // Layout of the input: [n_records][damage_at u16][damage_len u8][bodies...]
    if data.len() < 4 {
        return;
    }
    let n = usize::from(data[0] % 16) + 1;
    let damage_at = usize::from(u16::from_le_bytes([data[1], data[2]]));
    let damage_len = usize::from(data[3]);
    let rest = &data[4..];
    let chunk = rest.len() / n.max(1);

    let mut file = Vec::new();
    let mut frames = Vec::new(); // (start, end, body)
    for i in 0..n {
        let body = &rest[i * chunk..(i + 1) * chunk];
        let at = begin_frame(&mut file);
        put_event_head(
            &mut file,
            &EventHead {
                seq: i as u64,
                received_ms: 1_700_000_000_000,
                log: false,
                tag: "pinterest",
                event_id: "e",
                event_name: "page_visit",
                trace_id: "",
            },
        );
        file.extend_from_slice(body);
        finish_frame(&mut file, at);
        frames.push((at, file.len(), body));
    }

    // Damage: overwrite [damage_at, damage_at + damage_len) with bytes of the input.
    let start = damage_at.min(file.len());
    let end = (start + damage_len).min(file.len());
    for (k, b) in file[start..end].iter_mut().enumerate() {
        *b = rest.get(k).copied().unwrap_or(0xAA) ^ 0x5A;
    }
    check_any(&file);

    let found: Vec<(usize, &[u8])> = scan(&file, 0)
        .filter_map(|item| match item {
            Item::Frame { offset, payload } => Some((offset, payload)),
            Item::Damage { .. } => None,
        })
        .collect();
    for (i, &(a, b, body)) in frames.iter().enumerate() {
        let untouched = b <= start || a >= end || start == end;
        if !untouched {
            continue;
        }
        let (_, payload) = found
            .iter()
            .find(|(o, _)| *o == a)
            .unwrap_or_else(|| panic!("intact frame {i} at {a} not found"));
        let event = read_event(payload).expect("an intact event frame reads");
        assert_eq!(event.seq, i as u64);
        assert_eq!(event.body, body);
    }
}

fuzz_target!(|data: &[u8]| {
    check_any(data);
    check_written_then_damaged(data);
});

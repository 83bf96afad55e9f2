//! Queue properties: acknowledgements survive reopen, settling acks, both durability modes,
//! size caps, dead letters and their cap, torn writes, damaged files, full disks that heal,
//! compaction, and the offline tools.

use std::sync::atomic::Ordering;

use super::{
    format::{EventHead, Item},
    storage::{Faults, FaultyStorage, FileStorage, MemStorage},
    *,
};

fn opts() -> QueueOptions {
    QueueOptions::new(64 << 20, 8 << 20)
}

fn routes(tag: &str) -> Option<RouteId> {
    match tag {
        "a" => Some(0),
        "b" => Some(1),
        _ => None,
    }
}

fn open_dir(dir: &Path, o: QueueOptions) -> (Queue, OpenReport) {
    Queue::open_path(dir, o, 2, &routes).expect("open")
}

fn batch(q: &Queue, tag: &str, ids: &[&str]) -> AppendBatch {
    let mut b = AppendBatch::default();
    for id in ids {
        b.push(
            q,
            routes(tag).unwrap_or(0),
            EventHead {
                seq: 0,
                received_ms: 1_000,
                log: false,
                tag,
                event_id: id,
                event_name: "checkout",
                trace_id: "t",
            },
            format!(r#"{{"event_id":"{id}"}}"#).as_bytes(),
            None,
        );
    }
    b
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn append(q: &Queue, tag: &str, ids: &[&str]) {
    let commit = q.append(batch(q, tag, ids)).expect("append");
    rt().block_on(commit.durable()).expect("durable");
}

fn ids(q: &Queue, entries: &[Entry]) -> Vec<String> {
    q.read(entries)
        .into_iter()
        .map(|r| r.map(|e| e.view().event_id.to_owned()).unwrap_or_default())
        .collect()
}

fn pending_ids(q: &Queue, route: RouteId) -> Vec<String> {
    let leased = q.lease(route, usize::MAX, u64::MAX);
    let out = ids(q, &leased);
    q.release(route, &leased);
    out
}

#[test]
fn acknowledged_events_survive_reopen_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let (q, report) = open_dir(dir.path(), opts());
        assert_eq!(report.recovered, 0);
        append(&q, "a", &["1", "2"]);
        append(&q, "b", &["3"]);
        append(&q, "a", &["4"]);
        assert_eq!(q.depth(), 4);
        assert_eq!(pending_ids(&q, 0), ["1", "2", "4"]);
        assert!(q.commits() >= 1);
        q.close();
    }
    let (q, report) = open_dir(dir.path(), opts());
    assert_eq!(report.recovered, 4);
    assert_eq!(pending_ids(&q, 0), ["1", "2", "4"]);
    assert_eq!(pending_ids(&q, 1), ["3"]);
    // Sequence numbers continue after the old ones.
    let first = q.next_seq();
    append(&q, "a", &["5"]);
    assert!(first > 4);
}

#[test]
fn settled_events_do_not_come_back() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let (q, _) = open_dir(dir.path(), opts());
        append(&q, "a", &["1", "2", "3"]);
        let leased = q.lease(0, 2, u64::MAX);
        assert_eq!(ids(&q, &leased), ["1", "2"]);
        q.settle(
            0,
            &leased[..1],
            &[(
                leased[1],
                DeadLetter {
                    reason: DeadReason::Refused,
                    status: Some(400),
                    message: "HTTP 400: bad".into(),
                },
                None,
            )],
        )
        .expect("settle");
        assert_eq!(q.depth(), 1);
        let s = q.stats();
        assert_eq!((s.depth, s.dead_letters), (1, 1));
        assert_eq!(s.dead_by_reason.get("refused"), Some(&1));
        q.close();
    }
    let (q, report) = open_dir(dir.path(), opts());
    assert_eq!(report.recovered, 1);
    assert_eq!(pending_ids(&q, 0), ["3"]);
    assert_eq!(q.stats().dead_letters, 1);
    let dead = dead_letters_at(dir.path(), 10).expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].reason, dead[0].status, dead[0].message.as_str()),
        (DeadReason::Refused, Some(400), "HTTP 400: bad")
    );
}

#[test]
fn release_puts_events_back_in_front_and_waiters_get_outcomes() {
    let q = Queue::open(Arc::new(MemStorage::default()), None, opts(), 2, &routes)
        .expect("open")
        .0;
    let mut b = AppendBatch::default();
    let (tx, rx) = tokio::sync::oneshot::channel();
    b.push(
        &q,
        0,
        EventHead {
            seq: 0,
            received_ms: 1,
            log: false,
            tag: "a",
            event_id: "w",
            event_name: "n",
            trace_id: "",
        },
        b"{}",
        Some(tx),
    );
    rt().block_on(q.append(b).expect("append").durable())
        .expect("durable");
    append(&q, "a", &["x"]);
    let first = q.lease(0, 1, u64::MAX);
    assert_eq!(q.route_status(0).pending, 1);
    q.release(0, &first);
    assert_eq!(pending_ids(&q, 0), ["w", "x"]);
    let all = q.lease(0, 10, u64::MAX);
    q.settle(0, &all, &[]).expect("settle");
    assert_eq!(rt().block_on(rx).expect("reply"), Delivery::Sent);
    assert_eq!(q.depth(), 0);
}

#[test]
fn interval_mode_answers_before_the_sync_and_syncs_later() {
    let dir = tempfile::tempdir().expect("dir");
    let mut o = opts();
    o.sync_interval = Some(std::time::Duration::from_millis(20));
    let (q, _) = open_dir(dir.path(), o);
    let commit = q.append(batch(&q, "a", &["1"])).expect("append");
    rt().block_on(commit.durable()).expect("written");
    // Pending once written; synced within the interval.
    assert_eq!(q.route_status(0).pending, 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while q.commits() == 0 {
        assert!(std::time::Instant::now() < deadline, "no periodic sync");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn the_size_cap_refuses_and_frees() {
    let mut o = QueueOptions::new(1 << 20, 1 << 20);
    o.segment_bytes = 256 << 10;
    let q = Queue::open(Arc::new(MemStorage::default()), None, o, 2, &routes)
        .expect("open")
        .0;
    let big = "x".repeat(10_000);
    let mut accepted = 0;
    loop {
        let mut b = AppendBatch::default();
        b.push(
            &q,
            0,
            EventHead {
                seq: 0,
                received_ms: 1,
                log: false,
                tag: "a",
                event_id: "e",
                event_name: "n",
                trace_id: "",
            },
            big.as_bytes(),
            None,
        );
        match q.append(b) {
            Ok(c) => {
                rt().block_on(c.durable()).expect("durable");
                accepted += 1;
            }
            Err(QueueError::Full { max_bytes }) => {
                assert_eq!(max_bytes, 1 << 20);
                break;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(accepted < 200);
    }
    // 1 MiB of ~10 KB records.
    assert_eq!(accepted, (1 << 20) / 10_039);
    assert_eq!(q.state(), QueueState::Full);
    let all = q.lease(0, 1000, u64::MAX);
    q.settle(0, &all, &[]).expect("settle");
    assert_eq!(q.state(), QueueState::Writable);
    assert_eq!(q.bytes(), 0);
}

#[test]
fn dead_letters_are_capped_oldest_first() {
    let mut o = QueueOptions::new(64 << 20, 1 << 20);
    o.dead_segment_bytes = 64 << 10;
    let dir = tempfile::tempdir().expect("dir");
    let (q, _) = open_dir(dir.path(), o.clone());
    let body = "y".repeat(10_000);
    for i in 0..300 {
        let mut b = AppendBatch::default();
        b.push(
            &q,
            0,
            EventHead {
                seq: 0,
                received_ms: 1,
                log: false,
                tag: "a",
                event_id: &i.to_string(),
                event_name: "n",
                trace_id: "",
            },
            body.as_bytes(),
            None,
        );
        rt().block_on(q.append(b).expect("append").durable())
            .expect("durable");
        let e = q.lease(0, 1, u64::MAX);
        let payload = q.read(&e)[0].clone().expect("read");
        q.settle(
            0,
            &[],
            &[(
                e[0],
                DeadLetter {
                    reason: DeadReason::EventFailed,
                    status: Some(200),
                    message: "failed".into(),
                },
                Some(payload.payload()),
            )],
        )
        .expect("settle");
    }
    let s = q.stats();
    assert!(s.dead_letter_bytes <= (1 << 20), "{}", s.dead_letter_bytes);
    assert!(s.dead_letters_evicted > 0);
    assert_eq!(s.dead_letters + s.dead_letters_evicted, 300);
    // The newest are kept.
    q.close();
    drop(q);
    let listed = dead_letters_at(dir.path(), 1000).expect("list");
    assert_eq!(
        listed.last().and_then(|d| d.event_id.as_deref()),
        Some("299")
    );
}

#[test]
fn a_torn_last_write_is_cut_and_the_rest_kept() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let (q, _) = open_dir(dir.path(), opts());
        append(&q, "a", &["1", "2"]);
        q.close();
    }
    let seg = newest_segment(dir.path());
    let len = std::fs::metadata(&seg).expect("meta").len();
    // Half a frame at the end, as a crash in the middle of a write leaves it.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .expect("open");
    std::io::Write::write_all(&mut f, &format::FRAME_MARK.to_le_bytes()).expect("write");
    std::io::Write::write_all(&mut f, &[200, 0, 0, 0, 1, 2, 3]).expect("write");
    drop(f);
    let (q, report) = open_dir(dir.path(), opts());
    assert_eq!(report.truncated_bytes, 11);
    assert!(report.corrupt_files.is_empty());
    assert_eq!(pending_ids(&q, 0), ["1", "2"]);
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), len);
}

/// A queue on files in `dir` whose storage fails on demand.
fn faulty_queue(dir: &Path, o: QueueOptions) -> (Queue, Arc<Faults>) {
    let faults = Faults::new();
    let storage = Arc::new(FaultyStorage::new(
        Arc::new(FileStorage::new(dir).expect("fs")),
        faults.clone(),
    ));
    let (q, _) = Queue::open(storage, None, o, 2, &routes).expect("open");
    (q, faults)
}

fn wait_for_state(q: &Queue, state: QueueState) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while q.state() != state {
        assert!(
            std::time::Instant::now() < deadline,
            "never {state:?}, still {:?}",
            q.state()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn newest_segment(dir: &Path) -> std::path::PathBuf {
    let mut segs: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "log")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("q-"))
        })
        .collect();
    segs.sort();
    segs.pop().expect("a segment")
}

#[test]
fn a_damaged_segment_is_moved_aside_and_its_intact_events_requeued() {
    let dir = tempfile::tempdir().expect("dir");
    let all: Vec<String> = (0..50).map(|i| format!("e{i}")).collect();
    {
        let (q, _) = open_dir(dir.path(), opts());
        for chunk in all.chunks(5) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            append(&q, "a", &refs);
        }
        q.close();
    }
    let seg = newest_segment(dir.path());
    let mut bytes = std::fs::read(&seg).expect("read");
    // Overwrite 64 bytes in the middle (two or three records).
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b = 0xA5;
    }
    // And the header.
    bytes[0] = b'X';
    std::fs::write(&seg, &bytes).expect("write");
    let (q, report) = open_dir(dir.path(), opts());
    assert_eq!(report.corrupt_files.len(), 1);
    assert!(
        report.corrupt_files[0].contains(".corrupt-"),
        "{:?}",
        report.corrupt_files
    );
    assert!(!seg.exists(), "moved aside, not left in place");
    let survivors = pending_ids(&q, 0);
    assert!(
        survivors.len() >= 46 && survivors.len() < 50,
        "{}",
        survivors.len()
    );
    assert_eq!(report.salvaged, survivors.len());
    for id in &survivors {
        assert!(all.contains(id));
    }
    // The file is kept, and salvage reads the same intact records from it (gateway stopped).
    q.close();
    drop(q);
    let aside = std::path::PathBuf::from(&report.corrupt_files[0]);
    assert!(aside.exists());
    let r = salvage(dir.path(), &aside, false).expect("salvage");
    assert_eq!(
        r.requeued, 0,
        "re-queued when the queue was opened: not twice"
    );
    assert_eq!(r.already_settled, survivors.len());
    assert!(r.damaged_bytes >= 64);
    // A copy without its ack file (from another volume, say) gives every intact record.
    let elsewhere = tempfile::tempdir().expect("dir");
    let copy = elsewhere.path().join("q-copy.log");
    std::fs::copy(&aside, &copy).expect("copy");
    let r = salvage(dir.path(), &copy, false).expect("salvage");
    assert_eq!(r.requeued, survivors.len());
    let (q, _) = open_dir(dir.path(), opts());
    assert_eq!(pending_ids(&q, 0).len(), 2 * survivors.len());
}

#[test]
fn a_full_disk_refuses_then_heals_without_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let (q, faults) = faulty_queue(dir.path(), opts());
    append(&q, "a", &["before"]);
    faults.disk_full.store(true, Ordering::Release);
    let commit = q.append(batch(&q, "a", &["lost"])).expect("handed over");
    let err = rt().block_on(commit.durable()).expect_err("refused");
    assert!(
        matches!(err, QueueError::Unwritable(ref m) if m.contains("no space")),
        "{err}"
    );
    assert_eq!(q.state(), QueueState::Unwritable);
    // Fails fast meanwhile.
    assert!(q.append(batch(&q, "a", &["x"])).is_err());
    faults.disk_full.store(false, Ordering::Release);
    // The sync thread probes once a second: writable again without any append.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while q.state() != QueueState::Writable {
        assert!(std::time::Instant::now() < deadline, "did not heal");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    append(&q, "a", &["after"]);
    assert_eq!(pending_ids(&q, 0), ["before", "after"]);
    q.close();
    drop(q);
    // Nothing of the refused append reached the file.
    let (q, _) = open_dir(dir.path(), opts());
    assert_eq!(pending_ids(&q, 0), ["before", "after"]);
}

#[test]
fn a_failed_sync_fails_the_commit_and_keeps_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let (q, faults) = faulty_queue(dir.path(), opts());
    append(&q, "a", &["ok"]);
    faults.fail_sync.store(true, Ordering::Release);
    let commit = q.append(batch(&q, "a", &["doubtful"])).expect("written");
    assert!(rt().block_on(commit.durable()).is_err());
    faults.fail_sync.store(false, Ordering::Release);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while q.state() != QueueState::Writable {
        assert!(std::time::Instant::now() < deadline, "did not heal");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(pending_ids(&q, 0), ["ok"]);
    q.close();
    drop(q);
    let (q, _) = open_dir(dir.path(), opts());
    assert_eq!(pending_ids(&q, 0), ["ok"]);
}

#[test]
fn low_free_space_refuses_new_events() {
    let faults = Faults::new();
    let mut o = opts();
    o.min_free_bytes = 64 << 20;
    let storage = Arc::new(FaultyStorage::new(
        Arc::new(MemStorage::default()),
        faults.clone(),
    ));
    let (q, _) = Queue::open(storage, None, o, 2, &routes).expect("open");
    faults.free_bytes.store(10 << 20, Ordering::Release);
    wait_for_state(&q, QueueState::LowDisk);
    assert!(matches!(
        q.append(batch(&q, "a", &["x"])),
        Err(QueueError::LowDisk { .. })
    ));
    faults.free_bytes.store(1 << 30, Ordering::Release);
    wait_for_state(&q, QueueState::Writable);
    append(&q, "a", &["y"]);
    assert_eq!(pending_ids(&q, 0), ["y"]);
}

#[test]
fn a_panic_in_the_append_path_leaves_a_working_queue() {
    let faults = Faults::new();
    let storage = Arc::new(FaultyStorage::new(
        Arc::new(MemStorage::default()),
        faults.clone(),
    ));
    let (q, _) = Queue::open(storage, None, opts(), 2, &routes).expect("open");
    append(&q, "a", &["1"]);
    faults.panic_appends.store(1, Ordering::Release);
    let commit = q.append(batch(&q, "a", &["boom"])).expect("handed over");
    assert!(rt().block_on(commit.durable()).is_err());
    append(&q, "a", &["2"]);
    assert_eq!(pending_ids(&q, 0), ["1", "2"]);
}

#[test]
fn events_of_unknown_tags_are_dead_lettered_at_open() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let (q, _) = open_dir(dir.path(), opts());
        append(&q, "gone", &["g1", "g2"]);
        append(&q, "a", &["kept"]);
        q.close();
    }
    let only_a = |t: &str| (t == "a").then_some(0);
    let (q, report) = Queue::open_path(dir.path(), opts(), 1, &only_a).expect("open");
    assert_eq!(report.unknown_tag, 2);
    assert_eq!(pending_ids(&q, 0), ["kept"]);
    assert_eq!(q.stats().dead_by_reason.get("unknown_tag"), Some(&2));
    q.close();
    drop(q);
    let (q, report) = Queue::open_path(dir.path(), opts(), 1, &only_a).expect("open");
    assert_eq!((report.unknown_tag, report.recovered), (0, 1));
    drop(q);
}

#[test]
fn settled_segments_are_deleted_and_sparse_ones_compacted() {
    let dir = tempfile::tempdir().expect("dir");
    let mut o = QueueOptions::new(64 << 20, 8 << 20);
    o.segment_bytes = 64 << 10;
    let (q, _) = open_dir(dir.path(), o.clone());
    let body = "z".repeat(1_000);
    // Route 1 gets one event per 20 of route 0: a stuck route pins every segment.
    for i in 0..400 {
        let tag = if i % 20 == 0 { "b" } else { "a" };
        let mut b = AppendBatch::default();
        b.push(
            &q,
            routes(tag).unwrap_or(0),
            EventHead {
                seq: 0,
                received_ms: 1,
                log: false,
                tag,
                event_id: &i.to_string(),
                event_name: "n",
                trace_id: "",
            },
            body.as_bytes(),
            None,
        );
        rt().block_on(q.append(b).expect("append").durable())
            .expect("durable");
    }
    let before = q.stats().disk_bytes;
    let a = q.lease(0, 1000, u64::MAX);
    q.settle(0, &a, &[]).expect("settle");
    // Compaction runs in the background once a second, a segment at a time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let disk = q.stats().disk_bytes;
        if disk < before / 4 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "disk {disk} of {before}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let kept = pending_ids(&q, 1);
    assert_eq!(kept.len(), 20);
    q.close();
    drop(q);
    let (q, report) = open_dir(dir.path(), o);
    assert_eq!(report.recovered, 20);
    assert_eq!(pending_ids(&q, 1), kept);
}

#[test]
fn a_second_gateway_cannot_open_the_same_queue() {
    let dir = tempfile::tempdir().expect("dir");
    let (_q, _) = open_dir(dir.path(), opts());
    assert!(matches!(
        Queue::open_path(dir.path(), opts(), 2, &routes),
        Err(QueueError::InUse(_))
    ));
    // Stats still work while it runs.
    assert_eq!(stats_at(dir.path()).expect("stats").depth, 0);
}

/// Events "1" and "2" of route 0, both dead-lettered (`refused`); the queue still open.
fn two_dead_letters(dir: &std::path::Path) -> Queue {
    let (q, _) = open_dir(dir, opts());
    append(&q, "a", &["1", "2"]);
    let e = q.lease(0, 2, u64::MAX);
    let payloads: Vec<_> = q.read(&e).into_iter().map(|r| r.expect("read")).collect();
    let letter = DeadLetter {
        reason: DeadReason::Refused,
        status: Some(401),
        message: "bad token".into(),
    };
    q.settle(
        0,
        &[],
        &[
            (e[0], letter.clone(), Some(payloads[0].payload())),
            (e[1], letter, Some(payloads[1].payload())),
        ],
    )
    .expect("settle");
    q
}

#[test]
fn replay_dead_requeues_dead_letters() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let q = two_dead_letters(dir.path());
        assert_eq!(
            replay_dead(dir.path())
                .err()
                .map(|e| matches!(e, QueueError::InUse(_))),
            Some(true)
        );
        q.close();
    }
    let report = replay_dead(dir.path()).expect("replay");
    assert_eq!((report.replayed, report.kept_files.len()), (2, 0));
    let (q, _) = open_dir(dir.path(), opts());
    assert_eq!(pending_ids(&q, 0), ["1", "2"]);
    assert_eq!(q.stats().dead_letters, 0);
}

#[test]
fn replay_dead_keeps_a_file_it_cannot_replay_whole() {
    let dir = tempfile::tempdir().expect("dir");
    two_dead_letters(dir.path()).close();
    let dead: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dead-"))
        })
        .collect();
    assert_eq!(dead.len(), 1);
    // Damage after the frames (a torn dead-letter write).
    let mut bytes = std::fs::read(&dead[0]).expect("read");
    bytes.extend_from_slice(b"TBRF\x05\0\0\0garbage");
    std::fs::write(&dead[0], &bytes).expect("write");

    let report = replay_dead(dir.path()).expect("replay");
    assert_eq!(report.replayed, 0);
    assert_eq!(report.kept_files, [dead[0].display().to_string()]);
    assert_eq!(std::fs::read(&dead[0]).expect("kept"), bytes);
}

#[test]
fn scan_finds_every_intact_frame_of_garbage() {
    let mut bytes = vec![7u8; 100];
    let at = format::begin_frame(&mut bytes);
    format::put_event_head(
        &mut bytes,
        &EventHead {
            seq: 9,
            received_ms: 1,
            log: false,
            tag: "a",
            event_id: "x",
            event_name: "n",
            trace_id: "",
        },
    );
    bytes.extend_from_slice(b"{}");
    format::finish_frame(&mut bytes, at);
    bytes.extend_from_slice(&[1, 2, 3]);
    let frames: Vec<_> = format::scan(&bytes, 0)
        .filter(|i| matches!(i, Item::Frame { .. }))
        .collect();
    assert_eq!(frames.len(), 1);
}

/// Interval mode: a compaction whose sync fails cuts back only its own copies, never the
/// events acknowledged since the last periodic sync (they were written before it).
#[test]
fn a_failed_compaction_sync_keeps_acknowledged_unsynced_events() {
    let dir = tempfile::tempdir().expect("dir");
    let mut o = QueueOptions::new(64 << 20, 8 << 20);
    o.segment_bytes = 64 << 10;
    o.sync_interval = Some(std::time::Duration::from_secs(60));
    let (q, faults) = faulty_queue(dir.path(), o.clone());
    // Several sealed segments, mostly route a's, with a few of route b's among them.
    let body = "z".repeat(1_000);
    for i in 0..400 {
        let tag = if i % 20 == 0 { "b" } else { "a" };
        let mut b = AppendBatch::default();
        let id = i.to_string();
        let head = EventHead {
            seq: 0,
            received_ms: 1,
            log: false,
            tag,
            event_id: &id,
            event_name: "n",
            trace_id: "",
        };
        b.push(&q, routes(tag).unwrap_or(0), head, body.as_bytes(), None);
        rt().block_on(q.append(b).expect("append").durable())
            .expect("durable");
    }
    // The first periodic sync (due at once), then acknowledged events it does not cover.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while q.commits() == 0 {
        assert!(std::time::Instant::now() < deadline, "no periodic sync");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    append(&q, "b", &["X1", "X2", "X3"]);
    faults.fail_sync.store(true, Ordering::Release);
    // Route a's events settle: the sealed segments turn sparse, compaction copies route b's
    // events and its sync fails.
    let leased = q.lease(0, 1000, u64::MAX);
    q.settle(0, &leased, &[]).expect("settle");
    wait_for_state(&q, QueueState::Unwritable);
    faults.fail_sync.store(false, Ordering::Release);
    wait_for_state(&q, QueueState::Writable);
    let want: Vec<String> = (0..400)
        .filter(|i| i % 20 == 0)
        .map(|i| i.to_string())
        .chain(["X1", "X2", "X3"].map(String::from))
        .collect();
    assert_eq!(pending_ids(&q, 1), want);
    q.close();
    drop(q);
    let (q, _) = open_dir(dir.path(), o);
    assert_eq!(pending_ids(&q, 1), want);
}

/// A dead letter is synced before its event is acknowledged: when the sync fails, the
/// settle fails and the event stays queued (retried), instead of being acknowledged with
/// its dead letter only in the page cache.
#[test]
fn a_dead_letter_that_cannot_be_synced_keeps_its_event_queued() {
    let dir = tempfile::tempdir().expect("dir");
    let (q, faults) = faulty_queue(dir.path(), opts());
    append(&q, "a", &["d-1"]);
    let e = q.lease(0, 1, u64::MAX);
    let payload = q.read(&e)[0].clone().expect("read");
    faults.fail_sync.store(true, Ordering::Release);
    let letter = DeadLetter {
        reason: DeadReason::EventFailed,
        status: Some(200),
        message: "failed".into(),
    };
    let settled = q.settle(0, &[], &[(e[0], letter, Some(payload.payload()))]);
    assert!(settled.is_err(), "{settled:?}");
    faults.fail_sync.store(false, Ordering::Release);
    assert_eq!(q.stats().dead_letters, 0);
    q.close();
    drop(q);
    let (q, _) = open_dir(dir.path(), opts());
    assert_eq!(pending_ids(&q, 0), ["d-1"]);
}

/// Interval mode: the writer sleeps until the next sync is due, not a whole interval from
/// whenever it last woke up.
#[test]
fn the_writer_sleeps_until_the_next_sync_is_due() {
    use std::time::Duration;
    let ms = Duration::from_millis;
    let iv = Some(ms(100));
    assert_eq!(super::log::idle_wait(iv, Some(ms(90))), ms(10));
    assert_eq!(super::log::idle_wait(iv, Some(ms(20))), ms(80));
    assert_eq!(super::log::idle_wait(iv, None), ms(100));
    // Overdue: look again soon, without spinning.
    assert_eq!(super::log::idle_wait(iv, Some(ms(150))), ms(1));
    assert_eq!(super::log::idle_wait(Some(ms(5_000)), None), ms(1_000));
    assert_eq!(super::log::idle_wait(None, Some(ms(10))), ms(250));
}

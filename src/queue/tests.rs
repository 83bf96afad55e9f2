//! Queue properties: durability across reopen, group commit, size cap, settle, dead letters.

use super::*;
use serde_json::json;

fn event(tag: &str, id: &str) -> QueuedEvent {
    QueuedEvent {
        tag: tag.into(),
        received_ms: 1_000,
        body: EventBody {
            event: serde_json::value::to_raw_value(
                &json!({"event_name": "checkout", "event_id": id}),
            )
            .unwrap(),
            event_id: id.into(),
            event_name: "checkout".into(),
            trace_id: "t".into(),
            log: false,
        },
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn appended_events_survive_reopen_in_order() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (q, pending) = Queue::open(dir.path(), 1 << 30).unwrap();
        assert!(pending.is_empty());
        let seqs = q.append(&[event("a", "1"), event("b", "2")]).await.unwrap();
        let seqs2 = q.append(&[event("a", "3")]).await.unwrap();
        assert_eq!(
            seqs.iter().chain(&seqs2).map(|s| s.0).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        let read = q.read(&[2, 3, 99]).unwrap();
        assert_eq!(read.len(), 3);
        assert!(matches!(&read[0], Stored::Event(e) if e.body.event_id == "2"));
        assert!(matches!(&read[1], Stored::Event(e) if e.body.event_id == "3"));
        assert!(matches!(read[2], Stored::Missing));
    });
    // Reopen: everything acknowledged is there, with tag and time, oldest first.
    rt().block_on(async {
        let (q, pending) = Queue::open(dir.path(), 1 << 30).unwrap();
        let tags: Vec<(u64, &str)> = pending.iter().map(|p| (p.seq, p.tag.as_str())).collect();
        assert_eq!(tags, vec![(1, "a"), (2, "b"), (3, "a")]);
        // New sequence numbers continue after the old ones.
        let next = q.append(&[event("a", "4")]).await.unwrap();
        assert_eq!(next[0].0, 4);
    });
}

#[test]
fn settle_deletes_and_dead_letters_in_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (q, _) = Queue::open(dir.path(), 1 << 30).unwrap();
        let seqs = q
            .append(&[event("a", "1"), event("a", "2"), event("a", "3")])
            .await
            .unwrap();
        let before = q.bytes();
        let letter = DeadLetter {
            reason: DeadReason::Refused,
            status: Some(401),
            message: "HTTP 401: Authentication failed.".into(),
            dead_at_ms: 5,
            record: Some(event("a", "2")),
        };
        q.settle(vec![seqs[0]], vec![(seqs[1].0, seqs[1].1, letter)])
            .await
            .unwrap();
        assert_eq!(q.bytes(), before - seqs[0].1 - seqs[1].1);
        let stats = q.stats().unwrap();
        assert_eq!(stats.depth, 1);
        assert_eq!(stats.dead_letters, 1);
        assert_eq!(stats.dead_by_reason.get("refused"), Some(&1));
    });
    // Dead letters go back into the queue on replay (with the gateway stopped).
    assert_eq!(replay_dead(dir.path()).unwrap(), 1);
    let stats = stats_at(dir.path()).unwrap();
    assert_eq!((stats.depth, stats.dead_letters), (2, 0));
}

#[test]
fn full_queue_refuses_and_counts_nothing() {
    rt().block_on(async {
        let one = event("a", "1").encode().len() as u64;
        let (q, _) = Queue::open(Path::new(":memory:"), one * 2).unwrap();
        q.append(&[event("a", "1"), event("a", "2")]).await.unwrap();
        match q.append(&[event("a", "3")]).await {
            Err(QueueError::Full { max_bytes }) => assert_eq!(max_bytes, one * 2),
            other => panic!("expected Full, got {other:?}"),
        }
        assert_eq!(q.bytes(), one * 2);
        assert_eq!(q.stats().unwrap().depth, 2);
    });
}

#[test]
fn concurrent_appends_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (q, _) = Queue::open(dir.path(), 1 << 30).unwrap();
        let commits_before = q.commits();
        let mut tasks = Vec::new();
        for i in 0..400 {
            let q = q.clone();
            tasks.push(tokio::spawn(async move {
                q.append(&[event("a", &i.to_string())])
                    .await
                    .map(|s| s.len())
            }));
        }
        let mut appended = 0;
        for t in tasks {
            appended += t.await.unwrap().unwrap();
        }
        assert_eq!(appended, 400);
        let commits = q.commits() - commits_before;
        assert!(
            commits < 400,
            "group commit: {commits} commits for 400 appends"
        );
        assert_eq!(q.stats().unwrap().depth, 400);
    });
}

#[test]
fn a_second_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Queue::open(dir.path(), 1 << 30).unwrap();
    match replay_dead(dir.path()) {
        Err(QueueError::InUse(_)) => {}
        other => panic!("expected InUse, got {other:?}"),
    }
    // Read-only stats work while the writer holds the queue.
    assert_eq!(stats_at(dir.path()).unwrap().depth, 0);
}

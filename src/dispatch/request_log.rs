//! Outgoing request/response log records, one JSON line each, with the field names of
//! stape's logs (`Name`, `Type`, `TraceId`, `EventName`, `RequestMethod`, `RequestUrl`,
//! `RequestBody`, `ResponseStatusCode`, `ResponseHeaders`, `ResponseBody`), so existing log
//! queries keep working.
//!
//! One record pair per event (stape sends one event per request; here a request carries a
//! batch, so `RequestBody` is the destination's request preview for this event alone and
//! `BatchSize` tells how many events the real request carried). Credentials are never part
//! of a record: the URL has none and the preview masks them. A record is at most
//! [`MAX_RECORD_BYTES`]: a longer body is replaced by its clipped text.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};

use crate::{destination::Destination, queue::StoredEvent};

/// Longest body kept in a record; longer ones are clipped (the log cannot be flooded).
pub const MAX_RECORD_BYTES: usize = 16 << 10;

/// Where log records go.
pub trait RequestLog: Send + Sync {
    fn write(&self, record: Value);
}

/// JSON lines on stdout (each record written with one call, so lines never interleave).
#[derive(Debug, Default)]
pub struct StdoutLog;

impl RequestLog for StdoutLog {
    fn write(&self, record: Value) {
        let mut line = record.to_string();
        line.push('\n');
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

/// Keeps records in memory (tests).
#[derive(Debug, Default, Clone)]
pub struct MemoryLog(pub Arc<Mutex<Vec<Value>>>);

impl MemoryLog {
    pub fn records(&self) -> Vec<Value> {
        self.0.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl RequestLog for MemoryLog {
    fn write(&self, record: Value) {
        if let Ok(mut r) = self.0.lock() {
            r.push(record);
        }
    }
}

/// `value` itself when its JSON is short enough, else its text clipped, marked as such.
pub fn clipped(value: Value) -> Value {
    let text = value.to_string();
    if text.len() <= MAX_RECORD_BYTES {
        return value;
    }
    let cut = crate::queue::format::clip(&text, MAX_RECORD_BYTES);
    Value::String(format!("{cut}…(clipped, {} bytes)", text.len()))
}

/// The fields of an event a record names.
pub struct RecordEvent<'a> {
    pub tag: &'a str,
    pub trace_id: &'a str,
    pub event_name: &'a str,
    pub event_id: &'a str,
    /// The destination event, JSON text.
    pub body: &'a [u8],
}

impl<'a> From<&'a StoredEvent> for RecordEvent<'a> {
    fn from(e: &'a StoredEvent) -> Self {
        let v = e.view();
        RecordEvent {
            tag: v.tag,
            trace_id: v.trace_id,
            event_name: v.event_name,
            event_id: v.event_id,
            body: v.body,
        }
    }
}

fn raw(body: &[u8]) -> Box<serde_json::value::RawValue> {
    std::str::from_utf8(body)
        .ok()
        .and_then(|s| serde_json::value::RawValue::from_string(s.to_owned()).ok())
        .unwrap_or_default()
}

/// A mapped event as a record shows it: the client address masked by its destination.
fn masked(dest: &dyn Destination, body: &[u8]) -> Box<serde_json::value::RawValue> {
    match serde_json::from_slice::<Value>(body) {
        Ok(mut v) => {
            dest.mask_event(&mut v);
            serde_json::value::to_raw_value(&v).unwrap_or_else(|_| raw(body))
        }
        Err(_) => raw(body),
    }
}

/// The `Type: Request` record of one event.
pub fn request_record<'a>(
    dest: &dyn Destination,
    event: impl Into<RecordEvent<'a>>,
    batch_size: usize,
    dry_run: bool,
) -> Value {
    let e = event.into();
    let event_json = masked(dest, e.body);
    let preview = dest.preview(&[&event_json]);
    let mut r = json!({
        "Name": dest.display_name(),
        "Type": "Request",
        "TraceId": e.trace_id,
        "EventName": e.event_name,
        "RequestMethod": preview.get("method").cloned().unwrap_or(Value::Null),
        "RequestUrl": dest.endpoint(),
        "RequestBody": clipped(preview.get("body").cloned().unwrap_or(Value::Null)),
        "Tag": e.tag,
        "EventId": e.event_id,
        "BatchSize": batch_size,
    });
    if dry_run {
        r["DryRun"] = Value::Bool(true);
    }
    r
}

/// The `Type: Response` record of one event: its own part of the answer when the
/// destination has one, else the whole (clipped) answer.
pub fn response_record(
    dest: &dyn Destination,
    event: &StoredEvent,
    status: u16,
    headers: &Value,
    body: Value,
) -> Value {
    let e = RecordEvent::from(event);
    json!({
        "Name": dest.display_name(),
        "Type": "Response",
        "TraceId": e.trace_id,
        "EventName": e.event_name,
        "ResponseStatusCode": status,
        "ResponseHeaders": headers,
        "ResponseBody": clipped(body),
        "Tag": e.tag,
        "EventId": e.event_id,
    })
}

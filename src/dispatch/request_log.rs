//! Outgoing request/response log records, one JSON line each, with the field names of
//! stape's logs (`pinterest-tag.md` §8), so existing log queries keep working.
//!
//! One record pair per event (stape sends one event per request; here a request carries a
//! batch, so `RequestBody` holds this event as `{"data": [event]}` and `BatchSize` tells how
//! many events the real request carried). Credentials are never part of a record: the URL
//! has none and headers of the outgoing request are not logged.

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use serde_json::{json, Value};

use crate::queue::EventBody;

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

/// Keeps records in memory (tests, the debug page).
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

pub(crate) struct RequestRecord<'a> {
    pub kind: &'a str,
    pub meta: &'a EventBody,
    pub tag: &'a str,
    pub url: &'a str,
    pub batch_size: usize,
    pub dry_run: bool,
}

impl RequestRecord<'_> {
    pub fn to_json(&self) -> Value {
        let mut r = json!({
            "Name": self.kind,
            "Type": "Request",
            "TraceId": self.meta.trace_id,
            "EventName": self.meta.event_name,
            "RequestMethod": "POST",
            "RequestUrl": self.url,
            "RequestBody": {"data": [self.meta.event]},
            "Tag": self.tag,
            "EventId": self.meta.event_id,
            "BatchSize": self.batch_size,
        });
        if self.dry_run {
            r["DryRun"] = Value::Bool(true);
        }
        r
    }
}

pub(crate) fn response_record(
    kind: &str,
    meta: &EventBody,
    tag: &str,
    status: u16,
    headers: &Value,
    body: Value,
) -> Value {
    json!({
        "Name": kind,
        "Type": "Response",
        "TraceId": meta.trace_id,
        "EventName": meta.event_name,
        "ResponseStatusCode": status,
        "ResponseHeaders": headers,
        "ResponseBody": body,
        "Tag": tag,
        "EventId": meta.event_id,
    })
}

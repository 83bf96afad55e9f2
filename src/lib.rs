//! # tagbridge
//!
//! A server-side tagging gateway: websites send GA4 beacons and JSON events to their own
//! tracking subdomain; tagbridge turns them into Pinterest Conversions API events (names
//! mapped, personal data normalized and SHA-256 hashed), batches and delivers them.
//!
//! # Layout
//!
//! One module per pipeline stage; data flows top to bottom:
//!
//! - [`config`]: the typed configuration tree, loaded and validated once.
//! - [`ingest`]: HTTP endpoints (`/data`, ...) → [`event::EventData`], the tag pipeline, and
//!   the answer to the caller (cookies, errors, `wait_for_response` outcomes).
//! - [`event`]: the canonical event-data shape between ingest and tags.
//! - [`tags`]: pure functions from event data to destination events ([`tags::Tag`]) and
//!   the destination contract for the dispatcher ([`tags::Destination`]); one sub-module
//!   per destination ([`tags::pinterest`]).
//! - [`dispatch`]: batching per route, HTTP delivery, retries, outcomes, request logs.
//! - [`server`]: wiring, serving and the drain on shutdown.
//! - [`cli`]: the `tagbridge` command line (`serve`, `check`, `map`).

pub mod cli;
pub mod config;
pub mod debug;
pub mod destination;
pub mod dispatch;
pub mod event;
pub mod health;
pub mod ingest;
pub mod pipeline;
pub mod queue;
pub mod server;
pub mod support;
pub mod tags;
pub mod telemetry;
pub mod web;

pub use config::Config;
pub use server::{run, Listeners, Services};

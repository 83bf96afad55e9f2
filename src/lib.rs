//! # tagbridge
//!
//! A server-side tagging gateway: websites send GA4 beacons (`/g/collect`), Measurement
//! Protocol calls (`/mp/collect`) and JSON events (`/data`) to their own tracking subdomain;
//! tagbridge turns them into Pinterest Conversions API events (names mapped, personal data
//! normalized and SHA-256 hashed), keeps them in a durable on-disk queue, and delivers them
//! in batches, with retries.
//!
//! # Layout
//!
//! `docs/ARCHITECTURE.md` follows one event through these modules, with the dependency
//! rules, the queue on disk and the shutdown order; `docs/MAPPING.md` has the mapping and
//! hashing rules.
//!
//! The stages an event passes, in order:
//!
//! - [`ingest`]: the HTTP endpoints → [`event::EventData`]: body limits, the GA4 parsers,
//!   `/data`, CORS, client address, rate limit, privacy redaction, and the answer to the
//!   caller (cookies, errors).
//! - [`event`]: the canonical event-data shape between ingest and tags
//!   ([`event::EventData`], [`event::RequestContext`]).
//! - [`pipeline`]: every tag on a request's events, one durable append for the whole
//!   request, `wait_for_response` outcomes.
//! - [`tags`]: pure functions from event data to destination events ([`tags::Tag`],
//!   [`tags::StandardTag`]), the building blocks every destination uses
//!   ([`tags::common`]), one sub-module per destination ([`tags::pinterest`]), and the
//!   `tag_types!` registry of tag types.
//! - [`queue`]: the durable queue: segment files, group commit, leases, acks, dead letters,
//!   recovery.
//! - [`dispatch`]: batches per route, HTTP delivery, backoff, rate limits, splits,
//!   supervision, drain, request/response logs.
//! - [`destination`]: the contract between a destination and the dispatcher
//!   ([`destination::Destination`]).
//!
//! Around them:
//!
//! - [`server`]: wiring (config → tags, routes, queue, dispatcher), the public and admin
//!   listeners, the drain on shutdown.
//! - [`health`]: what `/readyz` answers, and how a failed component stops the gateway.
//! - [`debug`]: the debug page and its recorder, on the admin listener.
//! - [`config`]: the typed configuration tree, loaded and validated once.
//! - [`cli`]: the `tagbridge` command line (`serve`, `check`, `map`, `queue`,
//!   `healthcheck`).
//! - [`telemetry`]: the gateway's own log and the Prometheus recorder.
//! - [`web`]: host names, registrable domains, `Set-Cookie`.
//! - [`support`]: leaf helpers (`Secret`, `ConfigError`, clock) that depend on nothing else
//!   in the crate.

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

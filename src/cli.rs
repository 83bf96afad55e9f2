//! The command line: `serve` (default), `check`, `map`, `queue …`, `healthcheck`.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::SystemTime,
};

use clap::{Parser, Subcommand};
use serde_json::{json, Value};

use crate::{
    config::{Config, LoadReport},
    event::{EventData, RequestContext},
    server::{build_tags, Services},
    tags::TagDecision,
};

const DEFAULT_CONFIG: &str = "config/tagbridge.yaml";

#[derive(Debug, Parser)]
#[command(
    name = "tagbridge",
    version,
    about = "Server-side tagging gateway: GA4 and JSON events in, Pinterest Conversions API events out."
)]
pub struct Cli {
    /// Config file (YAML).
    #[arg(long, short, global = true, env = "TAGBRIDGE_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default command).
    Serve,
    /// Validate the config and print the resolved settings, secrets masked.
    Check,
    /// Print, as JSON, the request each tag would make for one event-data object.
    Map {
        /// The event-data JSON file (`-` for stdin).
        #[arg(long, short)]
        event: PathBuf,
        /// Only this tag.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Inspect or repair the queue: `stats`, `dead-letters` (both work while the gateway
    /// runs), `replay-dead`, `salvage --from FILE` (gateway stopped).
    Queue {
        #[command(subcommand)]
        action: QueueAction,
    },
    /// Exit 0 when the gateway at URL answers 200 (for container HEALTHCHECKs without curl).
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueAction {
    /// Depth, oldest age, dead letters by reason (JSON).
    Stats,
    /// The first dead letters, oldest first (JSON lines): reason, status, message, tag, event
    /// id and name.
    DeadLetters {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Move dead letters back into the queue (e.g. after fixing a token). Stop the gateway first.
    ReplayDead,
    /// Re-queue every intact event record of FILE (a queue file moved aside as
    /// `.corrupt-<ts>`, or one copied from elsewhere). Stop the gateway first.
    Salvage {
        #[arg(long)]
        from: PathBuf,
        /// Also re-queue the events of intact dead letters in FILE (a dead-letter file).
        #[arg(long)]
        include_dead: bool,
    },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    main_with(|| {})
}

/// Entry point of the binary; `on_queue_open` runs once `serve` has opened (recovered) the
/// queue, before it serves requests.
pub fn main_with(on_queue_open: fn()) -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&cli.config, on_queue_open),
        Command::Check => check(&cli.config),
        Command::Map { event, tag } => map(&cli.config, &event, tag.as_deref()),
        Command::Healthcheck { url } => healthcheck(&url),
        Command::Queue { action } => queue_cmd(&cli.config, action),
    }
}

fn queue_cmd(path: &Path, action: QueueAction) -> ExitCode {
    let (config, _) = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let dir = &config.queue.path;
    match action {
        QueueAction::Stats => match crate::queue::stats_at(dir) {
            Ok(stats) => {
                out(&serde_json::to_string_pretty(&stats).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        QueueAction::DeadLetters { limit } => match crate::queue::dead_letters_at(dir, limit) {
            Ok(letters) => {
                for l in letters {
                    out(&serde_json::to_string(&l).unwrap_or_default());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        QueueAction::ReplayDead => match crate::queue::replay_dead(dir) {
            Ok(report) => {
                out(&serde_json::to_string(&report).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        QueueAction::Salvage { from, include_dead } => {
            match crate::queue::salvage(dir, &from, include_dead) {
                Ok(report) => {
                    out(&serde_json::to_string_pretty(&report).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// One line on stdout; a closed pipe (`tagbridge check | head`) is not an error.
fn out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
}

/// A plain HTTP/1.1 GET with a 3 s budget; success is a `200` status line.
fn healthcheck(url: &str) -> ExitCode {
    use std::io::{Read, Write};
    let result = (|| -> Result<bool, String> {
        let u = url::Url::parse(url).map_err(|e| e.to_string())?;
        let host = u.host_str().ok_or("URL has no host")?;
        let port = u.port_or_known_default().unwrap_or(80);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("cannot resolve host")?;
        let timeout = std::time::Duration::from_secs(3);
        let mut stream =
            std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        write!(
            stream,
            "GET {} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
            u.path()
        )
        .map_err(|e| e.to_string())?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).map_err(|e| e.to_string())?;
        Ok(head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200"))
    })();
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("unhealthy: {url} did not answer 200");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &Path) -> Result<(Config, LoadReport), ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("config error: {e}");
        ExitCode::from(2)
    })
}

fn report_warnings(report: &LoadReport, log: impl Fn(&str)) {
    for var in &report.unset_env_vars {
        log(&format!(
            "environment variable {var} is not set; it expands to an empty value"
        ));
    }
    for w in &report.warnings {
        log(w);
    }
}

fn serve(path: &Path, on_queue_open: fn()) -> ExitCode {
    let (config, report) = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    crate::telemetry::init(&config.logging);
    report_warnings(&report, |w| tracing::warn!(warning = %w, "Config warning."));
    for tc in &config.tags {
        if tc.is_dry_run() {
            tracing::warn!(tag = %tc.name(), "Tag is in dry run (no access token or dry_run: true): events are mapped and logged, not sent.");
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the async runtime.");
            return ExitCode::FAILURE;
        }
    };
    let drain_s = config.dispatch.drain_s;
    let code = runtime.block_on(async move {
        let listeners = match crate::server::Listeners::bind(&config).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "Cannot listen.");
                return ExitCode::FAILURE;
            }
        };
        let addr = |l: &tokio::net::TcpListener| {
            l.local_addr().map(|a| a.to_string()).unwrap_or_default()
        };
        let signalled = shutdown_signal();
        tracing::info!(addr = %addr(&listeners.public), admin_addr = %addr(&listeners.admin), tags = config.tags.len(), version = env!("CARGO_PKG_VERSION"), "Listening.");
        let services = Services {
            // Shutdown always ends: whatever the state (a signal or a component that failed
            // for good), the process exits shortly after the drain deadline.
            on_shutdown: Some(Box::new(move || watchdog(drain_s))),
            on_queue_open: Some(Box::new(on_queue_open)),
            ..Services::default()
        };
        match crate::server::run(config, listeners, signalled, services).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "Gateway failed.");
                ExitCode::FAILURE
            }
        }
    });
    // Tasks left (connections of slow clients, deliveries past the deadline) are not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

/// Exits the process `drain_s` + 2 s from now if it has not ended by then (a task that does
/// not stop must not keep the pod from restarting).
fn watchdog(drain_s: u64) {
    let limit = std::time::Duration::from_secs(drain_s.saturating_add(2));
    let _ = std::thread::Builder::new()
        .name("shutdown-watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit);
            eprintln!("tagbridge: shutdown did not finish within drain_s + 2 s; exiting");
            std::process::exit(1);
        });
}

/// SIGTERM or Ctrl-C. The handlers are installed when this is called (before the gateway
/// says it listens), not when the future is first polled: a SIGTERM right after start-up
/// drains like any other instead of killing the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (Ok(mut term), Err(_)) => {
                    term.recv().await;
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn check(path: &Path) -> ExitCode {
    let (config, report) = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    report_warnings(&report, |w| eprintln!("warning: {w}"));
    out(&config.to_string());
    eprintln!("config OK: {}", path.display());
    ExitCode::SUCCESS
}

fn map(path: &Path, event_path: &Path, only: Option<&str>) -> ExitCode {
    let (config, _) = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let text = if event_path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(event_path)
    };
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            eprintln!("cannot read {}: {e}", event_path.display());
            return ExitCode::from(2);
        }
    };
    let value = match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            eprintln!(
                "{}: expected a JSON object (one event-data object)",
                event_path.display()
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("{}: invalid JSON: {e}", event_path.display());
            return ExitCode::from(2);
        }
    };
    let event = EventData::from_json(&value);
    match map_event(&config, &event, only) {
        Ok(out) => {
            self::out(&serde_json::to_string_pretty(&out).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::from(2)
        }
    }
}

/// What `tagbridge map` prints: per tag, its decision, the request it would make (the
/// credential masked) and the match keys the mapped event carries.
///
/// # Errors
/// When `only` names no configured tag.
pub fn map_event(
    config: &Config,
    event: &EventData<'_>,
    only: Option<&str>,
) -> Result<Value, String> {
    let (slots, _) = build_tags(config);
    if let Some(name) = only {
        if !slots.iter().any(|s| s.tag.name() == name) {
            return Err(format!("no tag named {name:?} in the config"));
        }
    }
    let req = RequestContext::detached(SystemTime::now());
    let mut out = Vec::new();
    let mut body = Vec::new();
    for slot in slots
        .iter()
        .filter(|s| only.is_none_or(|n| s.tag.name() == n))
    {
        let result = slot.tag.evaluate(event, &req, &mut body);
        let dest = slot.tag.destination();
        let mut entry = json!({ "tag": slot.tag.name() });
        let dry_run = matches!(result.decision, TagDecision::DryRun(_));
        match result.decision {
            TagDecision::Send(_) | TagDecision::DryRun(_) => {
                entry["decision"] = json!(if dry_run { "dry_run" } else { "send" });
                let raw = std::str::from_utf8(&body)
                    .ok()
                    .and_then(|s| serde_json::value::RawValue::from_string(s.to_owned()).ok())
                    .unwrap_or_default();
                entry["request"] = dest.preview(&[&raw]);
                let keys: Vec<&str> = slot
                    .tag
                    .match_keys()
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| result.match_keys & (1 << i) != 0)
                    .map(|(_, k)| *k)
                    .collect();
                entry["match_keys"] = json!(keys);
            }
            TagDecision::Skip(reason) => {
                entry["decision"] = json!("skip");
                entry["reason"] = json!(reason.as_str());
            }
        }
        if !result.cookies.is_empty() {
            entry["set_cookies"] = json!(result
                .cookies
                .iter()
                .map(|c| c.header_value())
                .collect::<Vec<_>>());
        }
        out.push(entry);
    }
    Ok(Value::Array(out))
}

//! Test harness: the gateway on 127.0.0.1:0 (in-process or the built binary), a mock
//! Pinterest on loopback, and the conformance-vector runner.
#![allow(dead_code)]

pub mod vectors;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{json, Value};
use tagbridge::{
    config::Config,
    dispatch::{DrainReport, MemoryLog},
    server::{RunError, Services},
    tags::TagConfig,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use wiremock::{matchers, Mock, MockServer, Request, Respond, ResponseTemplate};

/// The gateway running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`, `/debug`).
    pub admin: SocketAddr,
    pub log: MemoryLog,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<DrainReport, RunError>>>,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        Self::start_with(config, Services::default()).await
    }

    /// Starts with `services` (their request log is replaced by the test's).
    pub async fn start_with(config: Config, services: Services) -> Self {
        let public = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        Self::start_on(config, services, public, admin)
    }

    /// Starts on listeners the test bound itself.
    pub fn start_on(
        config: Config,
        services: Services,
        public: TcpListener,
        admin: TcpListener,
    ) -> Self {
        let addr = public.local_addr().expect("addr");
        let admin_addr = admin.local_addr().expect("admin addr");
        let log = MemoryLog::default();
        let (stop, stopped) = oneshot::channel::<()>();
        let services = Services {
            request_log: Arc::new(log.clone()),
            ..services
        };
        let task = tokio::spawn(tagbridge::run(
            config,
            tagbridge::Listeners { public, admin },
            async move {
                let _ = stopped.await;
            },
            services,
        ));
        Self {
            addr,
            admin: admin_addr,
            log,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Signals shutdown and waits for the drain to finish.
    pub async fn shutdown(mut self) -> DrainReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("task");
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("drain within 30 s")
            .expect("join")
            .expect("run")
    }
}

impl TestServer {
    /// Waits (bounded) for the gateway to stop on its own (a fatal component), without
    /// signalling it.
    pub async fn finished(mut self) -> Result<DrainReport, RunError> {
        let task = self.task.take().expect("task");
        tokio::time::timeout(Duration::from_secs(60), task)
            .await
            .expect("stopped within 60 s")
            .expect("join")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A Pinterest tag entry from JSON, pointed at `api_base`.
/// Lowercase hex SHA-256 of `text`: what a hashed user-data value must be.
pub fn sha256(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub fn tag(mut settings: Value, api_base: &str) -> TagConfig {
    settings["type"] = json!("pinterest");
    settings["api_base"] = json!(api_base);
    serde_json::from_value(settings).expect("tag settings")
}

pub fn config_with(tags: Vec<TagConfig>) -> Config {
    let mut c = Config::for_tests();
    c.tags = tags;
    c
}

/// Answers like Pinterest: 200 with one `processed` entry per event of the request.
pub struct PinterestOk;

impl Respond for PinterestOk {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = serde_json::from_slice::<Value>(&request.body)
            .ok()
            .and_then(|b| b["data"].as_array().map(Vec::len))
            .unwrap_or(0);
        let events: Vec<Value> = (0..n)
            .map(|_| json!({"status": "processed", "error_message": "", "warning_message": ""}))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "num_events_received": n, "num_events_processed": n, "events": events
        }))
    }
}

/// A mock Pinterest that accepts everything.
pub async fn mock_pinterest() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(matchers::method("POST"))
        .respond_with(PinterestOk)
        .mount(&server)
        .await;
    server
}

/// Bodies of the requests the mock received, parsed.
pub async fn received_bodies(server: &MockServer) -> Vec<Value> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("JSON body"))
        .collect()
}

/// The built binary, started on a config file; its stdout lines are collected.
pub struct BinaryServer {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl BinaryServer {
    /// Writes `config` (JSON is valid YAML) and starts `tagbridge serve --config F`.
    pub fn start(config: &Value) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tagbridge.yaml");
        std::fs::write(&path, serde_json::to_string_pretty(config).expect("json")).expect("write");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tagbridge"))
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tagbridge");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel::<(SocketAddr, SocketAddr)>();
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["message"] == "Listening." {
                        let addr = v["addr"].as_str().and_then(|a| a.parse().ok());
                        let admin = v["admin_addr"].as_str().and_then(|a| a.parse().ok());
                        if let (Some(addr), Some(admin)) = (addr, admin) {
                            let _ = tx.send((addr, admin));
                        }
                    }
                }
                sink.lock().expect("lock").push(line);
            }
        });
        let (addr, admin) = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let out = child.wait_with_output().expect("output");
                panic!(
                    "tagbridge did not start: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        };
        Self {
            child,
            addr,
            admin,
            lines,
            reader: Some(reader),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // stdout closed with the process: the reader has every line.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                let lines = self.lines.lock().expect("lock").clone();
                return (status, lines);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tagbridge did not exit within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! What `/readyz` answers, and how a component that cannot go on stops the process.
//!
//! The process can only be trusted with events while the queue takes them and the
//! dispatcher runs. A supervised task that panics is restarted with backoff and reported
//! here meanwhile; one that keeps failing is declared fatal: `/readyz` answers 503 and the
//! gateway shuts down with a non-zero exit code, so the orchestrator restarts it.

use std::sync::{
    atomic::{AtomicBool, AtomicU8, Ordering},
    Mutex,
};

use tokio::sync::Notify;

use crate::queue::{Queue, QueueState};

/// State of the dispatcher task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Running,
    Restarting,
    Failed,
}

#[derive(Debug, Default)]
pub struct Health {
    draining: AtomicBool,
    dispatcher: AtomicU8,
    fatal: Mutex<Option<String>>,
    fatal_signal: Notify,
}

impl Health {
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn set_dispatcher(&self, state: TaskState) {
        let v = match state {
            TaskState::Running => 0,
            TaskState::Restarting => 1,
            TaskState::Failed => 2,
        };
        self.dispatcher.store(v, Ordering::Release);
    }

    pub fn dispatcher(&self) -> TaskState {
        match self.dispatcher.load(Ordering::Acquire) {
            0 => TaskState::Running,
            1 => TaskState::Restarting,
            _ => TaskState::Failed,
        }
    }

    /// A component cannot go on: the gateway stops (exit code 1).
    pub fn set_fatal(&self, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::error!(reason = %reason, "Fatal: the gateway stops so that it can be restarted.");
        if let Ok(mut f) = self.fatal.lock() {
            f.get_or_insert(reason);
        }
        self.fatal_signal.notify_waiters();
        self.fatal_signal.notify_one();
    }

    pub fn fatal(&self) -> Option<String> {
        self.fatal.lock().ok().and_then(|f| f.clone())
    }

    /// Resolves when a component declared the process fatal.
    pub async fn fatal_signalled(&self) {
        loop {
            if self.fatal().is_some() {
                return;
            }
            self.fatal_signal.notified().await;
        }
    }

    /// `Ok` when ready to take events, else the reason `/readyz` gives.
    pub fn readiness(&self, queue: &Queue) -> Result<(), &'static str> {
        if self.fatal().is_some() {
            return Err("failed");
        }
        if self.draining() {
            return Err("draining");
        }
        match self.dispatcher() {
            TaskState::Running => {}
            TaskState::Restarting => return Err("dispatcher restarting"),
            TaskState::Failed => return Err("dispatcher failed"),
        }
        match queue.state() {
            QueueState::Writable => Ok(()),
            QueueState::Full => Err("queue full"),
            QueueState::LowDisk => Err("queue volume low on free space"),
            QueueState::Unwritable => Err("queue cannot write"),
        }
    }
}

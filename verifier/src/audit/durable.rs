//! Waiting for a decision's audit record to be durable (group commit):
//! the writer thread writes and syncs a batch, then releases every waiter
//! whose record it held. Blocking callers wait on a condition variable,
//! async callers await a future (no async worker thread is blocked), so
//! the one primitive serves both and needs no async runtime.

use crate::error::VerifierError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

/// How far the writer has made records durable, shared with the waiters.
#[derive(Debug, Default)]
pub(crate) struct DurableState {
    inner: Mutex<Inner>,
    cond: Condvar,
}

#[derive(Debug, Default)]
struct Inner {
    /// Records (counted in the order they were queued) durable so far.
    durable: u64,
    /// The last write failed (records wait in memory and are retried):
    /// every waiter whose record is not durable is answered with it.
    failure: Option<VerifierError>,
    wakers: Vec<Waker>,
}

// The writer (RocksDB's `AuditLog`) is the only producer of waiting
// states: without the `rocksdb` feature only ready ones exist.
#[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
impl DurableState {
    /// The writer made every record up to `durable` durable.
    pub(crate) fn advance(&self, durable: u64) {
        self.update(|i| {
            i.durable = i.durable.max(durable);
            i.failure = None;
        });
    }

    /// The writer could not write (or has stopped): waiters are answered
    /// with `e` until a write succeeds.
    pub(crate) fn fail(&self, e: VerifierError) {
        self.update(|i| i.failure = Some(e));
    }

    fn update(&self, f: impl FnOnce(&mut Inner)) {
        let wakers = match self.inner.lock() {
            Ok(mut i) => {
                f(&mut i);
                std::mem::take(&mut i.wakers)
            }
            Err(_) => return,
        };
        self.cond.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    /// `Some` once record `target` is durable (`Ok`) or the writer failed
    /// before it was (`Err`).
    fn outcome(inner: &Inner, target: u64) -> Option<Result<(), VerifierError>> {
        if inner.durable >= target {
            Some(Ok(()))
        } else {
            inner.failure.clone().map(Err)
        }
    }
}

/// Completes once every decision an [`super::AuditSink`] took before it
/// was asked for is durable (or with the error that kept it from being
/// so). `.await` it on an async thread, or [`AuditDurable::wait`] where
/// blocking is allowed. A server answers a request only after it resolves
/// `Ok`; an `Err` is answered 503, never as allowed.
#[must_use = "a decision is answered only once its record is durable"]
#[derive(Debug)]
pub struct AuditDurable(State);

#[derive(Debug)]
enum State {
    Ready(Option<Result<(), VerifierError>>),
    #[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
    Waiting {
        target: u64,
        state: Arc<DurableState>,
    },
}

impl AuditDurable {
    /// Already resolved with `result` (a sink that records synchronously,
    /// an asynchronous audit log, or a failed one).
    pub fn ready(result: Result<(), VerifierError>) -> AuditDurable {
        AuditDurable(State::Ready(Some(result)))
    }

    /// Resolves once record `target` (counted in queue order) is durable.
    #[cfg_attr(not(feature = "rocksdb"), allow(dead_code))]
    pub(crate) fn waiting(target: u64, state: Arc<DurableState>) -> AuditDurable {
        AuditDurable(State::Waiting { target, state })
    }

    /// Blocks the calling thread until the records are durable. Not on an
    /// async worker thread: `.await` instead.
    pub fn wait(self) -> Result<(), VerifierError> {
        match self.0 {
            State::Ready(r) => r.unwrap_or(Ok(())),
            State::Waiting { target, state } => {
                let Ok(mut inner) = state.inner.lock() else {
                    return Err(poisoned());
                };
                loop {
                    if let Some(r) = DurableState::outcome(&inner, target) {
                        return r;
                    }
                    inner = match state.cond.wait(inner) {
                        Ok(i) => i,
                        Err(_) => return Err(poisoned()),
                    };
                }
            }
        }
    }
}

impl Future for AuditDurable {
    type Output = Result<(), VerifierError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.0 {
            State::Ready(r) => Poll::Ready(r.take().unwrap_or(Ok(()))),
            State::Waiting { target, state } => {
                let Ok(mut inner) = state.inner.lock() else {
                    return Poll::Ready(Err(poisoned()));
                };
                if let Some(r) = DurableState::outcome(&inner, *target) {
                    return Poll::Ready(r);
                }
                if !inner.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    inner.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// A panic while the state was locked: nothing is known to be durable.
fn poisoned() -> VerifierError {
    VerifierError::Store {
        path: std::path::PathBuf::new(),
        detail: "the audit writer's state is unusable (a thread panicked)".into(),
    }
}

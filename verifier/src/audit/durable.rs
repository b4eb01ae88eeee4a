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
    /// Each waiting future's waker, with the record it waits for: a batch
    /// made durable wakes only the futures it completes (those waiting for
    /// the next batch stay asleep rather than be polled for nothing).
    wakers: Vec<(u64, Waker)>,
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

    /// Applies `f`, then wakes every waiter it resolved: all of them on a
    /// failure, else those whose record is now durable.
    fn update(&self, f: impl FnOnce(&mut Inner)) {
        let woken: Vec<Waker> = match self.inner.lock() {
            Ok(mut i) => {
                f(&mut i);
                if i.failure.is_some() {
                    std::mem::take(&mut i.wakers)
                        .into_iter()
                        .map(|(_, w)| w)
                        .collect()
                } else {
                    let durable = i.durable;
                    let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut i.wakers)
                        .into_iter()
                        .partition(|(target, _)| *target <= durable);
                    i.wakers = waiting;
                    done.into_iter().map(|(_, w)| w).collect()
                }
            }
            Err(_) => return,
        };
        self.cond.notify_all();
        for w in woken {
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
                let target = *target;
                if !inner
                    .wakers
                    .iter()
                    .any(|(t, w)| *t == target && w.will_wake(cx.waker()))
                {
                    inner.wakers.push((target, cx.waker().clone()));
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    /// Counts its wake-ups.
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn pending(fut: &mut AuditDurable, counter: &Arc<Counter>) -> bool {
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        Pin::new(fut).poll(&mut cx).is_pending()
    }

    /// A batch made durable wakes the decisions it holds and no others:
    /// those waiting for the next batch were woken (and polled for
    /// nothing) by every batch before theirs.
    #[test]
    fn a_batch_wakes_only_the_decisions_it_made_durable() {
        let state = Arc::new(DurableState::default());
        let (first, second) = (
            Arc::new(Counter(AtomicUsize::new(0))),
            Arc::new(Counter(AtomicUsize::new(0))),
        );
        let mut in_first = AuditDurable::waiting(3, state.clone());
        let mut in_second = AuditDurable::waiting(5, state.clone());
        assert!(pending(&mut in_first, &first));
        assert!(pending(&mut in_second, &second));
        state.advance(3);
        assert_eq!(first.0.load(Ordering::SeqCst), 1);
        assert_eq!(second.0.load(Ordering::SeqCst), 0, "woken for nothing");
        assert!(!pending(&mut in_first, &first));
        assert!(pending(&mut in_second, &second));
        state.advance(5);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
        assert!(!pending(&mut in_second, &second));
    }

    /// A failure wakes every waiter, whatever record it waits for, with
    /// the error.
    #[test]
    fn a_failure_wakes_every_waiter_with_the_error() {
        let state = Arc::new(DurableState::default());
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let mut a = AuditDurable::waiting(1, state.clone());
        let mut b = AuditDurable::waiting(9, state.clone());
        assert!(pending(&mut a, &counter));
        assert!(pending(&mut b, &counter));
        state.fail(VerifierError::Store {
            path: std::path::PathBuf::new(),
            detail: "disk full".into(),
        });
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        match Pin::new(&mut b).poll(&mut cx) {
            Poll::Ready(Err(e)) => assert!(e.to_string().contains("disk full"), "{e}"),
            other => panic!("expected the failure, got {other:?}"),
        }
    }
}

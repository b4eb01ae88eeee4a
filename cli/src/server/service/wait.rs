//! Agents that wait for a person: `GET /v1/approvals/{id}?wait=30s` answers
//! as soon as the request is decided, or after the wait with the request
//! still pending (SERVICE.md S3, long-poll).
//!
//! Each waiting request registers under the request's id; approving or
//! denying it here wakes the waiters of that id ([`Waiters::wake`]). In a
//! fleet (`mandate serve --nats`), a decision taken at another issuer
//! service reaches this one through a watch of the shared bucket's
//! `<id>.decided` keys ([`follow`]); the waiters also read the request again
//! every [`FLEET_RECHECK`] in case a watch missed it. A wake-up only makes
//! the waiter read the request again from the queue (a bucket entry is
//! verified there): nothing is believed from the wake-up itself.
//!
//! Bounded: at most [`MAX_WAITING`] requests wait at once (more: 503;
//! the gauge `mandate_approvals_waiting` counts them); no
//! lock is held across a wait; a waiter that is dropped (the client went
//! away) unregisters. At shutdown ([`Waiters::close`]) every waiter answers
//! at once with what it read, so the drain does not wait for them.

use super::approvals::{ApprovalRecord, ApprovalStatus};
use super::error::ApiError;
use crate::approval_bucket::ApprovalBucket;
use crate::ServiceError;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;

/// The longest wait a request may ask for.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(60);

/// The most requests waiting at once, by default.
pub(crate) const MAX_WAITING: usize = 1_000;

/// The share of the waiting places the requests of one token family (an
/// agent and everything delegated from it) may take: the long-poll needs no
/// token, only an id, so without it one agent waiting many times on its own
/// request could take every place and turn every other agent away.
pub(crate) const FAMILY_SHARE: usize = 4;

/// In a fleet, how often a waiter reads its request again besides being
/// woken (a decision the bucket watch missed while it reconnected).
pub(crate) const FLEET_RECHECK: Duration = Duration::from_secs(10);

/// The gauge of requests waiting for a decision now.
pub(crate) const WAITING: &str = "mandate_approvals_waiting";

/// The waiters of this service, by request id.
pub(crate) struct Waiters {
    by_id: Mutex<HashMap<String, Arc<Notify>>>,
    /// Waiters now, by the token family of the request they wait for.
    families: Mutex<HashMap<String, usize>>,
    slots: Arc<Semaphore>,
    max: usize,
    closed: watch::Sender<bool>,
    /// Set in a fleet: [`FLEET_RECHECK`].
    recheck: Mutex<Option<Duration>>,
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiters")
            .field("max", &self.max)
            .field("free", &self.slots.available_permits())
            .finish()
    }
}

impl Waiters {
    /// Waiters, at most `max` at once.
    pub(crate) fn new(max: usize) -> Waiters {
        Waiters {
            by_id: Mutex::new(HashMap::new()),
            families: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(max)),
            max,
            closed: watch::Sender::new(false),
            recheck: Mutex::new(None),
        }
    }

    /// Wakes the waiters of request `id` (it was just decided).
    pub(crate) fn wake(&self, id: &str) {
        let notify = self.lock().get(id).cloned();
        if let Some(n) = notify {
            n.notify_waiters();
        }
    }

    /// Wakes every waiter (each reads its request again).
    pub(crate) fn wake_all(&self) {
        let all: Vec<Arc<Notify>> = self.lock().values().cloned().collect();
        for n in all {
            n.notify_waiters();
        }
    }

    /// Every waiter answers now, and later ones do not wait (shutdown).
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.by_id.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads request `id` with `read`; while it is pending, waits up to
    /// `wait` for it to be decided, then answers what the last read found.
    pub(crate) async fn until_decided<F, Fut>(
        &self,
        id: &str,
        wait: Duration,
        read: F,
    ) -> Result<Option<ApprovalRecord>, ApiError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<ApprovalRecord>, ServiceError>>,
    {
        let deadline = Instant::now() + wait;
        let first = read().await.map_err(super::approvals::api)?;
        if !is_pending(&first) || *self.closed.borrow() {
            return Ok(first);
        }
        let Ok(_slot) = self.slots.clone().try_acquire_owned() else {
            return Err(ApiError::UnavailableBecause(format!(
                "{} requests are already waiting for a decision: retry without wait, or later",
                self.max
            )));
        };
        // The token family of the request (the root token id of the chain
        // it came through): its waiters together take at most their share.
        let family = first
            .as_ref()
            .and_then(|r| r.chain["token_id"].as_str())
            .unwrap_or_default()
            .to_string();
        let Some(_share) = FamilyWait::take(self, &family) else {
            return Err(ApiError::UnavailableBecause(format!(
                "{} requests of this token family are already waiting for a decision: retry \
                 without wait, or later",
                self.family_max()
            )));
        };
        let entry = Registered::new(self, id);
        let recheck = *self.recheck.lock().unwrap_or_else(|p| p.into_inner());
        let mut closed = self.closed.subscribe();
        loop {
            // Registered before the read: a decision right after it wakes us.
            let notified = entry.notify.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            let now = read().await.map_err(super::approvals::api)?;
            if !is_pending(&now) || *closed.borrow() || Instant::now() >= deadline {
                return Ok(now);
            }
            let until = match recheck {
                Some(every) => deadline.min(Instant::now() + every),
                None => deadline,
            };
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(until) => {}
                _ = closed.wait_for(|c| *c) => {}
            }
        }
    }
}

impl Waiters {
    /// The most waiters the requests of one token family may have.
    fn family_max(&self) -> usize {
        (self.max / FAMILY_SHARE).max(1)
    }
}

/// One waiter counted in its token family's share; given back when dropped.
struct FamilyWait<'a> {
    waiters: &'a Waiters,
    family: String,
}

impl<'a> FamilyWait<'a> {
    fn take(waiters: &'a Waiters, family: &str) -> Option<FamilyWait<'a>> {
        let mut families = waiters.families.lock().unwrap_or_else(|p| p.into_inner());
        let n = families.entry(family.to_string()).or_insert(0);
        if *n >= waiters.family_max() {
            return None;
        }
        *n += 1;
        Some(FamilyWait {
            waiters,
            family: family.to_string(),
        })
    }
}

impl Drop for FamilyWait<'_> {
    fn drop(&mut self) {
        let mut families = self
            .waiters
            .families
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = families.get_mut(&self.family) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                families.remove(&self.family);
            }
        }
    }
}

fn is_pending(r: &Option<ApprovalRecord>) -> bool {
    r.as_ref()
        .is_some_and(|r| r.status == ApprovalStatus::Pending)
}

/// A waiter's registration under its request id; unregistered when the
/// last waiter of that id is dropped.
struct Registered<'a> {
    waiters: &'a Waiters,
    id: String,
    notify: Arc<Notify>,
}

impl<'a> Registered<'a> {
    fn new(waiters: &'a Waiters, id: &str) -> Registered<'a> {
        let notify = waiters
            .lock()
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        metrics::gauge!(WAITING).increment(1.0);
        Registered {
            waiters,
            id: id.to_string(),
            notify,
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        metrics::gauge!(WAITING).decrement(1.0);
        let mut map = self.waiters.lock();
        // Ours and the map's: no other waiter of this id.
        if Arc::strong_count(&self.notify) <= 2 {
            map.remove(&self.id);
        }
    }
}

/// Parses `?wait=`: a duration (`30s`, `1m`) or whole seconds (`30`), at
/// most [`MAX_WAIT`]; `0`/`0s` does not wait.
pub(crate) fn parse_wait(text: &str) -> Result<Duration, ApiError> {
    let t = text.trim();
    let bad = |why: &str| ApiError::BadRequest(format!("wait: {why}"));
    let d = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(t.parse().map_err(|_| bad("too long: at most 60s"))?)
    } else if t == "0s" {
        Duration::ZERO
    } else {
        mandate_spec::parse_duration(t).map_err(|e| bad(&e.to_string()))?
    };
    if d > MAX_WAIT {
        return Err(bad("at most 60s"));
    }
    Ok(d)
}

/// Follows the decisions written to the shared `bucket` (at any issuer
/// service of the fleet) and wakes this service's waiters of each; the
/// waiters also read their request again every [`FLEET_RECHECK`]. The
/// watch is made again (after a second) when it ends or fails, and every
/// waiter is woken then: a decision made meanwhile is read. Ends when
/// `waiters` is dropped.
pub(crate) fn follow(bucket: Arc<ApprovalBucket>, waiters: &Arc<Waiters>) {
    *waiters.recheck.lock().unwrap_or_else(|p| p.into_inner()) = Some(FLEET_RECHECK);
    let waiters: Weak<Waiters> = Arc::downgrade(waiters);
    tokio::spawn(async move {
        loop {
            match bucket.watch_decisions().await {
                Ok(decided) => {
                    let mut decided = std::pin::pin!(decided);
                    match waiters.upgrade() {
                        Some(w) => w.wake_all(),
                        None => return,
                    }
                    while let Some(id) = decided.next().await {
                        match waiters.upgrade() {
                            Some(w) => w.wake(&id),
                            None => return,
                        }
                    }
                    tracing::warn!("the watch of approval decisions ended: watching again");
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "cannot watch approval decisions (waiting agents are answered within 10 s \
                     of a decision elsewhere): retrying"
                ),
            }
            if waiters.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wait_values() {
        assert_eq!(parse_wait("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_wait("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_wait("45").unwrap(), Duration::from_secs(45));
        assert_eq!(parse_wait("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_wait("0s").unwrap(), Duration::ZERO);
        for bad in [
            "",
            "61s",
            "2m",
            "1h",
            "-1",
            "abc",
            "10ms",
            "1.5s",
            "99999999999999999999999",
        ] {
            assert!(parse_wait(bad).is_err(), "{bad:?}");
        }
    }
}

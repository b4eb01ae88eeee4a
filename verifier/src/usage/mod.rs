//! Usage limits (SPEC §18): the counters behind `limit(…)` and `budget(…)`.
//!
//! Every limit on the path from the root to the acting hop is charged for an
//! allowed request, all or nothing: [`UsageMeter::charge`] either finds room
//! in every counter and adds to all of them in one atomic step, or changes
//! nothing and names the first limit without room. A request denied for any
//! other reason is never charged; one whose approval cannot be spent after
//! the charge is refunded ([`UsageMeter::refund`]).
//!
//! Windows are fixed and aligned on the Unix epoch (SPEC §18.3): a counter
//! holds the index of its window and the units used in it; a charge in a
//! later window starts the count again; a charge dated in an *earlier*
//! window than the counter's (another verifier's clock ran ahead) counts in
//! the counter's window, so clocks never reopen a spent window.
//!
//! Implementations: the embedded store (RocksDB, feature `rocksdb`) and, for a fleet, a JetStream key-value bucket with
//! compare-and-set (feature `feed`).

use crate::error::VerifierError;
use mandate_spec::{Chain, Limit, Metered, Request};

#[cfg(feature = "feed")]
pub mod bucket;
#[cfg(feature = "feed")]
mod lease;

#[cfg(feature = "rocksdb")]
mod store;
#[cfg(feature = "rocksdb")]
pub use store::{UsageOptions, UsageStore, PRUNE_GRACE_SECS};

/// One charge against one limit's counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The counter's name ([`Limit::counter_key`]: hop block and limit).
    pub key: String,
    /// Units this request costs (1 for a count; the parameter for a budget).
    pub units: u64,
    /// The limit's maximum per window.
    pub max: u64,
    /// The window's length, seconds.
    pub window_secs: u64,
}

impl Charge {
    /// The window (index, end in Unix seconds) that `unix` falls in.
    pub fn window_of(&self, unix: i64) -> (i64, i64) {
        let w = self.window_secs.max(1) as i64;
        let index = unix.div_euclid(w);
        (index, index.saturating_add(1).saturating_mul(w))
    }
}

/// The outcome of [`UsageMeter::charge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charged {
    /// Every counter had room and was charged.
    Spent,
    /// `charges[index]` had no room: nothing was charged.
    Exceeded {
        /// Which charge.
        index: usize,
        /// Units used in its current window.
        used: u64,
        /// When that window ends (Unix seconds): the counter frees up then.
        window_end: i64,
    },
}

/// A counter's state: its window's index and the units used in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counter {
    /// The window index ([`Charge::window_of`]).
    pub window: i64,
    /// Units used in that window.
    pub used: u64,
}

impl Counter {
    /// The units used as seen at `unix`: 0 when the counter's window is
    /// over, else what it holds.
    pub fn used_at(&self, charge: &Charge, unix: i64) -> u64 {
        if charge.window_of(unix).0 > self.window {
            0
        } else {
            self.used
        }
    }

    /// This counter after charging `charge` at `unix`, or `None` when it has
    /// no room. A later window starts from zero; an earlier one counts in
    /// the counter's own window (never reopens it).
    pub fn charged(&self, charge: &Charge, unix: i64) -> Option<Counter> {
        let (window, _) = charge.window_of(unix);
        let base = if window > self.window {
            Counter { window, used: 0 }
        } else {
            *self
        };
        let used = base.used.checked_add(charge.units)?;
        (used <= charge.max).then_some(Counter {
            window: base.window,
            used,
        })
    }

    /// This counter after giving back `charge` (a refund): only while the
    /// counter is still in the window of `unix`, never below zero. A
    /// counter that moved on to a later window (another request started
    /// it) keeps its units: they were not charged there. A charge dated in
    /// an earlier window than the counter's may have been counted in
    /// either; it is not given back (less allowance, never more).
    pub fn refunded(&self, charge: &Charge, unix: i64) -> Counter {
        if charge.window_of(unix).0 != self.window {
            return *self;
        }
        Counter {
            window: self.window,
            used: self.used.saturating_sub(charge.units),
        }
    }

    /// When the window this counter is in ends (Unix seconds).
    pub fn window_end(&self, charge: &Charge) -> i64 {
        self.window
            .saturating_add(1)
            .saturating_mul(charge.window_secs.max(1) as i64)
    }
}

/// Where usage is counted. Implementations MUST make `charge` atomic across
/// every caller that shares the counters (threads, processes, verifiers):
/// no interleaving may let the units charged in a window exceed `max`.
pub trait UsageMeter: Send + Sync {
    /// Charges every counter or none (see [`Charged`]); `unix` is the
    /// request's time.
    fn charge(&self, charges: &[Charge], unix: i64) -> Result<Charged, VerifierError>;

    /// Gives back a charge made for a request that was then denied for
    /// another reason. Best effort: a refund that fails leaves the units
    /// spent (never more allowance than there was).
    fn refund(&self, charges: &[Charge], unix: i64) -> Result<(), VerifierError>;

    /// The units used in `charge`'s counter in the window of `unix`.
    fn used(&self, charge: &Charge, unix: i64) -> Result<u64, VerifierError>;

    /// Whether a charge may wait on the network: servers then never decide
    /// requests of tokens with limits on their async threads. Default: no.
    fn remote(&self) -> bool {
        false
    }
}

/// One limit of the chain and the hop that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLimit {
    /// The hop number (0 = root).
    pub hop: usize,
    /// That hop's agent.
    pub agent: String,
    /// That hop's block index.
    pub block: usize,
    /// The limit.
    pub limit: Limit,
    /// Its counter's name.
    pub key: String,
    /// The live restriction that sets it (SPEC §19), when a restriction
    /// rather than the hop's block does.
    pub restriction: Option<String>,
}

/// Every limit of `chain`, root first, with its counter's name.
pub fn chain_limits(chain: &Chain) -> Vec<ChainLimit> {
    chain
        .hops
        .iter()
        .flat_map(|h| {
            h.grant.limits.iter().map(|l| ChainLimit {
                hop: h.hop,
                agent: h.agent.clone(),
                block: h.block,
                key: l.counter_key(&h.revocation_id),
                limit: l.clone(),
                restriction: None,
            })
        })
        .collect()
}

/// What `request` costs against each limit of `limits` that meters it:
/// the charges (with the index into `limits` of each), or the first limit
/// that cannot meter it (a budget whose parameter is missing, not an
/// integer, or negative) and why.
#[allow(clippy::type_complexity)]
pub fn charges_for(
    limits: &[ChainLimit],
    request: &Request,
) -> Result<Vec<(usize, Charge)>, (usize, String)> {
    let mut out = Vec::new();
    for (i, l) in limits.iter().enumerate() {
        match l.limit.meter(request) {
            Metered::Not => {}
            Metered::Units(units) => out.push((
                i,
                Charge {
                    key: l.key.clone(),
                    units,
                    max: l.limit.max,
                    window_secs: l.limit.window_secs,
                },
            )),
            Metered::Unmeterable(why) => return Err((i, why)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn charge(units: u64, max: u64) -> Charge {
        Charge {
            key: "k".into(),
            units,
            max,
            window_secs: 3600,
        }
    }

    #[test]
    fn counters_charge_within_a_window_and_restart_in_the_next() {
        let c = charge(4, 10);
        let x = Counter::default().charged(&c, 100).unwrap();
        assert_eq!(x, Counter { window: 0, used: 4 });
        let x = x.charged(&c, 200).unwrap().charged(&c, 300);
        assert_eq!(x, None, "12 > 10");
        let x = Counter { window: 0, used: 8 };
        assert_eq!(x.charged(&c, 3600).unwrap(), Counter { window: 1, used: 4 });
        assert_eq!(x.used_at(&c, 3600), 0);
        assert_eq!(x.window_end(&c), 3600);
    }

    #[test]
    fn an_earlier_clock_never_reopens_a_spent_window() {
        let c = charge(1, 1);
        let x = Counter { window: 5, used: 1 };
        assert_eq!(x.charged(&c, 3600), None, "window 1 < 5 counts in 5");
        assert_eq!(x.refunded(&c, 5 * 3600), Counter { window: 5, used: 0 });
        assert_eq!(
            x.refunded(&c, 3600),
            x,
            "an earlier-dated charge is not given back"
        );
        assert_eq!(x.refunded(&c, 6 * 3600), x, "no refund into a later window");
    }

    /// A refund for a charge made in window 0, arriving after another
    /// request moved the counter to window 1, would give back units window
    /// 1 never held: one more request there than the limit allows.
    #[test]
    fn a_refund_never_reaches_a_window_the_charge_was_not_in() {
        let c = charge(1, 1);
        let spent = Counter::default().charged(&c, 10).unwrap();
        let moved_on = spent.charged(&c, 3600).unwrap();
        assert_eq!(moved_on, Counter { window: 1, used: 1 });
        assert_eq!(moved_on.refunded(&c, 10), moved_on, "the window-0 refund");
        assert_eq!(moved_on.charged(&c, 3601), None);
    }

    #[test]
    fn overflowing_units_never_wrap_into_room() {
        let c = charge(u64::MAX, u64::MAX);
        let x = Counter { window: 0, used: 1 };
        assert_eq!(x.charged(&c, 0), None);
    }
}

//! Leased local quotas (SPEC §18.5, fleet, leased): the slices of counters'
//! allowance this verifier reserved in the fleet's bucket and spends
//! locally, under one mutex, without a network round trip.
//!
//! The bucket counts a reserved slice as used, so the units a verifier can
//! spend locally are units no other verifier can: overspend stays zero.
//! A lease belongs to one window of its counter (the counter's window when
//! it was reserved); a request dated in that window or an earlier one
//! spends from it (as [`Counter::charged`](super::Counter::charged) counts
//! an earlier-dated charge in the counter's window); a request in a later
//! window finds it over (nothing to give back: the window's allowance is
//! gone with it).

use super::Charge;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One counter's slice held here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lease {
    /// The counter's window the slice was reserved in.
    window: i64,
    /// When that window ends (Unix seconds).
    window_end: i64,
    /// Units reserved in the bucket for this verifier.
    granted: u64,
    /// Units of them spent by allowed requests.
    spent: u64,
    /// The last spend (or reservation).
    last_used: Instant,
}

impl Lease {
    fn left(&self) -> u64 {
        self.granted.saturating_sub(self.spent)
    }
}

/// Units leased and not spent, to give back to the bucket: the counter,
/// its window, how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unspent {
    pub(crate) key: String,
    pub(crate) window: i64,
    pub(crate) window_end: i64,
    pub(crate) units: u64,
}

/// The leases this verifier holds, one per counter at most.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<String, Lease>>,
}

/// What `charges` cost per counter (a counter named twice costs the sum),
/// with the index of its first charge; `None` when a sum overflows.
fn needs(charges: &[Charge]) -> Option<Vec<(usize, u64)>> {
    let mut out: Vec<(usize, u64)> = Vec::with_capacity(charges.len());
    for (i, c) in charges.iter().enumerate() {
        match out.iter_mut().find(|(j, _)| charges[*j].key == c.key) {
            Some((_, units)) => *units = units.checked_add(c.units)?,
            None => out.push((i, c.units)),
        }
    }
    Some(out)
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lease>> {
        // A panic while holding the lock left whole numbers behind: the
        // table is still consistent (every update is one assignment).
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The fast path: spends `charges` (a request dated `unix`) from the
    /// leases if every counter's lease has room, all or nothing. False:
    /// nothing spent, some lease is missing, over or short. A counter the
    /// request costs nothing (a budget's parameter 0) needs no lease:
    /// [`Leases::lacking`] never asks for one, so requiring it would fail
    /// every round.
    pub(crate) fn spend(&self, charges: &[Charge], unix: i64) -> bool {
        let Some(needs) = needs(charges) else {
            return false;
        };
        let mut held = self.lock();
        let usable = |i: usize, units: u64, held: &HashMap<String, Lease>| {
            let c = &charges[i];
            units == 0
                || held
                    .get(&c.key)
                    .is_some_and(|l| c.window_of(unix).0 <= l.window && l.left() >= units)
        };
        if !needs.iter().all(|&(i, units)| usable(i, units, &held)) {
            return false;
        }
        let now = Instant::now();
        for &(i, units) in &needs {
            if let Some(l) = held.get_mut(&charges[i].key) {
                l.spent += units;
                l.last_used = now;
            }
        }
        true
    }

    /// The counters whose lease cannot pay for `charges` now: the index of
    /// the charge and the units missing (all it costs when there is no
    /// usable lease). `None` when a request's cost overflows.
    pub(crate) fn lacking(&self, charges: &[Charge], unix: i64) -> Option<Vec<(usize, u64)>> {
        let needs = needs(charges)?;
        let held = self.lock();
        Some(
            needs
                .into_iter()
                .filter_map(|(i, units)| {
                    let c = &charges[i];
                    let left = held
                        .get(&c.key)
                        .filter(|l| c.window_of(unix).0 <= l.window)
                        .map_or(0, Lease::left);
                    (left < units).then(|| (i, units - left))
                })
                .collect(),
        )
    }

    /// Adds `units` reserved in the bucket in `window` (ending at
    /// `window_end`) to the counter's lease. A lease in an earlier window is
    /// replaced (that window is over in the bucket: nothing to give back);
    /// units reserved in an earlier window than the lease's are dropped
    /// (the lease's is the counter's current one) and returned as the
    /// stranded count.
    pub(crate) fn add(&self, key: &str, window: i64, window_end: i64, units: u64) -> u64 {
        let mut held = self.lock();
        let now = Instant::now();
        match held.get_mut(key) {
            Some(l) if l.window == window => {
                l.granted = l.granted.saturating_add(units);
                l.last_used = now;
                0
            }
            Some(l) if l.window > window => units,
            _ => {
                held.insert(
                    key.to_string(),
                    Lease {
                        window,
                        window_end,
                        granted: units,
                        spent: 0,
                        last_used: now,
                    },
                );
                0
            }
        }
    }

    /// Puts back units that could not be given back to the bucket (NATS
    /// unreachable), so this verifier may still spend them and a later
    /// round gives them back; kept idle since `last_used`.
    pub(crate) fn restore(&self, u: &Unspent, last_used: Instant) {
        let mut held = self.lock();
        match held.get_mut(&u.key) {
            Some(l) if l.window == u.window => l.granted = l.granted.saturating_add(u.units),
            Some(l) if l.window > u.window => {}
            _ => {
                held.insert(
                    u.key.clone(),
                    Lease {
                        window: u.window,
                        window_end: u.window_end,
                        granted: u.units,
                        spent: 0,
                        last_used,
                    },
                );
            }
        }
    }

    /// Gives back to the leases what `charges` (a request dated `unix`)
    /// spent, where the lease is still of the request's window: a charge
    /// counted in a later lease's window (an earlier-dated request) is not
    /// given back (less allowance, never more).
    pub(crate) fn refund(&self, charges: &[Charge], unix: i64) {
        let mut held = self.lock();
        for c in charges {
            if let Some(l) = held.get_mut(&c.key) {
                if l.window == c.window_of(unix).0 {
                    l.spent = l.spent.saturating_sub(c.units);
                }
            }
        }
    }

    /// Ends leases and returns what is to be given back: every lease when
    /// `all`, else those whose window ended by `now_unix` or unused for
    /// `idle`. A lease whose window ended gives nothing back.
    pub(crate) fn end(&self, now_unix: i64, idle: Duration, all: bool) -> Vec<Unspent> {
        let mut held = self.lock();
        let mut out = Vec::new();
        held.retain(|key, l| {
            let over = now_unix >= l.window_end;
            let ends = all || over || l.last_used.elapsed() >= idle;
            if ends && !over && l.left() > 0 {
                out.push(Unspent {
                    key: key.clone(),
                    window: l.window,
                    window_end: l.window_end,
                    units: l.left(),
                });
            }
            !ends
        });
        out
    }

    /// Units held here and not spent, in windows not over by `now_unix`:
    /// allowance no other verifier can use until the leases end.
    pub(crate) fn unspent(&self, now_unix: i64) -> u64 {
        self.lock()
            .values()
            .filter(|l| now_unix < l.window_end)
            .map(Lease::left)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn charge(key: &str, units: u64) -> Charge {
        Charge {
            key: key.into(),
            units,
            max: 100,
            window_secs: 3600,
        }
    }

    #[test]
    fn spends_all_or_nothing_from_the_leases() {
        let l = Leases::default();
        l.add("a", 0, 3600, 5);
        l.add("b", 0, 3600, 1);
        let both = [charge("a", 1), charge("b", 1)];
        assert!(l.spend(&both, 10));
        assert!(!l.spend(&both, 10), "b has nothing left");
        assert_eq!(l.lacking(&both, 10).unwrap(), vec![(1, 1)]);
        assert_eq!(l.unspent(10), 4, "a was not charged by the refused spend");
        assert!(!l.spend(&[charge("a", 5)], 10), "4 left");
        assert!(l.spend(&[charge("a", 4)], 10));
    }

    /// A budget request of amount 0 in leased mode was denied
    /// `limit_unavailable` ("the leases were spent … as fast as they were
    /// reserved"): `lacking` asked for no lease for a zero cost, and
    /// `spend` required one.
    #[test]
    fn a_charge_costing_nothing_needs_no_lease() {
        let l = Leases::default();
        let zero = [charge("a", 0)];
        assert_eq!(l.lacking(&zero, 10).unwrap(), vec![]);
        assert!(l.spend(&zero, 10));
        l.add("b", 0, 3600, 1);
        assert!(l.spend(&[charge("a", 0), charge("b", 1)], 10));
        assert!(
            !l.spend(&[charge("a", 0), charge("b", 1)], 10),
            "b is spent"
        );
        assert_eq!(l.unspent(10), 0);
    }

    #[test]
    fn a_counter_named_twice_costs_the_sum() {
        let l = Leases::default();
        l.add("a", 0, 3600, 3);
        assert!(!l.spend(&[charge("a", 2), charge("a", 2)], 10));
        assert_eq!(
            l.lacking(&[charge("a", 2), charge("a", 2)], 10).unwrap(),
            vec![(0, 1)]
        );
        assert!(l.spend(&[charge("a", 2), charge("a", 1)], 10));
        assert_eq!(l.unspent(10), 0);
    }

    #[test]
    fn a_later_window_finds_the_lease_over_and_an_earlier_one_spends_from_it() {
        let l = Leases::default();
        l.add("a", 1, 7200, 2);
        assert!(l.spend(&[charge("a", 1)], 10), "window 0 counts in 1");
        assert!(!l.spend(&[charge("a", 1)], 7200), "window 2: over");
        assert_eq!(l.lacking(&[charge("a", 1)], 7200).unwrap(), vec![(0, 1)]);
        // A reservation in window 2 replaces it; one in window 0 is dropped.
        assert_eq!(l.add("a", 2, 10_800, 3), 0);
        assert_eq!(l.add("a", 0, 3600, 7), 7);
        assert_eq!(l.unspent(7200), 3);
    }

    #[test]
    fn refunds_only_into_the_requests_window() {
        let l = Leases::default();
        l.add("a", 1, 7200, 2);
        assert!(l.spend(&[charge("a", 1)], 3600));
        assert!(l.spend(&[charge("a", 1)], 10), "dated in window 0");
        l.refund(&[charge("a", 1)], 10);
        assert_eq!(
            l.unspent(3600),
            0,
            "an earlier-dated charge is not given back"
        );
        l.refund(&[charge("a", 1)], 3600);
        assert_eq!(l.unspent(3600), 1);
        l.refund(&[charge("a", 5)], 3600);
        assert_eq!(l.unspent(3600), 2, "never more than was spent");
    }

    #[test]
    fn ending_gives_back_what_is_left_unless_the_window_is_over() {
        let l = Leases::default();
        l.add("a", 0, 3600, 5);
        l.add("b", 0, 3600, 5);
        assert!(l.spend(&[charge("a", 2)], 10));
        assert!(
            l.end(10, Duration::from_secs(60), false).is_empty(),
            "in use"
        );
        let back = l.end(10, Duration::from_secs(60), true);
        assert_eq!(back.len(), 2);
        assert!(back.contains(&Unspent {
            key: "a".into(),
            window: 0,
            window_end: 3600,
            units: 3
        }));
        assert_eq!(l.unspent(10), 0);
        l.add("c", 0, 3600, 5);
        assert!(l.end(3600, Duration::from_secs(60), false).is_empty());
        assert_eq!(l.unspent(0), 0, "the lease ended with its window");
        l.add("d", 0, 3600, 5);
        let back = l.end(10, Duration::ZERO, false);
        assert_eq!(back.len(), 1, "idle");
        l.restore(&back[0], Instant::now());
        assert_eq!(l.unspent(10), 5, "restored when it could not be given back");
    }
}

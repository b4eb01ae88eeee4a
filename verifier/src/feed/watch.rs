//! The staleness watch: the feed's metrics, and a log line when the list
//! goes stale and when it recovers.

use super::FeedList;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Every second while the feed runs: the staleness metrics, and a log line
/// when the list goes stale (requests are denied from then on) and when it
/// recovers, so an outage is never silent.
pub(super) async fn watch(list: FeedList) {
    let mut stale_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !list.state.stopped.load(Ordering::Relaxed) {
        tick.tick().await;
        let why = list.stale_because();
        metrics::gauge!(crate::metrics::FEED_STALE).set(if why.is_some() { 1.0 } else { 0.0 });
        metrics::gauge!(crate::metrics::FEED_POSITION).set(list.state.applied_seq() as f64);
        if let Some(silent) = list.state.silent_for() {
            metrics::gauge!(crate::metrics::FEED_SILENT).set(silent.as_secs_f64());
        }
        if let Some(behind) = list.state.behind_for() {
            metrics::gauge!(crate::metrics::FEED_BEHIND).set(behind.as_secs_f64());
        }
        match (why, stale_since) {
            (Some(why), None) => {
                stale_since = Some(Instant::now());
                if list.fail_open {
                    tracing::warn!(
                        why = %why,
                        "INSECURE: revocation feed stale; still allowing \
                         (--insecure-fail-open-when-stale)"
                    );
                } else {
                    tracing::warn!(why = %why, "revocation feed stale: denying every request");
                }
            }
            (None, Some(since)) => {
                stale_since = None;
                tracing::info!(
                    stale_for_s = since.elapsed().as_secs_f64(),
                    position = list.state.applied_seq(),
                    "revocation feed caught up: deciding again"
                );
            }
            _ => {}
        }
    }
}

//! The consumer side of the feed: follows the stream from the entry after
//! the last one applied, writing each entry to the local store with its
//! sequence (one write batch), and stops at anything that would let it miss
//! a revocation while looking current (the feed is then stuck). A message
//! that is not an entry signed by a trusted revocation key is skipped (the
//! position moves past it), counted and logged; it never stops the feed.

use super::signed::FeedEntry;
use super::{nats_err, stream_handle, FeedConfig, FeedError, FeedState};
use crate::revocation::RevocationStore;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// The consumer task: consumes the feed until stopped. An interruption is
/// retried with a growing backoff; a stuck feed is marked so (the list
/// denies every request) and tried again every 2 s.
pub(super) async fn follow(store: Arc<RevocationStore>, cfg: FeedConfig, state: Arc<FeedState>) {
    let mut backoff = Duration::from_millis(100);
    while !state.stopped.load(Ordering::Relaxed) {
        match consume(&store, &cfg, &state).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) if e.is_stuck() => {
                metrics::counter!(crate::metrics::FEED_INTERRUPTIONS).increment(1);
                tracing::error!(
                    error = %e,
                    "revocation feed stuck: denying every request until an operator \
                     sets where to resume (mandate revocations --set-feed-position)"
                );
                state.set_stuck(Some(e.to_string()));
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => {
                metrics::counter!(crate::metrics::FEED_INTERRUPTIONS).increment(1);
                tracing::warn!(error = %e, "revocation feed interrupted; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// One connection: checks that the stream can be followed from this
/// verifier's position, then pulls and applies entries until stopped or
/// until something fails.
async fn consume(
    store: &RevocationStore,
    cfg: &FeedConfig,
    state: &FeedState,
) -> Result<(), FeedError> {
    let client = cfg.connect().await?;
    let js = jetstream::new(client);
    let mut stream = stream_handle(&js, cfg).await?;
    let position = store.feed_position()?;
    let info = stream.info().await.map_err(|e| nats_err(&cfg.url, e))?;
    check_stream(store, info, position)?;
    let consumer = pull_consumer(&stream, cfg, position).await?;
    let mut marks = Marks::default();
    loop {
        if state.stopped.load(Ordering::Relaxed) {
            return Ok(());
        }
        pull(&stream, &consumer, store, cfg, state, &mut marks).await?;
        // The pull ended normally: the server answered and everything it
        // gave was applied.
        state.set_stuck(None);
        state.heard();
    }
}

/// What the server said the stream held, and when: `(sequence, at)` means
/// every entry published before `at` (ms on [`FeedState`]'s clock) has a
/// sequence of at most `sequence` (the stream's last sequence, asked for
/// after `at`). Once the verifier has applied up to `sequence`, it is
/// current as of `at` (specification §9.3, staleness). Only the monotonic
/// clock is used: never the server's. Never a message's sequence plus its
/// pending count: messages removed from the stream are not pending, so a
/// revocation deleted before this verifier read it would have let it look
/// current without it.
#[derive(Debug, Default)]
struct Marks(std::collections::VecDeque<(u64, u64)>);

impl Marks {
    /// The stream's last sequence was `sequence` after `at`.
    fn seen(&mut self, sequence: u64, at: u64) {
        match self.0.back_mut() {
            // The later mark says as much, with a later or equal time.
            Some(last) if last.0 >= sequence => last.1 = last.1.max(at),
            _ => self.0.push_back((sequence, at)),
        }
    }

    /// Moves the state's "current as of" past every mark `applied` reaches.
    fn reached(&mut self, applied: u64, state: &FeedState) {
        while let Some(&(sequence, at)) = self.0.front() {
            if sequence > applied {
                break;
            }
            state.current_as_of(at);
            self.0.pop_front();
        }
    }
}

/// Whether the stream's sequence numbers still mean what `position` says:
/// it is the stream the position counts in (recorded on first contact), it
/// does not end before the position, and nothing after the position is gone
/// from it.
fn check_stream(
    store: &RevocationStore,
    info: &stream::Info,
    position: u64,
) -> Result<(), FeedError> {
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let identity = format!(
        "{} created {}",
        info.config.name,
        info.created.unix_timestamp_nanos()
    );
    match store.feed_stream()? {
        Some(known) if known != identity => {
            return Err(FeedError::Reset {
                detail: format!(
                    "this verifier's position {position} counts in stream {known:?}, \
                     the server now has {identity:?}"
                ),
            })
        }
        Some(_) => {}
        None => store.set_feed_stream(&identity)?,
    }
    if last < position {
        return Err(FeedError::Reset {
            detail: format!(
                "this verifier applied up to sequence {position} but the stream ends at {last}"
            ),
        });
    }
    if last > position && first > position + 1 {
        return Err(FeedError::Gap {
            expected: position + 1,
            found: first,
        });
    }
    Ok(())
}

/// A pull consumer delivering from the entry after `position`, nothing
/// acknowledged: the position kept in the store is what counts.
async fn pull_consumer(
    stream: &stream::Stream,
    cfg: &FeedConfig,
    position: u64,
) -> Result<consumer::PullConsumer, FeedError> {
    stream
        .create_consumer(consumer::pull::Config {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: position + 1,
            },
            ack_policy: consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .map_err(|e| nats_err(&cfg.url, e))
}

/// One pull: up to 1000 entries (4 MiB), waiting up to `cfg.poll` for them,
/// each applied in turn. The positions of rejected messages are written
/// together (with the next entry applied, or once at the end of the pull):
/// a flood of junk costs one write per pull, not one per message.
async fn pull(
    stream: &stream::Stream,
    consumer: &consumer::PullConsumer,
    store: &RevocationStore,
    cfg: &FeedConfig,
    state: &FeedState,
    marks: &mut Marks,
) -> Result<(), FeedError> {
    let asked = state.now_ms();
    // Every entry published before `asked` has a sequence up to the
    // stream's last one now (removed entries included).
    let last = stream
        .get_info()
        .await
        .map_err(|e| nats_err(&cfg.url, e))?
        .state
        .last_sequence;
    marks.seen(last, asked);
    marks.reached(state.applied_seq(), state);
    let mut batch = consumer
        .fetch()
        .max_messages(1000)
        .max_bytes(super::MAX_FETCH_BYTES)
        .expires(cfg.poll)
        .messages()
        .await
        .map_err(|e| nats_err(&cfg.url, e))?;
    let mut skipped = Skipped::default();
    let mut delivered = 0usize;
    let result: Result<(), FeedError> = async {
        while let Some(msg) = batch.next().await {
            let msg = msg.map_err(|e| nats_err(&cfg.url, e))?;
            delivered += 1;
            let info = msg.info().map_err(|e| nats_err(&cfg.url, e))?;
            apply(&msg, &info, store, cfg, state, &mut skipped)?;
            marks.reached(state.applied_seq(), state);
        }
        Ok(())
    }
    .await;
    // Rejected messages at the end of the pull: their position, once.
    if let Some(seq) = skipped.position {
        store.apply_feed(&[], seq)?;
    }
    if skipped.unlogged > 0 {
        tracing::warn!(
            rejected = skipped.unlogged,
            position = state.applied_seq(),
            "more revocation feed messages rejected in this pull than are logged one by one \
             (each counted in mandate_feed_entries_rejected_total): not applied, skipped"
        );
    }
    result?;
    let applied = state.applied_seq();
    if delivered == 0 && applied < last {
        // Nothing delivered, yet the stream went past this verifier's
        // position: an entry too large to deliver, one delivered and lost,
        // or entries removed from the end of the stream (not pending, never
        // delivered: the verifier would wait for them, behind, forever).
        let info = consumer
            .get_info()
            .await
            .map_err(|e| nats_err(&cfg.url, e))?;
        if info.num_pending == 0 {
            // The next entry is gone (the consumer skips removed ones, so
            // it counts as delivered): stuck, not delivered and lost.
            match stream.get_raw_message(applied + 1).await {
                Err(e) if e.kind() == stream::RawMessageErrorKind::NoMessageFound => {
                    return Err(FeedError::Gap {
                        expected: applied + 1,
                        found: applied + 2,
                    })
                }
                Err(e) => return Err(nats_err(&cfg.url, e)),
                Ok(_) => {}
            }
            if info.delivered.stream_sequence > applied {
                return Err(nats_err(
                    &cfg.url,
                    format!(
                        "the server delivered up to sequence {} but this verifier applied \
                         {applied}: following again from its position",
                        info.delivered.stream_sequence
                    ),
                ));
            }
            // Else the consumer has not counted it yet: the next pull.
        }
    }
    Ok(())
}

/// Rejected messages in one pull.
#[derive(Debug, Default)]
struct Skipped {
    /// The position past the last rejected messages, not written yet.
    position: Option<u64>,
    /// How many were logged one by one.
    logged: usize,
    /// How many more were rejected (logged once, in one line, at the end).
    unlogged: usize,
}

/// Rejected messages logged one by one per pull; a flood past it is
/// summed up in one line per pull (every one is counted in the metric).
const LOGGED_PER_PULL: usize = 20;

/// Applies one message: the next entry in sequence, written with its
/// sequence. A redelivery is skipped; a gap stops the feed. A message that
/// is not an entry signed by a trusted revocation key is rejected: counted,
/// logged at WARN, and the feed goes on past it; its position is written
/// with the next entry applied or at the end of the pull (`skipped` holds
/// it until then). The first [`LOGGED_PER_PULL`] of a pull are logged one
/// by one, the rest summed up in one line. Entries are never delayed: each is written (with the
/// position) as it comes.
fn apply(
    msg: &jetstream::Message,
    info: &jetstream::message::Info<'_>,
    store: &RevocationStore,
    cfg: &FeedConfig,
    state: &FeedState,
    skipped: &mut Skipped,
) -> Result<(), FeedError> {
    let (seq, published) = (info.stream_sequence, info.published);
    let applied = state.applied_seq();
    if seq <= applied {
        return Ok(()); // already applied (a redelivery)
    }
    if seq != applied + 1 {
        return Err(FeedError::Gap {
            expected: applied + 1,
            found: seq,
        });
    }
    match cfg.revocation_keys.open_entry(&msg.payload) {
        Ok(FeedEntry::Revocation(entry)) => {
            store.apply_feed(&[entry], seq)?;
            skipped.position = None;
        }
        Ok(FeedEntry::Restriction(entry)) => {
            store.apply_feed_restriction(&entry, seq)?;
            skipped.position = None;
        }
        Err(rejected) => {
            metrics::counter!(
                crate::metrics::FEED_REJECTED,
                "reason" => rejected.reason.as_str()
            )
            .increment(1);
            if skipped.logged < LOGGED_PER_PULL {
                skipped.logged += 1;
                tracing::warn!(
                    seq,
                    reason = rejected.reason.as_str(),
                    detail = %rejected.detail,
                    "revocation feed entry rejected: not applied, skipped"
                );
            } else {
                skipped.unlogged += 1;
            }
            skipped.position = Some(seq);
            state.applied_seq.store(seq, Ordering::Relaxed);
            return Ok(());
        }
    }
    state.applied_seq.store(seq, Ordering::Relaxed);
    // By the two wall clocks (the server's and this host's).
    let lag = (time::OffsetDateTime::now_utc() - published).as_seconds_f64();
    metrics::histogram!(crate::metrics::FEED_LAG).record(lag.max(0.0));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: every answered pull counted as hearing from the feed,
    /// so a verifier reading a backlog (a flood of rejected messages ahead
    /// of a revocation) looked current. Contact moves `silent_for`; only
    /// reaching what the stream held when a pull was asked moves
    /// `behind_for`.
    #[test]
    fn contact_with_a_backlog_is_not_being_current() {
        let state = FeedState::new(0);
        let mut marks = Marks::default();
        state.heard();
        assert!(state.silent_for().is_some());
        assert_eq!(state.behind_for(), None, "never current yet");

        // Pull asked at t=5: the stream ends at 1 000.
        marks.seen(1_000, 5);
        // Pull asked at t=7: it ends at 1 202 (the flood goes on).
        marks.seen(1_202, 7);
        state.applied_seq.store(999, Ordering::Relaxed);
        marks.reached(999, &state);
        assert_eq!(state.behind_for(), None, "sequence 1000 not applied yet");
        state.applied_seq.store(1_000, Ordering::Relaxed);
        marks.reached(1_000, &state);
        assert_eq!(
            state.current_as_of_ms.load(Ordering::Relaxed),
            5,
            "current as of the first pull"
        );
        marks.reached(1_202, &state);
        assert_eq!(state.current_as_of_ms.load(Ordering::Relaxed), 7);
        assert!(marks.0.is_empty());
        // It never goes back.
        state.current_as_of(3);
        assert_eq!(state.current_as_of_ms.load(Ordering::Relaxed), 7);
    }

    /// Marks for a sequence already promised by an earlier mark keep the
    /// earlier sequence and the later time (the queue stays short during a
    /// long backlog).
    #[test]
    fn marks_merge_when_the_stream_has_not_grown() {
        let mut marks = Marks::default();
        marks.seen(10, 1);
        marks.seen(10, 2);
        marks.seen(9, 3);
        assert_eq!(marks.0, [(10, 3)]);
        marks.seen(11, 4);
        assert_eq!(marks.0, [(10, 3), (11, 4)]);
    }
}

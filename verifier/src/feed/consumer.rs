//! The consumer side of the feed: follows the stream from the entry after
//! the last one applied, writing each entry to the local store with its
//! sequence (one write batch), and stops at anything that would let it miss
//! a revocation while looking current (the feed is then stuck). A message
//! that is not an entry signed by a trusted revocation key is skipped (the
//! position moves past it), counted and logged; it never stops the feed.

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
    loop {
        if state.stopped.load(Ordering::Relaxed) {
            return Ok(());
        }
        pull(&consumer, store, cfg, state).await?;
        // The pull ended normally: the server answered and everything it
        // gave was applied.
        state.set_stuck(None);
        state.heard();
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

/// One pull: up to 1000 entries (4 MiB), waiting up to `cfg.poll` for them, each
/// applied in turn.
async fn pull(
    consumer: &consumer::PullConsumer,
    store: &RevocationStore,
    cfg: &FeedConfig,
    state: &FeedState,
) -> Result<(), FeedError> {
    let mut batch = consumer
        .fetch()
        .max_messages(1000)
        .max_bytes(super::MAX_FETCH_BYTES)
        .expires(cfg.poll)
        .messages()
        .await
        .map_err(|e| nats_err(&cfg.url, e))?;
    while let Some(msg) = batch.next().await {
        let msg = msg.map_err(|e| nats_err(&cfg.url, e))?;
        apply(&msg, store, cfg, state)?;
    }
    Ok(())
}

/// Applies one message: the next entry in sequence, written with its
/// sequence. A redelivery is skipped; a gap stops the feed. A message that
/// is not an entry signed by a trusted revocation key is rejected: counted,
/// logged at WARN, and only the position is written (same atomic batch), so
/// the feed goes on past it.
fn apply(
    msg: &jetstream::Message,
    store: &RevocationStore,
    cfg: &FeedConfig,
    state: &FeedState,
) -> Result<(), FeedError> {
    let info = msg.info().map_err(|e| nats_err(&cfg.url, e))?;
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
    match cfg.revocation_keys.open(&msg.payload) {
        Ok(entry) => store.apply_feed(&[entry], seq)?,
        Err(rejected) => {
            metrics::counter!(
                crate::metrics::FEED_REJECTED,
                "reason" => rejected.reason.as_str()
            )
            .increment(1);
            tracing::warn!(
                seq,
                reason = rejected.reason.as_str(),
                detail = %rejected.detail,
                "revocation feed entry rejected: not applied, skipped"
            );
            store.apply_feed(&[], seq)?;
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

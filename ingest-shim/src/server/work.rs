//! The calls this replica runs through the pipeline, so that none is left behind: a call that is
//! `received` always has a pipeline run coming — started by its upload, by the same upload again,
//! by the resume at start, or by the local retrier — and never two at once here.
//!
//! - **In flight**: the calls running now ([`crate::pipeline::InFlight`]); a second start of one
//!   of them is a no-op, here or from the reconciler's stale take-over.
//! - **Resume** at start: every call received and not stored, from its last flag, except those
//!   out of attempts (`server.max_attempts`: left for a person with their last error).
//! - **Waiting for the End**: an upload whose call has no CDR End yet is not routed or processed
//!   until the End comes (it starts the run) or `server.end_wait_s` after the upload (a timer
//!   does), so that its route is decided on the whole CDR.
//! - **Retrier**: every `server.retry_base_s`, the calls received and not stored whose last
//!   attempt is older than their backoff (`retry_base_s` × 2^attempts, at most an hour) run again,
//!   whether or not reconciliation is on — a transient failure (a store or bucket briefly down)
//!   heals without a restart.

use super::AppState;
use crate::ids::CallId;
use crate::intake::run_pipeline;
use crate::pipeline::{Ending, Finished};
use futures_util::TryStreamExt as _;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

/// Runs `call_id` through the pipeline in the background, holding `permit` (its place in the
/// queue) until it ends. Nothing happens if the call is in flight already (the pipeline itself
/// never runs a call twice at once). Returns whether a run started. A call that waits for its
/// CDR End gives its place back and is started again when the wait ends ([`wake_at`]), or by
/// its End ([`start_after_end`]), whichever comes first.
pub fn spawn_pipeline(
    state: &AppState,
    call_id: CallId,
    permit: OwnedSemaphorePermit,
    what: &'static str,
) -> bool {
    if state.pipeline.in_flight.contains(&call_id) {
        return false;
    }
    let task_state = state.clone();
    state.tasks.spawn(async move {
        let result = run_pipeline(
            &task_state.pipeline,
            &task_state.metrics,
            &call_id,
            Ending::AsRecorded,
            what,
        )
        .await;
        drop(permit);
        if let Ok(Finished::WaitingForEnd { until }) = result {
            wake_at(&task_state, call_id, until);
        }
    });
    true
}

/// Runs `call_id` once the queue has room, after `delay`: a plain task, not tracked (shutdown
/// does not wait for it; the next start's resume finds the call).
fn queue_when_room(
    state: &AppState,
    call_id: CallId,
    delay: std::time::Duration,
    what: &'static str,
) {
    let state = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if let Ok(permit) = state.queue.clone().acquire_owned().await {
            spawn_pipeline(&state, call_id, permit, what);
        }
    });
}

/// Starts `call_id` again at `until`, when it stops waiting for its End.
fn wake_at(state: &AppState, call_id: CallId, until: Timestamp) {
    let left = until.duration_since(Timestamp::now());
    let left = std::time::Duration::try_from(left).unwrap_or_default();
    // A little past `until`, so that the run finds the wait over.
    let delay = left + std::time::Duration::from_millis(20);
    queue_when_room(state, call_id, delay, "processing (no CDR End came)");
}

/// A call's CDR End arrived: if its recording is here and not stored, it runs as soon as the
/// queue has room (staged calls come before new uploads). Returns whether it was queued.
pub fn start_after_end(state: &AppState, record: &crate::store::CallRecord) -> bool {
    if record.flags.received.is_none() || record.flags.stored.is_some() {
        return false;
    }
    let (call_id, now) = (record.call_id.clone(), std::time::Duration::ZERO);
    queue_when_room(state, call_id, now, "processing after the call's End");
    true
}

/// Takes every call that was received but not stored (a crash, a deploy) through the pipeline
/// again, from its last flag, with the same backpressure as new uploads; calls out of attempts
/// are left alone (logged). Returns how many it queued.
pub async fn resume(state: &AppState) -> Result<usize, crate::store::StoreError> {
    let mut queued = 0;
    let mut calls = crate::store::unfinished_calls(state.pipeline.store.as_ref());
    while let Some(record) = calls.try_next().await? {
        if record.attempts >= state.config.max_attempts {
            tracing::warn!(call_id = %record.call_id, attempts = record.attempts, last_error = ?record.last_error, "not resumed: out of attempts");
            continue;
        }
        let Ok(permit) = state.queue.clone().acquire_owned().await else {
            return Ok(queued);
        };
        queued += usize::from(spawn_pipeline(state, record.call_id, permit, "resuming"));
    }
    Ok(queued)
}

/// How long after its last attempt a call with `attempts` failed attempts is tried again.
pub fn backoff(base: SignedDuration, attempts: u32) -> SignedDuration {
    let factor = 1i32 << attempts.min(10);
    (base * factor).min(SignedDuration::from_hours(1).max(base))
}

/// One pass of the retrier at `now`: starts the calls due again (as queue room allows). Returns
/// how many it started.
pub async fn retry_due(
    state: &AppState,
    now: Timestamp,
) -> Result<usize, crate::store::StoreError> {
    let base = SignedDuration::from_secs(state.config.retry_base_s as i64);
    let mut started = 0;
    let mut calls = crate::store::unfinished_calls(state.pipeline.store.as_ref());
    while let Some(record) = calls.try_next().await? {
        let running = state.pipeline.in_flight.contains(&record.call_id);
        // A call waiting for its End has its wake-up armed (or its End starts it).
        let waiting = state
            .pipeline
            .waits_for_end(&record, Ending::AsRecorded, now)
            .is_some();
        if record.attempts >= state.config.max_attempts || running || waiting {
            continue;
        }
        let due = record
            .updated_at
            .checked_add(backoff(base, record.attempts))
            .unwrap_or(record.updated_at);
        if due > now {
            continue;
        }
        // Room in the queue, or wait for the next pass: new uploads come first.
        let Ok(permit) = state.queue.clone().try_acquire_owned() else {
            break;
        };
        started += usize::from(spawn_pipeline(state, record.call_id, permit, "retrying"));
    }
    Ok(started)
}

/// Runs [`retry_due`] every `server.retry_base_s` until `stop`.
pub fn spawn_retrier(state: &AppState, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    let state = state.clone();
    tokio::spawn(async move {
        let every = std::time::Duration::from_secs(state.config.retry_base_s.max(1));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
            match retry_due(&state, Timestamp::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(calls = n, "retrying calls received and not stored"),
                Err(e) => tracing::warn!(error = %e, "listing the calls to retry failed"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let base = SignedDuration::from_secs(120);
        assert_eq!(backoff(base, 0), base);
        assert_eq!(backoff(base, 1), SignedDuration::from_secs(240));
        assert_eq!(backoff(base, 4), SignedDuration::from_secs(1920));
        assert_eq!(backoff(base, 5), SignedDuration::from_hours(1));
        assert_eq!(backoff(base, 99), SignedDuration::from_hours(1));
    }
}

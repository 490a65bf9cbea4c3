//! After a job: the calls of its range that were missing when it was recorded and still are get
//! one more attempt counted (with the reason the fetch gave for the call's file, if it had one);
//! a call out of attempts is `lost` — counted (`callrec_calls_lost_total`) and logged as an
//! error, never silently dropped. Received calls are the service's own work (resumed, not
//! re-exported) and are left alone.

use super::scanner::dialog_time;
use super::{Context, WorkError};
use crate::ids::CallId;
use crate::store::{CallChange, ExportJob, Outcome, PendingQuery};
use jiff::Timestamp;
use std::collections::HashMap;

/// Counts the round's attempt on the job's missing calls; `reasons` from the fetch.
pub async fn finalize(
    ctx: &Context,
    job: &ExportJob,
    mut reasons: HashMap<CallId, String>,
) -> Result<(), WorkError> {
    let result = count_attempts(ctx, job, &mut reasons).await;
    // Files of calls the range's query did not return (e.g. ended after the job was
    // recorded): their reason still goes on the call.
    for (call_id, why) in reasons {
        let error = format!("export job {}: {why}", job.id);
        ctx.store()
            .update(&call_id, &CallChange::Failed { error }, Timestamp::now())
            .await?;
    }
    result
}

async fn count_attempts(
    ctx: &Context,
    job: &ExportJob,
    reasons: &mut HashMap<CallId, String>,
) -> Result<(), WorkError> {
    if job.from >= job.created_at {
        return Ok(());
    }
    let mut cursor = None;
    let (mut missing, mut lost) = (0u64, 0u64);
    loop {
        let page = ctx
            .store()
            .pending(&PendingQuery {
                group_id: Some(job.group_id.clone()),
                ended_from: Some(job.from),
                ended_before: job.created_at,
                limit: 500,
                cursor,
            })
            .await?;
        for call in &page.items {
            let in_range = dialog_time(call).is_some_and(|t| job.from <= t && t < job.to);
            if !in_range || call.flags.received.is_some() {
                continue;
            }
            missing += 1;
            let error = match reasons.remove(&call.call_id) {
                Some(why) => format!("export job {}: {why}", job.id),
                None => format!("not recovered by export job {}", job.id),
            };
            let (record, _) = ctx
                .store()
                .update(
                    &call.call_id,
                    &CallChange::Failed { error },
                    Timestamp::now(),
                )
                .await?;
            if record.attempts < ctx.config.max_attempts {
                continue;
            }
            let reason = format!(
                "still missing after {} export attempts (last: job {})",
                record.attempts, job.id
            );
            let change = CallChange::Lost {
                reason: reason.clone(),
            };
            let (_, applied) = ctx
                .store()
                .update(&call.call_id, &change, Timestamp::now())
                .await?;
            if applied.outcome == Outcome::Changed {
                lost += 1;
                ctx.metrics.calls_lost.inc();
                tracing::error!(call_id = %call.call_id, job = %job.id, reason, "recording lost");
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if missing > 0 {
        tracing::warn!(job = %job.id, missing, lost, "calls the export did not recover; the next scan tries again");
    }
    Ok(())
}

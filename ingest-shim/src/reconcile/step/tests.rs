//! The step table: every state × observation.

use super::*;
use crate::ocp::Transient;
use std::time::Duration;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn rules() -> Rules {
    Rules {
        poll: PollSchedule {
            initial: SignedDuration::from_secs(60),
            max: SignedDuration::from_secs(360),
            growth: 1.5,
            jitter: 0.0,
        },
        max_retry_after: SignedDuration::from_secs(300),
        max_expiries: 2,
    }
}

fn job(state: JobState) -> ExportJob {
    let mut job = ExportJob::new(
        JobId::parse("exp-g-1").unwrap(),
        "g",
        (t(-7200), t(-3600)),
        "reconcile",
        t(-100),
        t(1000),
    );
    job.state = state;
    if !matches!(state, JobState::Created) {
        job.ocp_export_id = Some("x1".into());
    }
    job
}

fn unavailable(retry_after: Option<u64>) -> OcpError {
    OcpError::Unavailable {
        what: "export status".into(),
        reason: Transient::Status(503),
        detail: String::new(),
        retry_after: retry_after.map(Duration::from_secs),
    }
}

fn refused(status: u16) -> OcpError {
    OcpError::Refused {
        what: "x".into(),
        status,
        kind: "bad".into(),
        message: "no".into(),
    }
}

fn credentials() -> OcpError {
    OcpError::Credentials {
        what: "login".into(),
        detail: "401".into(),
    }
}

/// The step of `job` on `seen`, at t(0), with the schedule's middle draw.
fn on(job: &ExportJob, seen: Observation) -> Step {
    step(job, seen, t(0), &rules(), 0.5)
}

fn go(state: JobState, seen: Observation) -> Step {
    on(&job(state), seen)
}

fn closed(step: &Step) -> (JobState, bool, bool) {
    match step {
        Step::Close(c) => (c.state, c.finalize, c.successor),
        other => panic!("not a close: {other:?}"),
    }
}

fn rescheduled(step: Step) -> Reschedule {
    match step {
        Step::Reschedule(r) => r,
        other => panic!("not a reschedule: {other:?}"),
    }
}

use JobState::*;

#[test]
fn a_due_job_asks_what_its_state_needs() {
    assert_eq!(go(Created, Observation::Due), Step::Ask(Ask::GroupRunning));
    assert_eq!(
        go(Polling, Observation::Due),
        Step::Ask(Ask::Status("x1".into()))
    );
    assert_eq!(go(Completed, Observation::Due), Step::Go(Fetching));
    assert_eq!(
        go(Fetching, Observation::Due),
        Step::Ask(Ask::Fetch("x1".into()))
    );
    for state in [Done, Failed, Expired] {
        assert_eq!(closed(&go(state, Observation::Due)), (state, false, false));
    }
    let mut lost = job(Polling);
    lost.ocp_export_id = None;
    let s = on(&lost, Observation::Due);
    assert_eq!(closed(&s), (Failed, true, false));
}

#[test]
fn past_the_deadline_a_job_fails_and_charges_only_if_it_was_not_waiting_on_ocp() {
    for state in [Created, Polling, Completed, Fetching] {
        let mut late = job(state);
        late.deadline = t(-1);
        let s = on(&late, Observation::Due);
        assert_eq!(closed(&s), (Failed, true, false), "{state:?}");
        late.waiting_on = Some("credentials".into());
        let s = on(&late, Observation::Due);
        assert_eq!(closed(&s), (Failed, false, false), "{state:?}");
    }
}

#[test]
fn created_jobs_queue_behind_their_group_then_create() {
    let ahead = JobId::parse("exp-g-0").unwrap();
    let r = rescheduled(go(Created, Observation::GroupRunning { ahead }));
    assert_eq!((r.state, r.at), (Created, t(60)));
    assert!(r.last_error.unwrap().contains("exp-g-0"));
    assert_eq!(go(Created, Observation::GroupFree), Step::Ask(Ask::Create));
    let r = rescheduled(go(
        Created,
        Observation::Created {
            export_id: "x9".into(),
        },
    ));
    assert_eq!(r.state, Polling);
    assert_eq!(r.export_id.as_deref(), Some("x9"));
    assert_eq!((r.attempt, r.at, r.note), (0, t(60), Note::Requested));
    let r = rescheduled(go(
        Created,
        Observation::Failed(OcpError::GroupBusy("busy".into())),
    ));
    assert_eq!((r.state, r.waiting_on), (Created, None));
    assert_eq!(
        closed(&go(Created, Observation::Failed(refused(400)))),
        (Failed, true, false)
    );
}

#[test]
fn polls_follow_the_schedule_and_the_export_status() {
    let mut polled = job(Polling);
    polled.attempt = 2;
    let s = on(&polled, Observation::Status(ExportStatus::Running));
    let r = rescheduled(s);
    assert_eq!((r.state, r.attempt), (Polling, 3));
    assert_eq!(r.at, rules().poll.next_poll(t(0), 3, 0.5));
    assert_eq!(
        rescheduled(go(Polling, Observation::Status(ExportStatus::Pending))).attempt,
        1
    );
    assert_eq!(
        go(Polling, Observation::Status(ExportStatus::Completed)),
        Step::Go(Completed)
    );
    assert_eq!(
        closed(&go(Polling, Observation::Status(ExportStatus::Failed))),
        (Failed, true, false)
    );
    assert_eq!(
        closed(&go(Polling, Observation::Status(ExportStatus::Expired))),
        (Expired, false, true)
    );
    assert_eq!(
        closed(&go(Polling, Observation::Failed(refused(404)))),
        (Expired, false, true)
    );
    assert_eq!(
        closed(&go(Polling, Observation::Failed(refused(400)))),
        (Failed, true, false)
    );
    let gone = OcpError::Expired("export status".into());
    assert_eq!(
        closed(&go(Polling, Observation::Failed(gone))),
        (Expired, false, true)
    );
}

#[test]
fn fetching_ends_done_or_out_of_time_or_expired_or_waits() {
    assert_eq!(
        closed(&go(Fetching, Observation::Fetched)),
        (Done, true, false)
    );
    assert_eq!(
        closed(&go(Fetching, Observation::FetchOutOfTime)),
        (Failed, true, false)
    );
    let gone = OcpError::Expired("export file".into());
    assert_eq!(
        closed(&go(Fetching, Observation::Failed(gone))),
        (Expired, false, true)
    );
    let r = rescheduled(go(Fetching, Observation::Failed(unavailable(None))));
    assert_eq!(
        (r.state, r.waiting_on, r.note),
        (Fetching, Some("unavailable"), Note::Unavailable)
    );
    // A 404 while fetching is not the export's: the file's (handled by the fetch), so a
    // refusal of the listing itself fails the job.
    assert_eq!(
        closed(&go(Fetching, Observation::Failed(refused(404)))),
        (Failed, true, false)
    );
}

#[test]
fn expiries_ask_again_until_the_bound_then_fail_loudly() {
    let mut again = job(Polling);
    again.expiries = 1;
    let s = on(&again, Observation::Status(ExportStatus::Expired));
    assert_eq!(closed(&s), (Expired, false, true));
    again.expiries = 2;
    let s = on(&again, Observation::Status(ExportStatus::Expired));
    assert_eq!(closed(&s), (Failed, true, false));
    let Step::Close(c) = s else { unreachable!() };
    assert!(c.reason.contains("3rd time"), "{}", c.reason);
}

#[test]
fn waits_on_ocp_charge_nothing_and_retry_after_is_capped() {
    for state in [Created, Polling, Fetching] {
        let r = rescheduled(go(state, Observation::Failed(unavailable(Some(2)))));
        assert_eq!(
            (r.state, r.attempt, r.waiting_on),
            (state, 1, Some("unavailable"))
        );
        // The schedule's wait (60 s) is longer than the 2 s asked.
        assert_eq!(r.at, rules().poll.next_poll(t(0), 1, 0.5));
        let r = rescheduled(go(state, Observation::Failed(unavailable(Some(999_999)))));
        assert_eq!(r.at, t(300), "capped at max_retry_after");
        let r = rescheduled(go(state, Observation::Failed(credentials())));
        assert_eq!(r.waiting_on, Some("credentials"));
        assert_eq!(r.note, Note::NeedsPerson { first: true });
    }
    let mut waiting = job(Polling);
    waiting.waiting_on = Some("credentials".into());
    let s = on(&waiting, Observation::Failed(credentials()));
    assert_eq!(rescheduled(s).note, Note::NeedsPerson { first: false });
    let tls = OcpError::Untrusted {
        what: "x".into(),
        detail: "unknown issuer".into(),
    };
    let r = rescheduled(go(Polling, Observation::Failed(tls)));
    assert_eq!(r.waiting_on, Some("tls"));
}

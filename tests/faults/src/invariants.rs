//! The promises of DESIGN.md, checked on a trial's [`Snapshot`] against what its workload
//! did ([`Record`]). Each check counts once; each failed one is a [`Violation`].
//!
//! - **End states**: every session is `ended` and every call terminal, nobody left present
//!   or busy, and each ended the way its history implies: the client's acknowledged
//!   requests (an answered end is `host_ended`, an accepted call went through `accepted`),
//!   LiveKit's record of the connections (a host who dropped for good → `host_disconnected`,
//!   and no sooner than the grace; a party who left on purpose → `<party>_left`), the push
//!   results (ringing only after a delivered push) and the deadlines.
//! - **Deadlines**: none pending, none fired before its `due_at`, at most one with an
//!   effect per session or call, and the one the end reason names fired exactly once.
//! - **Events**: each session's and call's events form one path through the domain's
//!   transition table with exactly one terminal event; every outbox row was published, is in
//!   its JetStream stream exactly once, and was handled by every consumer that must handle
//!   it; nothing was dead-lettered; one ring push per callee device and one push result per
//!   call; no follower told twice; one gift push per gift.
//! - **Coins**: the total is conserved (wallets + the platform's shares), every wallet
//!   equals its ledger, every gift and payment has exactly its ledger rows, every gift the
//!   client was told about exists and no other, and every `Idempotency-Key` completed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Display;

use bus::proto;
use domain::rooms::{RoomRef, parse_room};
use uuid::Uuid;

use crate::record::{Ack, CallPlan, CallRecord, Party, Record, SessionPlan, SessionRecord};
use crate::snapshot::{Body, Call, Deadline, Event, Session, Snapshot};

/// What the checker must know of the stack's configuration.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `HOST_GRACE_SECONDS`.
    pub host_grace: chrono::Duration,
    /// How long the trial waited for the system to settle: an event JetStream will deliver
    /// again only after a longer ack wait is owed, not lost.
    pub patience: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub subject: String,
    pub detail: String,
}

impl Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {}: {}", self.rule, self.subject, self.detail)
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub checked: u64,
    /// Checks per rule.
    pub by_rule: BTreeMap<&'static str, u64>,
    pub violations: Vec<Violation>,
}

impl Report {
    /// Counts one check; records a violation when `ok` is false.
    pub fn check(
        &mut self,
        rule: &'static str,
        subject: impl Display,
        ok: bool,
        detail: impl FnOnce() -> String,
    ) {
        self.checked += 1;
        *self.by_rule.entry(rule).or_default() += 1;
        if !ok {
            self.violations.push(Violation {
                rule,
                subject: subject.to_string(),
                detail: detail(),
            });
        }
    }

    /// Adds another report's checks and violations.
    pub fn absorb(&mut self, other: Report) {
        self.checked += other.checked;
        for (rule, n) in other.by_rule {
            *self.by_rule.entry(rule).or_default() += n;
        }
        self.violations.extend(other.violations);
    }

    /// Whether some violation has this rule.
    pub fn has(&self, rule: &str) -> bool {
        self.violations.iter().any(|v| v.rule == rule)
    }
}

/// Consumers and the events each must have handled (`processed_events`).
fn consumers_of(e: &Event) -> Vec<&'static str> {
    match (e.event_type.as_str(), &e.body) {
        (_, Body::LiveKit(p)) => match parse_room(&p.room_name) {
            Some(RoomRef::Session { .. }) => vec!["session-manager-livekit"],
            Some(RoomRef::Call { .. }) => vec!["call-signaling-livekit"],
            None => vec![],
        },
        ("notify.push_result", _) => vec!["call-signaling-push"],
        ("call.initiated" | "call.cancelled" | "call.missed", _) => vec!["notifier-push-calls"],
        ("session.live" | "session.gift_sent", _) => vec!["notifier-push-sessions"],
        _ => vec![],
    }
}

/// Events a consumer must have handled and has not (no `processed_events` row), and —
/// apart — those JetStream still owes a consumer whose ack wait is longer than `patience`:
/// delivered to a process that died, they come again only when the ack wait is over
/// (notifier's session pushes wait 300 s), which no trial waits for.
pub fn unhandled(s: &Snapshot, patience: std::time::Duration) -> (Vec<String>, Vec<Uuid>) {
    let mut left: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in &s.events {
        for consumer in consumers_of(e) {
            if !s.processed.contains(&(consumer.to_owned(), e.id)) {
                left.entry(consumer).or_default().push(e);
            }
        }
    }
    let (mut unhandled, mut owed) = (Vec::new(), Vec::new());
    for (consumer, events) in left {
        let held = s
            .bus
            .consumers
            .get(consumer)
            .is_some_and(|c| c.ack_wait > patience && c.ack_pending >= events.len() as u64);
        if held {
            owed.extend(events.iter().map(|e| e.id));
        } else {
            unhandled.extend(
                events
                    .iter()
                    .map(|e| format!("{consumer} never handled {} {}", e.event_type, e.id)),
            );
        }
    }
    (unhandled, owed)
}

/// Deadline outcomes that changed a session or a call.
fn effectful(d: &Deadline) -> bool {
    d.fired_at.is_some()
        && matches!(
            d.outcome.as_deref(),
            Some("ended" | "missed" | "failed" | "live")
        )
}

/// Everything indexed once.
struct Index<'a> {
    s: &'a Snapshot,
    session_events: HashMap<String, Vec<&'a proto::SessionChanged>>,
    session_event_types: HashMap<String, Vec<&'a str>>,
    call_events: HashMap<String, Vec<(&'a Event, &'a proto::CallChanged)>>,
    push_results: HashMap<String, Vec<&'a proto::PushResult>>,
    room_finished: HashSet<&'a str>,
    deadlines: HashMap<Uuid, Vec<&'a Deadline>>,
    /// Events not handled by a consumer that must handle them.
    unhandled: Vec<String>,
    /// Events JetStream still owes a consumer (see [`unhandled`]).
    owed: HashSet<Uuid>,
}

impl<'a> Index<'a> {
    fn new(s: &'a Snapshot, patience: std::time::Duration) -> Self {
        let (unhandled, owed) = unhandled(s, patience);
        let mut ix = Index {
            s,
            unhandled,
            owed: owed.into_iter().collect(),
            session_events: HashMap::new(),
            session_event_types: HashMap::new(),
            call_events: HashMap::new(),
            push_results: HashMap::new(),
            room_finished: HashSet::new(),
            deadlines: HashMap::new(),
        };
        // Outbox ids are UUIDv7 made under the row's lock: their order is the order of the
        // transitions of one session or call.
        for e in &s.events {
            match &e.body {
                Body::Session(p) => {
                    ix.session_events
                        .entry(p.session_id.clone())
                        .or_default()
                        .push(p);
                    ix.session_event_types
                        .entry(p.session_id.clone())
                        .or_default()
                        .push(e.event_type.as_str());
                }
                Body::Call(p) => ix
                    .call_events
                    .entry(p.call_id.clone())
                    .or_default()
                    .push((e, p)),
                Body::Push(p) => ix.push_results.entry(p.ref_id.clone()).or_default().push(p),
                Body::LiveKit(p) if p.event == "room_finished" => {
                    ix.room_finished.insert(p.room_name.as_str());
                }
                _ => {}
            }
        }
        for d in &s.deadlines {
            ix.deadlines.entry(d.subject).or_default().push(d);
        }
        ix
    }

    fn connections(&self, room: &str, user: Uuid) -> Vec<&'a crate::snapshot::Participation> {
        let identity = user.to_string();
        self.s
            .participations
            .iter()
            .filter(|p| p.room == room && p.identity == identity)
            .collect()
    }

    fn deadlines_of(&self, id: Uuid) -> &[&'a Deadline] {
        self.deadlines.get(&id).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Checks everything.
pub fn check(snapshot: &Snapshot, record: &Record, settings: &Settings) -> Report {
    let mut report = Report::default();
    let ix = Index::new(snapshot, settings.patience);
    for s in &snapshot.sessions {
        let rec = record.sessions.iter().find(|r| r.id == Some(s.id));
        check_session(&mut report, &ix, s, rec, settings);
    }
    for r in &record.sessions {
        report.check(
            "session.created",
            format!("{:?} session of {}", r.plan, r.creator),
            r.create == Ack::Ok
                && r.id
                    .is_some_and(|id| snapshot.sessions.iter().any(|s| s.id == id)),
            || {
                format!(
                    "its creation was answered {:?} and no such session exists",
                    r.create
                )
            },
        );
    }
    for c in &snapshot.calls {
        let rec = record.calls.iter().find(|r| r.id == Some(c.id));
        check_call(&mut report, &ix, c, rec, record);
    }
    for r in &record.calls {
        report.check(
            "call.created",
            format!("{:?} call of {}", r.plan, r.caller),
            r.initiate == Ack::Ok
                && r.id
                    .is_some_and(|id| snapshot.calls.iter().any(|c| c.id == id)),
            || {
                format!(
                    "its initiation was answered {:?} and no such call exists",
                    r.initiate
                )
            },
        );
    }
    check_events(&mut report, &ix);
    check_coins(&mut report, snapshot, record);
    for g in &record.gave_up {
        report.check("request.answered", g, false, || {
            "the client got no final answer within its retry budget".into()
        });
    }
    report
}

fn check_session(
    report: &mut Report,
    ix: &Index,
    s: &Session,
    rec: Option<&SessionRecord>,
    settings: &Settings,
) {
    let subject = format!("session {}", s.id);
    let reason = s.end_reason.as_deref().unwrap_or("");
    report.check(
        "session.terminal",
        &subject,
        s.status == "ended" && s.ended_at.is_some() && !reason.is_empty(),
        || format!("still {} (reason {:?})", s.status, s.end_reason),
    );
    let present: Vec<_> =
        ix.s.present
            .iter()
            .filter(|(sid, _)| *sid == s.id)
            .collect();
    report.check(
        "session.nobody_left_present",
        &subject,
        present.is_empty() && s.viewer_count == 0,
        || {
            format!(
                "{} participants still active, viewer_count {}",
                present.len(),
                s.viewer_count
            )
        },
    );
    check_deadlines(report, &subject, ix.deadlines_of(s.id));
    let deadlines = ix.deadlines_of(s.id);
    let by_deadline = match reason {
        "host_disconnected" => Some("session.host_grace"),
        "no_show" => Some("session.no_show"),
        "max_duration" => Some("session.max_duration"),
        _ => None,
    };
    let ended_by: Vec<_> = deadlines
        .iter()
        .filter(|d| effectful(d))
        .map(|d| d.kind.as_str())
        .collect();
    report.check(
        "session.deadline_fired_once",
        &subject,
        match by_deadline {
            Some(kind) => ended_by == [kind],
            None => ended_by.is_empty(),
        },
        || format!("ended {reason}, deadlines that ended it: {ended_by:?}"),
    );
    // The event history: one path through the transition table, ending where the row is.
    let events: &[&proto::SessionChanged] = ix
        .session_events
        .get(&s.id.to_string())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let path = session_path_error(events);
    report.check("session.event_path", &subject, path.is_none(), || {
        path.unwrap_or_default()
    });
    let ended: Vec<_> = events.iter().filter(|e| e.status == "ended").collect();
    report.check(
        "session.ended_once",
        &subject,
        ended.len() == 1 && ended[0].end_reason == reason,
        || {
            format!(
                "{} session.ended events, reasons {:?}",
                ended.len(),
                ended.iter().map(|e| &e.end_reason).collect::<Vec<_>>()
            )
        },
    );
    let types = ix
        .session_event_types
        .get(&s.id.to_string())
        .cloned()
        .unwrap_or_default();
    // What the end reason says happened must have happened.
    let host = ix.connections(&s.room, s.creator);
    let cause = match reason {
        "host_ended" => rec.is_some_and(|r| r.end != Ack::None),
        "host_disconnected" => {
            let last_left = host.iter().filter_map(|p| p.left_at).max();
            let all_closed = !host.is_empty() && host.iter().all(|p| p.left_at.is_some());
            let after_grace = match (last_left, s.ended_at) {
                (Some(left), Some(ended)) => ended >= left + settings.host_grace,
                _ => false,
            };
            report.check("session.grace_respected", &subject, after_grace, || {
                format!(
                    "ended {:?}, host left {last_left:?}, grace {}",
                    s.ended_at, settings.host_grace
                )
            });
            all_closed
        }
        "no_show" => host.iter().all(|p| p.joined_at.is_none()),
        "room_finished" => {
            ix.room_finished.contains(s.room.as_str())
                || ix
                    .s
                    .participations
                    .iter()
                    .filter(|p| p.room == s.room)
                    .all(|p| p.left_at.is_some())
        }
        _ => false,
    };
    report.check("session.end_cause", &subject, cause, || {
        format!(
            "ended {reason:?}, which nothing in its history explains (host connections: {})",
            host.len()
        )
    });
    let Some(rec) = rec else {
        report.check("session.known", &subject, false, || {
            "no scenario created it".into()
        });
        return;
    };
    let expected: &[&str] = match rec.plan {
        _ if matches!(rec.end, Ack::Ok) => &["host_ended"],
        SessionPlan::HostDrops if rec.host_dropped_for_good => &["host_disconnected"],
        SessionPlan::NoShow => &["no_show", "room_finished"],
        _ if !rec.host_joined && rec.end == Ack::None => &["no_show", "room_finished"],
        SessionPlan::HostEnds
        | SessionPlan::HostReturns
        | SessionPlan::PauseResume
        | SessionPlan::Probe
            if rec.end.answered() =>
        {
            &["host_ended"]
        }
        _ => &[],
    };
    if !expected.is_empty() {
        report.check(
            "session.intended_end",
            &subject,
            expected.contains(&reason),
            || {
                format!(
                    "{:?} (end {:?}, host joined {}) should end {expected:?}, ended {reason:?}",
                    rec.plan, rec.end, rec.host_joined
                )
            },
        );
    }
    if rec.host_joined {
        report.check(
            "session.went_live",
            &subject,
            types.contains(&"session.live"),
            || format!("the host joined but no session.live event exists (events {types:?})"),
        );
    }
    if rec.pause == Ack::Ok {
        report.check(
            "session.paused",
            &subject,
            types.contains(&"session.paused"),
            || "the pause was acknowledged but never recorded".into(),
        );
    }
    if rec.resume == Ack::Ok {
        report.check(
            "session.resumed",
            &subject,
            types.contains(&"session.resumed"),
            || "the resume was acknowledged but never recorded".into(),
        );
    }
    let gifts: Vec<_> = ix.s.gifts.iter().filter(|g| g.session == s.id).collect();
    let coins: i64 = gifts.iter().map(|g| g.coins).sum();
    report.check(
        "session.gift_counters",
        &subject,
        s.total_gifts_received == gifts.len() as i64 && s.total_gift_coins == coins,
        || {
            format!(
                "counters {}/{} coins, gift rows {}/{coins} coins",
                s.total_gifts_received,
                s.total_gift_coins,
                gifts.len()
            )
        },
    );
    // Followers: each claimed once when the session went live (unless the notifier is
    // still owed the event).
    let live_owed = ix.s.events.iter().any(|e| {
        ix.owed.contains(&e.id)
            && e.event_type == "session.live"
            && matches!(&e.body, Body::Session(p) if p.session_id == s.id.to_string())
    });
    if types.contains(&"session.live") && !live_owed {
        let followers: HashSet<Uuid> =
            ix.s.follows
                .iter()
                .filter(|(_, c)| *c == s.creator)
                .map(|(f, _)| *f)
                .collect();
        let told: Vec<Uuid> =
            ix.s.live_notified
                .iter()
                .filter(|(sid, _)| *sid == s.id)
                .map(|(_, u)| *u)
                .collect();
        report.check(
            "notify.followers_once",
            &subject,
            told.iter().copied().collect::<HashSet<_>>() == followers
                && told.len() == followers.len(),
            || format!("{} followers, {} claims", followers.len(), told.len()),
        );
    }
}

/// Why a session's events are not one path through the table, if they are not.
fn session_path_error(events: &[&proto::SessionChanged]) -> Option<String> {
    let allowed = |from: &str, to: &str| {
        domain::session::TRANSITIONS
            .iter()
            .any(|(f, _, t)| f.as_str() == from && t.as_str() == to)
    };
    let mut at = "";
    for (i, e) in events.iter().enumerate() {
        if e.previous_status != at {
            return Some(format!(
                "event {i} moves from {:?}, the session was {at:?}",
                e.previous_status
            ));
        }
        let ok = if i == 0 {
            e.status == "created"
        } else {
            allowed(&e.previous_status, &e.status)
        };
        if !ok {
            return Some(format!(
                "event {i}: {:?} → {:?} is not a transition",
                e.previous_status, e.status
            ));
        }
        at = &e.status;
    }
    (at != "ended").then(|| format!("the events end at {at:?}"))
}

fn check_deadlines(report: &mut Report, subject: &str, deadlines: &[&Deadline]) {
    let pending: Vec<_> = deadlines
        .iter()
        .filter(|d| d.fired_at.is_none() && d.cancelled_at.is_none())
        .collect();
    report.check("deadline.none_pending", subject, pending.is_empty(), || {
        format!(
            "pending: {:?}",
            pending
                .iter()
                .map(|d| (&d.kind, d.due_at))
                .collect::<Vec<_>>()
        )
    });
    let early: Vec<_> = deadlines
        .iter()
        .filter(|d| d.fired_at.is_some_and(|f| f < d.due_at))
        .collect();
    report.check("deadline.never_early", subject, early.is_empty(), || {
        format!(
            "fired before due: {:?}",
            early
                .iter()
                .map(|d| (&d.kind, d.due_at, d.fired_at))
                .collect::<Vec<_>>()
        )
    });
    let effects = deadlines.iter().filter(|d| effectful(d)).count();
    report.check("deadline.one_effect", subject, effects <= 1, || {
        format!("{effects} deadlines changed it")
    });
}

fn check_call(
    report: &mut Report,
    ix: &Index,
    c: &Call,
    rec: Option<&CallRecord>,
    record: &Record,
) {
    let subject = format!("call {}", c.id);
    let status: Option<domain::call::CallStatus> = c.status.parse().ok();
    let reason = c.ended_reason.as_deref().unwrap_or("");
    report.check(
        "call.terminal",
        &subject,
        status.is_some_and(|s| s.is_terminal()) && c.ended_at.is_some(),
        || format!("still {}", c.status),
    );
    let busy: Vec<_> = ix.s.busy.iter().filter(|(_, call)| *call == c.id).collect();
    report.check("call.busy_released", &subject, busy.is_empty(), || {
        format!("{} users still busy with it", busy.len())
    });
    let deadlines = ix.deadlines_of(c.id);
    check_deadlines(report, &subject, deadlines);
    let by_deadline = match (c.status.as_str(), reason) {
        ("missed", _) => Some("call.ring_timeout"),
        ("failed", "push_timeout") => Some("call.push_timeout"),
        ("failed", "join_timeout") => Some("call.join_timeout"),
        ("failed", "network") => Some("call.party_grace"),
        (_, "max_duration") => Some("call.max_duration"),
        _ => None,
    };
    let fired: Vec<_> = deadlines
        .iter()
        .filter(|d| effectful(d))
        .map(|d| d.kind.as_str())
        .collect();
    report.check(
        "call.deadline_fired_once",
        &subject,
        match by_deadline {
            Some(kind) => fired == [kind],
            None => fired.is_empty(),
        },
        || {
            format!(
                "{} {reason}, deadlines that changed it: {fired:?}",
                c.status
            )
        },
    );
    let events: &[(&Event, &proto::CallChanged)] = ix
        .call_events
        .get(&c.id.to_string())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let path = call_path_error(events);
    report.check("call.event_path", &subject, path.is_none(), || {
        path.unwrap_or_default()
    });
    let terminal: Vec<_> = events
        .iter()
        .filter(|(_, p)| {
            p.status
                .parse::<domain::call::CallStatus>()
                .is_ok_and(|s| s.is_terminal())
        })
        .collect();
    report.check(
        "call.terminal_event_once",
        &subject,
        terminal.len() == 1
            && terminal[0].1.status == c.status
            && terminal[0].1.ended_reason == reason,
        || {
            format!(
                "{} terminal events for a {} {reason} call",
                terminal.len(),
                c.status
            )
        },
    );
    let statuses: Vec<&str> = events.iter().map(|(_, p)| p.status.as_str()).collect();
    if c.status == "busy" {
        report.check(
            "call.busy_from_a_retry",
            &subject,
            record
                .calls
                .iter()
                .any(|r| r.caller == c.caller && r.callee == c.callee)
                && statuses == ["busy"],
            || format!("a busy call no retry explains (events {statuses:?})"),
        );
        return;
    }
    // One ring: one push per callee device, one push result.
    let initiated: Vec<_> = events
        .iter()
        .filter(|(e, _)| e.event_type == "call.initiated")
        .collect();
    let results = ix
        .push_results
        .get(&c.id.to_string())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    report.check(
        "notify.one_push_result",
        &subject,
        initiated.len() == 1 && results.len() == 1,
        || {
            format!(
                "{} call.initiated events, {} push results",
                initiated.len(),
                results.len()
            )
        },
    );
    if let Some((e, _)) = initiated.first() {
        let devices = ix.s.devices.iter().filter(|d| d.user == c.callee).count();
        let pushes =
            ix.s.deliveries
                .iter()
                .filter(|d| d.event_id == Some(e.id))
                .count();
        report.check(
            "notify.one_ring_per_device",
            &subject,
            pushes == devices,
            || format!("{pushes} ring pushes for {devices} callee devices"),
        );
    }
    let delivered = results.iter().any(|r| r.delivered);
    if statuses.contains(&"ringing") {
        report.check("call.rang_after_push", &subject, delivered, || {
            "ringing without a delivered push".into()
        });
    }
    let caller = ix.connections(&c.room, c.caller);
    let callee = ix.connections(&c.room, c.callee);
    let joined =
        |conns: &[&crate::snapshot::Participation]| conns.iter().any(|p| p.joined_at.is_some());
    let left_on_purpose = |conns: &[&crate::snapshot::Participation]| {
        conns
            .iter()
            .any(|p| p.left_reason.as_deref() == Some("CLIENT_INITIATED"))
    };
    if statuses.contains(&"live") {
        report.check(
            "call.live_with_both",
            &subject,
            joined(&caller) && joined(&callee),
            || "live without both parties' joins in LiveKit's record".into(),
        );
    }
    let cause = match (c.status.as_str(), reason) {
        ("failed", "no_device" | "push_failed") => results.iter().any(|r| !r.delivered),
        ("ended", "caller_left") => left_on_purpose(&caller),
        ("ended", "callee_left") => left_on_purpose(&callee),
        ("ended", "both_left") => {
            caller.iter().chain(&callee).all(|p| p.left_at.is_some())
                && !caller.is_empty()
                && !callee.is_empty()
        }
        ("failed", "network") => caller.iter().chain(&callee).any(|p| {
            p.left_at.is_some()
                && !matches!(
                    p.left_reason.as_deref(),
                    Some("CLIENT_INITIATED" | "DUPLICATE_IDENTITY")
                )
        }),
        ("ended", "caller_ended") => {
            rec.is_some_and(|r| matches!(r.plan, CallPlan::Hangup(Party::Caller)))
        }
        ("ended", "callee_ended") => {
            rec.is_some_and(|r| matches!(r.plan, CallPlan::Hangup(Party::Callee)))
        }
        ("rejected", _) => rec.is_some_and(|r| r.reject != Ack::None),
        ("cancelled", _) => rec.is_some_and(|r| r.cancel != Ack::None),
        ("ended", "room_finished") => ix.room_finished.contains(c.room.as_str()),
        _ => by_deadline.is_some(),
    };
    report.check("call.end_cause", &subject, cause, || {
        format!(
            "{} {reason:?}, which nothing in its history explains",
            c.status
        )
    });
    let Some(rec) = rec else {
        report.check("call.known", &subject, false, || {
            "no scenario initiated it".into()
        });
        return;
    };
    let who = |p: Party| p.as_str();
    let expected: Vec<(String, String)> = {
        let e = |s: &str, r: &str| (s.to_owned(), r.to_owned());
        match rec.plan {
            _ if rec.reject == Ack::Ok => vec![e("rejected", "rejected")],
            _ if rec.cancel == Ack::Ok => vec![e("cancelled", "cancelled")],
            CallPlan::Hangup(p) if rec.end == Ack::Ok => {
                vec![e("ended", &format!("{}_ended", who(p)))]
            }
            CallPlan::Leave(p) if rec.departed && rec.seen_live => {
                let mut ends = vec![
                    e("ended", &format!("{}_left", who(p))),
                    e("ended", "both_left"),
                ];
                // The leave's webhook was held back by the fault past the party grace: all
                // the call knew by then was a lost connection (the reconciliation's).
                let conns = if p == Party::Caller { &caller } else { &callee };
                if left_on_purpose_too_late(ix, conns, c) {
                    ends.push(e("failed", "network"));
                }
                ends
            }
            CallPlan::Drop(_) if rec.departed && rec.seen_live => vec![e("failed", "network")],
            CallPlan::NoJoin if rec.accept == Ack::Ok => vec![e("failed", "join_timeout")],
            CallPlan::Miss => vec![e("missed", "no_answer"), e("failed", "push_timeout")],
            CallPlan::NoDevice => vec![e("failed", "no_device"), e("failed", "push_timeout")],
            _ => vec![],
        }
    };
    if !expected.is_empty() {
        let got = (c.status.clone(), reason.to_owned());
        report.check(
            "call.intended_end",
            &subject,
            expected.contains(&got),
            || format!("{:?} should end {expected:?}, ended {got:?}", rec.plan),
        );
    }
    if rec.accept == Ack::Ok {
        report.check(
            "call.accepted_recorded",
            &subject,
            statuses.contains(&"accepted"),
            || format!("the answer was acknowledged but the call went {statuses:?}"),
        );
    }
}

/// Whether a connection's on-purpose leave reached webhook-ingest only after the call was
/// over.
fn left_on_purpose_too_late(
    ix: &Index,
    conns: &[&crate::snapshot::Participation],
    c: &Call,
) -> bool {
    conns
        .iter()
        .filter(|p| p.left_reason.as_deref() == Some("CLIENT_INITIATED"))
        .any(|p| {
            let received =
                ix.s.leaves_received
                    .iter()
                    .filter(|(sid, _)| *sid == p.sid)
                    .map(|(_, at)| *at)
                    .min();
            matches!((received, c.ended_at), (Some(r), Some(ended)) if r > ended)
        })
}

/// Why a call's events are not one path through the table, if they are not.
fn call_path_error(events: &[(&Event, &proto::CallChanged)]) -> Option<String> {
    let allowed = |from: &str, to: &str| {
        domain::call::TRANSITIONS
            .iter()
            .any(|(f, _, t)| f.as_str() == from && t.as_str() == to)
    };
    let mut at = "";
    for (i, (e, p)) in events.iter().enumerate() {
        if p.previous_status != at {
            return Some(format!(
                "event {i} moves from {:?}, the call was {at:?}",
                p.previous_status
            ));
        }
        let ok = if i == 0 {
            matches!(p.status.as_str(), "initiated" | "busy")
        } else {
            allowed(&p.previous_status, &p.status)
        };
        if !ok || e.event_type != format!("call.{}", p.status) {
            return Some(format!(
                "event {i} ({}): {:?} → {:?} is not a transition",
                e.event_type, p.previous_status, p.status
            ));
        }
        at = &p.status;
    }
    let terminal = at
        .parse::<domain::call::CallStatus>()
        .is_ok_and(|s| s.is_terminal());
    (!terminal).then(|| format!("the events end at {at:?}"))
}

fn check_events(report: &mut Report, ix: &Index) {
    let s = ix.s;
    let unpublished: Vec<_> = s
        .events
        .iter()
        .filter(|e| !e.published)
        .map(|e| &e.event_type)
        .collect();
    report.check("events.published", "outbox", unpublished.is_empty(), || {
        format!(
            "{} rows never published: {unpublished:?}",
            unpublished.len()
        )
    });
    for family in bus::Family::ALL {
        let f = family.as_str();
        let outbox = s.events.iter().filter(|e| e.family() == f).count() as u64;
        let stream = s.bus.stream_messages.get(f).copied().unwrap_or(0);
        report.check(
            "events.on_the_bus_once",
            format!("stream {f}"),
            outbox == stream,
            || format!("{outbox} events in the outbox, {stream} messages in the stream"),
        );
    }
    report.check(
        "events.none_dead_lettered",
        "dead letters",
        s.bus.dead_letters == 0,
        || format!("{} events gave up on", s.bus.dead_letters),
    );
    let deliveries: usize = s.events.iter().map(|e| consumers_of(e).len()).sum();
    let (unhandled, owed) = (&ix.unhandled, &ix.owed);
    report.check(
        "events.handled",
        format!(
            "{deliveries} deliveries ({} still owed by JetStream)",
            owed.len()
        ),
        unhandled.is_empty(),
        || unhandled.join("; "),
    );
    let livekit = s.events.iter().filter(|e| e.family() == "livekit").count() as i64;
    report.check(
        "events.webhooks_published",
        "webhook_events",
        livekit == s.webhooks,
        || format!("{} webhooks stored, {livekit} published", s.webhooks),
    );
    // One gift push per gift and recipient device (a gift event still owed to the notifier
    // has its push to come); nobody's device told twice of one event.
    for e in s
        .events
        .iter()
        .filter(|e| e.event_type == "session.gift_sent" && !owed.contains(&e.id))
    {
        let Body::Gift(g) = &e.body else { continue };
        let recipient: Uuid = g.recipient_id.parse().unwrap_or_default();
        let devices = s
            .devices
            .iter()
            .filter(|d| d.user == recipient && d.kind == "standard")
            .count();
        let pushes = s
            .deliveries
            .iter()
            .filter(|d| d.event_id == Some(e.id))
            .count();
        report.check(
            "notify.one_gift_push",
            format!("gift {}", g.gift_row_id),
            pushes == devices,
            || format!("{pushes} pushes for {devices} devices"),
        );
    }
    let mut per_device: HashMap<(Uuid, Uuid), usize> = HashMap::new();
    for d in &s.deliveries {
        if let (Some(e), Some(dev)) = (d.event_id, d.device) {
            *per_device.entry((e, dev)).or_default() += 1;
        }
    }
    let twice: Vec<_> = per_device.iter().filter(|(_, n)| **n > 1).collect();
    report.check(
        "notify.no_device_told_twice",
        "push_deliveries",
        twice.is_empty(),
        || {
            format!(
                "{} (event, device) pairs pushed more than once",
                twice.len()
            )
        },
    );
}

fn check_coins(report: &mut Report, s: &Snapshot, record: &Record) {
    let balances: i64 = s.wallets.iter().map(|(_, b)| b).sum();
    let platform: i64 = s.gifts.iter().map(|g| g.platform_share).sum::<i64>()
        + s.payments
            .iter()
            .map(|p| p.amount - p.host_share)
            .sum::<i64>();
    report.check(
        "coins.conserved",
        "all wallets",
        balances + platform == record.initial_coins,
        || {
            format!(
                "wallets {balances} + platform {platform} != {} at the start",
                record.initial_coins
            )
        },
    );
    for (user, balance) in &s.wallets {
        let ledger: i64 = s
            .ledger
            .iter()
            .filter(|l| l.user == *user)
            .map(|l| l.amount)
            .sum();
        report.check(
            "coins.wallet_is_its_ledger",
            format!("wallet {user}"),
            ledger == *balance,
            || format!("balance {balance}, ledger sum {ledger}"),
        );
    }
    let rows = |kind: &str, r: Uuid| -> Vec<(Uuid, i64)> {
        s.ledger
            .iter()
            .filter(|l| l.kind == kind && l.ref_id == Some(r))
            .map(|l| (l.user, l.amount))
            .collect()
    };
    for g in &s.gifts {
        let sent = rows("gift_sent", g.id);
        let received = rows("gift_received", g.id);
        let want_received = if g.host_share > 0 {
            vec![(g.recipient, g.host_share)]
        } else {
            vec![]
        };
        report.check(
            "coins.gift_ledger",
            format!("gift {}", g.id),
            sent == [(g.sender, -g.coins)]
                && received == want_received
                && g.host_share + g.platform_share == g.coins,
            || {
                format!(
                    "{} coins: sent rows {sent:?}, received rows {received:?}",
                    g.coins
                )
            },
        );
    }
    let sessions: HashMap<Uuid, &Session> = s.sessions.iter().map(|x| (x.id, x)).collect();
    let paid: HashSet<Uuid> = s.payments.iter().map(|p| p.session).collect();
    for session in &paid {
        let payments: Vec<_> = s
            .payments
            .iter()
            .filter(|p| p.session == *session)
            .collect();
        let purchases = rows("ppv_purchase", *session);
        let revenue = rows("ppv_revenue", *session);
        let host = sessions.get(session).map(|x| x.creator);
        let mut want: Vec<(Uuid, i64)> = payments.iter().map(|p| (p.viewer, -p.amount)).collect();
        let mut got = purchases.clone();
        want.sort();
        got.sort();
        let shares: i64 = payments.iter().map(|p| p.host_share).sum();
        report.check(
            "coins.ppv_ledger",
            format!("session {session}"),
            want == got
                && revenue.len() == payments.iter().filter(|p| p.host_share > 0).count()
                && revenue.iter().all(|(u, _)| Some(*u) == host)
                && revenue.iter().map(|(_, a)| a).sum::<i64>() == shares,
            || {
                format!(
                    "{} payments, purchase rows {purchases:?}, revenue rows {revenue:?}",
                    payments.len()
                )
            },
        );
    }
    let gift_ids: HashSet<Uuid> = s.gifts.iter().map(|g| g.id).collect();
    let orphans: Vec<_> = s
        .ledger
        .iter()
        .filter(|l| match l.kind.as_str() {
            "gift_sent" | "gift_received" => !l.ref_id.is_some_and(|r| gift_ids.contains(&r)),
            "ppv_purchase" | "ppv_revenue" => !l.ref_id.is_some_and(|r| paid.contains(&r)),
            "top_up" => false,
            _ => true,
        })
        .collect();
    report.check(
        "coins.no_orphan_ledger_rows",
        "coin_transactions",
        orphans.is_empty(),
        || {
            format!(
                "{} rows without their gift or payment: {orphans:?}",
                orphans.len()
            )
        },
    );
    // Every gift the client was told about exists; none it was not told about.
    let acked: HashSet<Uuid> = record
        .gifts
        .iter()
        .filter(|g| g.ack == Ack::Ok)
        .filter_map(|g| g.gift_row)
        .collect();
    let missing: Vec<_> = acked.difference(&gift_ids).collect();
    let unacked: Vec<_> = gift_ids.difference(&acked).collect();
    report.check(
        "coins.gifts_as_acknowledged",
        "gifts",
        missing.is_empty() && unacked.is_empty(),
        || {
            format!(
                "acknowledged but absent: {missing:?}; present but never acknowledged: {unacked:?}"
            )
        },
    );
    report.check(
        "coins.idempotency_keys_completed",
        "idempotency_keys",
        s.open_keys == 0,
        || format!("{} keys claimed and never completed", s.open_keys),
    );
    // A pay-per-view viewer is charged exactly once, however often they asked for a token.
    for p in &s.payments {
        let asked = record
            .tokens
            .iter()
            .any(|t| t.user == p.viewer && t.session == p.session && t.ack == Ack::Ok);
        report.check(
            "coins.charged_with_a_token",
            format!("payment of {} for {}", p.viewer, p.session),
            asked,
            || "charged without a token the client received".into(),
        );
    }
    let ppv: HashSet<Uuid> = s
        .sessions
        .iter()
        .filter(|x| x.price.is_some())
        .map(|x| x.id)
        .collect();
    let mut viewers: Vec<(Uuid, Uuid)> = record
        .tokens
        .iter()
        .filter(|t| t.ack == Ack::Ok && ppv.contains(&t.session))
        .map(|t| (t.user, t.session))
        .collect();
    viewers.sort();
    viewers.dedup();
    for (viewer, session) in viewers {
        let n = s
            .payments
            .iter()
            .filter(|p| p.viewer == viewer && p.session == session)
            .count();
        report.check(
            "coins.ppv_charged_once",
            format!("{viewer} in {session}"),
            n == 1,
            || format!("{n} payments for a viewer admitted with a token"),
        );
    }
}

#[cfg(test)]
mod tests {
    //! The checker can fail: a consistent made-up trial passes, and each kind of broken
    //! promise planted in it (a double charge, a stuck session, a lost event, a deadline
    //! that fired early or twice, a ring pushed twice) is reported.

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::record::{GiftRecord, TokenRecord};
    use crate::snapshot::{BusState, Delivery, Device, Gift, Ledger, Participation};

    const GRACE: Settings = Settings {
        host_grace: chrono::Duration::seconds(3),
        patience: std::time::Duration::from_secs(90),
    };

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).expect("time")
    }

    struct Fixture {
        snap: Snapshot,
        record: Record,
        session: Uuid,
        call: Uuid,
        gift: Uuid,
        viewer: Uuid,
        ring_event: Uuid,
    }

    fn event(event_type: &str, body: Body) -> Event {
        Event {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            published: true,
            body,
        }
    }

    fn session_changed(id: Uuid, host: Uuid, from: &str, to: &str, reason: &str) -> Body {
        Body::Session(proto::SessionChanged {
            session_id: id.to_string(),
            creator_id: host.to_string(),
            status: to.into(),
            previous_status: from.into(),
            end_reason: reason.into(),
            ..Default::default()
        })
    }

    fn call_changed(id: Uuid, from: &str, to: &str, reason: &str) -> Body {
        Body::Call(proto::CallChanged {
            call_id: id.to_string(),
            status: to.into(),
            previous_status: from.into(),
            ended_reason: reason.into(),
            ..Default::default()
        })
    }

    fn deadline(kind: &str, subject: Uuid, due: i64, cancelled: bool) -> Deadline {
        Deadline {
            id: Uuid::now_v7(),
            kind: kind.into(),
            subject,
            due_at: t(due),
            fired_at: None,
            cancelled_at: cancelled.then(|| t(due - 1)),
            outcome: None,
        }
    }

    /// A trial in which everything went right: a session the host ended after a 10-coin
    /// gift, and a call the caller hung up.
    fn fixture() -> Fixture {
        let (host, viewer, caller, callee) = (
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
            Uuid::new_v4(),
        );
        let (session, call, gift) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let room = format!("live_video_{session}");
        let call_room = format!("call_audio_{call}_1800000000");
        let host_device = Uuid::new_v4();
        let callee_device = Uuid::new_v4();
        let mut s = Snapshot::default();
        s.sessions.push(Session {
            id: session,
            creator: host,
            status: "ended".into(),
            end_reason: Some("host_ended".into()),
            room: room.clone(),
            price: None,
            ended_at: Some(t(30)),
            viewer_count: 0,
            total_gifts_received: 1,
            total_gift_coins: 10,
        });
        s.calls.push(Call {
            id: call,
            caller,
            callee,
            status: "ended".into(),
            ended_reason: Some("caller_ended".into()),
            room: call_room.clone(),
            ended_at: Some(t(60)),
        });
        for (who, r) in [
            (host, &room),
            (viewer, &room),
            (caller, &call_room),
            (callee, &call_room),
        ] {
            s.participations.push(Participation {
                sid: format!("PA_{}", Uuid::new_v4().simple()),
                room: r.clone(),
                identity: who.to_string(),
                joined_at: Some(t(5)),
                left_at: Some(t(30)),
                left_reason: Some("ROOM_DELETED".into()),
            });
        }
        s.deadlines
            .push(deadline("session.no_show", session, 600, true));
        s.deadlines
            .push(deadline("session.max_duration", session, 14_400, true));
        s.deadlines
            .push(deadline("call.push_timeout", call, 45, true));
        s.deadlines
            .push(deadline("call.ring_timeout", call, 50, true));
        let mut events = vec![
            event(
                "session.created",
                session_changed(session, host, "", "created", ""),
            ),
            event(
                "session.live",
                session_changed(session, host, "created", "live", ""),
            ),
            event(
                "session.gift_sent",
                Body::Gift(proto::GiftSent {
                    session_id: session.to_string(),
                    gift_row_id: gift.to_string(),
                    sender_id: viewer.to_string(),
                    recipient_id: host.to_string(),
                    coins: 10,
                    host_share: 7,
                    ..Default::default()
                }),
            ),
            event(
                "session.ended",
                session_changed(session, host, "live", "ended", "host_ended"),
            ),
            event("call.initiated", call_changed(call, "", "initiated", "")),
            event(
                "notify.push_result",
                Body::Push(proto::PushResult {
                    ref_id: call.to_string(),
                    purpose: "incoming_call".into(),
                    delivered: true,
                    devices: 1,
                    ..Default::default()
                }),
            ),
        ];
        for (from, to, reason) in [
            ("initiated", "ringing", ""),
            ("ringing", "accepted", ""),
            ("accepted", "live", ""),
            ("live", "ended", "caller_ended"),
        ] {
            events.push(event(
                &format!("call.{to}"),
                call_changed(call, from, to, reason),
            ));
        }
        let ring_event = events[4].id;
        for e in &events {
            for c in consumers_of(e) {
                s.processed.insert((c.to_owned(), e.id));
            }
        }
        s.deliveries.push(Delivery {
            event_id: Some(ring_event),
            device: Some(callee_device),
            user: callee,
            push_kind: "voip".into(),
        });
        s.deliveries.push(Delivery {
            event_id: Some(events[2].id),
            device: Some(host_device),
            user: host,
            push_kind: "alert".into(),
        });
        s.devices.push(Device {
            id: host_device,
            user: host,
            platform: "android".into(),
            kind: "standard".into(),
        });
        s.devices.push(Device {
            id: callee_device,
            user: callee,
            platform: "ios".into(),
            kind: "voip".into(),
        });
        s.follows.push((viewer, host));
        s.live_notified.push((session, viewer));
        s.wallets = vec![(viewer, 990), (host, 7)];
        s.ledger = vec![
            Ledger {
                user: viewer,
                amount: 1000,
                kind: "top_up".into(),
                ref_id: None,
            },
            Ledger {
                user: viewer,
                amount: -10,
                kind: "gift_sent".into(),
                ref_id: Some(gift),
            },
            Ledger {
                user: host,
                amount: 7,
                kind: "gift_received".into(),
                ref_id: Some(gift),
            },
        ];
        s.gifts.push(Gift {
            id: gift,
            session,
            sender: viewer,
            recipient: host,
            coins: 10,
            host_share: 7,
            platform_share: 3,
        });
        let mut per_family: HashMap<String, u64> = HashMap::new();
        for e in &events {
            *per_family.entry(e.family().to_owned()).or_default() += 1;
        }
        for f in bus::Family::ALL {
            per_family.entry(f.as_str().to_owned()).or_default();
        }
        s.bus = BusState {
            stream_messages: per_family,
            dead_letters: 0,
            consumers: HashMap::new(),
        };
        s.events = events;
        let mut sr = SessionRecord::new(host, SessionPlan::HostEnds);
        sr.id = Some(session);
        sr.create = Ack::Ok;
        sr.host_joined = true;
        sr.end = Ack::Ok;
        let mut cr = CallRecord::new(caller, callee, CallPlan::Hangup(Party::Caller));
        cr.id = Some(call);
        cr.initiate = Ack::Ok;
        cr.accept = Ack::Ok;
        cr.both_joined = true;
        cr.seen_live = true;
        cr.end = Ack::Ok;
        let record = Record {
            sessions: vec![sr],
            calls: vec![cr],
            gifts: vec![GiftRecord {
                sender: viewer,
                session,
                key: "k1".into(),
                ack: Ack::Ok,
                gift_row: Some(gift),
            }],
            tokens: vec![TokenRecord {
                user: viewer,
                session,
                ack: Ack::Ok,
            }],
            gave_up: vec![],
            initial_coins: 1000,
        };
        Fixture {
            snap: s,
            record,
            session,
            call,
            gift,
            viewer,
            ring_event,
        }
    }

    fn rules(f: &Fixture) -> Vec<&'static str> {
        let mut r: Vec<_> = check(&f.snap, &f.record, &GRACE)
            .violations
            .iter()
            .map(|v| v.rule)
            .collect();
        r.sort();
        r.dedup();
        r
    }

    #[test]
    fn a_consistent_trial_passes() {
        let f = fixture();
        let report = check(&f.snap, &f.record, &GRACE);
        assert!(report.violations.is_empty(), "{:#?}", report.violations);
        assert!(report.checked > 40, "{}", report.checked);
    }

    #[test]
    fn a_double_charge_is_found() {
        let mut f = fixture();
        // The gift's debit written twice: the wallet still equals its ledger, but the
        // gift has two debits and ten coins vanished.
        f.snap.ledger.push(Ledger {
            user: f.viewer,
            amount: -10,
            kind: "gift_sent".into(),
            ref_id: Some(f.gift),
        });
        f.snap.wallets[0].1 -= 10;
        assert_eq!(rules(&f), ["coins.conserved", "coins.gift_ledger"]);
    }

    #[test]
    fn a_gift_charged_but_never_acknowledged_is_found() {
        let mut f = fixture();
        f.record.gifts[0].ack = Ack::Refused("FORBIDDEN".into());
        assert_eq!(rules(&f), ["coins.gifts_as_acknowledged"]);
    }

    #[test]
    fn a_stuck_session_is_found() {
        let mut f = fixture();
        let s = &mut f.snap.sessions[0];
        s.status = "live".into();
        s.end_reason = None;
        s.ended_at = None;
        f.snap.events.retain(|e| e.event_type != "session.ended");
        *f.snap
            .bus
            .stream_messages
            .get_mut("session")
            .expect("session") -= 1;
        f.snap.present.push((f.session, f.viewer));
        let r = rules(&f);
        for rule in [
            "session.terminal",
            "session.event_path",
            "session.ended_once",
            "session.nobody_left_present",
        ] {
            assert!(r.contains(&rule), "{rule} missing from {r:?}");
        }
    }

    #[test]
    fn a_lost_event_is_found() {
        let mut f = fixture();
        // Published but never reached the stream, so the notifier never rang.
        f.snap
            .processed
            .remove(&("notifier-push-calls".to_owned(), f.ring_event));
        *f.snap.bus.stream_messages.get_mut("call").expect("call") -= 1;
        assert_eq!(rules(&f), ["events.handled", "events.on_the_bus_once"]);
    }

    #[test]
    fn a_deadline_that_fired_early_or_twice_is_found() {
        let mut f = fixture();
        let mut early = deadline("session.host_grace", f.session, 20, false);
        early.fired_at = Some(t(19));
        early.outcome = Some("ended".into());
        f.snap.deadlines.push(early);
        let mut twice = deadline("session.max_duration", f.session, 25, false);
        twice.fired_at = Some(t(26));
        twice.outcome = Some("ended".into());
        f.snap.deadlines.push(twice);
        let r = rules(&f);
        for rule in [
            "deadline.never_early",
            "deadline.one_effect",
            "session.deadline_fired_once",
        ] {
            assert!(r.contains(&rule), "{rule} missing from {r:?}");
        }
    }

    #[test]
    fn a_call_left_ringing_and_busy_is_found() {
        let mut f = fixture();
        let c = &mut f.snap.calls[0];
        c.status = "ringing".into();
        c.ended_reason = None;
        c.ended_at = None;
        f.snap.busy.push((c.caller, f.call));
        let r = rules(&f);
        for rule in ["call.terminal", "call.busy_released", "call.intended_end"] {
            assert!(r.contains(&rule), "{rule} missing from {r:?}");
        }
    }

    #[test]
    fn a_ring_pushed_twice_is_found() {
        let mut f = fixture();
        let again = f.snap.deliveries[0].clone();
        f.snap.deliveries.push(again);
        assert_eq!(
            rules(&f),
            ["notify.no_device_told_twice", "notify.one_ring_per_device"]
        );
    }

    #[test]
    fn a_host_disconnect_before_the_grace_is_found() {
        let mut f = fixture();
        let s = &mut f.snap.sessions[0];
        s.end_reason = Some("host_disconnected".into());
        // The host left at 30 s; the session ended at 31 s, before the 3 s grace.
        s.ended_at = Some(t(31));
        let ended = f
            .snap
            .events
            .iter_mut()
            .find(|e| e.event_type == "session.ended")
            .expect("ended");
        if let Body::Session(p) = &mut ended.body {
            p.end_reason = "host_disconnected".into();
        }
        let mut grace = deadline("session.host_grace", f.session, 31, false);
        grace.fired_at = Some(t(31));
        grace.outcome = Some("ended".into());
        f.snap.deadlines.push(grace);
        f.record.sessions[0].plan = SessionPlan::HostDrops;
        f.record.sessions[0].end = Ack::None;
        f.record.sessions[0].host_dropped_for_good = true;
        assert_eq!(rules(&f), ["session.grace_respected"]);
    }

    /// A party who left on purpose: `<party>_left`, unless the leave reached us only after
    /// the party grace had failed the call.
    fn left_and_failed(received: i64) -> Fixture {
        let mut f = fixture();
        let c = &mut f.snap.calls[0];
        c.status = "failed".into();
        c.ended_reason = Some("network".into());
        let caller = c.caller.to_string();
        let p = f
            .snap
            .participations
            .iter_mut()
            .find(|p| p.identity == caller)
            .expect("caller");
        p.left_reason = Some("CLIENT_INITIATED".into());
        p.left_at = Some(t(40));
        let sid = p.sid.clone();
        f.snap.leaves_received.push((sid, t(received)));
        let ended = f
            .snap
            .events
            .iter_mut()
            .find(|e| e.event_type == "call.ended")
            .expect("ended");
        ended.event_type = "call.failed".into();
        ended.body = call_changed(f.call, "live", "failed", "network");
        let mut grace = deadline("call.party_grace", f.call, 58, false);
        grace.fired_at = Some(t(60));
        grace.outcome = Some("failed".into());
        f.snap.deadlines.push(grace);
        let r = &mut f.record.calls[0];
        r.plan = CallPlan::Leave(Party::Caller);
        r.end = Ack::None;
        r.departed = true;
        f
    }

    #[test]
    fn a_leave_taken_for_a_drop_is_found_unless_it_came_too_late() {
        assert_eq!(rules(&left_and_failed(45)), ["call.intended_end"]);
        assert!(rules(&left_and_failed(70)).is_empty());
    }

    #[test]
    fn an_event_held_by_a_consumer_with_a_long_ack_wait_is_owed_not_lost() {
        let mut f = fixture();
        let gift = f
            .snap
            .events
            .iter()
            .find(|e| e.event_type == "session.gift_sent")
            .expect("gift")
            .id;
        f.snap
            .processed
            .remove(&("notifier-push-sessions".to_owned(), gift));
        f.snap.deliveries.retain(|d| d.event_id != Some(gift));
        let mut held = crate::snapshot::ConsumerState {
            ack_wait: std::time::Duration::from_secs(300),
            ack_pending: 0,
        };
        f.snap
            .bus
            .consumers
            .insert("notifier-push-sessions".into(), held);
        assert_eq!(rules(&f), ["events.handled", "notify.one_gift_push"]);
        held.ack_pending = 1;
        f.snap
            .bus
            .consumers
            .insert("notifier-push-sessions".into(), held);
        assert!(rules(&f).is_empty(), "{:?}", rules(&f));
        assert_eq!(unhandled(&f.snap, GRACE.patience).1.len(), 1);
    }
}

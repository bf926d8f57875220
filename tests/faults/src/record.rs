//! What the workload did, as its clients saw it: the plan of every session and call, and
//! the final answer of every request that matters to the end state. The invariant checker
//! reads it next to the database's record.

use uuid::Uuid;

/// The final answer a request got, after the client's retries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Ack {
    /// Not sent.
    #[default]
    None,
    /// 2xx.
    Ok,
    /// A final refusal (4xx), with its `errorCode`.
    Refused(String),
    /// No final answer within the retry budget.
    GaveUp,
}

impl Ack {
    pub fn of(answer: &Result<crate::client::Answer, crate::client::GaveUp>) -> Ack {
        match answer {
            Ok(a) if a.ok() => Ack::Ok,
            Ok(a) => Ack::Refused(a.code().to_owned()),
            Err(_) => Ack::GaveUp,
        }
    }

    /// Sent and answered (2xx or a refusal).
    pub fn answered(&self) -> bool {
        matches!(self, Ack::Ok | Ack::Refused(_))
    }
}

/// How a session's life is scripted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionPlan {
    /// The host joins, viewers come and gift, the host ends it.
    HostEnds,
    /// The host joins and drops for good: the host grace ends the session.
    HostDrops,
    /// The host drops and comes back within the grace, then ends it.
    HostReturns,
    /// The host pauses and resumes, then ends it.
    PauseResume,
    /// The host never joins: the no-show time ends it.
    NoShow,
    /// Created to measure a request under a LiveKit fault, then ended by its host.
    Probe,
}

/// One session of the workload.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub creator: Uuid,
    pub plan: SessionPlan,
    pub id: Option<Uuid>,
    pub create: Ack,
    /// The host's simulated participant joined the room at least once.
    pub host_joined: bool,
    /// The host's participant left for good (a drop with no return).
    pub host_dropped_for_good: bool,
    pub pause: Ack,
    pub resume: Ack,
    pub end: Ack,
}

impl SessionRecord {
    pub fn new(creator: Uuid, plan: SessionPlan) -> Self {
        SessionRecord {
            creator,
            plan,
            id: None,
            create: Ack::None,
            host_joined: false,
            host_dropped_for_good: false,
            pause: Ack::None,
            resume: Ack::None,
            end: Ack::None,
        }
    }
}

/// A party of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Caller,
    Callee,
}

impl Party {
    pub fn as_str(self) -> &'static str {
        match self {
            Party::Caller => "caller",
            Party::Callee => "callee",
        }
    }
}

/// How a call is scripted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPlan {
    /// Answered, both join, this party hangs up (`POST /end`).
    Hangup(Party),
    /// Answered, both join, this party leaves the room.
    Leave(Party),
    /// Answered, both join, this party drops and never comes back: the party grace fails it.
    Drop(Party),
    /// The callee rejects the ringing call.
    Reject,
    /// The caller cancels it while it rings.
    Cancel,
    /// Nobody answers: the ring timeout makes it missed.
    Miss,
    /// The callee has no device: the push fails it.
    NoDevice,
    /// Answered, nobody joins: the join timeout fails it.
    NoJoin,
    /// Initiated to measure a request under a LiveKit fault, then cancelled.
    Probe,
}

/// One call of the workload.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub caller: Uuid,
    pub callee: Uuid,
    pub plan: CallPlan,
    pub id: Option<Uuid>,
    pub initiate: Ack,
    /// Both parties' simulated participants joined the room.
    pub both_joined: bool,
    /// The call was seen `live` by a party.
    pub seen_live: bool,
    pub accept: Ack,
    pub reject: Ack,
    pub cancel: Ack,
    /// `POST /end` by the plan's party.
    pub end: Ack,
    /// The plan's party left or dropped (the sim confirmed it).
    pub departed: bool,
}

impl CallRecord {
    pub fn new(caller: Uuid, callee: Uuid, plan: CallPlan) -> Self {
        CallRecord {
            caller,
            callee,
            plan,
            id: None,
            initiate: Ack::None,
            both_joined: false,
            seen_live: false,
            accept: Ack::None,
            reject: Ack::None,
            cancel: Ack::None,
            end: Ack::None,
            departed: false,
        }
    }
}

/// One gift request (one `Idempotency-Key`, retried with the same key).
#[derive(Debug, Clone)]
pub struct GiftRecord {
    pub sender: Uuid,
    pub session: Uuid,
    pub key: String,
    pub ack: Ack,
    /// The gift row the 201 named.
    pub gift_row: Option<Uuid>,
}

/// A viewer's token request for a session (a pay-per-view one charges on the first).
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub user: Uuid,
    pub session: Uuid,
    pub ack: Ack,
}

/// Everything a trial's workload did.
#[derive(Debug, Clone, Default)]
pub struct Record {
    pub sessions: Vec<SessionRecord>,
    pub calls: Vec<CallRecord>,
    pub gifts: Vec<GiftRecord>,
    pub tokens: Vec<TokenRecord>,
    /// Requests that never got a final answer (each is a violation).
    pub gave_up: Vec<String>,
    /// Coins in every wallet before the workload.
    pub initial_coins: i64,
}

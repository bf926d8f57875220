//! Who is in which session: the host and the active participants, read from the database the
//! first time a session's event needs it and kept current by the participant events that
//! follow (the SESSION stream is consumed in order, so a join or leave already in the
//! database when it was read is applied again harmlessly).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use uuid::Uuid;

/// An entry not touched for this long is dropped; the next event reads it again. Bounds the
/// map when a session's `ended` event never comes.
pub const IDLE_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone)]
pub struct Audience {
    pub host: Option<Uuid>,
    pub participants: HashSet<Uuid>,
    touched: Instant,
}

impl Audience {
    pub fn new(host: Option<Uuid>, participants: impl IntoIterator<Item = Uuid>) -> Self {
        Audience {
            host,
            participants: participants.into_iter().collect(),
            touched: Instant::now(),
        }
    }

    /// Everyone in the session, each once.
    pub fn members(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.host.into_iter().chain(
            self.participants
                .iter()
                .copied()
                .filter(move |u| Some(*u) != self.host),
        )
    }
}

/// The sessions this replica has seen events of.
#[derive(Debug, Default)]
pub struct Audiences {
    sessions: HashMap<Uuid, Audience>,
}

impl Audiences {
    pub fn get_mut(&mut self, session: Uuid) -> Option<&mut Audience> {
        let a = self.sessions.get_mut(&session)?;
        a.touched = Instant::now();
        Some(a)
    }

    pub fn insert(&mut self, session: Uuid, audience: Audience) {
        self.sessions.insert(session, audience);
    }

    pub fn remove(&mut self, session: Uuid) {
        self.sessions.remove(&session);
    }

    pub fn contains(&self, session: Uuid) -> bool {
        self.sessions.contains_key(&session)
    }

    pub fn sweep(&mut self) {
        self.sessions
            .retain(|_, a| a.touched.elapsed() < IDLE_AFTER);
    }
}

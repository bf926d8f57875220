//! `moderation.<action>` events (`ModerationAction`), written through the outbox in the
//! transaction of the action.

use bus::{Event, Family, proto};
use diesel_async::AsyncPgConnection;
use uuid::Uuid;

/// Action names: the event is `moderation.<name>`.
pub mod actions {
    pub const KICK: &str = "kick";
    pub const SESSION_BAN: &str = "session_ban";
    pub const SESSION_UNBAN: &str = "session_unban";
    pub const CREATOR_BAN: &str = "creator_ban";
    pub const CREATOR_UNBAN: &str = "creator_unban";
    pub const GLOBAL_BAN: &str = "global_ban";
    pub const UNBAN: &str = "unban";
    pub const MESSAGE_DELETED: &str = "message_deleted";
    pub const TERMINATED: &str = "terminated";
    pub const REPORTED: &str = "reported";
    pub const REPORT_RESOLVED: &str = "report_resolved";
    pub const WARN: &str = "warn";
    pub const KILL_SWITCH: &str = "kill_switch";
    /// A banned identity that joined anyway was removed from the room.
    pub const BANNED_REMOVED: &str = "banned_removed";
}

/// What an action is about; empty fields stay empty in the payload.
#[derive(Debug, Default, Clone)]
pub struct Action<'a> {
    pub session: Option<Uuid>,
    pub user: Option<Uuid>,
    pub actor: Option<Uuid>,
    pub reason: Option<&'a str>,
    pub message: Option<Uuid>,
}

fn text(id: Option<Uuid>) -> String {
    id.map(|i| i.to_string()).unwrap_or_default()
}

/// Writes `moderation.<name>`; the aggregate is the session, else the user, else the actor.
pub async fn publish(
    c: &mut AsyncPgConnection,
    subjects: &bus::Subjects,
    name: &str,
    a: Action<'_>,
) -> Result<(), diesel::result::Error> {
    let payload = proto::ModerationAction {
        action: name.to_owned(),
        session_id: text(a.session),
        user_id: text(a.user),
        actor_id: text(a.actor),
        reason: a.reason.unwrap_or_default().to_owned(),
        message_id: text(a.message),
    };
    let aggregate = a.session.or(a.user).or(a.actor).unwrap_or_default();
    bus::outbox::enqueue(
        c,
        subjects,
        &Event::new(Family::Moderation, name, aggregate, &payload),
    )
    .await
}

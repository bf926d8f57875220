//! Writing events: `enqueue` inserts the event into the outbox in the caller's transaction.

use diesel_async::{AsyncPgConnection, RunQueryDsl};

use db::models::NewOutboxRow;
use db::schema::outbox;

use crate::envelope::Event;
use crate::subjects::Subjects;

/// Adds the event to the outbox. Call it inside the transaction of the state change it
/// reports: both commit or neither does. The current span's trace context is kept with it.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    subjects: &Subjects,
    event: &Event,
) -> Result<(), diesel::result::Error> {
    enqueue_all(conn, subjects, std::slice::from_ref(event)).await
}

/// Adds several events in one statement.
pub async fn enqueue_all(
    conn: &mut AsyncPgConnection,
    subjects: &Subjects,
    events: &[Event],
) -> Result<(), diesel::result::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let mut headers = crate::trace::current_headers();
    let rows: Vec<NewOutboxRow> = events
        .iter()
        .map(|e| {
            headers.insert("Ipelya-Event-Type".into(), e.event_type.clone());
            NewOutboxRow {
                id: e.id,
                subject: e.subject(subjects),
                payload: e.encode(),
                headers: serde_json::to_value(&headers).unwrap_or_default(),
            }
        })
        .collect();
    diesel::insert_into(outbox::table)
        .values(&rows)
        .execute(conn)
        .await?;
    crate::wake::OUTBOX.notify_waiters();
    Ok(())
}

//! The envelope every event travels in, and what a consumer receives.

use chrono::{DateTime, Utc};
use prost::Message;
use uuid::Uuid;

use crate::proto;
use crate::subjects::{Family, Subjects};

/// An event to publish (through the outbox).
#[derive(Debug, Clone)]
pub struct Event {
    pub id: Uuid,
    /// Event type without namespace, `session.live`.
    pub event_type: String,
    pub family: Family,
    pub aggregate_id: String,
    pub occurred_at: DateTime<Utc>,
    pub payload: Vec<u8>,
}

impl Event {
    /// A new event with a fresh UUIDv7 id, happening now.
    pub fn new(
        family: Family,
        name: &str,
        aggregate_id: impl ToString,
        payload: &impl Message,
    ) -> Self {
        Event {
            id: Uuid::now_v7(),
            event_type: format!("{}.{name}", family.as_str()),
            family,
            aggregate_id: aggregate_id.to_string(),
            occurred_at: Utc::now(),
            payload: payload.encode_to_vec(),
        }
    }

    /// The subject under a namespace.
    pub fn subject(&self, subjects: &Subjects) -> String {
        let name = self
            .event_type
            .split_once('.')
            .map(|(_, n)| n)
            .unwrap_or(&self.event_type);
        subjects.subject(self.family, name)
    }

    /// Encodes the envelope (the NATS message body).
    pub fn encode(&self) -> Vec<u8> {
        proto::Envelope {
            id: self.id.to_string(),
            r#type: self.event_type.clone(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: self.occurred_at.timestamp(),
                nanos: self.occurred_at.timestamp_subsec_nanos() as i32,
            }),
            aggregate_id: self.aggregate_id.clone(),
            payload: self.payload.clone(),
        }
        .encode_to_vec()
    }
}

/// An event as a consumer receives it.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub id: Uuid,
    pub event_type: String,
    pub aggregate_id: String,
    pub occurred_at: DateTime<Utc>,
    pub payload: Vec<u8>,
    pub subject: String,
    /// How many times JetStream delivered it (1 the first time).
    pub delivered: i64,
}

/// Why a NATS message is not a valid envelope.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not an envelope: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("envelope id is not a UUID")]
    BadId,
}

impl Incoming {
    pub fn decode(subject: &str, body: &[u8], delivered: i64) -> Result<Self, DecodeError> {
        let env = proto::Envelope::decode(body)?;
        let id = Uuid::parse_str(&env.id).map_err(|_| DecodeError::BadId)?;
        let occurred_at = env
            .occurred_at
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
            .unwrap_or_else(Utc::now);
        Ok(Incoming {
            id,
            event_type: env.r#type,
            aggregate_id: env.aggregate_id,
            occurred_at,
            payload: env.payload,
            subject: subject.to_owned(),
            delivered,
        })
    }

    /// Decodes the payload as `M`.
    pub fn payload<M: Message + Default>(&self) -> Result<M, prost::DecodeError> {
        M::decode(self.payload.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let payload = proto::SessionChanged {
            session_id: "s1".into(),
            status: "live".into(),
            ..Default::default()
        };
        let ev = Event::new(Family::Session, "live", "s1", &payload);
        let subjects = Subjects::new("ns");
        assert_eq!(ev.subject(&subjects), "ns.session.live");
        let back = Incoming::decode("ns.session.live", &ev.encode(), 1).unwrap();
        assert_eq!(back.id, ev.id);
        assert_eq!(back.event_type, "session.live");
        assert_eq!(back.payload::<proto::SessionChanged>().unwrap(), payload);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Incoming::decode("x", b"\xff\xff\xff", 1).is_err());
    }
}

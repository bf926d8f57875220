//! Subjects and streams. Every subject is `<family>.<event>`, optionally under a namespace
//! (`<ns>.<family>.<event>`) so several test runs share one NATS server in isolation.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

/// The families of events; each is one JetStream stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    LiveKit,
    Session,
    Call,
    Moderation,
    Notify,
}

impl Family {
    pub const ALL: [Family; 5] = [
        Family::LiveKit,
        Family::Session,
        Family::Call,
        Family::Moderation,
        Family::Notify,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Family::LiveKit => "livekit",
            Family::Session => "session",
            Family::Call => "call",
            Family::Moderation => "moderation",
            Family::Notify => "notify",
        }
    }
}

/// Subject and stream names under one namespace.
#[derive(Debug, Clone, Default)]
pub struct Subjects {
    namespace: Option<String>,
}

impl Subjects {
    /// `namespace` empty means none (production).
    pub fn new(namespace: impl Into<String>) -> Self {
        let ns: String = namespace.into();
        Subjects {
            namespace: (!ns.is_empty()).then_some(ns),
        }
    }

    fn prefix(&self) -> String {
        self.namespace
            .as_ref()
            .map(|n| format!("{n}."))
            .unwrap_or_default()
    }

    /// `session.live`, or `<ns>.session.live`.
    pub fn subject(&self, family: Family, event: &str) -> String {
        format!("{}{}.{event}", self.prefix(), family.as_str())
    }

    /// Every subject of a family (`session.>`).
    pub fn family_filter(&self, family: Family) -> String {
        format!("{}{}.>", self.prefix(), family.as_str())
    }

    /// The event type of a subject: the subject without the namespace (`session.live`).
    pub fn event_type<'a>(&self, subject: &'a str) -> &'a str {
        match &self.namespace {
            Some(ns) => subject
                .strip_prefix(ns.as_str())
                .and_then(|s| s.strip_prefix('.'))
                .unwrap_or(subject),
            None => subject,
        }
    }

    /// Stream name of a family: `SESSION`, or `<NS>_SESSION`.
    pub fn stream(&self, family: Family) -> String {
        let base = family.as_str().to_uppercase();
        match &self.namespace {
            Some(ns) => format!("{}_{base}", ns.to_uppercase()),
            None => base,
        }
    }

    /// Subject where events that failed `max_deliver` times go.
    pub fn dead_letter(&self, consumer: &str) -> String {
        format!("{}deadletter.{consumer}", self.prefix())
    }

    pub fn is_namespaced(&self) -> bool {
        self.namespace.is_some()
    }

    /// Creates (or finds) every family's stream, with `NATS_STREAM_REPLICAS` copies each.
    /// Called by every service at start-up.
    pub async fn ensure_streams(&self, js: &jetstream::Context) -> anyhow::Result<()> {
        self.ensure_streams_with_replicas(js, stream_replicas()?)
            .await
    }

    /// [`Subjects::ensure_streams`] with an explicit replica count. A stream that exists
    /// already keeps the count it was created with.
    pub async fn ensure_streams_with_replicas(
        &self,
        js: &jetstream::Context,
        replicas: usize,
    ) -> anyhow::Result<()> {
        for family in Family::ALL {
            let config = stream::Config {
                name: self.stream(family),
                subjects: vec![self.family_filter(family)],
                storage: stream::StorageType::File,
                // The relay may publish a row again after a crash between the publish and
                // the mark: JetStream drops it by Nats-Msg-Id inside this window.
                duplicate_window: Duration::from_secs(120),
                max_age: if self.is_namespaced() {
                    Duration::from_secs(3600)
                } else {
                    Duration::from_secs(7 * 24 * 3600)
                },
                num_replicas: replicas,
                ..Default::default()
            };
            js.get_or_create_stream(config)
                .await
                .map_err(|e| anyhow::anyhow!("creating stream {}: {e}", self.stream(family)))?;
        }
        // Dead letters are kept for operators to inspect and replay.
        let dead = stream::Config {
            name: self.dead_letter_stream(),
            subjects: vec![format!("{}deadletter.>", self.prefix())],
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(14 * 24 * 3600),
            num_replicas: replicas,
            ..Default::default()
        };
        js.get_or_create_stream(dead)
            .await
            .map_err(|e| anyhow::anyhow!("creating stream {}: {e}", self.dead_letter_stream()))?;
        Ok(())
    }

    /// Stream of the dead letters: `DEADLETTER`, or `<NS>_DEADLETTER`.
    pub fn dead_letter_stream(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}_DEADLETTER", ns.to_uppercase()),
            None => "DEADLETTER".to_owned(),
        }
    }
}

/// Copies JetStream keeps of each stream: `NATS_STREAM_REPLICAS`, 1 (a single server) unless
/// set; 3 on a 3-node cluster, so a stream survives the loss of one node. Read here rather
/// than in each service's configuration because every caller of `ensure_streams` (the
/// services, the load generator) must create the streams alike.
pub fn stream_replicas() -> anyhow::Result<usize> {
    parse_replicas(std::env::var("NATS_STREAM_REPLICAS").ok().as_deref())
}

/// JetStream accepts 1 to 5 replicas.
fn parse_replicas(value: Option<&str>) -> anyhow::Result<usize> {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return Ok(1);
    };
    match v.parse::<usize>() {
        Ok(n @ 1..=5) => Ok(n),
        _ => anyhow::bail!("environment variable NATS_STREAM_REPLICAS=`{v}` is invalid: 1 to 5"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_and_without_namespace() {
        let plain = Subjects::new("");
        assert_eq!(plain.subject(Family::Session, "live"), "session.live");
        assert_eq!(plain.stream(Family::LiveKit), "LIVEKIT");
        assert_eq!(plain.event_type("session.live"), "session.live");
        let ns = Subjects::new("t1");
        assert_eq!(ns.subject(Family::Call, "ringing"), "t1.call.ringing");
        assert_eq!(ns.family_filter(Family::Call), "t1.call.>");
        assert_eq!(ns.stream(Family::Call), "T1_CALL");
        assert_eq!(ns.event_type("t1.call.ringing"), "call.ringing");
        assert_eq!(ns.dead_letter("sm"), "t1.deadletter.sm");
    }

    #[test]
    fn stream_replicas_default_to_one_and_stay_in_jetstream_range() {
        assert_eq!(parse_replicas(None).unwrap(), 1);
        assert_eq!(parse_replicas(Some("")).unwrap(), 1);
        assert_eq!(parse_replicas(Some("3")).unwrap(), 3);
        for bad in ["0", "6", "-1", "three", " 3"] {
            let e = parse_replicas(Some(bad)).unwrap_err().to_string();
            assert!(e.contains("NATS_STREAM_REPLICAS"), "{bad}: {e}");
        }
    }
}

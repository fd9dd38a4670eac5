//! The body of every event: a CloudEvents 1.0 event in structured JSON mode
//! (`application/cloudevents+json`), the same on a webhook and on RabbitMQ.

use chrono::NaiveDateTime;
use serde::Serialize;
use serde_json::value::RawValue;

use super::EventType;

/// One event as sent.
#[derive(Debug, Serialize)]
pub struct CloudEvent<'a> {
    pub specversion: &'static str,
    /// Unique per event, the same on every retry (`webhook-id`): the receiver's idempotency key.
    pub id: &'a str,
    pub source: &'a str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When the change happened (RFC 3339, UTC).
    pub time: String,
    /// The order id (a failed buy's: the request id of its queue entry).
    pub subject: String,
    pub datacontenttype: &'static str,
    /// As written (checked to be JSON, embedded as it is: not parsed into a tree and written
    /// again for every send).
    pub data: &'a RawValue,
}

/// The event's body, as bytes.
pub fn body(
    id: &str,
    source: &str,
    kind: EventType,
    subject: String,
    at: NaiveDateTime,
    data: &str,
) -> Vec<u8> {
    let event = CloudEvent {
        specversion: "1.0",
        id,
        source,
        kind: kind.name(),
        time: at
            .and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        subject,
        datacontenttype: "application/json",
        data: serde_json::from_str(data).unwrap_or(RawValue::NULL),
    };
    serde_json::to_vec(&event).expect("an event serialises")
}

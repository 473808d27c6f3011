//! `GET /jobs/{id}/events`: the job's Server-Sent Events, each with the job's state after it,
//! until the job is terminal. A message named [`api::events::ERROR`] means the server cannot go
//! on for now; the caller reconnects with the last event id.

use super::jobs::Job;
use super::{ApiClient, ClientError};
use api::ErrorBody;
use api::events::{ERROR, JobEventMessage};
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use reqwest::header;
use serde_json::Value;

/// What the job's event stream reports.
#[derive(Debug)]
pub enum StreamItem {
    /// An event with the job's state after it.
    Update { event_id: String, job: Box<Job> },
    /// The server cannot continue the stream for now (e.g. its store is away): reconnect.
    ServerError(String),
}

impl ApiClient {
    /// `GET /jobs/{id}/events`: the job's events (from after `last_event_id` when resuming)
    /// until the server ends the stream at a terminal state.
    pub async fn events(
        &self,
        token: &str,
        id: &str,
        last_event_id: Option<&str>,
    ) -> Result<impl Stream<Item = Result<StreamItem, ClientError>> + use<>, ClientError> {
        let mut request = self
            .http
            .get(self.url(&["jobs", id, "events"]))
            .bearer_auth(token)
            .header(header::ACCEPT, "text/event-stream");
        if let Some(last) = last_event_id {
            request = request.header("last-event-id", last);
        }
        let response = self.send(request).await?;
        Ok(response
            .bytes_stream()
            .eventsource()
            .map(|item| match item {
                Ok(event) => parse_stream_event(&event.event, &event.id, &event.data),
                Err(e) => Err(ClientError::Transport(format!("event stream: {e}"))),
            }))
    }
}

/// Turns one SSE message into a [`StreamItem`].
pub fn parse_stream_event(kind: &str, id: &str, data: &str) -> Result<StreamItem, ClientError> {
    let value: Value = serde_json::from_str(data)
        .map_err(|e| ClientError::Protocol(format!("event {kind:?} is not JSON: {e}")))?;
    if kind == ERROR {
        let body: ErrorBody =
            serde_json::from_value(value).unwrap_or_else(|_| ErrorBody::new("", ""));
        let message = Some(body.message)
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| "the server interrupted the event stream".to_owned());
        return Ok(StreamItem::ServerError(message));
    }
    // The job's raw JSON is kept for `--json`, beside its typed reading.
    let raw_job = value
        .get("job")
        .cloned()
        .ok_or_else(|| ClientError::Protocol(format!("event {kind:?} carries no job")))?;
    let message: JobEventMessage = serde_json::from_value(value)
        .map_err(|e| ClientError::Protocol(format!("malformed event {kind:?}: {e}")))?;
    Ok(StreamItem::Update {
        event_id: id.to_owned(),
        job: Box::new(Job::new(message.job, raw_job)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::JobStatus;

    #[test]
    fn stream_events_carry_the_job_state() {
        let data = r#"{"event":{"type":"conversion.progress"},"job":{"job_id":"j1","status":"converting","progress":40}}"#;
        match parse_stream_event("conversion.progress", "e1", data).unwrap() {
            StreamItem::Update { event_id, job } => {
                assert_eq!(event_id, "e1");
                assert_eq!(job.view.status, JobStatus::Converting);
                assert_eq!(job.view.progress, 40);
            }
            other => panic!("{other:?}"),
        }
        let error = r#"{"error":"service_unavailable","message":"the job store is unavailable"}"#;
        assert!(matches!(
            parse_stream_event("error", "", error).unwrap(),
            StreamItem::ServerError(m) if m == "the job store is unavailable"
        ));
        assert!(parse_stream_event("x", "", "not json").is_err());
    }
}

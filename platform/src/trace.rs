//! W3C trace context (`traceparent`) carried across HTTP, AMQP and gRPC, so every log line of one
//! job, in every service, shares its trace id.
//!
//! Format: `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`.

use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl TraceContext {
    /// A new trace (no incoming context).
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        Self {
            trace_id: rng.random::<u128>().max(1),
            span_id: rng.random::<u64>().max(1),
            sampled: true,
        }
    }

    /// Parses a `traceparent` header value; `None` when malformed (then start a new trace).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2
            || version == "ff"
            || trace_id.len() != 32
            || span_id.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        let trace_id = u128::from_str_radix(trace_id, 16)
            .ok()
            .filter(|&t| t != 0)?;
        let span_id = u64::from_str_radix(span_id, 16).ok().filter(|&s| s != 0)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The incoming context when valid, else a new root.
    pub fn continue_or_start(header: Option<&str>) -> Self {
        header.and_then(Self::parse).unwrap_or_else(Self::new_root)
    }

    /// Same trace, new span: what a hop passes downstream.
    pub fn child(&self) -> Self {
        Self {
            span_id: rand::rng().random::<u64>().max(1),
            ..*self
        }
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    pub fn to_traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// A span for handling one event, carrying its job id and trace id into every log line inside.
pub fn event_span(envelope: &contracts::Envelope, queue: &str) -> tracing::Span {
    let trace = TraceContext::continue_or_start(envelope.traceparent.as_deref());
    tracing::info_span!(
        "event",
        queue,
        event_type = envelope.event_type(),
        job_id = %envelope.job_id,
        trace_id = %trace.trace_id_hex(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = TraceContext::parse(header).unwrap();
        assert_eq!(context.to_traceparent(), header);
        assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let child = context.child();
        assert_eq!(child.trace_id, context.trace_id);
        assert_ne!(child.span_id, context.span_id);
    }

    #[test]
    fn malformed_headers_start_a_new_trace() {
        for bad in [
            "",
            "00-0000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-zzzzzzzzzzzzzzzz-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad:?}");
        }
        let fresh = TraceContext::continue_or_start(Some("garbage"));
        assert_eq!(TraceContext::parse(&fresh.to_traceparent()), Some(fresh));
    }
}

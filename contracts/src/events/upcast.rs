//! Upcasters: pure functions that rewrite one event type's payload from one schema version to the
//! next, kept beside the types they migrate so a change of shape and its migration are reviewed
//! together.
//!
//! Decoding chains them: a `conversion.succeeded` stored at version 1 and read by a build at
//! version 3 goes through the `(conversion.succeeded, 1)` upcaster, then `(…, 2)`, and the result
//! is typed as version 3. They work on plain JSON because the old payload types no longer exist.
//!
//! To change a payload's shape: bump its [`super::Versioned::VERSION`], add the upcaster from the
//! previous version to [`UPCASTERS`], and keep the old upcasters: stored events never go away.

use super::DecodeError;
use serde_json::Value;

/// Rewrites a payload of version `from_version` into version `from_version + 1`; the error says
/// what the payload lacked.
pub type UpcastFn = fn(Value) -> Result<Value, String>;

/// One step of an event type's migration.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    pub event_type: &'static str,
    pub from_version: u16,
    pub upcast: UpcastFn,
}

/// This build's upcasters, keyed by `(event_type, from_version)`. Empty: every event type is still
/// at its first version.
pub const UPCASTERS: &[Upcaster] = &[];

/// Runs `payload` of `event_type` through the upcasters from version `from` up to `to`, in order.
/// A missing step or a failing one is [`DecodeError::Malformed`]: no build can do better.
pub fn upcast(
    upcasters: &[Upcaster],
    event_type: &str,
    from: u16,
    to: u16,
    mut payload: Value,
) -> Result<Value, DecodeError> {
    for version in from..to {
        let step = upcasters
            .iter()
            .find(|u| u.event_type == event_type && u.from_version == version)
            .ok_or_else(|| {
                DecodeError::Malformed(format!(
                    "{event_type} version {version} cannot be read: no upcaster from it"
                ))
            })?;
        payload = (step.upcast)(payload).map_err(|reason| {
            DecodeError::Malformed(format!(
                "{event_type} version {version} to {}: {reason}",
                version + 1
            ))
        })?;
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Vec<Upcaster> {
        vec![
            // Listed out of order on purpose: the chain follows versions, not the table.
            Upcaster {
                event_type: "thing.happened",
                from_version: 2,
                upcast: |mut v| {
                    v["steps"].as_array_mut().ok_or("no steps")?.push(json!(2));
                    Ok(v)
                },
            },
            Upcaster {
                event_type: "thing.happened",
                from_version: 1,
                upcast: |mut v| {
                    v["steps"] = json!([1]);
                    Ok(v)
                },
            },
            Upcaster {
                event_type: "other.thing",
                from_version: 1,
                upcast: |_| Err("must not run".into()),
            },
        ]
    }

    #[test]
    fn the_chain_runs_each_step_once_in_version_order() {
        let out = upcast(&table(), "thing.happened", 1, 3, json!({})).unwrap();
        assert_eq!(out, json!({"steps": [1, 2]}));
        let out = upcast(&table(), "thing.happened", 2, 3, json!({"steps": []})).unwrap();
        assert_eq!(out, json!({"steps": [2]}));
    }

    #[test]
    fn the_current_version_passes_through_untouched() {
        let payload = json!({"anything": true});
        assert_eq!(
            upcast(&table(), "other.thing", 3, 3, payload.clone()).unwrap(),
            payload
        );
    }

    #[test]
    fn a_missing_or_failing_step_is_malformed() {
        let err = upcast(&table(), "thing.happened", 0, 3, json!({})).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(m) if m.contains("version 0")));
        let err = upcast(&table(), "other.thing", 1, 2, json!({})).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(m) if m.contains("must not run")));
    }
}

//! Configuration from environment variables.
//!
//! A malformed value fails start-up with one line naming the variable, e.g.
//! `invalid value for HTTP_ADDR ("nope"): invalid socket address syntax`.

use std::fmt::Display;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value for {name} ({value:?}): {reason}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(name: &str, value: &str, reason: impl Display) -> Self {
        Self {
            name: name.to_owned(),
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The variable's value, or `None` when unset or empty.
pub fn raw(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Parses the variable when it is set.
pub fn optional<T>(name: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    raw(name)
        .map(|value| {
            value
                .trim()
                .parse::<T>()
                .map_err(|e| ConfigError::new(name, &value, e))
        })
        .transpose()
}

/// Parses the variable, or returns `default` when it is unset.
pub fn or_default<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    Ok(optional(name)?.unwrap_or(default))
}

/// A string variable with a default.
/// Default of `DELIVERY_LIMIT`.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 5;

/// `DELIVERY_LIMIT` (default 5, at least 1): how many deaths of a consumer holding one message the
/// broker lets pass before it gives the message up (see `platform::bus::Subscription`).
pub fn delivery_limit() -> Result<u32, ConfigError> {
    match or_default("DELIVERY_LIMIT", DEFAULT_DELIVERY_LIMIT)? {
        0 => Err(ConfigError::new(
            "DELIVERY_LIMIT",
            "0",
            "must be at least 1",
        )),
        limit => Ok(limit),
    }
}

pub fn string_or(name: &str, default: &str) -> String {
    raw(name).unwrap_or_else(|| default.to_owned())
}

/// Parses durations such as `500ms`, `30s`, `5m`, `24h`, `7d` (a bare number means seconds).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration like 30s, 5m, 24h or 7d, got {text:?}"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        "d" => number * 86400.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m, h or d)"
            ));
        }
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(format!("duration out of range: {text:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// A duration variable (see [`parse_duration`]) with a default.
pub fn duration_or(
    name: &str,
    default: std::time::Duration,
) -> Result<std::time::Duration, ConfigError> {
    match raw(name) {
        None => Ok(default),
        Some(value) => parse_duration(&value).map_err(|e| ConfigError::new(name, &value, e)),
    }
}

/// Parses a comma-separated list of positive durations (`1s,5s,30s,2m`, each as
/// [`parse_duration`] reads it); `none` is the empty list. The one parser of every retry-delay
/// setting.
pub fn parse_duration_list(text: &str) -> Result<Vec<std::time::Duration>, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|part| match part.trim() {
            "" => Err("expected comma-separated durations such as 1s,5s,30s,2m".to_owned()),
            part => match parse_duration(part)? {
                delay if delay.is_zero() => Err(format!("a delay must be positive, got {part:?}")),
                delay => Ok(delay),
            },
        })
        .collect()
}

/// A list of durations (see [`parse_duration_list`]) from the variable `name`, or `default`.
pub fn duration_list_or(
    name: &str,
    default: &[std::time::Duration],
) -> Result<Vec<std::time::Duration>, ConfigError> {
    match raw(name) {
        None => Ok(default.to_vec()),
        Some(value) => parse_duration_list(&value).map_err(|e| ConfigError::new(name, &value, e)),
    }
}

/// `scheme://user:secret@host/...` → `scheme://user:***@host/...`; other text is unchanged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    // The last '@' ends the userinfo: a password may itself contain an unescaped '@'.
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => userinfo.to_owned(),
    };
    format!("{scheme}://{user}@{host}{tail}")
}

/// A URL that may carry a password (`DATABASE_URL`, `MONGODB_URI`, `AMQP_URL`): `Debug` and
/// `Display` show it with the password replaced by `***`, so settings can be logged whole; the
/// raw text only comes out through [`SecretUrl::expose`], where a driver needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL as written, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&SecretUrl> for SecretUrl {
    fn from(url: &SecretUrl) -> Self {
        url.clone()
    }
}

impl From<&String> for SecretUrl {
    fn from(url: &String) -> Self {
        Self(url.clone())
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(url: &str) -> Result<Self, Self::Err> {
        Ok(Self(url.trim().to_owned()))
    }
}

impl std::fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretUrl({:?})", redact_url(&self.0))
    }
}

/// A secret URL from the variable `name`, or `default`.
pub fn secret_url_or(name: &str, default: &str) -> SecretUrl {
    SecretUrl::new(raw(name).unwrap_or_else(|| default.to_owned()).trim())
}

/// Default endpoints for a developer machine.
pub mod defaults {
    pub const DATABASE_URL: &str = "mysql://root@127.0.0.1:3306/auth";
    pub const MONGODB_URI: &str = "mongodb://127.0.0.1:27017";
    pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
    pub const SMTP_URL: &str = "smtp://127.0.0.1:1025";
    pub const AUTH_GRPC_URL: &str = "http://127.0.0.1:50051";
    pub const GATEWAY_HTTP_ADDR: &str = "0.0.0.0:8080";
    /// The gateway's internal listener (health, readiness, metrics): never routed by the ingress.
    pub const GATEWAY_ADMIN_ADDR: &str = "0.0.0.0:8084";
    pub const AUTH_GRPC_ADDR: &str = "0.0.0.0:50051";
    pub const AUTH_HTTP_ADDR: &str = "0.0.0.0:8081";
    pub const CONVERTER_HTTP_ADDR: &str = "0.0.0.0:8082";
    pub const NOTIFICATION_HTTP_ADDR: &str = "0.0.0.0:8083";
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::time::Duration;

    #[test]
    fn malformed_values_name_the_variable_in_one_line() {
        // SAFETY: this test owns this variable name; no other test reads it.
        unsafe { std::env::set_var("PLATFORM_TEST_ADDR", "nope") };
        let err = optional::<SocketAddr>("PLATFORM_TEST_ADDR").unwrap_err();
        let line = err.to_string();
        assert!(
            line.starts_with("invalid value for PLATFORM_TEST_ADDR (\"nope\")"),
            "{line}"
        );
        assert!(!line.contains('\n'));
    }

    #[test]
    fn unset_variables_fall_back_to_defaults() {
        let port: u16 = or_default("PLATFORM_TEST_UNSET_PORT", 8080).unwrap();
        assert_eq!(port, 8080);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(
            parse_duration("7d").unwrap(),
            Duration::from_secs(7 * 86400)
        );
        assert!(parse_duration("7 weeks").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn duration_lists_are_positive_and_none_is_empty() {
        assert_eq!(
            parse_duration_list("1s, 5s,30s,2m").unwrap(),
            [1, 5, 30, 120].map(Duration::from_secs)
        );
        assert!(parse_duration_list("none").unwrap().is_empty());
        assert!(parse_duration_list("0s").is_err());
        assert!(parse_duration_list("").is_err());
        assert!(parse_duration_list("1s,,2s").is_err());
        assert!(parse_duration_list("soon").is_err());
    }

    #[test]
    fn secret_urls_never_show_their_password() {
        let url = SecretUrl::new("amqp://guest:hunter2@rabbit:5672/%2f");
        assert_eq!(url.expose(), "amqp://guest:hunter2@rabbit:5672/%2f");
        for shown in [format!("{url}"), format!("{url:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("guest:***@rabbit"), "{shown}");
        }
    }
}

//! `<service> healthcheck [URL | /PATH]`: the services' own health-check command, for container
//! HEALTHCHECKs and compose healthchecks, so that their images need no `curl`.
//!
//! It sends one `GET` to the service's own HTTP listener and exits 0 on a 2xx answer, 1 on
//! anything else (another status, refused, timed out). Without an argument it asks
//! `http://127.0.0.1:<port of HTTP_ADDR>/healthz`; `/readyz` (a path) asks the same listener for
//! readiness; a full `http://host:port/path` URL is asked as it is. Plain HTTP/1.1 over a blocking
//! socket with a deadline: no async runtime, no TLS, no extra dependency.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The first argument that selects the health check.
pub const ARGUMENT: &str = "healthcheck";

/// The whole check (connect, send, first line of the answer) must fit in this; it stays below
/// the 3 s timeout the healthchecks give the command, so a slow answer is reported, not killed.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Runs the health check when the process was started as `<binary> healthcheck …` and gives the
/// exit code `main` returns; `None` otherwise. Call it first in `main`, before logging or the
/// runtime are set up. `default_http_addr` is the service's default `HTTP_ADDR`, used when the
/// variable is unset.
pub fn run_if_requested(default_http_addr: &str) -> Option<ExitCode> {
    run_if_requested_on("HTTP_ADDR", default_http_addr)
}

/// [`run_if_requested`] for a service whose health endpoints listen on another variable's
/// address (the gateway's `ADMIN_ADDR`: its `HTTP_ADDR` is public and serves no health).
pub fn run_if_requested_on(variable: &str, default_addr: &str) -> Option<ExitCode> {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() != Some(ARGUMENT) {
        return None;
    }
    let target = args.next();
    if args.next().is_some() {
        eprintln!("usage: {ARGUMENT} [http://HOST:PORT/PATH | /PATH]");
        return Some(ExitCode::from(2));
    }
    let http_addr = std::env::var(variable).ok();
    let code = match resolve(
        target.as_deref(),
        http_addr.as_deref().unwrap_or(default_addr),
    )
    .and_then(|target| check(&target, TIMEOUT))
    {
        Ok(status) => {
            println!("{status}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{ARGUMENT}: {error}");
            ExitCode::FAILURE
        }
    };
    Some(code)
}

/// Where a health check goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host:port`, as written (also the `Host` header).
    pub authority: String,
    /// Absolute path, with its query if any.
    pub path: String,
}

/// The target of `healthcheck [ARG]` for a service listening on `http_addr`. An unspecified
/// listen address (`0.0.0.0`, `::`) is asked on the loopback address.
pub fn resolve(argument: Option<&str>, http_addr: &str) -> Result<Target, String> {
    let own = || -> Result<String, String> {
        let addr: SocketAddr = http_addr
            .parse()
            .map_err(|e| format!("invalid HTTP_ADDR ({http_addr:?}): {e}"))?;
        Ok(match addr {
            SocketAddr::V4(v4) if v4.ip().is_unspecified() => format!("127.0.0.1:{}", v4.port()),
            SocketAddr::V6(v6) if v6.ip().is_unspecified() => format!("[::1]:{}", v6.port()),
            other => other.to_string(),
        })
    };
    match argument {
        None => Ok(Target {
            authority: own()?,
            path: "/healthz".to_owned(),
        }),
        Some(path) if path.starts_with('/') => Ok(Target {
            authority: own()?,
            path: path.to_owned(),
        }),
        Some(url) => {
            let rest = url
                .strip_prefix("http://")
                .ok_or_else(|| format!("not an http:// URL or a /path: {url:?}"))?;
            let (authority, path) = match rest.find('/') {
                Some(slash) => (&rest[..slash], &rest[slash..]),
                None => (rest, "/"),
            };
            if authority.is_empty() || !authority.contains(':') {
                return Err(format!("the URL needs a host and a port: {url:?}"));
            }
            Ok(Target {
                authority: authority.to_owned(),
                path: path.to_owned(),
            })
        }
    }
}

/// One `GET` within `timeout`: the status code when it is 2xx, an error naming what went wrong
/// otherwise.
pub fn check(target: &Target, timeout: Duration) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    let url = format!("http://{}{}", target.authority, target.path);
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| format!("{url}: no answer within {timeout:?}"))
    };
    let addrs: Vec<SocketAddr> = target
        .authority
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .collect();
    let mut last_error = format!("{url}: no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, remaining()?) {
            Ok(connected) => {
                stream = Some(connected);
                break;
            }
            Err(e) => last_error = format!("{url}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last_error)?;
    stream
        .set_write_timeout(Some(remaining()?))
        .map_err(|e| format!("{url}: {e}"))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: healthcheck\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{url}: {e}"))?;
    // Only the status line matters: read until its end.
    let mut head = Vec::with_capacity(64);
    let mut buffer = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        stream
            .set_read_timeout(Some(remaining()?))
            .map_err(|e| format!("{url}: {e}"))?;
        let read = match stream.read(&mut buffer) {
            Ok(read) => read,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("{url}: no answer within {timeout:?}"));
            }
            Err(e) => return Err(format!("{url}: {e}")),
        };
        if read == 0 {
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or_default();
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("{url}: not an HTTP answer: {line:?}"))?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(format!("{url}: {}", line.trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn answer_once(response: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request);
            let _ = socket.write_all(response.as_bytes());
        });
        addr.to_string()
    }

    #[test]
    fn the_target_follows_http_addr_or_the_argument() {
        let own = resolve(None, "0.0.0.0:8082").unwrap();
        assert_eq!(own.authority, "127.0.0.1:8082");
        assert_eq!(own.path, "/healthz");
        let ready = resolve(Some("/readyz"), "[::]:9000").unwrap();
        assert_eq!(ready.authority, "[::1]:9000");
        assert_eq!(ready.path, "/readyz");
        let url = resolve(Some("http://127.0.0.1:8081/readyz"), "0.0.0.0:1").unwrap();
        assert_eq!(url.authority, "127.0.0.1:8081");
        assert_eq!(url.path, "/readyz");
        assert!(resolve(Some("https://example.com/"), "0.0.0.0:1").is_err());
        assert!(resolve(Some("http://host/path"), "0.0.0.0:1").is_err());
        assert!(resolve(None, "nope").is_err());
    }

    #[test]
    fn a_2xx_answer_passes() {
        let authority = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let target = Target {
            authority,
            path: "/healthz".to_owned(),
        };
        assert_eq!(check(&target, TIMEOUT), Ok(200));
    }

    #[test]
    fn another_status_fails_and_is_named() {
        let authority = answer_once("HTTP/1.1 503 Service Unavailable\r\n\r\n");
        let target = Target {
            authority,
            path: "/readyz".to_owned(),
        };
        let error = check(&target, TIMEOUT).unwrap_err();
        assert!(error.contains("503 Service Unavailable"), "{error}");
    }

    #[test]
    fn silence_fails_within_the_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = Target {
            authority: listener.local_addr().unwrap().to_string(),
            path: "/healthz".to_owned(),
        };
        let started = Instant::now();
        let error = check(&target, Duration::from_millis(300)).unwrap_err();
        assert!(error.contains("no answer"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(listener);
    }

    #[test]
    fn a_closed_port_fails() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        drop(listener);
        let target = Target {
            authority,
            path: "/healthz".to_owned(),
        };
        assert!(check(&target, TIMEOUT).is_err());
    }
}

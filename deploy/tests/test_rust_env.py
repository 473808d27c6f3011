"""The source scan finds what the services read, and nothing that merely looks like it."""

from __future__ import annotations

from pathlib import Path

from validation import rust_env

SOURCE = r'''
//! | `DOC_ONLY` | mentioned in a doc comment |
use platform::config::{self, defaults};

const TIMEOUT_VAR: &str = "VIA_CONSTANT";

pub fn from_env() -> Result<Settings, ConfigError> {
    // config::raw("COMMENTED_OUT")
    /* config::optional("BLOCK_COMMENTED") */
    let url = "http://example.com//not-a-comment"; let quote = '"';
    let raw = br#"a "quoted" \ in a raw byte string: config::raw("IN_A_STRING")"#;
    let a = config::string_or("DATABASE_URL", defaults::DATABASE_URL);
    let b = config::or_default(
        "HTTP_ADDR",
        defaults::GATEWAY_HTTP_ADDR.parse().expect("valid"),
    )?;
    let c: Option<u16> = platform::config::optional::<u16>("PLAIN_OPTIONAL")?;
    let d = positive("WRAPPED_LIMIT", 5)?;
    let e = std::env::var("STD_VAR").ok();
    let f = config::raw(TIMEOUT_VAR);
    let g = map.entry("NOT_A_READ").or_default();
    let h = env!("CARGO_PKG_VERSION");
    let i = ConfigError::new("ONLY_AN_ERROR_NAME", "", "bad");
    let filter = EnvFilter::try_from_default_env();
    Ok(Settings { a, b, c, d, e, f, g, h, i })
}

fn positive(name: &str, default: u32) -> Result<u32, ConfigError> {
    let value: u32 = config::or_default(name, default)?;
    Ok(value)
}

#[derive(Parser)]
struct Cli {
    #[arg(long, env = "CLAP_VAR")]
    level: String,
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_in_tests_do_not_count() {
        let _ = config::raw("TEST_ONLY");
        unsafe { std::env::set_var("SET_IN_TEST", "1") };
    }
}
'''


def crate(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "crate" / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path / "crate"


def test_reads_are_found_through_every_kind_of_call(tmp_path: Path) -> None:
    result = rust_env.scan([crate(tmp_path, {"lib.rs": SOURCE})])
    assert result.names() == {
        "DATABASE_URL", "HTTP_ADDR", "PLAIN_OPTIONAL", "WRAPPED_LIMIT", "STD_VAR", "VIA_CONSTANT",
        "CLAP_VAR", "RUST_LOG",
    }


def test_defaults_are_told_apart_from_optional_reads(tmp_path: Path) -> None:
    result = rust_env.scan([crate(tmp_path, {"lib.rs": SOURCE})])
    defaulted = {r.name for r in result.reads if r.defaulted}
    assert {"DATABASE_URL", "HTTP_ADDR", "WRAPPED_LIMIT", "RUST_LOG"} <= defaulted
    assert {"PLAIN_OPTIONAL", "STD_VAR", "VIA_CONSTANT", "CLAP_VAR"} == result.without_default()


def test_modules_compiled_only_for_tests_are_left_out(tmp_path: Path) -> None:
    lib = '#[cfg(feature = "testing")]\npub mod testing;\npub mod config;\n'
    path = crate(tmp_path, {
        "lib.rs": lib,
        "testing.rs": 'pub fn db() -> String { std::env::var("TESTING_ONLY").unwrap() }',
        "config.rs": 'pub fn raw(name: &str) -> Option<String> { std::env::var(name).ok() }\n'
                     'pub fn level() -> Option<String> { raw("REAL_READ") }',
    })
    assert rust_env.scan([path]).names() == {"REAL_READ"}


def test_wrappers_of_wrappers_are_followed(tmp_path: Path) -> None:
    source = (
        'fn read(name: &str) -> Option<String> { std::env::var(name).ok() }\n'
        'fn read_port(key: &str, fallback: u16) -> u16 { read(key).and_then(|v| v.parse().ok()).unwrap_or(fallback) }\n'
        'fn main() { let _ = read_port("NESTED_PORT", 80); }\n'
    )
    result = rust_env.scan([crate(tmp_path, {"main.rs": source})])
    assert result.names() == {"NESTED_PORT"}
    assert result.without_default() == set()


def test_the_workspace_services_read_their_known_variables(root: Path) -> None:
    shared = [root / "platform", root / "contracts"]
    reads = {s: rust_env.scan([root / s, *shared]).names() for s in ("auth", "gateway", "converter", "notification")}
    for names in reads.values():
        assert {"HTTP_ADDR", "RUST_LOG", "LOG_FORMAT"} <= names
    assert {"DATABASE_URL", "GRPC_ADDR", "TOKEN_TTL"} <= reads["auth"]
    assert {"AUTH_GRPC_URL", "MONGODB_URI", "AMQP_URL", "MAX_UPLOAD_BYTES", "PUBLIC_BASE_URL"} <= reads["gateway"]
    assert {"MONGODB_URI", "AMQP_URL", "CONVERTER_TEMP_DIR", "CONVERTER_CONCURRENCY"} <= reads["converter"]
    assert {"MONGODB_URI", "AMQP_URL", "SMTP_URL", "MAIL_FROM"} <= reads["notification"]
    assert "DATABASE_URL" not in reads["gateway"], "platform's test helpers must not count"


def test_loopback_defaults_are_the_backing_service_urls(root: Path) -> None:
    names = rust_env.loopback_defaults(root / "platform" / "src" / "config.rs")
    assert {"DATABASE_URL", "MONGODB_URI", "AMQP_URL", "SMTP_URL", "AUTH_GRPC_URL"} <= names
    assert not any(name.endswith("_HTTP_ADDR") for name in names), "0.0.0.0 listeners are fine in a container"

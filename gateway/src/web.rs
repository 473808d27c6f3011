//! The web page at `/`: plain HTML, CSS and JavaScript modules from `gateway/web/`, compiled into
//! the binary and served with a strict Content-Security-Policy. The page is a client of the
//! public REST API like any other (no server-side rendering, no cookies), so it needs no state.

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::LazyLock;

/// Scripts and styles only from this origin (no inline code), connections only to this API,
/// never framed. Trusted Types forbid string-to-DOM sinks such as `innerHTML`, which the page
/// never uses, so an injected file name can never become markup.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
    media-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; \
    frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

/// Files can change with every release and are small: browsers revalidate them each time
/// (a 304 thanks to the ETag) instead of running a stale script against a newer API.
const CACHE_CONTROL: &str = "no-cache";

struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    etag: HeaderValue,
}

impl Asset {
    fn new(path: &'static str, content_type: &'static str, body: &'static [u8]) -> Self {
        let mut hasher = DefaultHasher::new();
        body.hash(&mut hasher);
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", hasher.finish()))
            .expect("a hex ETag is a valid header value");
        Self {
            path,
            content_type,
            body,
            etag,
        }
    }
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    vec![
        Asset::new("/", HTML, include_bytes!("../web/index.html")),
        Asset::new("/assets/app.js", JS, include_bytes!("../web/app.js")),
        Asset::new("/assets/api.js", JS, include_bytes!("../web/api.js")),
        Asset::new("/assets/sse.js", JS, include_bytes!("../web/sse.js")),
        Asset::new("/assets/style.css", CSS, include_bytes!("../web/style.css")),
        Asset::new(
            "/assets/favicon.svg",
            SVG,
            include_bytes!("../web/favicon.svg"),
        ),
        Asset::new("/assets/note.svg", SVG, include_bytes!("../web/note.svg")),
    ]
});

/// The page and its assets (GET and HEAD), to merge into the API's router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { serve(asset, &headers) }),
        )
    })
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let mut response = if matches_etag(request, &asset.etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            )],
            asset.body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::ETAG, asset.etag.clone());
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(CACHE_CONTROL),
    );
    add_security_headers(headers);
    response
}

/// `If-None-Match` lists the current version (weak comparison, as RFC 9110 asks for GET).
fn matches_etag(request: &HeaderMap, etag: &HeaderValue) -> bool {
    let current = etag.as_bytes();
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag).as_bytes() == current)
}

fn add_security_headers(headers: &mut HeaderMap) {
    let fixed: [(HeaderName, &'static str); 7] = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        // For browsers that predate frame-ancestors.
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
        (
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::{Body, to_bytes};
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    async fn request(method: Method, path: &str, if_none_match: Option<&str>) -> Response {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(tag) = if_none_match {
            builder = builder.header(header::IF_NONE_MATCH, tag);
        }
        router::<()>()
            .oneshot(builder.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn text(path: &str) -> &'static str {
        let asset = ASSETS.iter().find(|a| a.path == path).unwrap();
        std::str::from_utf8(asset.body).unwrap()
    }

    #[tokio::test]
    async fn the_page_is_served_with_security_and_cache_headers() {
        let response = request(Method::GET, "/", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], HTML);
        let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert!(headers.contains_key(header::ETAG));
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        assert!(body.starts_with(b"<!doctype html>"));
    }

    #[tokio::test]
    async fn a_known_etag_gets_a_304_with_the_same_headers() {
        let first = request(Method::GET, "/assets/app.js", None).await;
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(first.headers()[header::CONTENT_TYPE], JS);

        let again = request(Method::GET, "/assets/app.js", Some(&format!("W/{etag}"))).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], etag.as_str());
        assert_eq!(again.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(to_bytes(again.into_body(), 16).await.unwrap().is_empty());

        let other = request(Method::GET, "/assets/app.js", Some("\"0123\", \"4567\"")).await;
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn head_requests_get_headers_only() {
        let response = request(Method::HEAD, "/assets/style.css", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], CSS);
        assert!(to_bytes(response.into_body(), 16).await.unwrap().is_empty());
    }

    #[test]
    fn the_page_has_no_inline_code_the_policy_would_block() {
        let html = text("/").to_ascii_lowercase();
        for (i, _) in html.match_indices("<script") {
            let tag = &html[i..i + html[i..].find('>').unwrap()];
            assert!(tag.contains(" src="), "inline script: {tag}");
        }
        for forbidden in [" style=", " onclick=", " onload=", "javascript:", "<style"] {
            assert!(!html.contains(forbidden), "{forbidden} in index.html");
        }
    }

    #[test]
    fn every_asset_the_page_references_is_served() {
        let mut referenced: Vec<String> = Vec::new();
        for path in ["/", "/assets/style.css", "/assets/app.js"] {
            let text = text(path);
            for (i, _) in text.match_indices("/assets/") {
                let end = text[i..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || "/._-".contains(c)))
                    .unwrap();
                referenced.push(text[i..i + end].to_owned());
            }
        }
        // Module imports are relative to /assets/.
        for script in ["/assets/app.js", "/assets/sse.js"] {
            for rest in text(script).split("from './").skip(1) {
                referenced.push(format!("/assets/{}", &rest[..rest.find('\'').unwrap()]));
            }
        }
        assert!(referenced.len() >= 4, "{referenced:?}");
        for path in referenced {
            assert!(
                ASSETS.iter().any(|a| a.path == path),
                "{path} is referenced but not served"
            );
        }
    }

    #[test]
    fn scripts_never_build_markup_from_strings() {
        for path in ["/assets/app.js", "/assets/api.js", "/assets/sse.js"] {
            let script = text(path);
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
            ] {
                assert!(!script.contains(sink), "{sink} in {path}");
            }
        }
    }
}

//! The one URL redaction of steward: every crate (the WebSocket sessions,
//! the Redis store, the command line) passes a URL through
//! [`redact_url`] before it reaches a log line, a span, an error, a report,
//! a `Debug` output or a serialized configuration.
//!
//! A crate of its own, with no dependencies, so that crates which must not
//! depend on each other (the store does not depend on the WebSocket crate)
//! share it instead of each keeping a copy.
//!
//! ```
//! use steward_redact::redact_url;
//!
//! assert_eq!(
//!     redact_url("redis://bob:p/a?s#s@w0rd@cache.local:6379/0?ns=alice"),
//!     "redis://***@cache.local:6379/0"
//! );
//! assert_eq!(
//!     redact_url("wss://api.example/v1/realtime?model=m&key=sk-1"),
//!     "wss://api.example/v1/realtime"
//! );
//! ```
#![forbid(unsafe_code)]

/// `url` fit to be shown: the user info (user name and password) replaced by
/// `***`, the query string and the fragment removed (API keys travel there
/// too). The scheme, host, port and path stay.
///
/// A password may hold `/`, `?`, `#` or `@` (written raw, it makes the URL
/// invalid, yet people write it), so the user info is taken to end at the
/// **last** `@`, wherever it is: an `@` in a path or query hides everything
/// before it, which shows less than it could but never a secret. No
/// parsing library is involved: the input may be no valid URL at all, and
/// this never fails.
#[must_use]
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let (hidden, rest) = match rest.rfind('@') {
        Some(at) => (true, &rest[at + 1..]),
        None => (false, rest),
    };
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    let kept = &rest[..end];
    let mut out = String::with_capacity(url.len().min(kept.len() + 16));
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    if hidden {
        out.push_str("***@");
    }
    out.push_str(kept);
    out
}

/// True for request headers whose values are credentials and must never be
/// shown or serialized: `Authorization`, `Proxy-Authorization`, `Cookie`,
/// `Set-Cookie`, and any name holding `key`, `token`, `secret`, `password`,
/// `auth` or `session` (`api-key`, `x-api-key`, `X-Auth-Token`).
/// Case-insensitive.
#[must_use]
pub fn is_sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name.contains("cookie")
        || ["key", "token", "secret", "password", "auth", "session"]
            .iter()
            .any(|word| name.contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_with_reserved_characters_never_show() {
        for password in [
            "s3cret",
            "p/w",
            "p?w",
            "p#w",
            "p@w",
            "a/b?c#d@e",
            "12/34",
            ":@/?#",
        ] {
            for url in [
                format!("ws://bob:{password}@host.example:8080/v1/realtime?model=x"),
                format!("redis://:{password}@127.0.0.1:6379/0?ns=alice"),
                format!("rediss://user:{password}@cache/1#frag"),
                format!("bob:{password}@host"),
            ] {
                let shown = redact_url(&url);
                assert!(!shown.contains(password), "{url} -> {shown}");
                assert!(shown.contains("***@"), "{url} -> {shown}");
            }
        }
    }

    #[test]
    fn what_is_not_secret_stays() {
        assert_eq!(
            redact_url("ws://bob:p@ss@127.0.0.1:9/a/b?key=k#f"),
            "ws://***@127.0.0.1:9/a/b"
        );
        assert_eq!(redact_url("ws://[::1]:80/x"), "ws://[::1]:80/x");
        assert_eq!(redact_url("redis://h/0?ns=a"), "redis://h/0");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url(""), "");
        assert_eq!(redact_url("x?token=1"), "x");
    }

    #[test]
    fn credential_headers_are_sensitive() {
        for name in [
            "Authorization",
            "proxy-authorization",
            "api-key",
            "X-Api-Key",
            "Cookie",
            "Set-Cookie",
            "X-Auth-Token",
        ] {
            assert!(is_sensitive_header(name), "{name}");
        }
        for name in ["OpenAI-Beta", "User-Agent", "Content-Type"] {
            assert!(!is_sensitive_header(name), "{name}");
        }
    }
}

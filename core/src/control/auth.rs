//! Who may use the control endpoint: with a token configured (`<host tokenFile>` or
//! `SERSYNC_CONTROL_TOKEN`), every request that changes something (`POST /sync`) must carry
//! `Authorization: Bearer TOKEN`, and reads too with `<host readsNeedToken="true">`. Without
//! one, everything is open (only allowed on a loopback address: the configuration refuses
//! another).

use std::fmt;

use super::http::Request;
use super::response::Response;

/// A secret shared by the daemon and its clients. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// `text` as a token, or `None` when it is empty.
    pub fn new(text: impl Into<String>) -> Option<Token> {
        let text = text.into();
        (!text.is_empty()).then_some(Token(text))
    }

    /// The secret itself, for the `Authorization` header a client sends.
    pub fn secret(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this token, in time that depends on the token's length only (not
    /// on where `given` first differs, nor on its length).
    pub fn matches(&self, given: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        let mut diff = u8::from(given.len() != expected.len());
        for (i, &b) in expected.iter().enumerate() {
            diff |= b ^ given.get(i).copied().unwrap_or(!b);
        }
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

/// What the endpoint asks of a request before answering it.
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// The token requests must carry; `None`: all open.
    pub token: Option<Token>,
    /// Reads (`GET`) need the token too; otherwise only requests that change something do.
    pub reads_need_token: bool,
}

impl Access {
    /// `None` when `request` may go on, else the `401` it gets.
    pub fn refuse(&self, request: &Request) -> Option<Response> {
        let token = self.token.as_ref()?;
        let read = matches!(request.method.as_str(), "GET" | "HEAD");
        if read && !self.reads_need_token {
            return None;
        }
        let given = request.authorization.as_deref().and_then(bearer);
        match given {
            Some(given) if token.matches(given.as_bytes()) => None,
            Some(_) => Some(unauthorized("the bearer token is wrong")),
            None => Some(unauthorized(
                "this request needs Authorization: Bearer TOKEN (the token of <host tokenFile> or SERSYNC_CONTROL_TOKEN)",
            )),
        }
    }
}

/// The credentials of an `Authorization: Bearer …` value (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

fn unauthorized(message: &str) -> Response {
    Response {
        challenge: Some("Bearer realm=\"sersync\""),
        ..Response::text(401, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, authorization: Option<&str>) -> Request {
        Request {
            method: method.into(),
            path: "/sync".into(),
            query: None,
            body_len: 0,
            authorization: authorization.map(String::from),
        }
    }

    #[test]
    fn tokens_match_only_themselves() {
        let token = Token::new("s3cret").unwrap();
        assert!(token.matches(b"s3cret"));
        for wrong in [&b""[..], b"s3cre", b"s3cret!", b"S3cret", b"s3cres"] {
            assert!(!token.matches(wrong), "{wrong:?}");
        }
        assert!(Token::new("").is_none());
        assert_eq!(format!("{token:?}"), "Token(…)");
    }

    #[test]
    fn changes_need_the_token_and_reads_only_when_asked() {
        let open = Access::default();
        assert!(open.refuse(&request("POST", None)).is_none());
        let access = Access {
            token: Token::new("t0k"),
            reads_need_token: false,
        };
        assert!(access.refuse(&request("GET", None)).is_none());
        let refused = access.refuse(&request("POST", None)).unwrap();
        assert_eq!(refused.status, 401);
        assert_eq!(refused.challenge, Some("Bearer realm=\"sersync\""));
        let wrong = access
            .refuse(&request("POST", Some("Bearer nope")))
            .unwrap();
        assert_eq!(wrong.status, 401);
        assert!(access.refuse(&request("POST", Some("Basic t0k"))).is_some());
        assert!(access
            .refuse(&request("POST", Some("Bearer t0k")))
            .is_none());
        assert!(access
            .refuse(&request("POST", Some("bearer  t0k ")))
            .is_none());
        let strict = Access {
            reads_need_token: true,
            ..access
        };
        assert_eq!(strict.refuse(&request("GET", None)).unwrap().status, 401);
        assert!(strict.refuse(&request("GET", Some("Bearer t0k"))).is_none());
    }
}

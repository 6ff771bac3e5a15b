//! What each request gets: `GET /status`, `GET /metrics`, `POST /sync`, `POST /approve`.

use std::time::SystemTime;

use serde_json::json;

use super::http::Request;
use super::response::Response;
use super::{metrics, Control, DaemonState, StatusReport};

/// The reply to `request`.
pub fn respond(request: &Request, control: &dyn Control) -> Response {
    let method = request.method.as_str();
    match request.path.as_str() {
        "/status" if method == "GET" => {
            let report = StatusReport::new(&control.snapshot(), SystemTime::now());
            let code = match report.state {
                DaemonState::Running => 200,
                DaemonState::Starting => 503,
            };
            Response::json(code, &report)
        }
        "/metrics" if method == "GET" => {
            let text = metrics::render(&control.snapshot());
            Response::new(200, metrics::CONTENT_TYPE, text.into_bytes())
        }
        "/sync" if method == "POST" => sync(request, control),
        "/approve" if method == "POST" => approve(request, control),
        path @ ("/status" | "/metrics") => Response::method_not_allowed(path, "GET"),
        path @ ("/sync" | "/approve") => Response::method_not_allowed(path, "POST"),
        _ => Response::text(
            404,
            "not found: the routes are GET /status, GET /metrics, POST /sync and POST /approve",
        ),
    }
}

/// `POST /sync?watch=/root&remote=text`: a full sync of the matching rsync lanes.
fn sync(request: &Request, control: &dyn Control) -> Response {
    let filters = match filters(request, "POST /sync", "watch= and remote=") {
        Ok(filters) => filters,
        Err(refused) => return refused,
    };
    let lanes = control.request_full_sync(filters.watch.as_deref(), filters.remote.as_deref());
    lanes_reply(lanes, "rsync lane", &filters)
}

/// `POST /approve?remote=text`: the next delivery the delete budget would hold on the
/// matching lanes goes through.
fn approve(request: &Request, control: &dyn Control) -> Response {
    let filters = match filters(request, "POST /approve", "remote=") {
        Ok(filters) => filters,
        Err(refused) => return refused,
    };
    let lanes = control.approve_deletes(filters.remote.as_deref());
    lanes_reply(lanes, "lane with a delete budget", &filters)
}

/// The filters of a `route` that takes no body, only `params` in its query string; a 400
/// when it has a body or a bad query.
fn filters(request: &Request, route: &str, params: &str) -> Result<SyncFilters, Response> {
    if request.body_len > 0 {
        return Err(Response::text(
            400,
            format!("{route} takes no body: pass {params} in the query string"),
        ));
    }
    SyncFilters::parse(request.query.as_deref().unwrap_or(""))
        .map_err(|message| Response::text(400, format!("bad request: {message}")))
}

/// `{"lanes": N}`, or a 404 naming what no `kind` of lane matched.
fn lanes_reply(lanes: usize, kind: &str, filters: &SyncFilters) -> Response {
    if lanes == 0 {
        let error = format!("no {kind} matches{}", filters.describe());
        return Response::json(404, &json!({ "lanes": 0, "error": error }));
    }
    Response::json(200, &json!({ "lanes": lanes }))
}

/// The query of `POST /sync` (and `POST /approve`).
#[derive(Debug, Default, PartialEq, Eq)]
struct SyncFilters {
    watch: Option<String>,
    remote: Option<String>,
}

impl SyncFilters {
    /// Reads `watch=` and `remote=` (each at most once, percent-decoded, `+` kept as is).
    fn parse(query: &str) -> Result<SyncFilters, String> {
        let mut filters = SyncFilters::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (key, value) = (percent_decode(key)?, percent_decode(value)?);
            let slot = match key.as_str() {
                "watch" => &mut filters.watch,
                "remote" => &mut filters.remote,
                _ => return Err(format!("unknown parameter {key:?}: use watch= or remote=")),
            };
            if value.is_empty() {
                return Err(format!("{key}= needs a value"));
            }
            if slot.replace(value).is_some() {
                return Err(format!("{key}= given twice"));
            }
        }
        Ok(filters)
    }

    /// ` for watch=… remote=…`, or nothing without filters.
    fn describe(&self) -> String {
        let mut out = String::new();
        for (key, value) in [("watch", &self.watch), ("remote", &self.remote)] {
            if let Some(value) = value {
                out.push_str(&format!(" {key}={value:?}"));
            }
        }
        out
    }
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape in {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_decoded() {
        assert_eq!(SyncFilters::parse(""), Ok(SyncFilters::default()));
        assert_eq!(
            SyncFilters::parse("watch=%2Fdata%20x/a+b&remote=10.0.0.2"),
            Ok(SyncFilters {
                watch: Some("/data x/a+b".into()),
                remote: Some("10.0.0.2".into())
            })
        );
        assert_eq!(
            SyncFilters::parse("&remote=%C3%A9&"),
            Ok(SyncFilters {
                watch: None,
                remote: Some("é".into())
            })
        );
    }

    #[test]
    fn bad_filters_are_refused() {
        for query in [
            "watch",
            "watch=",
            "path=/x",
            "watch=/a&watch=/b",
            "watch=%2",
            "watch=%zz",
            "watch=%ff",
            "remote=%",
        ] {
            assert!(SyncFilters::parse(query).is_err(), "{query}");
        }
    }

    proptest::proptest! {
        #[test]
        fn no_query_makes_the_filters_panic(query in "[a-z=&%0-9A-Fé/+]{0,40}") {
            let _ = SyncFilters::parse(&query);
        }
    }

    #[test]
    fn the_description_names_the_filters() {
        let filters = SyncFilters {
            watch: Some("/data".into()),
            remote: None,
        };
        assert_eq!(filters.describe(), " watch=\"/data\"");
    }
}

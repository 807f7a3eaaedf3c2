//! The route table: method + path pattern → what answers it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::syntax::{is_field_value, is_token};
use crate::types::{Error, Pattern};

/// What answers a matched route.
#[derive(Clone)]
pub(crate) enum Target {
    /// A bus request to `topic`, answered by a component within `timeout` (or the server's
    /// default when `None`).
    Topic {
        topic: Arc<str>,
        timeout: Option<Duration>,
    },
    /// A fixed response written by the front-end itself.
    Fixed {
        status: u16,
        content_type: Arc<str>,
        body: Arc<[u8]>,
    },
    /// One of the runtime's admin endpoints.
    Admin(Admin),
}

/// The admin endpoints a runtime can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admin {
    Metrics,
    Health,
    Ready,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) method: String,
    pub(crate) pattern: Arc<str>,
    segments: Vec<Segment>,
    pub(crate) target: Target,
}

/// The routes an HTTP front-end serves: method + path pattern → a bus topic (or a fixed or
/// admin response).
///
/// A pattern is an absolute path whose segments are literals or `{name}` parameters that
/// match one whole segment: `/orders/{id}` matches `/orders/42` with `id = "42"` (percent-
/// decoded). A literal matches its segment once that is percent-decoded too (`/he%6Clo`
/// matches `/hello`; a `%2F` stays inside its segment). Routes are tried in the order
/// added; the first whose pattern and method match wins. A `HEAD` request with no route of
/// its own is answered by its path's `GET` route, without the body: the component sees a
/// `GET`. A path that matches some pattern but none with its method gets `405 Method Not
/// Allowed` with an `Allow` header (which lists `HEAD` beside `GET`); a path no pattern
/// matches gets `404`.
///
/// # Examples
///
/// ```
/// use reactorium::Routes;
/// use std::time::Duration;
///
/// let routes = Routes::new()
///     .route("GET", "/orders/{id}", "orders.get")?
///     .route("POST", "/orders", "orders.create")?
///     .route_timeout("POST", "/reports", "reports.build", Duration::from_secs(30))?
///     .fixed("GET", "/hello", 200, "text/plain", "hello")?
///     .metrics("/metrics")?
///     .health("/health")?
///     .ready("/ready")?;
/// assert_eq!(routes.len(), 7);
/// # Ok::<(), reactorium::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct Routes {
    pub(crate) routes: Vec<Route>,
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_list();
        for r in &self.routes {
            l.entry(&format_args!("{} {}", r.method, r.pattern));
        }
        l.finish()
    }
}

/// A successful match: the route's index and its parameters.
#[derive(Debug)]
pub(crate) enum Matched {
    Route {
        index: usize,
        params: Vec<(String, String)>,
    },
    /// The path matched, the method did not: these methods would.
    WrongMethod(Vec<String>),
    NotFound,
    /// A parameter was not valid percent-encoded UTF-8.
    BadPath,
}

impl Routes {
    /// An empty table.
    pub fn new() -> Routes {
        Routes::default()
    }

    /// How many routes the table holds.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// `true` when the table holds no route.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Routes `method path` to a bus request on `topic`, with the server's default request
    /// timeout ([`HttpConfig::request_timeout`](crate::HttpConfig::request_timeout)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a method that is not an HTTP token or a pattern that is
    /// not an absolute path (or has an empty `{}` parameter, or a parameter named twice);
    /// [`Error::InvalidTopic`] for a malformed topic or one with a wildcard.
    pub fn route(self, method: &str, path: &str, topic: &str) -> Result<Routes, Error> {
        self.add(method, path, topic, None)
    }

    /// As [`route`](Routes::route), with this route's own request timeout.
    ///
    /// # Errors
    ///
    /// As [`route`](Routes::route), and [`Error::InvalidConfig`] for a zero timeout.
    pub fn route_timeout(
        self,
        method: &str,
        path: &str,
        topic: &str,
        timeout: Duration,
    ) -> Result<Routes, Error> {
        if timeout.is_zero() {
            return Err(Error::InvalidConfig {
                reason: format!("route {method} {path}: the timeout must be above zero"),
            });
        }
        self.add(method, path, topic, Some(timeout))
    }

    fn add(
        self,
        method: &str,
        path: &str,
        topic: &str,
        timeout: Option<Duration>,
    ) -> Result<Routes, Error> {
        let pattern = Pattern::new(topic)?;
        if !pattern.is_exact() {
            return Err(Error::InvalidTopic {
                topic: topic.to_owned(),
                reason: "a route's topic must not contain wildcards",
            });
        }
        self.push(
            method,
            path,
            Target::Topic {
                topic: topic.into(),
                timeout,
            },
        )
    }

    /// Answers `method path` with a fixed response from the front-end itself, no component
    /// involved (a "hello" endpoint, a robots.txt, a load balancer's probe).
    ///
    /// # Errors
    ///
    /// As [`route`](Routes::route) for the method and pattern; [`Error::InvalidConfig`] for a
    /// status outside 200..=599 or a content type with a control byte (a line break, a NUL).
    pub fn fixed(
        self,
        method: &str,
        path: &str,
        status: u16,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<Routes, Error> {
        if !(200..=599).contains(&status) || !is_field_value(content_type) {
            return Err(Error::InvalidConfig {
                reason: format!(
                    "fixed route {method} {path}: status must be in 200..=599 and the content \
                     type one line"
                ),
            });
        }
        self.push(
            method,
            path,
            Target::Fixed {
                status,
                content_type: content_type.into(),
                body: body.into().into(),
            },
        )
    }

    /// `GET path` answers the runtime's metrics in the Prometheus text format.
    ///
    /// # Errors
    ///
    /// As [`route`](Routes::route) for the pattern.
    pub fn metrics(self, path: &str) -> Result<Routes, Error> {
        self.push("GET", path, Target::Admin(Admin::Metrics))
    }

    /// `GET path` answers `200` while the server runs (liveness).
    ///
    /// # Errors
    ///
    /// As [`route`](Routes::route) for the pattern.
    pub fn health(self, path: &str) -> Result<Routes, Error> {
        self.push("GET", path, Target::Admin(Admin::Health))
    }

    /// `GET path` answers `200` when the runtime has started and every component is running,
    /// `503` otherwise (readiness), with the components' states in the body.
    ///
    /// # Errors
    ///
    /// As [`route`](Routes::route) for the pattern.
    pub fn ready(self, path: &str) -> Result<Routes, Error> {
        self.push("GET", path, Target::Admin(Admin::Ready))
    }

    fn push(mut self, method: &str, path: &str, target: Target) -> Result<Routes, Error> {
        let bad = |why: &str| Error::InvalidConfig {
            reason: format!("route {method} {path}: {why}"),
        };
        if method.is_empty() || !method.bytes().all(is_token) {
            return Err(bad("the method must be an HTTP token such as GET"));
        }
        let Some(rest) = path.strip_prefix('/') else {
            return Err(bad("the pattern must start with '/'"));
        };
        let mut segments = Vec::new();
        if !rest.is_empty() {
            for seg in rest.split('/') {
                if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    if name.is_empty()
                        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    {
                        return Err(bad("a parameter is {name}, with letters, digits or '_'"));
                    }
                    if segments.contains(&Segment::Param(name.to_owned())) {
                        return Err(bad("a parameter is named twice"));
                    }
                    segments.push(Segment::Param(name.to_owned()));
                } else if seg.contains(['{', '}', '?', '#']) || seg.bytes().any(|b| b <= b' ') {
                    return Err(bad("a literal segment has '{', '}', '?', '#' or a space"));
                } else {
                    segments.push(Segment::Literal(seg.to_owned()));
                }
            }
        }
        self.routes.push(Route {
            method: method.to_ascii_uppercase(),
            pattern: path.into(),
            segments,
            target,
        });
        Ok(self)
    }

    /// Finds the route for `method` and `path` (the path without its query). A `HEAD` with
    /// no route of its own takes the `GET` route of its path (the caller writes no body).
    pub(crate) fn find(&self, method: &str, path: &str) -> Matched {
        let exact = self.find_with(method, path);
        if method != "HEAD" || matches!(exact, Matched::Route { .. } | Matched::BadPath) {
            return exact;
        }
        match self.find_with("GET", path) {
            found @ (Matched::Route { .. } | Matched::BadPath) => found,
            _ => exact,
        }
    }

    fn find_with(&self, method: &str, path: &str) -> Matched {
        let Some(rest) = path.strip_prefix('/') else {
            return Matched::NotFound;
        };
        // Segments are compared as the path is split, route by route: no allocation unless a
        // parameter is captured.
        let count = if rest.is_empty() {
            0
        } else {
            rest.split('/').count()
        };
        let parts = || rest.split('/').take(count);
        let mut allowed: Vec<String> = Vec::new();
        for (index, r) in self.routes.iter().enumerate() {
            if r.segments.len() != count {
                continue;
            }
            let fits = r.segments.iter().zip(parts()).all(|(s, p)| match s {
                Segment::Literal(l) => literal_matches(l, p),
                Segment::Param(_) => !p.is_empty(),
            });
            if !fits {
                continue;
            }
            if r.method != method {
                if !allowed.contains(&r.method) {
                    allowed.push(r.method.clone());
                }
                continue;
            }
            let mut params = Vec::new();
            for (s, p) in r.segments.iter().zip(parts()) {
                if let Segment::Param(name) = s {
                    match percent_decode(p) {
                        Some(v) => params.push((name.clone(), v)),
                        None => return Matched::BadPath,
                    }
                }
            }
            return Matched::Route { index, params };
        }
        if allowed.is_empty() {
            Matched::NotFound
        } else {
            // GET routes answer HEAD too.
            if let Some(i) = allowed.iter().position(|m| m == "GET") {
                if !allowed.iter().any(|m| m == "HEAD") {
                    allowed.insert(i + 1, "HEAD".to_owned());
                }
            }
            Matched::WrongMethod(allowed)
        }
    }
}

/// Whether the path segment `raw` is the literal `literal` once its `%XX` escapes are
/// decoded (`/he%6Clo` is `/hello`, as RFC 3986 §6.2.2.2 makes them equivalent). A segment
/// is decoded on its own, after the path is split at its `/`s, so `%2F` never splits one.
/// No allocation.
fn literal_matches(literal: &str, raw: &str) -> bool {
    if !raw.contains('%') {
        return literal == raw;
    }
    let (l, b) = (literal.as_bytes(), raw.as_bytes());
    let (mut i, mut j) = (0, 0);
    while j < b.len() {
        let byte = if b[j] == b'%' {
            let hex = |k: usize| b.get(k).and_then(|&c| (c as char).to_digit(16));
            match (hex(j + 1), hex(j + 2)) {
                (Some(hi), Some(lo)) => {
                    j += 3;
                    (hi * 16 + lo) as u8
                }
                _ => return false,
            }
        } else {
            j += 1;
            b[j - 1]
        };
        if l.get(i) != Some(&byte) {
            return false;
        }
        i += 1;
    }
    i == l.len()
}

/// Decodes `%XX` escapes; `None` for a bad escape or bytes that are not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Routes {
        Routes::new()
            .route("GET", "/orders/{id}", "orders.get")
            .unwrap()
            .route("DELETE", "/orders/{id}", "orders.delete")
            .unwrap()
            .route("GET", "/", "root")
            .unwrap()
    }

    #[test]
    fn parameters_are_captured_and_decoded() {
        match table().find("GET", "/orders/a%20b") {
            Matched::Route { index, params } => {
                assert_eq!(index, 0);
                assert_eq!(params, vec![("id".to_owned(), "a b".to_owned())]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            table().find("GET", "/"),
            Matched::Route { index: 2, .. }
        ));
    }

    #[test]
    fn wrong_method_lists_the_allowed_ones() {
        match table().find("PUT", "/orders/1") {
            Matched::WrongMethod(m) => assert_eq!(m, vec!["GET", "HEAD", "DELETE"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_paths_and_bad_escapes() {
        assert!(matches!(table().find("GET", "/orders"), Matched::NotFound));
        assert!(matches!(
            table().find("GET", "/orders/1/x"),
            Matched::NotFound
        ));
        assert!(matches!(table().find("GET", "/orders/"), Matched::NotFound));
        assert!(matches!(
            table().find("GET", "/orders/%zz"),
            Matched::BadPath
        ));
        assert!(matches!(
            table().find("GET", "/orders/%ff"),
            Matched::BadPath
        ));
    }

    #[test]
    fn literal_segments_match_once_decoded() {
        let t = Routes::new()
            .route("GET", "/hello/{name}", "a")
            .unwrap()
            .route("GET", "/a b", "b")
            .err();
        assert!(t.is_some(), "a space in a literal is refused");
        let t = Routes::new().route("GET", "/hello/{name}", "a").unwrap();
        assert!(matches!(t.find("GET", "/he%6Clo/x"), Matched::Route { .. }));
        assert!(matches!(t.find("GET", "/he%6clo/x"), Matched::Route { .. }));
        assert!(matches!(t.find("GET", "/hel%6/x"), Matched::NotFound));
        assert!(matches!(t.find("GET", "/hell%6F%2Fx/y"), Matched::NotFound));
        assert!(literal_matches("hello", "hello"));
        assert!(!literal_matches("hello", "hell"));
        assert!(!literal_matches("hell", "hell%6F"));
    }

    #[test]
    fn head_takes_the_get_route_unless_it_has_its_own() {
        let t = table();
        assert!(matches!(
            t.find("HEAD", "/orders/1"),
            Matched::Route { index: 0, .. }
        ));
        match t.find("POST", "/orders/1") {
            Matched::WrongMethod(m) => assert_eq!(m, vec!["GET", "HEAD", "DELETE"]),
            other => panic!("{other:?}"),
        }
        let own = table()
            .route("HEAD", "/orders/{id}", "orders.head")
            .unwrap();
        assert!(matches!(
            own.find("HEAD", "/orders/1"),
            Matched::Route { index: 3, .. }
        ));
        let only_delete = Routes::new().route("DELETE", "/x", "x").unwrap();
        assert!(matches!(
            only_delete.find("HEAD", "/x"),
            Matched::WrongMethod(_)
        ));
    }

    #[test]
    fn bad_routes_are_refused_with_a_reason() {
        for (m, p, t) in [
            ("GET", "orders", "a"),
            ("G T", "/a", "a"),
            ("GET", "/a/{}", "a"),
            ("GET", "/a/{x}/{x}", "a"),
            ("GET", "/a b", "a"),
        ] {
            assert!(
                matches!(
                    Routes::new().route(m, p, t),
                    Err(Error::InvalidConfig { .. })
                ),
                "{m} {p}"
            );
        }
        assert!(matches!(
            Routes::new().route("GET", "/a", "orders.*"),
            Err(Error::InvalidTopic { .. })
        ));
        assert!(matches!(
            Routes::new().route("GET", "/a", "bad..topic"),
            Err(Error::InvalidTopic { .. })
        ));
    }
}

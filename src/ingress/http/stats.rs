//! The front-end's counters, shared by its I/O threads (relaxed atomics: each is a count on
//! its own, read only for reports).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::ingress::engine::EngineStats;
use crate::logs::{self, RateLimit};
use crate::metrics::{Histogram, TextWriter};

/// Status codes are counted per route in a flat table indexed by `status - 100`.
const STATUSES: usize = 500;

/// Which deadline passed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TimeoutKind {
    Header,
    Body,
    Idle,
    Write,
    Reply,
}

pub(crate) struct Counters {
    /// Per route (and one more, last, for requests no route matched): responses by status.
    statuses: Box<[[AtomicU64; STATUSES]]>,
    /// Per route row, as `statuses`: time from the head to the response.
    pub(crate) latency: Box<[Histogram]>,
    header_timeouts: AtomicU64,
    body_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
    write_timeouts: AtomicU64,
    reply_timeouts: AtomicU64,
    /// Rate limits of the per-request events (see `record`, `timeout`).
    limits: Limits,
}

#[derive(Default)]
struct Limits {
    server_errors: RateLimit,
    client_errors: RateLimit,
    timeouts: RateLimit,
}

impl Counters {
    pub(crate) fn new(routes: usize) -> Counters {
        Counters {
            statuses: (0..=routes)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            latency: (0..=routes).map(|_| Histogram::new()).collect(),
            header_timeouts: AtomicU64::new(0),
            body_timeouts: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
            write_timeouts: AtomicU64::new(0),
            reply_timeouts: AtomicU64::new(0),
            limits: Limits::default(),
        }
    }

    /// One response written: `route` is `None` for requests no route took.
    pub(crate) fn record(&self, route: Option<usize>, status: u16, took: Duration) {
        let row = route.unwrap_or(self.statuses.len() - 1);
        let col = usize::from(status.clamp(100, 599) - 100);
        self.statuses[row][col].fetch_add(1, Ordering::Relaxed);
        self.latency[row].record(took);
        // A refusal (503: busy, too many connections), a timeout (504) or a component's
        // failure (500) is the operator's business; a client's error (4xx) less so.
        if status >= 500 {
            logs::limited!(
                self.limits.server_errors,
                tracing::Level::WARN,
                target: logs::HTTP,
                status,
                "answered with a server error"
            );
        } else if status >= 400 {
            logs::limited!(
                self.limits.client_errors,
                tracing::Level::DEBUG,
                target: logs::HTTP,
                status,
                "answered with a client error"
            );
        }
    }

    pub(crate) fn timeout(&self, kind: TimeoutKind) {
        let c = match kind {
            TimeoutKind::Header => &self.header_timeouts,
            TimeoutKind::Body => &self.body_timeouts,
            TimeoutKind::Idle => &self.idle_timeouts,
            TimeoutKind::Write => &self.write_timeouts,
            TimeoutKind::Reply => &self.reply_timeouts,
        };
        c.fetch_add(1, Ordering::Relaxed);
        // An idle keep-alive connection timing out is business as usual.
        if !matches!(kind, TimeoutKind::Idle) {
            logs::limited!(
                self.limits.timeouts,
                tracing::Level::DEBUG,
                target: logs::HTTP,
                kind = ?kind,
                "connection timed out"
            );
        }
    }

    /// `(route row, status, count)` for every non-zero cell; the last row is "unmatched".
    pub(crate) fn by_status(&self) -> Vec<(usize, u16, u64)> {
        let mut out = Vec::new();
        for (row, cells) in self.statuses.iter().enumerate() {
            for (col, n) in cells.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    out.push((row, col as u16 + 100, n));
                }
            }
        }
        out
    }

    /// The HTTP counters with the engine's (connections, accepts, polls).
    pub(crate) fn snapshot(&self, engine: &EngineStats) -> super::HttpStats {
        let by_status = self.by_status();
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        super::HttpStats {
            open_connections: engine.open,
            accepted: engine.accepted,
            closed: engine.closed,
            refused_connections: engine.refused,
            accept_errors: engine.accept_errors,
            poll_errors: engine.poll_errors,
            requests: by_status.iter().map(|r| r.2).sum(),
            header_timeouts: l(&self.header_timeouts),
            body_timeouts: l(&self.body_timeouts),
            idle_timeouts: l(&self.idle_timeouts),
            write_timeouts: l(&self.write_timeouts),
            reply_timeouts: l(&self.reply_timeouts),
        }
    }
}

/// Writes the metrics of `server` with `w` (Prometheus text), its samples told apart from
/// other servers' by its `listen` label: several servers' samples join one family each.
pub(crate) fn write_prometheus(w: &mut TextWriter<'_>, server: &super::HttpServer) {
    let listen = server.local_addr().to_string();
    let listen = listen.as_str();
    let routes = &server.routes().routes;
    // The route label of each row of the tables; the last row is "unmatched".
    let labels: Vec<String> = (0..=routes.len())
        .map(|row| {
            routes.get(row).map_or_else(
                || "unmatched".to_owned(),
                |r| format!("{} {}", r.method, r.pattern),
            )
        })
        .collect();
    let counters = server.counters();
    let st = server.stats();

    let requests: Vec<_> = counters
        .by_status()
        .into_iter()
        .map(|(row, status, n)| (labels[row].as_str(), status.to_string(), n))
        .collect();
    w.counter(
        "reactorium_http_requests_total",
        "HTTP responses written, by route and status.",
        requests.iter().map(|(r, st, n)| {
            (
                [("listen", listen), ("route", *r), ("status", st.as_str())],
                *n,
            )
        }),
    );

    let latency: Vec<_> = counters
        .latency
        .iter()
        .enumerate()
        .map(|(row, h)| (labels[row].as_str(), h.snapshot()))
        .filter(|(_, snap)| snap.count > 0)
        .collect();
    w.histogram(
        "reactorium_http_request_duration_seconds",
        "Time from a request's head to its response, by route.",
        latency
            .iter()
            .map(|(r, h)| ([("listen", listen), ("route", *r)], h)),
    );

    let one = |v: u64| [([("listen", listen)], v)];
    w.gauge(
        "reactorium_http_open_connections",
        "HTTP connections open now.",
        [([("listen", listen)], st.open_connections as f64)],
    );
    w.counter(
        "reactorium_http_connections_accepted_total",
        "HTTP connections accepted.",
        one(st.accepted),
    );
    w.counter(
        "reactorium_http_connections_refused_total",
        "HTTP connections closed at once, past the connection cap and its slack.",
        one(st.refused_connections),
    );
    w.counter(
        "reactorium_http_accept_errors_total",
        "Failed accept calls (each pauses accepting for 100 ms).",
        one(st.accept_errors),
    );
    w.counter(
        "reactorium_http_poll_errors_total",
        "Failed waits on an I/O thread's poller (each pauses that thread 10 ms).",
        one(st.poll_errors),
    );
    w.counter(
        "reactorium_http_timeouts_total",
        "HTTP deadlines that passed, by kind.",
        [
            ("header", st.header_timeouts),
            ("body", st.body_timeouts),
            ("idle", st.idle_timeouts),
            ("write", st.write_timeouts),
            ("reply", st.reply_timeouts),
        ]
        .map(|(kind, n)| ([("listen", listen), ("kind", kind)], n)),
    );
}

//! The front-end's counters, shared by its I/O threads (relaxed atomics: each is a count on
//! its own, read only for reports).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    pub(crate) accepted: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) refused_connections: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) poll_errors: AtomicU64,
    header_timeouts: AtomicU64,
    body_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
    write_timeouts: AtomicU64,
    reply_timeouts: AtomicU64,
    pub(crate) drain_completed: AtomicU64,
    pub(crate) drain_closed_idle: AtomicU64,
    pub(crate) drain_abandoned: AtomicU64,
}

impl Counters {
    pub(crate) fn new(routes: usize) -> Counters {
        Counters {
            statuses: (0..=routes)
                .map(|_| std::array::from_fn(|_| AtomicU64::new(0)))
                .collect(),
            latency: (0..=routes).map(|_| Histogram::new()).collect(),
            accepted: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            refused_connections: AtomicU64::new(0),
            accept_errors: AtomicU64::new(0),
            poll_errors: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            body_timeouts: AtomicU64::new(0),
            idle_timeouts: AtomicU64::new(0),
            write_timeouts: AtomicU64::new(0),
            reply_timeouts: AtomicU64::new(0),
            drain_completed: AtomicU64::new(0),
            drain_closed_idle: AtomicU64::new(0),
            drain_abandoned: AtomicU64::new(0),
        }
    }

    /// One response written: `route` is `None` for requests no route took.
    pub(crate) fn record(&self, route: Option<usize>, status: u16, took: Duration) {
        let row = route.unwrap_or(self.statuses.len() - 1);
        let col = usize::from(status.clamp(100, 599) - 100);
        self.statuses[row][col].fetch_add(1, Ordering::Relaxed);
        self.latency[row].record(took);
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

    pub(crate) fn snapshot(&self, open: usize) -> super::HttpStats {
        let by_status = self.by_status();
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        super::HttpStats {
            open_connections: open,
            accepted: l(&self.accepted),
            closed: l(&self.closed),
            refused_connections: l(&self.refused_connections),
            accept_errors: l(&self.accept_errors),
            poll_errors: l(&self.poll_errors),
            requests: by_status.iter().map(|r| r.2).sum(),
            header_timeouts: l(&self.header_timeouts),
            body_timeouts: l(&self.body_timeouts),
            idle_timeouts: l(&self.idle_timeouts),
            write_timeouts: l(&self.write_timeouts),
            reply_timeouts: l(&self.reply_timeouts),
        }
    }
}

/// Appends the metrics of `servers` (Prometheus text), one family at a time, each server's
/// samples told apart by its `listen` label.
pub(crate) fn write_prometheus(out: &mut String, servers: &[super::HttpServer]) {
    if servers.is_empty() {
        return;
    }
    // (listen, route label) per route row of each server.
    let rows: Vec<(String, Vec<String>)> = servers
        .iter()
        .map(|s| {
            let routes = &s.shared().routes.routes;
            let labels = (0..=routes.len())
                .map(|row| {
                    routes.get(row).map_or_else(
                        || "unmatched".to_owned(),
                        |r| format!("{} {}", r.method, r.pattern),
                    )
                })
                .collect();
            (s.local_addr().to_string(), labels)
        })
        .collect();
    let stats: Vec<super::HttpStats> = servers.iter().map(super::HttpServer::stats).collect();
    let mut w = TextWriter::new(out);

    let mut requests = Vec::new();
    for (s, (listen, routes)) in servers.iter().zip(&rows) {
        for (row, status, n) in s.shared().stats.by_status() {
            requests.push((listen.as_str(), routes[row].as_str(), status.to_string(), n));
        }
    }
    w.counter(
        "reactorium_http_requests_total",
        "HTTP responses written, by route and status.",
        requests
            .iter()
            .map(|(l, r, st, n)| ([("listen", *l), ("route", *r), ("status", st.as_str())], *n)),
    );

    let mut latency = Vec::new();
    for (s, (listen, routes)) in servers.iter().zip(&rows) {
        for (row, h) in s.shared().stats.latency.iter().enumerate() {
            let snap = h.snapshot();
            if snap.count > 0 {
                latency.push((listen.as_str(), routes[row].as_str(), snap));
            }
        }
    }
    w.histogram(
        "reactorium_http_request_duration_seconds",
        "Time from a request's head to its response, by route.",
        latency
            .iter()
            .map(|(l, r, h)| ([("listen", *l), ("route", *r)], h)),
    );

    let per_server = |f: fn(&super::HttpStats) -> u64| {
        rows.iter()
            .zip(&stats)
            .map(move |((listen, _), st)| ([("listen", listen.as_str())], f(st)))
    };
    w.gauge(
        "reactorium_http_open_connections",
        "HTTP connections open now.",
        per_server(|s| s.open_connections as u64).map(|(l, v)| (l, v as f64)),
    );
    w.counter(
        "reactorium_http_connections_accepted_total",
        "HTTP connections accepted.",
        per_server(|s| s.accepted),
    );
    w.counter(
        "reactorium_http_connections_refused_total",
        "HTTP connections closed at once, past the connection cap and its slack.",
        per_server(|s| s.refused_connections),
    );
    w.counter(
        "reactorium_http_accept_errors_total",
        "Failed accept calls (each pauses accepting for 100 ms).",
        per_server(|s| s.accept_errors),
    );
    w.counter(
        "reactorium_http_poll_errors_total",
        "Failed waits on an I/O thread's poller (each pauses that thread 10 ms).",
        per_server(|s| s.poll_errors),
    );
    let mut timeouts = Vec::new();
    for ((listen, _), st) in rows.iter().zip(&stats) {
        for (kind, n) in [
            ("header", st.header_timeouts),
            ("body", st.body_timeouts),
            ("idle", st.idle_timeouts),
            ("write", st.write_timeouts),
            ("reply", st.reply_timeouts),
        ] {
            timeouts.push(([("listen", listen.as_str()), ("kind", kind)], n));
        }
    }
    w.counter(
        "reactorium_http_timeouts_total",
        "HTTP deadlines that passed, by kind.",
        timeouts,
    );
}

//! The front-end's counters, shared by its I/O threads (relaxed atomics: each is a count on
//! its own, read only for reports).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    latency_sum_ns: AtomicU64,
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
            latency_sum_ns: AtomicU64::new(0),
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
        self.latency_sum_ns.fetch_add(
            took.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
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
    use std::fmt::Write as _;
    if servers.is_empty() {
        return;
    }
    let label = |s: &super::HttpServer| s.local_addr().to_string();
    let _ = writeln!(
        out,
        "# HELP reactorium_http_requests_total HTTP responses written, by route and status.\n\
         # TYPE reactorium_http_requests_total counter"
    );
    for s in servers {
        let shared = s.shared();
        for (row, status, n) in shared.stats.by_status() {
            let route = shared
                .routes
                .routes
                .get(row)
                .map(|r| format!("{} {}", r.method, r.pattern))
                .unwrap_or_else(|| "unmatched".to_owned());
            let _ = writeln!(
                out,
                "reactorium_http_requests_total{{listen=\"{}\",route=\"{}\",status=\"{status}\"}} {n}",
                label(s),
                escape(&route)
            );
        }
    }
    let gauge = |out: &mut String,
                 name: &str,
                 help: &str,
                 kind: &str,
                 f: &dyn Fn(&super::HttpStats) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in servers {
            let _ = writeln!(out, "{name}{{listen=\"{}\"}} {}", label(s), f(&s.stats()));
        }
    };
    gauge(
        out,
        "reactorium_http_open_connections",
        "HTTP connections open now.",
        "gauge",
        &|s| s.open_connections as u64,
    );
    gauge(
        out,
        "reactorium_http_connections_accepted_total",
        "HTTP connections accepted.",
        "counter",
        &|s| s.accepted,
    );
    gauge(
        out,
        "reactorium_http_connections_refused_total",
        "HTTP connections closed at once, past the connection cap.",
        "counter",
        &|s| s.refused_connections,
    );
    gauge(
        out,
        "reactorium_http_accept_errors_total",
        "Failed accept calls.",
        "counter",
        &|s| s.accept_errors,
    );
    let _ = writeln!(
        out,
        "# HELP reactorium_http_timeouts_total HTTP deadlines that passed, by kind.\n\
         # TYPE reactorium_http_timeouts_total counter"
    );
    for s in servers {
        let st = s.stats();
        for (kind, n) in [
            ("header", st.header_timeouts),
            ("body", st.body_timeouts),
            ("idle", st.idle_timeouts),
            ("write", st.write_timeouts),
            ("reply", st.reply_timeouts),
        ] {
            let _ = writeln!(
                out,
                "reactorium_http_timeouts_total{{listen=\"{}\",kind=\"{kind}\"}} {n}",
                label(s)
            );
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

//! The HTTP front-end, from the outside: real sockets on 127.0.0.1, a raw client
//! (`tests/support/http.rs`) for protocol abuse, `ureq` and `curl` for well-behaved clients.
//!
//! - `statuses`: every status the front-end gives, and the one error shape;
//! - `keepalive`: many requests per connection, `Connection: close`, HTTP/1.0, pipelining,
//!   the idle timeout;
//! - `connections`: the connection cap, slowloris heads, fairness across 1,000 keep-alive
//!   connections;
//! - `fuzz`: a bounded, seeded fuzz run of the parser and of connection scripts;
//! - `hostile`: peers that abuse the connection (half-close then reset);
//! - `rfc`: what RFC 9110 / 9112 ask (HEAD, framing, Host, control bytes, HTTP/1.0);
//! - `shutdown`: a graceful stop with requests in flight;
//! - `admin`: health, readiness and metrics endpoints;
//! - `config`: settings refused at `HttpServer::start`;
//! - `stress`: counting invariants under overload.
//!
//! Running out of file descriptors is in `tests/http_fd_exhaustion.rs`, a process of its own
//! (the limit is process-wide).

mod support;

// The modules live in `tests/http/`; a crate root's `mod x;` looks beside the root, hence
// the paths (as `tests/backpressure.rs` does).
#[path = "http/admin.rs"]
mod admin;
#[path = "http/config.rs"]
mod config;
#[path = "http/connections.rs"]
mod connections;
#[path = "http/fuzz.rs"]
mod fuzz;
#[path = "http/hostile.rs"]
mod hostile;
#[path = "http/keepalive.rs"]
mod keepalive;
#[path = "http/rfc.rs"]
mod rfc;
#[path = "http/shutdown.rs"]
mod shutdown;
#[path = "http/statuses.rs"]
mod statuses;
#[path = "http/stress.rs"]
mod stress;

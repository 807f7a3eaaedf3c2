//! A small key-value service over HTTP: one component owns the map (no locks), the HTTP
//! front-end routes to it, and the admin endpoints show what the runtime is doing.
//!
//! ```sh
//! cargo run --example kv                      # listens on 127.0.0.1:8080
//! cargo run --example kv -- 127.0.0.1:9000    # or elsewhere
//!
//! curl -X PUT localhost:8080/kv/greeting -H 'content-type: application/json' -d '"hello"'
//! curl localhost:8080/kv/greeting             # "hello"
//! curl localhost:8080/kv                      # {"keys":["greeting"]}
//! curl -X DELETE localhost:8080/kv/greeting
//! curl localhost:8080/kv/nope                 # 404 with the error shape
//! curl localhost:8080/metrics                 # Prometheus text
//! curl localhost:8080/ready
//! ```
//!
//! Ctrl-C (or `curl -X POST localhost:8080/admin/stop`) stops it gracefully.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use reactorium::{
    http_names, BoxError, Component, ComponentOptions, Context, HttpConfig, HttpServer, Message,
    Routes, Runtime,
};
use serde_json::{json, Value};

/// Owns the map. Only its reactor thread touches it.
#[derive(Default)]
struct Store {
    map: BTreeMap<String, Value>,
}

fn status(code: u16, body: Value) -> Message {
    Message::json(body).with_header(http_names::STATUS, code.to_string())
}

fn not_found(key: &str) -> Message {
    status(
        404,
        json!({"error": {"status": 404, "code": "no_such_key", "message": format!("no key `{key}`")}}),
    )
}

impl Component for Store {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let method = msg.header(http_names::METHOD).unwrap_or("GET").to_owned();
        let key = msg.header("http.param.key").map(str::to_owned);
        let reply = match (method.as_str(), key) {
            ("GET", None) => Message::json(json!({ "keys": self.map.keys().collect::<Vec<_>>() })),
            ("GET", Some(k)) => match self.map.get(&k) {
                Some(v) => Message::json(v.clone()),
                None => not_found(&k),
            },
            ("PUT", Some(k)) => {
                let value = msg.as_json().cloned().unwrap_or(Value::Null);
                let created = self.map.insert(k.clone(), value).is_none();
                status(if created { 201 } else { 200 }, json!({ "key": k }))
            }
            ("DELETE", Some(k)) => match self.map.remove(&k) {
                // 204 carries no body.
                Some(_) => Message::empty().with_header(http_names::STATUS, "204"),
                None => not_found(&k),
            },
            _ => status(
                405,
                json!({"error": {"status": 405, "code": "method_not_allowed"}}),
            ),
        };
        // A reply nobody waits for any more (the client hung up, or its request timed out)
        // is counted late by the bus and `reply` returns `Ok`: no failure of the store.
        ctx.reply(&mut msg, reply)?;
        Ok(())
    }
}

/// Answers `POST /admin/stop` and tells main to stop.
struct Stopper(crossbeam::channel::Sender<()>);

impl Component for Stopper {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        ctx.reply(&mut msg, status(202, json!({"stopping": true})))?;
        let _ = self.0.try_send(());
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    // Logs (the runtime's `tracing` events) to stderr, filtered by `RUST_LOG` (default: info).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    reactorium::set_panic_hook();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .parse()
        .context("the argument is the address to listen on, such as 127.0.0.1:8080")?;

    let rt = Runtime::builder().worker_threads(2).build()?;
    rt.deploy_with(
        "store",
        ComponentOptions::new()
            .mailbox_capacity(1024)
            .subscribe("kv.>"),
        Store::default,
    )?;
    let (stop_tx, stop_rx) = crossbeam::channel::bounded(1);
    rt.deploy_with(
        "stopper",
        ComponentOptions::new().subscribe("admin.stop"),
        move || Stopper(stop_tx.clone()),
    )?;
    rt.start()?;

    let routes = Routes::new()
        .route("GET", "/kv", "kv.list")?
        .route("GET", "/kv/{key}", "kv.get")?
        .route("PUT", "/kv/{key}", "kv.put")?
        .route("DELETE", "/kv/{key}", "kv.delete")?
        .route("POST", "/admin/stop", "admin.stop")?
        .fixed("GET", "/hello", 200, "text/plain", "hello\n")?
        .metrics("/metrics")?
        .health("/health")?
        .ready("/ready")?;
    let server = HttpServer::start(
        &rt,
        HttpConfig::new()
            .bind(addr)
            .request_timeout(Duration::from_secs(2)),
        routes,
    )?;
    println!("kv: listening on http://{}", server.local_addr());
    println!(
        "kv: try  curl -X PUT {0}/kv/a -H 'content-type: application/json' -d '1'  and  \
         curl {0}/kv/a",
        format_args!("http://{}", server.local_addr())
    );

    let _ = stop_rx.recv();
    let report = rt.stop()?;
    println!(
        "kv: stopped in {:?}; front-ends: {:?}; store handled {}",
        report.elapsed,
        report.front_ends,
        report.component("store").map_or(0, |c| c.handled)
    );
    Ok(())
}

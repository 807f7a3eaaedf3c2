//! Front-ends the runtime owns: it starts them on request, lends them its admin hooks
//! (metrics, readiness), and stops them first when it stops.

use std::sync::{Arc, Mutex, Weak};

use super::registry::{ComponentState, Registry};
use super::stats::{self, RuntimeStats};
use super::{Runtime, State};
use crate::bus::Bus;
use crate::ingress::http::{self, AdminHooks, HttpConfig, HttpServer, HttpShutdown, Routes};
use crate::types::Error;
use crate::worker::WorkerPool;

/// The runtime's front-ends, in start order.
#[derive(Default)]
pub(crate) struct FrontEnds {
    servers: Mutex<Vec<HttpServer>>,
}

impl FrontEnds {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<HttpServer>> {
        self.servers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn http(&self) -> Vec<HttpServer> {
        self.lock().clone()
    }

    /// Stops every front-end (each gracefully, within its own shutdown timeout).
    pub(crate) fn stop_all(&self) -> Vec<HttpShutdown> {
        let servers = std::mem::take(&mut *self.lock());
        servers.iter().map(HttpServer::stop).collect()
    }
}

/// What an admin endpoint may read of the runtime, without keeping it alive.
pub(crate) struct RuntimeAdmin {
    state: Weak<Mutex<State>>,
    registry: Arc<Registry>,
    bus: Bus,
    pool: WorkerPool,
    front_ends: Weak<FrontEnds>,
}

impl RuntimeAdmin {
    fn stats(&self) -> Option<RuntimeStats> {
        let state = self.state.upgrade()?;
        Some(stats::collect(
            &state,
            &self.registry,
            &self.pool,
            &self.bus,
        ))
    }
}

impl AdminHooks for RuntimeAdmin {
    fn metrics(&self) -> String {
        let mut out = String::new();
        if let Some(stats) = self.stats() {
            stats.write_prometheus(&mut out);
        }
        if let Some(f) = self.front_ends.upgrade() {
            http::write_prometheus(&mut out, &f.http());
        }
        out
    }

    fn ready(&self) -> (bool, serde_json::Value) {
        let Some(stats) = self.stats() else {
            return (
                false,
                serde_json::json!({"ready": false, "runtime": "gone"}),
            );
        };
        let not_running: Vec<_> = stats
            .components
            .iter()
            .filter(|c| c.state != ComponentState::Running)
            .map(|c| serde_json::json!({"component": &*c.name, "state": format!("{:?}", c.state)}))
            .collect();
        let detail = serde_json::json!({
            "ready": stats.ready,
            "runtime": if stats.started { "running" } else { "not running" },
            "components": stats.components.len(),
            "not_running": not_running,
        });
        (stats.ready, detail)
    }
}

impl Runtime {
    /// Starts an HTTP front-end on `config`'s address, serving `routes`, owned by this
    /// runtime: its admin routes ([`Routes::metrics`], [`Routes::ready`]) read this runtime,
    /// and [`stop`](Runtime::stop) stops it before any component.
    ///
    /// Each routed request becomes a bus request to the route's topic (see
    /// [`http_names`](crate::http_names) for the headers it carries and those a reply may
    /// set); the connection waits for the reply without holding a thread.
    ///
    /// | outcome | status |
    /// |---|---|
    /// | the component's reply | its `http.status`, default `200` |
    /// | mailbox full (`Backpressure`) | `503` with `Retry-After` |
    /// | component stopped | `503` with `Retry-After` |
    /// | no subscriber for the topic | `502` |
    /// | the component dropped the request (failed) | `502` |
    /// | no reply within the timeout | `504` |
    /// | no route for the path / wrong method | `404` / `405` with `Allow` |
    /// | body not valid JSON (JSON or no content type) | `400` |
    /// | body over the limit / head over the limit | `413` / `431` |
    /// | head or body too slow | `408` |
    /// | past the connection cap | `503` with `Retry-After` |
    ///
    /// Every error body has one shape:
    /// `{"error":{"status":503,"code":"backpressure","message":"..."}}`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a setting out of range; [`Error::Io`] when the address
    /// cannot be bound; [`Error::Spawn`] when an I/O thread cannot be started;
    /// [`Error::InvalidState`] once the runtime has stopped.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{BoxError, Component, ComponentOptions, Context, HttpConfig, Message, Routes, Runtime};
    /// use std::io::{Read, Write};
    ///
    /// struct Echo;
    /// impl Component for Echo {
    ///     fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
    ///         let id = msg.header("http.param.id").unwrap_or("?").to_owned();
    ///         ctx.reply(&mut msg, Message::json(serde_json::json!({ "id": id })))?;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let rt = Runtime::new()?;
    /// rt.deploy_with("echo", ComponentOptions::new().subscribe("echo.get"), || Echo)?;
    /// rt.start()?;
    /// let server = rt.serve_http(
    ///     HttpConfig::new().bind("127.0.0.1:0".parse()?),
    ///     Routes::new().route("GET", "/echo/{id}", "echo.get")?,
    /// )?;
    ///
    /// let mut s = std::net::TcpStream::connect(server.local_addr())?;
    /// s.write_all(b"GET /echo/42 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    /// let mut response = String::new();
    /// s.read_to_string(&mut response)?;
    /// assert!(response.starts_with("HTTP/1.1 200 OK"));
    /// assert!(response.ends_with(r#"{"id":"42"}"#));
    ///
    /// let report = rt.stop()?; // the front-end stops first
    /// assert_eq!(report.http.len(), 1);
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn serve_http(&self, config: HttpConfig, routes: Routes) -> Result<HttpServer, Error> {
        if self.is_stopped() {
            return Err(Error::InvalidState {
                reason: "serve_http on a runtime that has stopped",
            });
        }
        let admin = Arc::new(RuntimeAdmin {
            state: Arc::downgrade(&self.state),
            registry: Arc::clone(&self.registry),
            bus: self.bus.clone(),
            pool: self.pool.clone(),
            front_ends: Arc::downgrade(&self.front_ends),
        });
        let server = HttpServer::start(
            self.bus.clone(),
            config,
            routes,
            Some(admin),
            &self.config.thread_name_prefix,
        )?;
        self.front_ends.lock().push(server.clone());
        Ok(server)
    }

    /// The HTTP front-ends this runtime started and has not stopped.
    pub fn http_servers(&self) -> Vec<HttpServer> {
        self.front_ends.http()
    }
}

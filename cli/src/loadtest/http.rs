//! `http`: C keep-alive connections in a closed loop (one request outstanding each) against
//! the HTTP front-end, for a fixed time after a warm-up; the load client is
//! `http_client.rs`, in this process. Reports requests per second, latency percentiles and
//! how evenly the connections were served.
//!
//! reactorium: `GET /echo/{id}`, a route to a component that replies with the id as bytes
//! (front-end, bus request, component, reply). Floor: `GET /hello` on the same server, a
//! fixed response the front-end writes itself (no bus, no component). Both run on the same
//! kind of server, built afresh for each measurement, so the ratio is the cost of routing a
//! request through the runtime.

use std::time::Duration;

use anyhow::Result;
use reactorium::{
    BoxError, Component, ComponentOptions, Context, HttpConfig, HttpServer, Message, Routes,
    Runtime,
};

use super::http_client::{self, Exchange, Plan};
use super::measure::{median, quantile_us, Budget};
use super::{Better, Checks, Knobs, Metric, Run, Scenario, Unit, Verdict};

const TOPIC: &str = "bench.echo";
const HELLO: &[u8] = b"hello";

pub(crate) struct Http {
    connections: usize,
    client_threads: usize,
    io_threads: usize,
    warmup: Duration,
    duration: Duration,
    mailbox: usize,
}

impl Http {
    /// `in_suite`: the standard suite's shorter default measurement.
    pub(crate) fn new(k: &Knobs, connections: usize, in_suite: bool) -> Http {
        let duration = match k.budget {
            Some(Budget::Time(d)) => d,
            // The standard suite stays about a minute: four short windows per run.
            _ if in_suite => Duration::from_millis(500),
            _ => Duration::from_secs(3),
        };
        Http {
            connections,
            client_threads: k.client_threads.unwrap_or(1),
            io_threads: k.io_threads.unwrap_or(1),
            warmup: (duration / 4).min(Duration::from_millis(500)),
            duration,
            mailbox: k.mailbox,
        }
    }

    /// One measurement: a fresh runtime and server (the echo component deployed either
    /// way), and the client sending `exchange(i)` on connection `i`. `through_component`:
    /// whether the requests go to the echo component, whose count is then checked.
    fn measure(
        &self,
        through_component: bool,
        exchange: impl Fn(usize) -> Exchange,
    ) -> Result<Run> {
        let rt = Runtime::builder().worker_threads(1).build()?;
        rt.deploy_with(
            "echo",
            ComponentOptions::new()
                .mailbox_capacity(self.mailbox)
                .subscribe(TOPIC),
            || Echo,
        )?;
        rt.start()?;
        let server = HttpServer::start(
            &rt,
            HttpConfig::new()
                .bind("127.0.0.1:0".parse()?)
                .io_threads(self.io_threads),
            Routes::new().route("GET", "/echo/{id}", TOPIC)?.fixed(
                "GET",
                "/hello",
                200,
                "text/plain",
                HELLO,
            )?,
        )?;
        let plan = Plan {
            addr: server.local_addr(),
            connections: self.connections,
            threads: self.client_threads,
            warmup: self.warmup,
            duration: self.duration,
        };
        let client = http_client::run(&plan, exchange);
        let stats = server.stats();
        let report = rt.stop()?;
        let client = client?;

        let mut check = Checks::default();
        check.that(client.lost == 0, || {
            format!(
                "{} connections lost ({})",
                client.lost,
                client.lost_why.join("; ")
            )
        });
        check.eq("requests unanswered at the end", client.unanswered, 0);
        check.eq("non-200 responses", client.non_200, 0);
        check.eq("responses with a wrong body", client.wrong_body, 0);
        let unserved = client.per_connection.iter().filter(|&&n| n == 0).count();
        check.that(unserved == 0, || {
            format!(
                "{unserved} of {} connections got no response in the window",
                self.connections
            )
        });
        check.eq(
            "connections accepted by the server",
            stats.accepted,
            self.connections as u64,
        );
        check.eq(
            "responses counted by the server",
            stats.requests,
            client.total,
        );
        let handled = report.component("echo").map_or(0, |c| c.handled);
        // A refusal (503) never reached the component; the non-200 check reports those.
        let via_echo = if through_component {
            client.total - client.non_200
        } else {
            0
        };
        check.eq("requests handled by the echo component", handled, via_echo);
        check.eq("latencies recorded", client.latency.len(), client.measured);

        let per_conn: Vec<f64> = client.per_connection.iter().map(|&n| n as f64).collect();
        let (min, max) = per_conn
            .iter()
            .fold((f64::INFINITY, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        Ok(Run::checked(
            vec![
                client.measured as f64 / client.window.as_secs_f64(),
                quantile_us(&client.latency, 0.50) / 1_000.0,
                quantile_us(&client.latency, 0.99) / 1_000.0,
                min,
                median(&per_conn),
                max,
            ],
            check.0,
        ))
    }
}

/// Answers `/echo/{id}` with the id, as bytes.
struct Echo;

impl Component for Echo {
    fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let id = msg.header("http.param.id").unwrap_or_default().to_owned();
        ctx.reply(&mut msg, Message::bytes(id))?;
        Ok(())
    }
}

const METRICS: &[Metric] = &[
    Metric {
        name: "req/s",
        unit: Unit::Rate,
        better: Better::Higher,
    },
    Metric {
        name: "p50",
        unit: Unit::Millis,
        better: Better::Lower,
    },
    Metric {
        name: "p99",
        unit: Unit::Millis,
        better: Better::Lower,
    },
    Metric {
        name: "conn min",
        unit: Unit::Count,
        better: Better::Higher,
    },
    Metric {
        name: "conn median",
        unit: Unit::Count,
        better: Better::Higher,
    },
    Metric {
        name: "conn max",
        unit: Unit::Count,
        better: Better::Lower,
    },
];

/// The targets: throughput at 100 connections, latency and service at 1,000.
const RATE_TARGET: f64 = 100_000.0;
const RATIO_TARGET: f64 = 0.8;
const P99_TARGET_MS: f64 = 50.0;

impl Scenario for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    fn params(&self) -> String {
        format!(
            "C={} client T={} io={} {:.1} s",
            self.connections,
            self.client_threads,
            self.io_threads,
            self.duration.as_secs_f64()
        )
    }

    fn metrics(&self) -> &'static [Metric] {
        METRICS
    }

    fn floor_is(&self) -> &'static str {
        "the same server's fixed /hello route, no component"
    }

    fn ours(&self) -> Result<Run> {
        self.measure(true, |i| {
            Exchange::get(&format!("/echo/{i}"), i.to_string().as_bytes())
        })
    }

    fn floor(&self) -> Result<Run> {
        self.measure(false, |_| Exchange::get("/hello", HELLO))
    }

    fn verdict(&self, ours: &[f64], floor: &[f64]) -> Option<Verdict> {
        let (rate, p99, min) = (ours[0], ours[2], ours[3]);
        Some(if self.connections >= 1000 {
            Verdict {
                target: format!("p99 ≤ {P99_TARGET_MS:.0} ms, all served"),
                met: p99 <= P99_TARGET_MS && min >= 1.0,
            }
        } else if self.connections == 100 {
            Verdict {
                target: format!("≥{RATIO_TARGET}× and ≥100k req/s"),
                met: rate / floor[0] >= RATIO_TARGET && rate >= RATE_TARGET,
            }
        } else {
            Verdict {
                target: format!("≥{RATIO_TARGET}×"),
                met: rate / floor[0] >= RATIO_TARGET,
            }
        })
    }
}

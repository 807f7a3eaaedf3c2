//! The events an operator relies on: a component's failure with its name and reason, a
//! restart, a supervisor giving up, a front-end's refusal, a rate-limited burst of refusals,
//! the component's span around handler and job code, and the panic hook.
//!
//! Events from the runtime's threads reach only a global subscriber, so this binary installs
//! one ([`Capture::global`]) and every test names its components uniquely and looks only at
//! events that name them. The panic hook is process-wide too: it is installed once, over a
//! hook that records which panics reach it.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Result;
use reactorium::{
    BoxError, Component, ComponentOptions, Context, HttpConfig, HttpServer, Message, Overflow,
    Restart, Routes, Runtime, SendError, SupervisorOptions,
};
use support::logs::{Capture, Captured};
use support::{wait_until, SOON};
use tracing::Level;

const REACTOR: &str = "reactorium::reactor";
const SUPERVISOR: &str = "reactorium::supervisor";
const RUNTIME: &str = "reactorium::runtime";

/// The global capture, and the panic hooks: `reactorium::set_panic_hook` over one that
/// records the message of every panic handed down to it.
fn setup() -> (Arc<Capture>, Arc<Mutex<Vec<String>>>) {
    static HOOKED: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    let capture = Capture::global();
    let reached = HOOKED.get_or_init(|| {
        let reached = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&reached);
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            seen.lock().unwrap().push(msg);
            default(info);
        }));
        reactorium::set_panic_hook();
        reached
    });
    (capture, Arc::clone(reached))
}

/// Panics on a message whose text is "boom", with `panic`, and emits an application event
/// for any other.
struct Fragile {
    panic: &'static str,
}

impl Component for Fragile {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        if msg.as_json().and_then(|v| v.as_str()) == Some("boom") {
            panic!("{}", self.panic);
        }
        tracing::info!(target: "app", "handled");
        Ok(())
    }
}

fn boom() -> Message {
    Message::json("boom".into())
}

fn about<'a>(name: &'a str, target: &'a str, message: &'a str) -> impl Fn(&Captured) -> bool + 'a {
    move |e| e.is(target, message) && e.component() == Some(name)
}

#[test]
fn component_failure_is_an_error_event_with_its_name_reason_and_location() -> Result<()> {
    let (capture, reached) = setup();
    let rt = Runtime::new()?;
    rt.deploy_with(
        "log-fail",
        ComponentOptions::new().subscribe("log.fail"),
        || Fragile {
            panic: "log-fail panics",
        },
    )?;
    rt.start()?;
    capture.wait_for("started", about("log-fail", REACTOR, "component started"));
    rt.bus().send("log.fail", boom())?;
    let e = capture.wait_for("failed", about("log-fail", REACTOR, "component failed"));
    assert_eq!(e.level, Level::ERROR);
    assert_eq!(e.field("reason"), Some("panicked: log-fail panics"));
    assert_eq!(e.field("topic"), Some("log.fail"));
    // The hook kept the location for the event and printed nothing.
    let at = e.field("location").expect("a location");
    assert!(at.starts_with("tests/logs.rs:"), "{at}");
    assert!(!reached
        .lock()
        .unwrap()
        .iter()
        .any(|m| m == "log-fail panics"));
    // A temporary component ends: its thread's last event says so.
    let end = capture.wait_for(
        "stopped",
        about("log-fail", REACTOR, "component stopped after a failure"),
    );
    assert_eq!(end.level, Level::WARN);
    rt.stop()?;
    Ok(())
}

#[test]
fn panics_off_the_runtime_threads_still_reach_the_previous_hook() {
    let (_capture, reached) = setup();
    let r = std::thread::spawn(|| panic!("a plain thread panics")).join();
    assert!(r.is_err());
    assert!(reached
        .lock()
        .unwrap()
        .iter()
        .any(|m| m == "a plain thread panics"));
}

#[test]
fn handler_events_carry_the_component_span() -> Result<()> {
    let (capture, _) = setup();
    let rt = Runtime::new()?;
    rt.deploy_with(
        "log-span",
        ComponentOptions::new().subscribe("log.span"),
        || Fragile { panic: "unused" },
    )?;
    rt.start()?;
    rt.bus().send("log.span", Message::empty())?;
    let e = capture.wait_for("handled", about("log-span", "app", "handled"));
    assert_eq!(e.spans[0].0, "reactor");
    let report = rt.stop()?;
    assert_eq!(report.component("log-span").unwrap().handled, 1);
    let end = capture.wait_for("stopped", about("log-span", REACTOR, "component stopped"));
    assert_eq!(end.field("handled"), Some("1"));
    Ok(())
}

#[test]
fn restart_is_a_warn_event_from_the_supervisor_and_an_info_event_from_the_component() -> Result<()>
{
    let (capture, _) = setup();
    let rt = Runtime::new()?;
    rt.deploy_with(
        "log-restart",
        ComponentOptions::new()
            .subscribe("log.restart")
            .restart(Restart::Permanent),
        || Fragile {
            panic: "log-restart panics",
        },
    )?;
    rt.start()?;
    rt.bus().send("log.restart", boom())?;
    let e = capture.wait_for("restarting", about("log-restart", SUPERVISOR, "restarting"));
    assert_eq!(e.level, Level::WARN);
    assert_eq!(e.field("supervisor"), Some("root"));
    assert_eq!(e.field("child"), Some("log-restart"));
    assert_eq!(e.field("reason"), Some("panicked: log-restart panics"));
    assert_eq!(e.field("restarts"), Some("1"));
    assert_eq!(e.field("max_restarts"), Some("5"));
    let r = capture.wait_for(
        "restarted",
        about("log-restart", REACTOR, "component restarted"),
    );
    assert_eq!(r.level, Level::INFO);
    assert_eq!(r.field("restarts"), Some("1"));
    rt.stop()?;
    Ok(())
}

#[test]
fn supervisor_giving_up_is_an_error_event_and_so_is_the_runtime_failing() -> Result<()> {
    let (capture, _) = setup();
    let rt = Runtime::builder()
        .supervisor(SupervisorOptions::default().intensity(0, Duration::from_secs(60)))
        .build()?;
    rt.deploy_with(
        "log-giveup",
        ComponentOptions::new()
            .subscribe("log.giveup")
            .restart(Restart::Permanent),
        || Fragile {
            panic: "log-giveup panics",
        },
    )?;
    rt.start()?;
    rt.bus().send("log.giveup", boom())?;
    let e = capture.wait_for(
        "gave up",
        about(
            "log-giveup",
            SUPERVISOR,
            "supervisor gave up: too many restarts",
        ),
    );
    assert_eq!(e.level, Level::ERROR);
    assert_eq!(e.field("supervisor"), Some("root"));
    assert_eq!(e.field("restarts"), Some("1"));
    assert_eq!(e.field("max_restarts"), Some("0"));
    assert_eq!(e.field("window_ms"), Some("60000"));
    let f = capture.wait_for(
        "runtime failed",
        about(
            "log-giveup",
            SUPERVISOR,
            "runtime failed: every component stops",
        ),
    );
    assert_eq!(f.level, Level::ERROR);
    assert!(f.field("reason").unwrap().contains("log-giveup panics"));
    // No restart was logged for it.
    assert!(capture
        .matching(about("log-giveup", SUPERVISOR, "restarting"))
        .is_empty());
    Ok(())
}

#[test]
fn full_mailbox_refusals_are_rate_limited_with_a_suppressed_count() -> Result<()> {
    let (capture, _) = setup();
    let rt = Runtime::new()?;
    // Never started: nothing leaves the mailbox of one.
    rt.deploy_with(
        "log-full",
        ComponentOptions::new()
            .mailbox_capacity(1)
            .subscribe("log.full"),
        || Fragile { panic: "unused" },
    )?;
    let refused = |e: &Captured| {
        e.is(REACTOR, "mailbox full, message refused") && e.field("recipient") == Some("log-full")
    };
    rt.bus().send("log.full", Message::empty())?;
    let burst = 1_000;
    let started = Instant::now();
    for _ in 0..burst {
        assert!(matches!(
            rt.bus().send("log.full", Message::empty()),
            Err(SendError::Backpressure { .. })
        ));
    }
    // Emitted on this thread, inside `send`: all here already. One per second at most.
    let events = capture.matching(refused);
    let bound = 1 + started.elapsed().as_secs();
    assert!(
        !events.is_empty() && events.len() as u64 <= bound,
        "{} events for {burst} refusals",
        events.len()
    );
    assert_eq!(events[0].level, Level::DEBUG);
    assert_eq!(events[0].field("suppressed"), Some("0"));
    assert_eq!(events[0].field("capacity"), Some("1"));
    // Refuse until the next event: it counts every refusal since the one before it.
    let mut since_last: u64 = burst - events.len() as u64;
    let deadline = Instant::now() + SOON;
    let before = events.len();
    loop {
        assert!(Instant::now() < deadline, "no second event");
        assert!(rt.bus().send("log.full", Message::empty()).is_err());
        let events = capture.matching(refused);
        if events.len() > before {
            let last = events.last().unwrap();
            assert_eq!(
                last.field("suppressed"),
                Some(since_last.to_string().as_str())
            );
            break;
        }
        since_last += 1;
    }
    rt.stop()?;
    Ok(())
}

#[test]
fn dead_letters_are_debug_events_rate_limited_per_component() -> Result<()> {
    let (capture, _) = setup();
    let rt = Runtime::new()?;
    // Never started, and dropping what does not fit: every send after the first is a dead
    // letter, emitted on this thread.
    rt.deploy_with(
        "log-drop",
        ComponentOptions::new()
            .mailbox_capacity(1)
            .overflow(Overflow::DropNewest)
            .subscribe("log.drop"),
        || Fragile { panic: "unused" },
    )?;
    let started = Instant::now();
    for _ in 0..500 {
        rt.bus().send("log.drop", Message::empty())?;
    }
    let events = capture.matching(|e| {
        e.is("reactorium::bus", "dead letter") && e.field("recipient") == Some("log-drop")
    });
    assert!(!events.is_empty() && events.len() as u64 <= 1 + started.elapsed().as_secs());
    let first = &events[0];
    assert_eq!(first.level, Level::DEBUG);
    assert_eq!(first.field("topic"), Some("log.drop"));
    assert_eq!(
        first.field("reason"),
        Some("mailbox full, dropped by policy drop-newest")
    );
    assert_eq!(first.field("suppressed"), Some("0"));
    let report = rt.stop()?;
    assert_eq!(report.component("log-drop").unwrap().dropped, 499);
    Ok(())
}

/// Offloads a job that logs, and one that panics.
struct Offloader;

impl Component for Offloader {
    fn handle(&mut self, msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        let panic = msg.as_json().and_then(|v| v.as_str()) == Some("boom");
        ctx.spawn_blocking(
            move || {
                if panic {
                    panic!("log-job panics");
                }
                tracing::info!(target: "app", "in a job");
            },
            |_, _, _| {},
        )?;
        Ok(())
    }
}

#[test]
fn worker_jobs_run_in_the_submitting_components_span() -> Result<()> {
    let (capture, reached) = setup();
    let rt = Runtime::new()?;
    rt.deploy_with(
        "log-job",
        ComponentOptions::new().subscribe("log.job"),
        || Offloader,
    )?;
    rt.start()?;
    rt.bus().send("log.job", Message::empty())?;
    capture.wait_for("job event", about("log-job", "app", "in a job"));
    rt.bus().send("log.job", boom())?;
    let e = capture.wait_for(
        "job panicked",
        about("log-job", "reactorium::worker", "job panicked"),
    );
    assert_eq!(e.level, Level::WARN);
    assert_eq!(e.field("reason"), Some("log-job panics"));
    assert!(e.field("location").is_some());
    assert!(!reached
        .lock()
        .unwrap()
        .iter()
        .any(|m| m == "log-job panics"));
    rt.stop()?;
    Ok(())
}

#[test]
fn front_end_refusal_is_a_warn_event() -> Result<()> {
    let (capture, _) = setup();
    let rt = Runtime::builder().thread_name_prefix("logfe-").build()?;
    rt.start()?;
    let server = HttpServer::start(
        &rt,
        HttpConfig::new()
            .bind("127.0.0.1:0".parse()?)
            .io_threads(1)
            .max_connections(1),
        Routes::new().fixed("GET", "/hello", 200, "text/plain", "hello")?,
    )?;
    let addr = server.local_addr();
    let _held = TcpStream::connect(addr)?;
    wait_until("the first connection is held", || {
        server.stats().open_connections == 1
    });
    let mut second = TcpStream::connect(addr)?;
    second.set_read_timeout(Some(SOON))?;
    second.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")?;
    let mut answer = String::new();
    second.read_to_string(&mut answer)?;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let ours = |e: &Captured| e.field("front_end") == Some("logfe-http");
    let over = capture.wait_for("over capacity", |e| {
        ours(e)
            && e.is(
                "reactorium::engine",
                "connection over capacity: the protocol answers it with a refusal",
            )
    });
    assert_eq!(over.level, Level::WARN);
    assert_eq!(over.field("max_connections"), Some("1"));
    assert!(over.field("peer").unwrap().starts_with("127.0.0.1:"));
    let answered = capture.wait_for("503", |e| {
        ours(e) && e.is("reactorium::http", "answered with a server error")
    });
    assert_eq!(answered.level, Level::WARN);
    assert_eq!(answered.field("status"), Some("503"));
    drop(server);
    let report = rt.stop()?;
    assert!(report.is_clean());
    capture.wait_for("runtime stopped", |e| {
        e.is(RUNTIME, "runtime stopped") && e.field("components") == Some("0")
    });
    Ok(())
}

#[test]
fn more_components_than_the_registry_has_thread_ids_start_and_stop() -> Result<()> {
    // tracing-subscriber's registry panics in a thread that creates (or closes) a span while
    // 4096 others hold thread ids; the reactor threads only enter theirs.
    let (capture, _) = setup();
    let n = 4_200;
    let rt = Runtime::builder()
        .worker_threads(1)
        .reactor_stack_size(128 * 1024)
        .build()?;
    for i in 0..n {
        rt.deploy_with(
            &format!("log-many-{i}"),
            ComponentOptions::new().mailbox_capacity(4),
            || Fragile { panic: "unused" },
        )?;
    }
    rt.start()?;
    let report = rt.stop()?;
    assert_eq!(report.components.len(), n);
    assert!(report.is_clean());
    let last = format!("log-many-{}", n - 1);
    capture.wait_for(
        "the last one stopped",
        about(&last, REACTOR, "component stopped"),
    );
    Ok(())
}

//! Front-ends as plug-ins: a `FrontEnd` attached to a runtime is stopped first (while every
//! component still runs), its report is listed in the shutdown report, its metric families
//! join the runtime's (two of one kind share each family), an attach after the stop is
//! refused, the admin handle does not keep the runtime alive, and a front-end that abandoned
//! work or left a thread running makes the stop unclean.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use reactorium::{
    Error, FrontEnd, FrontEndReport, HttpServer, Message, Routes, Runtime, TextWriter,
};

use support::http::{config, Echo};
use support::{on, promtool_check, runtime};

/// A front-end that, when stopped, asks a component for a reply: it only gets one if the
/// components still run.
struct Asker {
    name: String,
    rt_bus: reactorium::Bus,
    answer: Mutex<Option<String>>,
    requests: AtomicU64,
}

impl FrontEnd for Asker {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "asker"
    }

    fn write_metrics(&self, w: &mut TextWriter<'_>) {
        w.counter(
            "asker_requests_total",
            "Requests asked.",
            [(
                [("name", self.name.as_str())],
                self.requests.load(Ordering::Relaxed),
            )],
        );
    }

    fn stop(&self) -> FrontEndReport {
        let reply = self
            .rt_bus
            .request("echo.x", Message::empty(), Duration::from_secs(5))
            .map_err(Error::from)
            .and_then(|p| p.wait());
        *self.answer.lock().unwrap() = Some(format!("{:?}", reply.map(|_| "answered")));
        let mut r = FrontEndReport::new(self.name.clone(), "asker");
        r.completed = 1;
        r
    }
}

fn asker(rt: &Runtime, name: &str) -> Arc<Asker> {
    Arc::new(Asker {
        name: name.to_owned(),
        rt_bus: rt.bus().clone(),
        answer: Mutex::new(None),
        requests: AtomicU64::new(0),
    })
}

#[test]
fn front_ends_stop_first_in_attach_order_while_components_run() -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("echo", on("echo.>"), || Echo)?;
    rt.start()?;
    let (a, b) = (asker(&rt, "a"), asker(&rt, "b"));
    rt.attach(a.clone())?;
    rt.attach(b.clone())?;
    assert_eq!(rt.front_ends().len(), 2);
    let report = rt.stop()?;
    let names: Vec<_> = report.front_ends.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    for f in [&a, &b] {
        assert_eq!(
            f.answer.lock().unwrap().as_deref(),
            Some("Ok(\"answered\")")
        );
    }
    assert!(rt.front_ends().is_empty());
    Ok(())
}

#[test]
fn attach_after_stop_is_invalid_state() -> Result<()> {
    let rt = runtime()?;
    rt.start()?;
    rt.stop()?;
    let r = rt.attach(asker(&rt, "late"));
    assert!(matches!(r, Err(Error::InvalidState { .. })), "{r:?}");
    Ok(())
}

#[test]
fn metrics_of_every_front_end_join_the_runtimes_one_family_each() -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("echo", on("echo.>"), || Echo)?;
    rt.start()?;
    let routes = || -> Result<Routes> { Ok(Routes::new().route("GET", "/e/{id}", "echo.get")?) };
    let one = HttpServer::start(&rt, config(), routes()?)?;
    let two = HttpServer::start(&rt, config(), routes()?)?;
    rt.attach(asker(&rt, "a"))?;
    rt.attach(asker(&rt, "b"))?;
    for s in [&one, &two] {
        assert_eq!(support::http::get(s.local_addr(), "/e/1")?.status, 200);
    }
    let text = rt.admin().metrics();
    for family in [
        "reactorium_ready",
        "reactorium_http_requests_total",
        "reactorium_http_open_connections",
        "asker_requests_total",
    ] {
        let help = format!("# HELP {family} ");
        assert_eq!(text.matches(&help).count(), 1, "{family} once in:\n{text}");
    }
    for listen in [one.local_addr(), two.local_addr()] {
        assert!(
            text.contains(&format!(
                "reactorium_http_connections_accepted_total{{listen=\"{listen}\"}} 1\n"
            )),
            "{listen} in:\n{text}"
        );
    }
    assert!(
        text.contains("asker_requests_total{name=\"b\"} 0\n"),
        "{text}"
    );
    promtool_check(&text)?;
    Ok(())
}

#[test]
fn the_admin_handle_does_not_keep_the_runtime_alive() -> Result<()> {
    let rt = runtime()?;
    rt.start()?;
    let admin = rt.admin();
    assert!(admin.readiness().ready);
    assert!(admin.stats().is_some());
    drop(rt); // stops it
    assert!(admin.stats().is_none());
    let r = admin.readiness();
    assert!(!r.ready);
    assert_eq!(r.detail["runtime"], "gone");
    Ok(())
}

/// A front-end whose stop reports what it was given.
struct Reporting(FrontEndReport);

impl FrontEnd for Reporting {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn kind(&self) -> &'static str {
        self.0.kind
    }

    fn stop(&self) -> FrontEndReport {
        self.0.clone()
    }
}

#[test]
fn a_front_end_that_abandoned_work_or_left_a_thread_makes_the_stop_unclean() -> Result<()> {
    let clean = FrontEndReport::new("clean", "test");
    let mut abandoned = FrontEndReport::new("abandoned", "test");
    abandoned.completed = 3;
    abandoned.abandoned = 1;
    let mut unjoined = FrontEndReport::new("unjoined", "test");
    unjoined.joined = false;
    for (report, is_clean) in [(clean, true), (abandoned, false), (unjoined, false)] {
        let rt = runtime()?;
        rt.start()?;
        rt.attach(Arc::new(Reporting(report.clone())))?;
        let shutdown = rt.stop()?;
        assert_eq!(shutdown.front_ends, vec![report.clone()]);
        assert_eq!(shutdown.is_clean(), is_clean, "{report:?}");
    }
    Ok(())
}

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<reactorium::AdminHandle>();
    send_sync::<FrontEndReport>();
    send_sync::<Arc<dyn FrontEnd>>();
    send_sync::<reactorium::engine::EngineStats>();
    send_sync::<reactorium::engine::Completer<Result<Message, Error>>>();
}

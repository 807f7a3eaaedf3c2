//! The admin endpoints: liveness, readiness (which follows the runtime's start), and metrics
//! in the Prometheus text format.

use anyhow::Result;
use reactorium::{HttpServer, Routes};

use crate::support::http::{config, get, Echo};
use crate::support::{on, runtime};

fn routes() -> Result<Routes> {
    Ok(Routes::new()
        .route("GET", "/items/{id}", "echo.get")?
        .metrics("/metrics")?
        .health("/health")?
        .ready("/ready")?)
}

#[test]
fn health_is_200() -> Result<()> {
    let rt = runtime()?;
    let server = HttpServer::start(&rt, config(), routes()?)?;
    let r = get(server.local_addr(), "/health")?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json()["status"], "ok");
    Ok(())
}

#[test]
fn ready_is_503_before_start_and_200_after() -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("echo", on("echo.>"), || Echo)?;
    let server = HttpServer::start(&rt, config(), routes()?)?; // served before start
    let addr = server.local_addr();

    let r = get(addr, "/ready")?;
    assert_eq!(r.status, 503, "{}", r.text());
    let detail = r.json();
    assert_eq!(detail["ready"], false, "{detail}");

    rt.start()?;
    let r = get(addr, "/ready")?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["ready"], true);
    assert_eq!(get(addr, "/items/1")?.status, 200);
    Ok(())
}

#[test]
fn metrics_are_prometheus_text_with_route_labels() -> Result<()> {
    let rt = runtime()?;
    rt.deploy_with("echo", on("echo.>"), || Echo)?;
    rt.start()?;
    let server = HttpServer::start(&rt, config(), routes()?)?;
    let addr = server.local_addr();
    for _ in 0..2 {
        assert_eq!(get(addr, "/items/1")?.status, 200);
    }
    assert_eq!(get(addr, "/nowhere")?.status, 404);

    let r = get(addr, "/metrics")?;
    assert_eq!(r.status, 200);
    let ct = r.header("content-type").unwrap_or_default();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = r.text();
    let listen = format!("listen=\"{addr}\"");
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        has("# TYPE reactorium_http_requests_total counter"),
        "{text}"
    );
    assert!(
        has(&format!(
            "reactorium_http_requests_total{{{listen},route=\"GET /items/{{id}}\",status=\"200\"}} 2"
        )),
        "{text}"
    );
    assert!(
        has(&format!(
            "reactorium_http_requests_total{{{listen},route=\"unmatched\",status=\"404\"}} 1"
        )),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("reactorium_http_open_connections{")),
        "{text}"
    );
    // Every sample line is `name{labels} value` with a number for the value.
    for l in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (_, value) = l.rsplit_once(' ').expect("a value");
        assert!(value.parse::<f64>().is_ok(), "{l}");
    }
    Ok(())
}

#[test]
fn metrics_include_the_runtimes_components_bus_and_pool() -> Result<()> {
    // `Routes::metrics`: "answers the runtime's metrics".
    let rt = runtime()?;
    rt.deploy_with("echo", on("echo.>"), || Echo)?;
    rt.start()?;
    let server = HttpServer::start(&rt, config(), routes()?)?;
    let text = get(server.local_addr(), "/metrics")?.text();
    let families: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .filter(|name| !name.starts_with("reactorium_http_"))
        .collect();
    assert!(
        !families.is_empty(),
        "no family besides reactorium_http_*:\n{text}"
    );
    assert!(
        text.contains("component=\"echo\""),
        "the component is not in:\n{text}"
    );
    Ok(())
}

#[test]
fn the_metrics_endpoint_passes_promtool() -> Result<()> {
    let rt = reactorium::Runtime::builder()
        .handler_latency(true)
        .build()?;
    rt.deploy_with("echo", on("echo.>"), || Echo)?;
    rt.start()?;
    let server = HttpServer::start(&rt, config(), routes()?)?;
    let addr = server.local_addr();
    // Traffic on a route, an unmatched path and an admin route, so every family has samples.
    for path in ["/echo/1", "/nowhere", "/health"] {
        get(addr, path)?;
    }
    let text = get(addr, "/metrics")?.text();
    for family in [
        "reactorium_http_requests_total",
        "reactorium_http_request_duration_seconds",
        "reactorium_http_open_connections",
        "reactorium_messages_handled_total",
        "reactorium_handler_latency_seconds",
        "reactorium_bus_requests_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    crate::support::promtool_check(&text)
}

//! `reactorium loadtest`: the load-test bench.
//!
//! Every scenario drives the runtime through its public API, as a user would, and runs the
//! same shape on a bare floor (plain threads and `crossbeam_channel::bounded`; for `http`,
//! the front-end's fixed route with no component behind it) in the same process run. Absolute figures move from run to run on a shared machine; the ratio to the
//! floor is the figure to steer by. Each measurement is repeated (`--runs`, floor and
//! reactorium interleaved) and the median is reported.
//!
//! Every scenario checks its own counts (offered = handled + refused, every subscriber got
//! every message, every component reported) and prints an error row instead of figures when
//! they do not add up; the command then exits with an error.
//!
//! The scenarios and their floors are defined in `benches/README.md`.

mod fanin;
mod fanout;
mod http;
mod http_client;
mod measure;
mod overload;
mod relay;
mod reqreply;
mod spawn;
mod workers;

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use measure::{median, si, Budget};

/// Arguments of `reactorium loadtest`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "With no scenario, runs the standard suite (about a minute on 2 cores) \
    and prints one table. Knobs given with no scenario apply to every scenario they fit.\n\n\
    `vs floor` is reactorium's speed over the floor's, measured in the same run: above 1 \
    is faster than a bare crossbeam channel doing the same work (for http: than the \
    front-end's fixed /hello route on the same server)."
)]
pub(crate) struct Args {
    /// The scenario to run; all of them when omitted.
    #[arg(value_enum)]
    scenario: Option<Which>,
    /// Producer threads (fanin, overload, workers). The standard suite runs fanin at 1 and 4.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    producers: Option<u64>,
    /// Components: subscribers (fanout), ring length (ring), deployments (spawn).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    components: Option<u64>,
    /// Messages per measurement: sends, publishes, round trips, requests, hops or jobs.
    #[arg(long, conflicts_with = "duration", value_parser = clap::value_parser!(u64).range(1..))]
    messages: Option<u64>,
    /// Seconds per measurement instead of a message count (overload always runs for a time).
    #[arg(long, value_parser = parse_seconds)]
    duration: Option<Duration>,
    /// Mailbox capacity of the components, and of the floor's channels.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=(1 << 28)))]
    mailbox: Option<u64>,
    /// Payload size in bytes (0: no payload). Shared by reference, as the runtime does.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=(64 << 20)))]
    payload_bytes: Option<u64>,
    /// Worker-pool threads (workers scenario).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    workers: Option<u64>,
    /// Keep-alive connections of the HTTP load client (http). The standard suite and
    /// `loadtest http` run 100 and 1000.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    connections: Option<u64>,
    /// Threads of the HTTP load client (http); default 1. The client shares the machine
    /// with the server it measures.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    client_threads: Option<u64>,
    /// I/O threads of the HTTP front-end under test (http); default 1.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    io_threads: Option<u64>,
    /// Repetitions of each measurement; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=101))]
    runs: u64,
    /// Also write the results as JSON to this file (`-` for standard output, which then
    /// carries only the JSON).
    #[arg(long, value_name = "PATH")]
    json: Option<String>,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.001..=3600.0).contains(&secs) {
        return Err(format!("{secs} s is outside 0.001..=3600"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The scenarios, by the name given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    /// P producer threads -> one component, `bus.send`.
    Fanin,
    /// One publisher -> K subscribers, `bus.publish`.
    Fanout,
    /// Two components bounce one message.
    Pingpong,
    /// A plain thread makes sequential requests to a component.
    Reqreply,
    /// R components pass one token around.
    Ring,
    /// Deploy N components, one message each, stop.
    Spawn,
    /// Producers offer far more than a slow component takes, for a fixed time.
    Overload,
    /// Producers saturate the worker pool.
    Workers,
    /// HTTP keep-alive clients against a component route, beside a fixed route.
    Http,
}

/// How a figure compares: larger is better (rates), or smaller is (latencies, times, memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Better {
    Higher,
    Lower,
}

/// The unit of a figure, which decides how it prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Per second.
    Rate,
    Micros,
    Millis,
    MiB,
    Percent,
    Count,
}

/// One figure a scenario reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Metric {
    pub(crate) name: &'static str,
    pub(crate) unit: Unit,
    pub(crate) better: Better,
}

/// One measurement of one side: a value per metric, in the scenario's order, or what did not
/// add up.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) figures: Vec<f64>,
    pub(crate) error: Option<String>,
}

impl Run {
    /// A run whose figures stand only if `checks` found nothing wrong.
    pub(crate) fn checked(figures: Vec<f64>, checks: Vec<String>) -> Run {
        Run {
            figures,
            error: (!checks.is_empty()).then(|| checks.join("; ")),
        }
    }
}

/// Collects count mismatches: `check.eq("handled", handled, accepted)`.
#[derive(Debug, Default)]
pub(crate) struct Checks(pub(crate) Vec<String>);

impl Checks {
    pub(crate) fn eq(&mut self, what: &str, got: u64, want: u64) {
        if got != want {
            self.0.push(format!("{what}: {got}, expected {want}"));
        }
    }

    pub(crate) fn that(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }
}

/// A target from the load-test issue, judged on the medians.
#[derive(Debug)]
pub(crate) struct Verdict {
    pub(crate) target: String,
    pub(crate) met: bool,
}

/// A scenario: the same shape on reactorium and on the floor.
pub(crate) trait Scenario {
    fn name(&self) -> &'static str;
    /// The knobs, as printed: `P=4 mailbox=1024`.
    fn params(&self) -> String;
    fn metrics(&self) -> &'static [Metric];
    fn ours(&self) -> Result<Run>;
    fn floor(&self) -> Result<Run>;
    /// What the floor is, for the table's heading.
    fn floor_is(&self) -> &'static str {
        FLOOR_THREADS
    }
    /// How many times to measure (a timed overload run needs fewer).
    fn runs(&self, asked: u64) -> u64 {
        asked
    }
    /// The target this scenario is held to, given the medians (reactorium, floor).
    fn verdict(&self, _ours: &[f64], _floor: &[f64]) -> Option<Verdict> {
        None
    }
}

/// The floor of most scenarios.
const FLOOR_THREADS: &str = "plain threads + crossbeam_channel::bounded";

/// The speed of reactorium over the floor's for one metric: above 1 is better than the floor.
pub(crate) fn ratio(m: &Metric, ours: f64, floor: f64) -> f64 {
    match m.better {
        Better::Higher => ours / floor,
        Better::Lower => floor / ours,
    }
}

/// What the floor's channels carry: the same shared payload, or nothing.
pub(crate) type FloorItem = Option<std::sync::Arc<[u8]>>;

/// The knobs after defaults: what the standard suite runs unless told otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Knobs {
    pub(crate) producers: Option<usize>,
    pub(crate) components: Option<usize>,
    pub(crate) budget: Option<Budget>,
    pub(crate) mailbox: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) workers: Option<usize>,
    pub(crate) connections: Option<usize>,
    pub(crate) client_threads: Option<usize>,
    pub(crate) io_threads: Option<usize>,
}

impl Knobs {
    fn from(args: &Args) -> Knobs {
        Knobs {
            producers: args.producers.map(|n| n as usize),
            components: args.components.map(|n| n as usize),
            budget: match (args.messages, args.duration) {
                (Some(n), _) => Some(Budget::Count(n)),
                (None, Some(d)) => Some(Budget::Time(d)),
                (None, None) => None,
            },
            mailbox: args.mailbox.map_or(1024, |n| n as usize),
            payload_bytes: args.payload_bytes.unwrap_or(0) as usize,
            workers: args.workers.map(|n| n as usize),
            connections: args.connections.map(|n| n as usize),
            client_threads: args.client_threads.map(|n| n as usize),
            io_threads: args.io_threads.map(|n| n as usize),
        }
    }

    /// The budget given on the command line, or `default` messages.
    pub(crate) fn budget_or(&self, default: u64) -> Budget {
        self.budget.unwrap_or(Budget::Count(default))
    }

    pub(crate) fn payload(&self) -> reactorium::Payload {
        if self.payload_bytes == 0 {
            reactorium::Payload::Empty
        } else {
            reactorium::Payload::Bytes(vec![0xA5; self.payload_bytes].into())
        }
    }

    /// The payload as the floor carries it.
    pub(crate) fn floor_payload(&self) -> FloorItem {
        match self.payload() {
            reactorium::Payload::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

fn suite(which: Option<Which>, k: &Knobs) -> Vec<Box<dyn Scenario>> {
    let all = which.is_none();
    let wants = |w: Which| all || which == Some(w);
    let mut s: Vec<Box<dyn Scenario>> = Vec::new();
    if wants(Which::Fanin) {
        match k.producers {
            Some(p) => s.push(Box::new(fanin::Fanin::new(k, p))),
            None => {
                s.push(Box::new(fanin::Fanin::new(k, 1)));
                s.push(Box::new(fanin::Fanin::new(k, 4)));
            }
        }
    }
    if wants(Which::Fanout) {
        s.push(Box::new(fanout::Fanout::new(k)));
    }
    if wants(Which::Pingpong) {
        s.push(Box::new(relay::Relay::pingpong(k)));
    }
    if wants(Which::Reqreply) {
        s.push(Box::new(reqreply::ReqReply::new(k)));
    }
    if wants(Which::Ring) {
        s.push(Box::new(relay::Relay::ring(k)));
    }
    if wants(Which::Spawn) {
        s.push(Box::new(spawn::Spawn::new(k)));
    }
    if wants(Which::Overload) {
        s.push(Box::new(overload::Overload::new(k)));
    }
    if wants(Which::Workers) {
        s.push(Box::new(workers::Workers::new(k)));
    }
    if wants(Which::Http) {
        for c in k.connections.map_or(vec![100, 1000], |c| vec![c]) {
            s.push(Box::new(http::Http::new(k, c, all)));
        }
    }
    s
}

/// The medians of one scenario, both sides.
struct Outcome {
    name: &'static str,
    floor_is: &'static str,
    params: String,
    metrics: &'static [Metric],
    ours: Vec<f64>,
    floor: Vec<f64>,
    runs: u64,
    verdict: Option<Verdict>,
    error: Option<String>,
}

/// Runs `reactorium loadtest`.
pub(crate) fn run(args: Args) -> Result<()> {
    if args.scenario == Some(Which::Http) && args.messages.is_some() {
        bail!("http runs for a time, not a message count: give --duration instead of --messages");
    }
    let knobs = Knobs::from(&args);
    let scenarios = suite(args.scenario, &knobs);
    let json_only = args.json.as_deref() == Some("-");
    let steps: u64 = scenarios.iter().map(|s| 2 * s.runs(args.runs)).sum();
    let progress = if std::io::stdout().is_terminal() && !json_only {
        let bar = ProgressBar::new(steps);
        bar.set_style(
            ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for s in &scenarios {
        outcomes.push(measure(s.as_ref(), args.runs, &progress)?);
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed();

    if !json_only {
        print_table(&outcomes, args.runs, elapsed);
    }
    if let Some(path) = &args.json {
        let doc = to_json(&outcomes, &args, elapsed);
        let text = serde_json::to_string_pretty(&doc)?;
        if path == "-" {
            println!("{text}");
        } else {
            std::fs::write(path, text + "\n").with_context(|| format!("writing {path}"))?;
        }
    }
    let failed: Vec<_> = outcomes
        .iter()
        .filter(|o| o.error.is_some())
        .map(|o| o.name)
        .collect();
    if !failed.is_empty() {
        bail!("counts did not add up in: {}", failed.join(", "));
    }
    Ok(())
}

fn measure(s: &dyn Scenario, runs: u64, progress: &ProgressBar) -> Result<Outcome> {
    let runs = s.runs(runs);
    let metrics = s.metrics();
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    let mut error = None;
    for i in 1..=runs {
        for side in ["floor", "reactorium"] {
            progress.set_message(format!(
                "{} {} ({side}, run {i}/{runs})",
                s.name(),
                s.params()
            ));
            let run = if side == "floor" { s.floor() } else { s.ours() }
                .with_context(|| format!("{} {} on {side}", s.name(), s.params()))?;
            progress.inc(1);
            if let Some(e) = run.error {
                error.get_or_insert(format!("{side}: {e}"));
            }
            anyhow::ensure!(
                run.figures.len() == metrics.len(),
                "{} reported {} figures for {} metrics",
                s.name(),
                run.figures.len(),
                metrics.len()
            );
            if side == "floor" {
                &mut floor
            } else {
                &mut ours
            }
            .push(run.figures);
        }
    }
    let med = |rows: &[Vec<f64>]| -> Vec<f64> {
        (0..metrics.len())
            .map(|m| median(&rows.iter().map(|r| r[m]).collect::<Vec<_>>()))
            .collect()
    };
    let (ours, floor) = (med(&ours), med(&floor));
    let verdict = s.verdict(&ours, &floor);
    Ok(Outcome {
        name: s.name(),
        floor_is: s.floor_is(),
        params: s.params(),
        metrics,
        ours,
        floor,
        runs,
        verdict,
        error,
    })
}

fn fmt_value(unit: Unit, x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    match unit {
        Unit::Rate => format!("{}/s", si(x)),
        Unit::Micros => format!("{x:.2} µs"),
        Unit::Millis if x >= 100.0 => format!("{x:.0} ms"),
        Unit::Millis => format!("{x:.2} ms"),
        Unit::MiB => format!("{x:.1} MiB"),
        Unit::Percent => format!("{x:+.1} %"),
        Unit::Count => si(x),
    }
}

fn print_table(outcomes: &[Outcome], runs: u64, elapsed: Duration) {
    let mut out = std::io::stdout().lock();
    let mut floors: Vec<String> = Vec::new();
    for o in outcomes {
        let f = if o.floor_is == FLOOR_THREADS {
            o.floor_is.to_string()
        } else {
            format!("{}: {}", o.name, o.floor_is)
        };
        if !floors.contains(&f) {
            floors.push(f);
        }
    }
    let _ = writeln!(
        out,
        "reactorium loadtest: {} cores, medians of {runs} runs (floor = {}, same run)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        floors.join("; ")
    );
    let header = [
        "scenario",
        "params",
        "metric",
        "reactorium",
        "floor",
        "vs floor",
        "target",
    ];
    let mut rows: Vec<[String; 7]> = Vec::new();
    for o in outcomes {
        if let Some(e) = &o.error {
            rows.push([
                o.name.into(),
                o.params.clone(),
                "ERROR".into(),
                e.clone(),
                String::new(),
                String::new(),
                String::new(),
            ]);
            continue;
        }
        for (i, m) in o.metrics.iter().enumerate() {
            let (a, b) = (o.ours[i], o.floor[i]);
            let r = ratio(m, a, b);
            let target = match (&o.verdict, i) {
                (Some(v), 0) => format!("{}: {}", v.target, if v.met { "met" } else { "MISSED" }),
                _ => String::new(),
            };
            rows.push([
                if i == 0 { o.name.into() } else { String::new() },
                if i == 0 {
                    o.params.clone()
                } else {
                    String::new()
                },
                m.name.into(),
                fmt_value(m.unit, a),
                fmt_value(m.unit, b),
                if r.is_finite() && m.unit != Unit::Percent && m.unit != Unit::Count {
                    format!("{r:.2}×")
                } else {
                    "-".into()
                },
                target,
            ]);
        }
    }
    let mut width = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            let pad = w.saturating_sub(c.chars().count());
            // Text columns left, figures right.
            if (3..=5).contains(&i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            }
            s.push_str("  ");
        }
        s.trim_end().to_string()
    };
    let _ = writeln!(out, "{}", line(&header.map(String::from)));
    let _ = writeln!(
        out,
        "{}",
        "-".repeat(width.iter().sum::<usize>() + 2 * (width.len() - 1))
    );
    for r in &rows {
        let _ = writeln!(out, "{}", line(r));
    }
    let _ = writeln!(out, "total {:.1} s", elapsed.as_secs_f64());
}

fn to_json(outcomes: &[Outcome], args: &Args, elapsed: Duration) -> Value {
    let num = |x: f64| if x.is_finite() { json!(x) } else { Value::Null };
    let scenarios: Vec<Value> = outcomes
        .iter()
        .map(|o| {
            let metrics: Vec<Value> = o
                .metrics
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    json!({
                        "name": m.name,
                        "unit": format!("{:?}", m.unit).to_lowercase(),
                        "reactorium": num(o.ours[i]),
                        "floor": num(o.floor[i]),
                        "vs_floor": num(ratio(m, o.ours[i], o.floor[i])),
                    })
                })
                .collect();
            json!({
                "scenario": o.name,
                "params": o.params,
                "floor": o.floor_is,
                "runs": o.runs,
                "ok": o.error.is_none(),
                "error": o.error,
                "metrics": metrics,
                "target": o.verdict.as_ref().map(|v| json!({"target": v.target, "met": v.met})),
            })
        })
        .collect();
    json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "runs": args.runs,
        "elapsed_s": elapsed.as_secs_f64(),
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        "scenarios": scenarios,
    })
}

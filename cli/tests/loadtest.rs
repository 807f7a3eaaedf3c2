//! The load-test bench (`reactorium loadtest`) as a user runs it: every scenario at a tiny
//! size, through the binary, checking that it completes and that its own count checks pass.
//! No figure is asserted on: speed is for the bench itself.

use std::process::{Command, Output};

use serde_json::Value;

fn loadtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_reactorium"))
        .arg("loadtest")
        .args(args)
        .output()
        .expect("the reactorium binary runs")
}

/// Runs one scenario with `--json -` and returns its JSON entry, failing on a non-zero exit.
fn scenario(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--runs", "1", "--json", "-"]);
    let out = loadtest(&all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "loadtest {args:?} failed: {}\nstdout: {stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&stdout).expect("--json - prints only JSON");
    let scenarios = doc["scenarios"].as_array().expect("a scenarios array");
    assert_eq!(scenarios.len(), 1, "{doc}");
    scenarios[0].clone()
}

/// Checks an entry's shape: counts verified, every figure a positive number on both sides
/// where it is a rate or a time.
fn assert_measured(entry: &Value, name: &str, metrics: &[&str]) {
    assert_eq!(entry["scenario"], name, "{entry}");
    assert_eq!(entry["ok"], true, "{entry}");
    assert!(entry["error"].is_null(), "{entry}");
    let got: Vec<&str> = entry["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(got, metrics, "{entry}");
    for m in entry["metrics"].as_array().unwrap() {
        if ["rate", "micros", "millis"].contains(&m["unit"].as_str().unwrap()) {
            for side in ["reactorium", "floor"] {
                let v = m[side].as_f64().unwrap_or(f64::NAN);
                assert!(v > 0.0, "{name} {} on {side}: {v} in {entry}", m["name"]);
            }
        }
    }
}

#[test]
fn fanin_counts_add_up() {
    let e = scenario(&[
        "fanin",
        "--producers",
        "3",
        "--messages",
        "3001",
        "--mailbox",
        "4",
    ]);
    assert_measured(&e, "fanin", &["msg/s", "refusals/msg"]);
    assert_eq!(e["params"], "P=3 mailbox=4 3.00 k msgs");
}

#[test]
fn fanin_runs_for_a_duration() {
    let e = scenario(&["fanin", "--producers", "2", "--duration", "0.05"]);
    assert_measured(&e, "fanin", &["msg/s", "refusals/msg"]);
}

#[test]
fn fanout_every_subscriber_gets_every_message() {
    let e = scenario(&[
        "fanout",
        "--components",
        "5",
        "--messages",
        "500",
        "--mailbox",
        "2",
        "--payload-bytes",
        "100",
    ]);
    assert_measured(&e, "fanout", &["deliveries/s", "refusals/delivery"]);
}

#[test]
fn pingpong_and_ring_pass_the_token() {
    let e = scenario(&["pingpong", "--messages", "300"]);
    assert_measured(&e, "pingpong", &["round trips/s"]);
    let e = scenario(&["ring", "--components", "7", "--messages", "300"]);
    assert_measured(&e, "ring", &["hops/s"]);
    let e = scenario(&["ring", "--components", "3", "--duration", "0.05"]);
    assert_measured(&e, "ring", &["hops/s"]);
}

#[test]
fn reqreply_reports_percentiles() {
    let e = scenario(&["reqreply", "--messages", "500", "--payload-bytes", "16"]);
    assert_measured(&e, "reqreply", &["p50", "p99", "p99.9", "requests/s"]);
    let m = &e["metrics"];
    assert!(m[0]["reactorium"].as_f64() <= m[1]["reactorium"].as_f64());
    assert!(m[1]["reactorium"].as_f64() <= m[2]["reactorium"].as_f64());
}

#[test]
fn spawn_deploys_and_stops_every_component() {
    let e = scenario(&["spawn", "--components", "40"]);
    assert_measured(&e, "spawn", &["deploy..stop", "peak RSS delta"]);
}

#[test]
fn overload_accounts_for_every_offer() {
    let e = scenario(&["overload", "--duration", "0.3", "--mailbox", "8"]);
    assert_measured(
        &e,
        "overload",
        &[
            "accepted/s",
            "refused/s",
            "p99 accepted",
            "RSS start",
            "RSS end",
            "RSS growth",
        ],
    );
    // With a mailbox of 8 and 20 µs of work per message, producers are refused.
    assert!(e["metrics"][1]["reactorium"].as_f64().unwrap() > 0.0, "{e}");
}

#[test]
fn workers_run_every_job() {
    let e = scenario(&[
        "workers",
        "--producers",
        "3",
        "--workers",
        "2",
        "--mailbox",
        "2",
        "--messages",
        "5000",
    ]);
    assert_measured(&e, "workers", &["jobs/s", "refusals/job"]);
}

const HTTP_METRICS: &[&str] = &["req/s", "p50", "p99", "conn min", "conn median", "conn max"];

#[test]
fn http_serves_every_connection_on_both_routes() {
    let e = scenario(&[
        "http",
        "--connections",
        "12",
        "--client-threads",
        "2",
        "--io-threads",
        "2",
        "--duration",
        "0.2",
    ]);
    assert_measured(&e, "http", HTTP_METRICS);
    assert_eq!(e["params"], "C=12 client T=2 io=2 0.2 s");
    assert_eq!(
        e["floor"],
        "the same server's fixed /hello route, no component"
    );
    let m = &e["metrics"];
    for side in ["reactorium", "floor"] {
        let (min, max) = (m[3][side].as_f64().unwrap(), m[5][side].as_f64().unwrap());
        assert!(min >= 1.0 && min <= max, "{side}: {e}");
        assert!(m[1][side].as_f64() <= m[2][side].as_f64(), "{side}: {e}");
    }
    // At 12 connections neither target of the issue applies; the ratio one does.
    assert_eq!(e["target"]["target"], "≥0.8×", "{e}");
}

#[test]
fn http_with_one_connection_and_one_thread_each() {
    let e = scenario(&["http", "--connections", "1", "--duration", "0.2"]);
    assert_measured(&e, "http", HTTP_METRICS);
}

#[test]
fn http_refusals_are_an_error_row() {
    // A mailbox of 1 behind 64 connections: the front-end answers 503 to what does not fit,
    // the client counts those as errors, and the command fails with the row that says so.
    let out = loadtest(&[
        "http",
        "--connections",
        "64",
        "--mailbox",
        "1",
        "--duration",
        "0.3",
        "--runs",
        "1",
    ]);
    assert!(!out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("ERROR"), "{table}");
    assert!(table.contains("non-200 responses"), "{table}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("counts did not add up in: http"), "{err}");
}

#[test]
fn the_table_names_every_scenario_and_the_floor() {
    let out = loadtest(&["pingpong", "--messages", "100", "--runs", "2"]);
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("medians of 2 runs"), "{table}");
    assert!(table.contains("pingpong"), "{table}");
    assert!(table.contains("vs floor"), "{table}");
}

#[test]
fn json_goes_to_a_file_beside_the_table() {
    let dir = std::env::temp_dir().join(format!("reactorium-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("out.json");
    let out = loadtest(&[
        "ring",
        "--components",
        "2",
        "--messages",
        "50",
        "--runs",
        "1",
        "--json",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("hops/s"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(doc["scenarios"][0]["scenario"], "ring");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_arguments_are_refused_with_a_message() {
    for (args, says) in [
        (&["nosuch"][..], "invalid value 'nosuch'"),
        (&["fanin", "--messages", "0"][..], "--messages"),
        (
            &["fanin", "--messages", "10", "--duration", "1"][..],
            "cannot be used with",
        ),
        (
            &["fanin", "--duration", "soon"][..],
            "not a number of seconds",
        ),
        (&["fanin", "--producers", "0"][..], "--producers"),
        (&["fanin", "--mailbox=-3"][..], "--mailbox"),
        (&["http", "--messages", "100"][..], "give --duration"),
        (&["http", "--connections", "0"][..], "--connections"),
        (&["http", "--connections", "10001"][..], "--connections"),
        (&["http", "--client-threads", "0"][..], "--client-threads"),
        (&["http", "--io-threads", "65"][..], "--io-threads"),
    ] {
        let out = loadtest(args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn unwritable_json_path_is_an_error() {
    let out = loadtest(&[
        "pingpong",
        "--messages",
        "10",
        "--runs",
        "1",
        "--json",
        "/nonexistent-dir/x.json",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-dir/x.json"));
}

//! Message-driven components on dedicated reactor threads.
//!
//! Each deployed [`Component`] gets its own reactor thread and a bounded mailbox: its state is
//! touched by that thread alone, so business logic needs no locks. Components talk only
//! through the [`Bus`] of hierarchical topics. Delivery never waits: a full mailbox answers
//! [`SendError::Backpressure`] and hands the message back. Blocking work goes to a fixed-size
//! [`WorkerPool`] whose results come back on the component's own reactor. A [`Runtime`]
//! deploys, starts and stops it all.
//!
//! # A tour
//!
//! ## Hello, component
//!
//! A component implements [`Component::handle`]; the [`Context`] lets it send, publish,
//! request, reply and offload work.
//!
//! ```
//! use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime};
//! use std::time::Duration;
//!
//! struct Greeter { greeted: u32 }
//!
//! impl Component for Greeter {
//!     fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
//!         self.greeted += 1; // plain state: only this reactor thread touches it
//!         let name = msg.as_json().and_then(|v| v.as_str()).unwrap_or("stranger").to_owned();
//!         ctx.reply(&mut msg, Message::json(format!("hello, {name} (#{})", self.greeted).into()))?;
//!         Ok(())
//!     }
//! }
//!
//! let rt = Runtime::new()?;
//! rt.deploy_with("greeter", ComponentOptions::new().subscribe("greet"), || Greeter { greeted: 0 })?;
//! rt.start()?;
//!
//! let reply = rt.bus()
//!     .request("greet", Message::json("ada".into()), Duration::from_secs(1))?
//!     .wait()?;
//! assert_eq!(reply.as_json().unwrap(), "hello, ada (#1)");
//!
//! // A plain send expects no reply: the greeting goes to the dead-letter topic
//! // (`DeadLetterReason::UnrequestedReply`) and the greeter keeps running.
//! rt.bus().send("greet", Message::json("bob".into()))?;
//! let reply = rt.bus().request("greet", Message::json("cy".into()), Duration::from_secs(1))?.wait()?;
//! assert_eq!(reply.as_json().unwrap(), "hello, cy (#3)");
//! rt.stop()?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! A request the application refuses is answered with an [`AppError`] (a kind, such as
//! [`AppErrorKind::NotFound`], a code of its own and a message) by
//! [`Context::reply_err`]; the requester gets it as [`Error::Application`], and the HTTP
//! front-end as the kind's status (`404`) with the code and message in its error body.
//!
//! ## Backpressure
//!
//! Sending never blocks. When a mailbox is full the [`SendError`] says who is full and hands
//! the message back, so the caller can retry, reroute or drop it knowingly; a `match` on it
//! needs no wildcard arm. `?` takes it into [`Error`] or `anyhow::Error` as it is.
//!
//! ```
//! use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime, SendError};
//!
//! struct Slow(crossbeam::channel::Receiver<()>);
//! impl Component for Slow {
//!     fn handle(&mut self, _m: Message, _c: &mut Context<'_, Self>) -> Result<(), BoxError> {
//!         let _ = self.0.recv(); // waits until the test lets it go
//!         Ok(())
//!     }
//! }
//!
//! let (release, gate) = crossbeam::channel::unbounded();
//! let rt = Runtime::new()?;
//! rt.deploy_with("slow", ComponentOptions::new().mailbox_capacity(2).subscribe("work"), move || Slow(gate.clone()))?;
//! // Not started yet, so nothing is taken out of the mailbox: two fit, the third is refused.
//! rt.bus().send("work", Message::typed(1))?;
//! rt.bus().send("work", Message::typed(2))?;
//! match rt.bus().send("work", Message::typed(3)) {
//!     Err(SendError::Backpressure { target, capacity, rejected }) => {
//!         assert_eq!((&*target, capacity), ("slow", 2));
//!         assert_eq!(rejected.get::<i32>(), Some(&3)); // our message, back in our hands
//!     }
//!     other => panic!("expected backpressure, got {other:?}"),
//! }
//! drop(release); // let the handler run freely
//! rt.start()?;
//! let report = rt.stop()?;
//! assert_eq!(report.component("slow").unwrap().handled, 2);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! ## The bus
//!
//! Topics are dot-separated; patterns use `*` (one segment) and `>` (the rest), as NATS does.
//! [`Bus::send`] reaches one subscriber (round robin), [`Bus::publish`] all of them and reports
//! who refused. Plain threads subscribe with an [`Inbox`].
//!
//! ```
//! use reactorium::{Bus, Message};
//! use std::time::Duration;
//!
//! let bus = Bus::new();
//! let all = bus.subscribe_inbox("orders.>", 8)?;
//! let created = bus.subscribe_inbox("orders.*.created", 8)?;
//! let report = bus.publish("orders.eu.created", Message::json(serde_json::json!({"id": 7})))?;
//! assert_eq!(report.delivered, 2);
//! assert!(report.is_complete());
//! assert_eq!(all.recv_timeout(Duration::from_secs(1))?.as_json().unwrap()["id"], 7);
//! assert_eq!(created.recv_timeout(Duration::from_secs(1))?.topic().as_str(), "orders.eu.created");
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! ## The worker pool
//!
//! Blocking or CPU-heavy work goes to the pool; the result comes back as a continuation on the
//! component's own reactor, where the component's state can be touched without locks. When
//! the pool's queue is full, the job and its continuation come back
//! ([`UnsentJob`]); here the continuation holds the request's reply handle, so it is the one
//! to answer "busy", at once ([`run_then`](SendError::run_then)).
//!
//! ```
//! use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime};
//! use std::time::Duration;
//!
//! #[derive(Default)]
//! struct Checksums { last: Option<u64> }
//!
//! impl Component for Checksums {
//!     fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
//!         let data: Vec<u8> = msg.as_bytes().unwrap_or_default().to_vec();
//!         let reply = msg.take_reply_handle();
//!         let offloaded = ctx.spawn_blocking(
//!             move || data.iter().map(|&b| u64::from(b)).sum::<u64>(), // on a worker thread
//!             move |this: &mut Self, _ctx, sum| {                      // back on this reactor
//!                 this.last = sum.as_ref().ok().copied();
//!                 if let Some(r) = reply {
//!                     let _ = match sum {
//!                         Ok(sum) => r.send(Message::typed(sum)),
//!                         Err(e) => r.fail(e), // a panicked job, or the pool was full
//!                     };
//!                 }
//!             },
//!         );
//!         if let Err(refused) = offloaded {
//!             refused.run_then(self, ctx); // `then` runs now, with `Error::Backpressure`
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let rt = Runtime::builder().worker_threads(2).build()?;
//! rt.deploy_with("sums", ComponentOptions::new().subscribe("sum"), Checksums::default)?;
//! rt.start()?;
//! let sum = rt.bus().request("sum", Message::bytes(vec![1, 2, 3]), Duration::from_secs(5))?
//!     .wait()?;
//! assert_eq!(sum.get::<u64>(), Some(&6));
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! ## Shutdown
//!
//! [`Runtime::stop`] stops components in reverse deploy order (dead-letter subscribers last);
//! each drains its mailbox until the stop's one drain deadline, then runs [`Component::stop`].
//! The report accounts for every message.
//!
//! ```
//! use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime};
//! use std::time::Duration;
//!
//! struct Sink;
//! impl Component for Sink {
//!     fn handle(&mut self, _m: Message, _c: &mut Context<'_, Self>) -> Result<(), BoxError> { Ok(()) }
//! }
//!
//! let rt = Runtime::builder().drain_timeout(Duration::from_secs(2)).build()?;
//! rt.deploy_with("first", ComponentOptions::new().subscribe("a"), || Sink)?;
//! rt.deploy_with("second", ComponentOptions::new().subscribe("b"), || Sink)?;
//! rt.start()?;
//! for _ in 0..100 {
//!     rt.bus().send("b", Message::empty())?;
//! }
//! let report = rt.stop()?;
//! let order: Vec<&str> = report.components.iter().map(|c| &*c.name).collect();
//! assert_eq!(order, ["second", "first"]); // reverse deploy order
//! assert_eq!(report.component("second").unwrap().handled, 100);
//! assert!(report.is_clean());
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! ## Supervision
//!
//! A component's restart mode says whether its supervisor builds a fresh instance after a
//! failure ([`Restart::Transient`]), also after it stopped itself ([`Restart::Permanent`]), or
//! never ([`Restart::Temporary`], the default). Supervisors group components with a
//! [`Strategy`] and an intensity limit; messages queued during a restart wait for the new
//! instance, and only the one the handler failed on is dead-lettered. A new instance is built
//! by the factory and runs [`Component::start`] again; timers the old one set after its start
//! went down with it, and [`Component::restarted`] is where to arm them again.
//!
//! ```
//! use reactorium::{BoxError, Component, ComponentOptions, ComponentState, Context, Message,
//!                  Restart, Runtime, Strategy, SupervisorOptions};
//! use std::time::Duration;
//!
//! struct Parser { parsed: u32 } // fresh state in every instance
//!
//! impl Component for Parser {
//!     fn handle(&mut self, mut msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
//!         let text = msg.as_json().and_then(|v| v.as_str()).unwrap_or_default().to_owned();
//!         let n: u32 = text.parse().expect("a number"); // a bad input panics this instance
//!         self.parsed += 1;
//!         ctx.reply(&mut msg, Message::typed(n))?;
//!         Ok(())
//!     }
//! }
//!
//! let rt = Runtime::new()?;
//! rt.add_supervisor("parsers", SupervisorOptions::new(Strategy::OneForOne)
//!     .intensity(5, Duration::from_secs(5)))?;
//! rt.deploy_with("parser",
//!     ComponentOptions::new().subscribe("parse").restart(Restart::Permanent).supervisor("parsers"),
//!     || Parser { parsed: 0 })?;
//! rt.start()?;
//!
//! // `?` takes a refused request's `SendError` into `reactorium::Error` (dropping the message).
//! let ask = |s: &str| rt.bus().request("parse", Message::json(s.into()), Duration::from_secs(5))?.wait();
//! assert!(ask("oops").is_err());          // the instance panicked: NoReply, at once
//! assert_eq!(ask("42")?.get::<u32>(), Some(&42)); // a new instance answers
//! assert_eq!(rt.component("parser").unwrap().restarts, 1);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! ## Watches and the registry
//!
//! Watch a component to hear when it goes down, and why; look components up by name, list them
//! with their states, and send to a name directly.
//!
//! ```
//! use reactorium::{BoxError, Component, Context, DownReason, Message, Runtime};
//! use std::time::Duration;
//!
//! struct OneShot;
//! impl Component for OneShot {
//!     fn handle(&mut self, _m: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
//!         ctx.stop(); // done: an orderly stop
//!         Ok(())
//!     }
//! }
//!
//! let rt = Runtime::new()?;
//! rt.deploy("job", || OneShot)?;
//! let watch = rt.watch("job")?;
//! rt.start()?;
//! rt.bus().send_to("job", Message::empty())?;
//! let down = watch.recv_timeout(Duration::from_secs(5))?;
//! assert_eq!((&*down.name, &down.reason, down.restarting), ("job", &DownReason::Normal, false));
//! # while !rt.component("job").unwrap().state.is_down_for_good() { std::thread::yield_now() }
//! let states: Vec<_> = rt.components().into_iter().map(|c| (c.name, c.state)).collect();
//! assert_eq!(states, [("job".into(), reactorium::ComponentState::Stopped)]);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! ## Time: timers, agents, idle timeouts
//!
//! Timers run on the component's own reactor ([`Context::after`], [`Context::every`],
//! [`Context::send_after`], cancellable with [`Context::cancel_timer`]); there is no timer
//! thread. [`Runtime::deploy_interval`] deploys an agent that publishes on a schedule in one
//! line; [`ComponentOptions::idle_timeout`] calls [`Component::idle`] after a quiet spell. A
//! [`ManualClock`] makes all of it testable without waiting.
//!
//! ```
//! use reactorium::{BoxError, Component, ComponentOptions, Context, ManualClock, Message, Runtime};
//! use std::time::Duration;
//!
//! struct Session { expired: crossbeam::channel::Sender<()> }
//! impl Component for Session {
//!     fn handle(&mut self, _m: Message, _c: &mut Context<'_, Self>) -> Result<(), BoxError> { Ok(()) }
//!     fn idle(&mut self, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
//!         let _ = self.expired.send(());
//!         ctx.stop(); // expire after 30 quiet minutes
//!         Ok(())
//!     }
//! }
//!
//! let clock = ManualClock::new();
//! let rt = Runtime::builder().clock(clock.clock()).build()?;
//! let (tx, expired) = crossbeam::channel::unbounded();
//! rt.deploy_with("session", ComponentOptions::new().idle_timeout(Duration::from_secs(1800)),
//!     move || Session { expired: tx.clone() })?;
//! let ticks = rt.bus().subscribe_inbox("tick", 8)?;
//! rt.deploy_interval("ticker", Duration::from_secs(60), "tick", |n| Some(Message::typed(n)))?;
//! rt.start()?;
//!
//! clock.advance(Duration::from_secs(60)); // one minute: one tick
//! assert_eq!(ticks.recv_timeout(Duration::from_secs(5))?.get::<u64>(), Some(&1));
//! clock.advance(Duration::from_secs(1800)); // half an hour: the session expires
//! expired.recv_timeout(Duration::from_secs(5))?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! ## Overflow policies and dead letters
//!
//! A full mailbox refuses by default ([`Overflow::Reject`]). A component may instead drop the
//! oldest or the newest message; a drop is counted and the message goes to the dead-letter
//! topic, like every accepted message that could not be handled.
//!
//! ```
//! use reactorium::{BoxError, Component, ComponentOptions, Context, DeadLetter, DeadLetterReason,
//!                  Message, Overflow, Runtime, DEAD_LETTER_TOPIC};
//! use std::time::Duration;
//!
//! struct Gauge;
//! impl Component for Gauge {
//!     fn handle(&mut self, _m: Message, _c: &mut Context<'_, Self>) -> Result<(), BoxError> { Ok(()) }
//! }
//!
//! let rt = Runtime::new()?;
//! let dead = rt.bus().subscribe_inbox(DEAD_LETTER_TOPIC, 8)?;
//! rt.deploy_with("gauge", ComponentOptions::new().subscribe("temp").mailbox_capacity(2)
//!     .overflow(Overflow::DropOldest), || Gauge)?;
//! for reading in 1..=3 { // not started: the third reading pushes out the first
//!     rt.bus().send("temp", Message::typed(reading))?;
//! }
//! let letter = dead.recv_timeout(Duration::from_secs(5))?;
//! let letter = letter.get::<DeadLetter>().unwrap();
//! assert_eq!(letter.reason, DeadLetterReason::Overflow(Overflow::DropOldest));
//! assert_eq!(letter.message.get::<i32>(), Some(&1));
//! assert_eq!(rt.component("gauge").unwrap().reactor.stats().dropped, 1);
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! ## Metrics
//!
//! [`Runtime::stats`] reads every counter at once: per component its mailbox (depth,
//! high-water mark), what it handled, refused, dropped and dead-lettered, and, when turned on,
//! how long its handler took ([`Histogram`]); the worker pool's and the bus's counters too.
//! [`RuntimeStats::write_prometheus`] renders it for a `GET /metrics`.
//!
//! ```
//! use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime};
//!
//! struct Echo;
//! impl Component for Echo {
//!     fn handle(&mut self, _m: Message, _c: &mut Context<'_, Self>) -> Result<(), BoxError> { Ok(()) }
//! }
//!
//! let rt = Runtime::builder().handler_latency(true).build()?; // two clock reads per message
//! rt.deploy_with("echo", ComponentOptions::new().subscribe("ping").mailbox_capacity(8), || Echo)?;
//! for _ in 0..3 { // not started: they wait in the mailbox
//!     rt.bus().send("ping", Message::empty())?;
//! }
//! rt.start()?;
//! # while rt.component("echo").unwrap().reactor.stats().handled < 3 { std::thread::yield_now() }
//! let stats = rt.stats();
//! let echo = stats.component("echo").unwrap();
//! assert_eq!((echo.reactor.handled, echo.reactor.high_water), (3, 3));
//! assert_eq!(echo.handler_latency.as_ref().unwrap().count, 3);
//! assert!(stats.ready && rt.is_ready());
//! assert!(stats.to_prometheus().contains("reactorium_mailbox_high_water{component=\"echo\"} 3\n"));
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! ## Front-ends
//!
//! The ways in from outside the process are front-ends: [`HttpServer`] routes HTTP requests to
//! topics, and any protocol of your own plugs in the same way. A [`FrontEnd`] is attached to a
//! runtime ([`Runtime::attach`]), reads it through an [`AdminHandle`], adds its metric families
//! to the runtime's ([`TextWriter`]), and is stopped first, before any component, reporting a
//! [`FrontEndReport`]. The socket work is the connection [`engine`]'s: a protocol over TCP or
//! UDP is a trait it is generic over (see its module documentation and
//! `examples/line_protocol.rs`).
//!
//! ## Logs
//!
//! The runtime reports what happens as [`tracing`](https://docs.rs/tracing) events, and
//! installs no subscriber: the application chooses one (`tracing-subscriber`'s `fmt` with an
//! `EnvFilter`, as the examples and the `reactorium` command do, filtered by `RUST_LOG`).
//! Each reactor thread runs its whole life in a span `reactor{component=<name>}`, so the
//! events of a handler, a continuation or a timer callback name their component, the
//! runtime's and the component's own alike; a job given to the worker pool runs in the span
//! of the code that submitted it. [`set_panic_hook`] keeps the panics the runtime catches from
//! being printed a second time by the standard library's hook.
//!
//! ```
//! use reactorium::{BoxError, Component, ComponentOptions, Context, Message, Runtime};
//!
//! struct Audit;
//! impl Component for Audit {
//!     fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
//!         // In the component's span: printed as `reactor{component=audit}: app: seen ...`.
//!         tracing::info!(target: "app", topic = msg.topic().as_str(), "seen");
//!         Ok(())
//!     }
//! }
//!
//! // In `main`, once: `RUST_LOG=reactorium=debug,app=info` shows the per-message events too.
//! # let _ =
//! tracing_subscriber::fmt()
//!     .with_env_filter(tracing_subscriber::EnvFilter::new("reactorium=info,app=info"))
//!     .try_init();
//! reactorium::set_panic_hook();
//!
//! let rt = Runtime::new()?;
//! rt.deploy_with("audit", ComponentOptions::new().subscribe("orders.>"), || Audit)?;
//! rt.start()?; // reactorium::runtime: runtime started components=1
//! rt.bus().send("orders.created", Message::empty())?;
//! rt.stop()?; // reactor{component=audit}: reactorium::reactor: component stopped handled=1 ..
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Targets, to filter on: `reactorium::reactor` (a component's life, on its reactor thread),
//! `reactorium::supervisor` (restarts and giving up), `reactorium::runtime` (start and stop),
//! `reactorium::bus` (dead letters), `reactorium::worker` (jobs), `reactorium::engine`
//! (connections, on the front-ends' I/O threads, in a span `front_end{front_end, port}`) and
//! `reactorium::http`.
//!
//! Events that could come once per message (a refusal, a dead letter, an error response) are
//! rate-limited: at most one per second from each source (a component, a front-end, the pool),
//! with a `suppressed` field counting those swallowed since the last one that went out (the
//! counters in [`ReactorStats`], [`BusStats`] and [`HttpStats`] keep the totals). With no
//! subscriber, or with the level filtered out, an event costs one relaxed load of `tracing`'s
//! global level and a branch: nothing on the message path (see "Logs" in
//! `docs/decisions.md` for the instruction counts).
//!
//! | message | target | level | fields |
//! |---|---|---|---|
//! | `component started` | `reactor` | info | |
//! | `component restarted` | `reactor` | info | `restarts` |
//! | `component failed` | `reactor` | error | `reason`, `topic`¹, `location`² |
//! | `component failed to start` | `reactor` | error | `reason` |
//! | `component stopped` | `reactor` | info | `handled`, `drained`, `abandoned` |
//! | `component stopped after a failure` | `reactor` | warn | `reason`, `handled`, `abandoned` |
//! | `handler failed, message dead-lettered` (under [`OnError::Continue`]) | `reactor` | warn³ | `reason`, `topic` |
//! | `mailbox full, message refused`⁴ | `reactor` | debug³ | `recipient`, `capacity` |
//! | `reactor thread panicked outside component code` (a bug) | `reactor` | error | `reason` |
//! | `restarting` | `supervisor` | warn | `supervisor`, `component`, `child`, `reason`, `restarts`, `max_restarts`, `strategy`, `backoff_ms` |
//! | `escalating to the parent supervisor` | `supervisor` | warn | `supervisor`, `component`, `child`, `reason` |
//! | `supervisor gave up: too many restarts` | `supervisor` | error | `supervisor`, `component`, `child`, `reason`, `restarts`, `max_restarts`, `window_ms` |
//! | `runtime failed: every component stops` | `supervisor` | error | `supervisor`, `component`, `reason` |
//! | `suspend not acknowledged in time, moving on` | `supervisor` | warn | `component`, `timeout_ms` |
//! | `restart not acknowledged in time` | `supervisor` | warn | `component`, `timeout_ms` |
//! | `runtime started` | `runtime` | info | `components` |
//! | `component's thread not joined: ...` | `runtime` | warn | `component`, `handled` |
//! | `runtime stopped` | `runtime` | info | `components`, `abandoned`, `elapsed_ms` |
//! | `dead letter`⁴ | `bus` | debug³ | `recipient`, `topic`, `reason` |
//! | `dead letter dropped` (refused by a dead-letter subscriber) | `bus` | debug³ | `recipient` |
//! | `job panicked` | `worker` | warn | `reason`, `location`² |
//! | `worker queue full, job refused`⁴ | `worker` | debug³ | `recipient`, `capacity` |
//! | `front-end listening` | `engine` | info | `front_end`, `addr` |
//! | `front-end stopped` | `engine` | info | `front_end`, `port`, `completed`, `closed_idle`, `abandoned`, `joined`, `elapsed_ms` |
//! | `connection over capacity: the protocol answers it with a refusal` | `engine` | warn³ | `peer`, `open`, `max_connections` |
//! | `connection refused: over capacity, closed at once` | `engine` | warn³ | `peer`, `open`, `max_connections` |
//! | `accept failed` | `engine` | warn³ | `error`, `paused` |
//! | `registering a connection failed` | `engine` | warn³ | `peer`, `error` |
//! | `poll failed` | `engine` | warn³ | |
//! | `datagram I/O failed` | `engine` | warn³ | `op`, `error` |
//! | `answered with a server error` (5xx: busy, timeout, failure) | `http` | warn³ | `status` |
//! | `answered with a client error` (4xx) | `http` | debug³ | `status` |
//! | `connection timed out` (not idle keep-alive) | `http` | debug³ | `kind` |
//!
//! ¹ when the handler failed on a message with a topic. ² when [`set_panic_hook`] is installed.
//! ³ rate-limited, with `suppressed`. ⁴ emitted on the sender's thread (in its span, if it is
//! a component's), or for a dead letter wherever the message was given up.
//!
//! Fields: `component` names the component whose code runs (the `reactor` span's field; on the
//! supervisor's and the runtime's events, which have no such span, the component they are
//! about); `recipient` the mailbox, inbox or pool that refused or dead-lettered a message
//! (not `component`, since the event may be inside another component's span, nor `target`,
//! which a flattened JSON line already uses for the event's target); `reason` the text a
//! [`DownReason`], a [`DeadLetterReason`], an error or a panic reads as; `restarts` counts
//! within the supervisor's window (on `component restarted`: since deploy); durations are
//! `*_ms` integers.
//!
//! Two things to know. tracing-subscriber's registry admits 4,096 threads that create (or
//! close) spans at once: the runtime makes each component's span on the deploying thread and
//! its reactor thread only enters it, so any number of components is fine, but a handler that
//! makes spans of its own on more than 4,096 reactor threads will make the registry panic. And
//! an application that logs through `log` rather than a tracing subscriber can turn on
//! `tracing`'s `log` feature in its own `Cargo.toml` (features unify), which the library
//! leaves off.
//!
//! # Threading contract
//!
//! Every method of a component, and every continuation it registers, runs on its own reactor
//! thread, one at a time. Every sending call ([`Reactor::send`], [`Bus::send`],
//! [`Bus::publish`], [`Bus::request`], [`WorkerPool::execute`]) returns at once. Blocking
//! waits ([`PendingReply::wait`], [`Inbox::recv`]) refuse to run on a reactor thread.
//!
//! # Delivery
//!
//! In one process delivery is at-most-once, and every message is accounted for: handled,
//! returned to the caller inside a [`SendError`], or sent to the dead-letter topic
//! [`DEAD_LETTER_TOPIC`] with the reason (component failed or stopped with it queued, dropped
//! by an overflow policy, late reply). Messages from one thread to one component arrive in the
//! order sent, across restarts too.
//!
//! # Names
//!
//! One concept, one name, across every type. New API follows these rules.
//!
//! | Concept | The name | The rule |
//! |---|---|---|
//! | Hand over work without waiting | [`send`](Reactor::send) (to one component or subscriber), [`send_to`](Bus::send_to) (to a component by name), [`publish`](Bus::publish) (to every subscriber), [`request`](Bus::request) (one reply expected), [`WorkerPool::execute`] (a fire-and-forget job) | An enqueue never blocks, so it has no `try_` prefix, and its documentation begins "Never blocks." It answers a [`SendError`], which hands the work back. |
//! | Run blocking work, result back on the reactor | [`Context::spawn_blocking`] (and `_timeout`) | tokio's word. A job with a continuation is another concept than a fire-and-forget job, hence another name than `execute`. |
//! | Work refused with its continuation | [`UnsentRequest`] (`message`, `then`) from [`Context::request`], [`UnsentJob`] (`job`, `then`) from [`Context::spawn_blocking`]; [`run_then`](SendError::run_then) | The work a call hands over comes back whole: the message or job *and* the continuation, never called. `run_then` calls the continuation now with the refusal, so what it holds (a reply handle) is answered. |
//! | An application's error in answer to a request | [`AppError`] (an [`AppErrorKind`], a `code`, a `message`), answered with [`Context::reply_err`] or [`ReplyHandle::fail`], received as [`Error::Application`] | The kinds are gRPC's status codes, words no protocol owns; each front-end maps them to its own (HTTP: the table on [`AppErrorKind`]). The library's own outcomes (refused, timed out, unanswered) stay [`Error`]'s other cases. |
//! | Receive | `recv` blocks, `try_recv` never blocks, `recv_timeout` waits at most so long ([`Inbox`], [`Watch`]) | `try_` only where the plain form blocks. A bounded wait takes a `Duration` (`_timeout`) or an `Instant` (`_deadline`). [`PendingReply::wait`] waits up to its request's own timeout. |
//! | A request's id | `request_id()` on [`PendingReply`], [`ReplyTicket`] and [`ReplyHandle`] | The same name on the requester's and the responder's side. [`Message::correlation`] is the reply's view: the id of the request it answers. |
//! | A bound on queued items | `_capacity`: [`RuntimeBuilder::mailbox_capacity`], [`ComponentOptions::mailbox_capacity`], [`WorkerPoolBuilder::queue_capacity`], [`RuntimeBuilder::worker_queue_capacity`] | One word per knob. A runtime-wide default and its per-component override have the same name (`mailbox_capacity`, `max_pending`, `drain_timeout`, `handler_latency`). |
//! | A number of threads | `_threads`: [`WorkerPoolBuilder::num_threads`] (rayon's word), [`RuntimeBuilder::worker_threads`] (tokio's) | On the runtime's builder the pool's knobs carry a `worker_` prefix: `worker_threads`, `worker_queue_capacity`. |
//! | Find components | [`Runtime::component`] (one, by name), [`Runtime::components`] (all, in deploy order) | Both give a [`ComponentInfo`], which carries the component's [`Reactor`]. |
//! | No component of that name | [`Error::NoComponent`] ([`SendError::NoComponent`] from a send) | One answer, whichever call was given the name. |
//! | What went wrong | [`SendError`] from an enqueue, [`Error`] from anything else | A `match` on a `SendError` is exhaustive; `?` turns it into an `Error` (dropping the work). |
//! | Ending a subscription or a watch | drop the [`Inbox`] or the [`Watch`] | Dropping the handle ends it; [`Bus::unsubscribe`] and [`Runtime::unwatch`] end it earlier. |
//! | A component's (or pool's, or inbox's) name | [`Name`] | Cheap to clone, used as a string (`&*name`, `name == "x"`); its representation is private. |

// The modules, bottom-up; each depends only on modules before it in this order:
//
//   types → logs → metrics → worker → bus → reactor → runtime → ingress
//
// The bus sits below the reactor: it knows a component only through its one-method `Deliver`
// trait (the reactor's mailbox implements it), and a component's `Context` holds a `Bus`
// ("The bus below the reactor" in docs/decisions.md). Within a module, no two files import
// each other, except `bus/mod.rs` and `bus/reply.rs` (the bus's inner state). `ingress`
// sits above `runtime`: every front-end implements the runtime's `FrontEnd` trait and
// attaches itself, so the runtime names no protocol.
mod bus;
mod ingress;
mod logs;
mod metrics;
mod reactor;
mod runtime;
mod types;
mod worker;

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use bus::{Bus, BusStats, Inbox, PendingReply, PublishReport, ReplyTicket, SubscriptionId};
pub use ingress::engine;
/// Fuzzing entry points (`fuzz/`, `tests/http/fuzz.rs`): not part of the API.
#[doc(hidden)]
pub use ingress::http::fuzzing as __fuzzing;
pub use ingress::http::{http_names, HttpConfig, HttpServer, HttpStats, Routes};
pub use logs::set_panic_hook;
pub use metrics::{Histogram, HistogramSnapshot, TextWriter};
pub use reactor::{
    Component, Context, OnError, Reactor, ReactorStats, Restarted, TimerId, UnsentJob,
    UnsentRequest, WatchId,
};
pub use runtime::{
    AdminHandle, Agent, AgentStats, ComponentInfo, ComponentOptions, ComponentReport,
    ComponentState, ComponentStats, FrontEnd, FrontEndReport, Readiness, Restart, RestartBackoff,
    Runtime, RuntimeBuilder, RuntimeStats, ShutdownReport, Strategy, SupervisorOptions, Watch,
};
pub use types::{
    AppError, AppErrorKind, BoxError, Clock, DeadLetter, DeadLetterReason, Down, DownReason, Error,
    ManualClock, Message, MessageId, Name, Overflow, Pattern, Payload, ReplyHandle, SendError,
    Topic, TypeMismatch, Typed, Unhandled, DEAD_LETTER_TOPIC,
};
pub use worker::{PoolShutdown, WorkerPool, WorkerPoolBuilder, WorkerPoolStats};

#[cfg(test)]
mod thread_safety {
    use super::*;

    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}

    #[test]
    fn public_handles_cross_threads() {
        send_sync::<Runtime>();
        send_sync::<Bus>();
        send_sync::<Reactor>();
        send_sync::<WorkerPool>();
        send_sync::<Message>();
        send_sync::<ReplyHandle>();
        // `?` into anyhow needs the error with its message to be `Send + Sync + 'static`.
        send_sync::<SendError<Message>>();
        send_sync::<Error>();
        send::<PendingReply>();
        send::<Inbox>();
        send::<Watch>();
        send_sync::<Clock>();
        send_sync::<ManualClock>();
        send_sync::<ComponentInfo>();
        send_sync::<Histogram>();
        send_sync::<RuntimeStats>();
    }
}

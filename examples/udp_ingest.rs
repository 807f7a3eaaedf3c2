//! A UDP ingest written only against reactorium's public API, on the datagram side of the
//! connection engine (`reactorium::engine::DatagramEngine`): each datagram is published on a
//! topic as a bytes message, for whatever components subscribe (here, one that counts and
//! prints). Nothing is answered; what could not be delivered is counted, never hidden.
//!
//! ```sh
//! cargo run --example udp_ingest               # listens on 127.0.0.1:7071
//! echo -n 'cpu=0.42' | nc -u -w0 127.0.0.1 7071
//! ```
//!
//! Its tests (`cargo test --example udp_ingest`) send real datagrams over 127.0.0.1:
//! ordinary ones, empty and 60 KB ones, and datagrams nobody subscribes to.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reactorium::engine::{DatagramEngine, DatagramIo, DatagramProtocol, EngineConfig};
use reactorium::{
    BoxError, Bus, Component, ComponentOptions, Context, FrontEnd, FrontEndReport, Message,
    Runtime, TextWriter,
};

/// The protocol: publish each datagram on `topic`.
struct Ingest {
    bus: Bus,
    topic: String,
    published: AtomicU64,
    /// Datagrams no subscriber took: none subscribed, or every one refused (full mailbox).
    undelivered: AtomicU64,
}

impl DatagramProtocol for Ingest {
    type Exchange = ();
    type Outcome = ();

    fn on_datagram(&self, from: SocketAddr, data: &[u8], _io: &mut DatagramIo<'_, Self>) {
        let msg = Message::bytes(data.to_vec()).with_header("udp.from", from.to_string());
        match self.bus.publish(&self.topic, msg) {
            Ok(report) if report.delivered > 0 => {
                self.published.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) | Err(_) => {
                self.undelivered.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn on_outcome(&self, _exchange: (), _outcome: (), _io: &mut DatagramIo<'_, Self>) {}
}

/// The front-end: the engine's handle, attached to a runtime.
struct UdpIngest {
    engine: DatagramEngine<Ingest>,
    name: String,
}

impl UdpIngest {
    fn start(rt: &Runtime, addr: SocketAddr, topic: &str) -> anyhow::Result<Arc<UdpIngest>> {
        let ingest = Ingest {
            bus: rt.bus().clone(),
            topic: topic.to_owned(),
            published: AtomicU64::new(0),
            undelivered: AtomicU64::new(0),
        };
        let config = EngineConfig::new("udp")
            .bind(addr)
            .shutdown_timeout(Duration::from_secs(1));
        let engine = DatagramEngine::start(config, Arc::new(ingest))?;
        let server = Arc::new(UdpIngest {
            name: format!("udp {}", engine.local_addr()),
            engine,
        });
        if let Err(e) = rt.attach(server.clone()) {
            server.engine.stop();
            return Err(e.into());
        }
        Ok(server)
    }

    fn local_addr(&self) -> SocketAddr {
        self.engine.local_addr()
    }
}

impl FrontEnd for UdpIngest {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "udp"
    }

    fn write_metrics(&self, w: &mut TextWriter<'_>) {
        let listen = self.local_addr().to_string();
        let labels = [("listen", listen.as_str())];
        let p = self.engine.protocol();
        w.counter(
            "udp_ingest_datagrams_total",
            "Datagrams received.",
            [(labels, self.engine.stats().received)],
        );
        w.counter(
            "udp_ingest_undelivered_total",
            "Datagrams no subscriber took.",
            [(labels, p.undelivered.load(Ordering::Relaxed))],
        );
    }

    fn stop(&self) -> FrontEndReport {
        let mut r = self.engine.stop().to_front_end(&self.name, "udp");
        let p = self.engine.protocol();
        r.detail.push(("received", self.engine.stats().received));
        r.detail
            .push(("published", p.published.load(Ordering::Relaxed)));
        r.detail
            .push(("undelivered", p.undelivered.load(Ordering::Relaxed)));
        r
    }
}

/// Counts what comes and prints every thousandth.
struct Printer {
    seen: u64,
}

impl Component for Printer {
    fn handle(&mut self, msg: Message, _ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        self.seen += 1;
        if self.seen % 1000 == 1 {
            let len = msg.as_bytes().map_or(0, <[u8]>::len);
            println!(
                "udp_ingest: #{} from {}: {len} bytes",
                self.seen,
                msg.header("udp.from").unwrap_or("?")
            );
        }
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
        .unwrap_or_else(|| "127.0.0.1:7071".into())
        .parse()?;
    let rt = Runtime::new()?;
    rt.deploy_with(
        "printer",
        ComponentOptions::new().subscribe("ingest.udp"),
        || Printer { seen: 0 },
    )?;
    rt.start()?;
    let ingest = UdpIngest::start(&rt, addr, "ingest.udp")?;
    println!("udp_ingest: listening on udp://{}", ingest.local_addr());
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Instant;

    const SOON: Duration = Duration::from_secs(5);

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let end = Instant::now() + SOON;
        while !f() {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn start() -> anyhow::Result<(Runtime, Arc<UdpIngest>, reactorium::Inbox)> {
        let rt = Runtime::builder().worker_threads(1).build()?;
        rt.start()?;
        let inbox = rt.bus().subscribe_inbox("ingest.udp", 1024)?;
        let ingest = UdpIngest::start(&rt, "127.0.0.1:0".parse()?, "ingest.udp")?;
        Ok((rt, ingest, inbox))
    }

    #[test]
    fn each_datagram_is_published_whole_with_its_sender() -> anyhow::Result<()> {
        let (rt, ingest, inbox) = start()?;
        let client = UdpSocket::bind("127.0.0.1:0")?;
        let sizes = [0usize, 1, 100, 1400, 60_000];
        for (i, &n) in sizes.iter().enumerate() {
            let datagram: Vec<u8> = (0..n).map(|j| (i + j) as u8).collect();
            client.send_to(&datagram, ingest.local_addr())?;
            // One at a time: loopback keeps them, and the order is checked.
            let msg = inbox.recv_timeout(SOON)?;
            assert_eq!(
                msg.as_bytes().map(<[u8]>::to_vec),
                Some(datagram),
                "size {n}"
            );
            assert_eq!(
                msg.header("udp.from"),
                Some(client.local_addr()?.to_string().as_str())
            );
        }
        let metrics = rt.admin().metrics();
        assert!(
            metrics.contains("udp_ingest_datagrams_total{listen="),
            "{metrics}"
        );
        let report = rt.stop()?;
        let udp = &report.front_ends[0];
        assert_eq!(udp.kind, "udp");
        assert_eq!(udp.detail("published"), Some(sizes.len() as u64), "{udp:?}");
        assert!(udp.is_clean(), "{udp:?}");
        Ok(())
    }

    #[test]
    fn a_burst_is_counted_exactly_and_garbage_is_just_bytes() -> anyhow::Result<()> {
        let (rt, ingest, inbox) = start()?;
        let client = UdpSocket::bind("127.0.0.1:0")?;
        let engine = &ingest.engine;
        let p = engine.protocol();
        let mut got = 0u64;
        let mut sent = 0u64;
        // In batches that fit a loopback socket's buffer, so none is dropped before it is
        // read; each batch is waited for.
        for batch in 0..20 {
            for i in 0..50u64 {
                let garbage = [0xff, 0x00, (batch * 50 + i) as u8, b'\n', b'\r'];
                client.send_to(&garbage, ingest.local_addr())?;
                sent += 1;
            }
            wait_until("the batch", || {
                while inbox.try_recv().is_some() {
                    got += 1;
                }
                got == sent
            });
        }
        assert_eq!(engine.stats().received, sent);
        assert_eq!(p.published.load(Ordering::Relaxed), sent);
        assert_eq!(p.undelivered.load(Ordering::Relaxed), 0);
        rt.stop()?;
        Ok(())
    }

    #[test]
    fn datagrams_nobody_subscribes_to_are_counted_undelivered() -> anyhow::Result<()> {
        let rt = Runtime::builder().worker_threads(1).build()?;
        rt.start()?;
        let ingest = UdpIngest::start(&rt, "127.0.0.1:0".parse()?, "nobody.listens")?;
        let client = UdpSocket::bind("127.0.0.1:0")?;
        for _ in 0..3 {
            client.send_to(b"lost?", ingest.local_addr())?;
        }
        let p = ingest.engine.protocol();
        wait_until("three undelivered", || {
            p.undelivered.load(Ordering::Relaxed) == 3
        });
        let report = rt.stop()?;
        assert_eq!(report.front_ends[0].detail("undelivered"), Some(3));
        // Stopped: the socket is closed, nothing more is received.
        let _ = client.send_to(b"after", ingest.local_addr());
        assert_eq!(ingest.engine.stats().received, 3);
        Ok(())
    }
}

//! Agents: components whose job is to produce events, on a schedule or when signalled, and
//! publish them on the bus.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{ComponentOptions, Restart, Runtime};
use crate::reactor::{Component, Context, Reactor};
use crate::types::{BoxError, Error, Message, SendError, Topic};

/// What an agent has done, counted since it was deployed (across restarts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentStats {
    /// Times the producer was called (ticks and signals).
    pub produced: u64,
    /// Events published to at least one subscriber.
    pub published: u64,
    /// Times the producer returned `None`: nothing to publish.
    pub empty: u64,
    /// Deliveries refused by a subscriber (full mailbox: `Backpressure`, or stopped). The
    /// event is skipped for that subscriber, not retried: the next tick brings a fresh one.
    pub refused: u64,
    /// Events skipped because nothing subscribed to the topic.
    pub no_subscriber: u64,
}

#[derive(Default)]
struct Counters {
    produced: AtomicU64,
    published: AtomicU64,
    empty: AtomicU64,
    refused: AtomicU64,
    no_subscriber: AtomicU64,
}

/// A handle to a deployed agent ([`Runtime::deploy_interval`](crate::Runtime::deploy_interval)).
#[derive(Clone)]
pub struct Agent {
    reactor: Reactor,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("name", &self.reactor.name())
            .field("stats", &self.stats())
            .finish()
    }
}

impl Agent {
    /// The counters now.
    pub fn stats(&self) -> AgentStats {
        let c = &self.counters;
        AgentStats {
            produced: c.produced.load(Ordering::Relaxed),
            published: c.published.load(Ordering::Relaxed),
            empty: c.empty.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            no_subscriber: c.no_subscriber.load(Ordering::Relaxed),
        }
    }

    /// Never blocks. Asks the agent to produce and publish once now, on its own reactor, in
    /// addition to its schedule: how an external source (a file watcher, a socket) tells it
    /// something happened.
    ///
    /// # Errors
    ///
    /// [`SendError::Backpressure`] when signals are already waiting (its mailbox is full: the
    /// agent is behind, and will produce anyway); [`SendError::Stopped`] once it has stopped.
    /// A signal carries nothing, so nothing comes back (`rejected` is `()`).
    pub fn signal(&self) -> Result<(), SendError<()>> {
        self.reactor.send(Message::empty()).map_err(|e| e.map(drop))
    }

    /// The agent's reactor.
    pub fn reactor(&self) -> &Reactor {
        &self.reactor
    }
}

/// The producing function of an interval agent: called with the tick number (1, 2, ...).
pub(crate) type Produce = Arc<dyn Fn(u64) -> Option<Message> + Send + Sync>;

pub(crate) struct IntervalAgent {
    produce: Produce,
    topic: Arc<str>,
    period: Duration,
    ticks: u64,
    counters: Arc<Counters>,
}

impl IntervalAgent {
    /// The component factory and the handle's counters.
    pub(crate) fn factory(
        produce: Produce,
        topic: &str,
        period: Duration,
    ) -> (
        impl Fn() -> IntervalAgent + Send + Sync + 'static,
        AgentHandleParts,
    ) {
        let counters = Arc::new(Counters::default());
        let topic: Arc<str> = topic.into();
        let c = Arc::clone(&counters);
        let make = move || IntervalAgent {
            produce: Arc::clone(&produce),
            topic: Arc::clone(&topic),
            period,
            ticks: 0,
            counters: Arc::clone(&c),
        };
        (make, AgentHandleParts(counters))
    }

    fn produce(&mut self, ctx: &mut Context<'_, Self>) {
        self.ticks += 1;
        let c = &self.counters;
        c.produced.fetch_add(1, Ordering::Relaxed);
        let Some(event) = (self.produce)(self.ticks) else {
            c.empty.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match ctx.publish(&self.topic, event) {
            Ok(report) => {
                if report.delivered > 0 {
                    c.published.fetch_add(1, Ordering::Relaxed);
                }
                c.refused
                    .fetch_add(report.refused.len() as u64, Ordering::Relaxed);
            }
            Err(SendError::NoSubscriber { .. }) => {
                c.no_subscriber.fetch_add(1, Ordering::Relaxed);
            }
            // The topic was checked at deploy; any other refusal is counted as refused.
            Err(_) => {
                c.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The counters a deployed agent's handle reads.
pub(crate) struct AgentHandleParts(Arc<Counters>);

impl AgentHandleParts {
    pub(crate) fn into_agent(self, reactor: Reactor) -> Agent {
        Agent {
            reactor,
            counters: self.0,
        }
    }
}

impl Component for IntervalAgent {
    fn start(&mut self, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        ctx.every(self.period, |this: &mut Self, ctx| this.produce(ctx));
        Ok(())
    }

    /// A signal: produce once now.
    fn handle(&mut self, _msg: Message, ctx: &mut Context<'_, Self>) -> Result<(), BoxError> {
        self.produce(ctx);
        Ok(())
    }
}

impl Runtime {
    /// Deploys an interval agent in one line: every `period`, on its own reactor, it calls
    /// `produce` with the tick number (1, 2, ...) and publishes what it returns on `topic`
    /// (`None`: nothing this tick). [`Agent::signal`] makes it produce once more at once.
    ///
    /// Backpressure is handled explicitly, by counting and skipping: a subscriber that
    /// refuses an event (full mailbox) misses that event, and the count goes to
    /// [`AgentStats::refused`]; with no subscriber at all the event is skipped and counted in
    /// [`AgentStats::no_subscriber`]. The agent never blocks and never queues events of its
    /// own. It is `permanent`: restarted after a panic in `produce` (its tick count starts
    /// again).
    ///
    /// # Errors
    ///
    /// As [`deploy_with`](Runtime::deploy_with); [`Error::InvalidTopic`] for a malformed or
    /// wildcard topic; [`Error::InvalidConfig`] for a zero period.
    ///
    /// # Examples
    ///
    /// ```
    /// use reactorium::{Message, Runtime};
    /// use std::time::Duration;
    ///
    /// let rt = Runtime::new()?;
    /// let ticks = rt.bus().subscribe_inbox("clock.tick", 16)?;
    /// let agent = rt.deploy_interval("ticker", Duration::from_millis(10), "clock.tick",
    ///     |n| Some(Message::typed(n)))?;
    /// rt.start()?;
    /// let first = ticks.recv_timeout(Duration::from_secs(5))?;
    /// assert_eq!(first.get::<u64>(), Some(&1));
    /// assert!(agent.stats().produced >= 1);
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn deploy_interval<F>(
        &self,
        name: &str,
        period: Duration,
        topic: &str,
        produce: F,
    ) -> Result<Agent, Error>
    where
        F: Fn(u64) -> Option<Message> + Send + Sync + 'static,
    {
        Topic::new(topic)?;
        if period.is_zero() {
            return Err(Error::InvalidConfig {
                reason: format!("agent `{name}`: the period must be above zero"),
            });
        }
        let (factory, parts) = IntervalAgent::factory(Arc::new(produce), topic, period);
        let options = ComponentOptions::new()
            .mailbox_capacity(16)
            .restart(Restart::Permanent);
        let reactor = self.deploy_with(name, options, factory)?;
        Ok(parts.into_agent(reactor))
    }
}

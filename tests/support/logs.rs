//! A `tracing` layer that keeps every event with its fields and the fields of the spans it
//! was emitted in, so tests can check what an operator would read.
//!
//! Events from the runtime's own threads (reactors, the supervisor, workers, I/O threads) reach
//! only a global subscriber, so a test binary that checks them installs one with
//! [`Capture::global`] and tells its tests apart by the names they give their components.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Instant;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use super::SOON;

/// One event as captured.
#[derive(Clone, Debug)]
pub struct Captured {
    pub level: Level,
    pub target: String,
    pub message: String,
    /// The event's own fields (not `message`).
    pub fields: BTreeMap<String, String>,
    /// The spans it was emitted in, innermost first: name and fields.
    pub spans: Vec<(String, BTreeMap<String, String>)>,
}

impl Captured {
    /// A field of the event, else of its innermost span that has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .or_else(|| self.spans.iter().find_map(|(_, f)| f.get(name)))
            .map(String::as_str)
    }

    /// The component it is about: the `component` field (the event's, or its reactor span's).
    pub fn component(&self) -> Option<&str> {
        self.field("component")
    }

    /// `true` for this target and message.
    pub fn is(&self, target: &str, message: &str) -> bool {
        self.target == target && self.message == message
    }
}

/// The captured events.
#[derive(Default)]
pub struct Capture {
    events: Mutex<Vec<Captured>>,
    added: Condvar,
}

impl Capture {
    /// The capture behind this process's global subscriber (every level, every target),
    /// installed on the first call.
    pub fn global() -> Arc<Capture> {
        static GLOBAL: OnceLock<Arc<Capture>> = OnceLock::new();
        Arc::clone(GLOBAL.get_or_init(|| {
            let capture = Arc::new(Capture::default());
            let subscriber = tracing_subscriber::registry().with(Layered(Arc::clone(&capture)));
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
            capture
        }))
    }

    /// The events so far that match `pred`.
    pub fn matching(&self, pred: impl Fn(&Captured) -> bool) -> Vec<Captured> {
        self.lock().iter().filter(|e| pred(e)).cloned().collect()
    }

    /// Waits (at most [`SOON`]) for an event matching `pred`, and returns the first.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Captured) -> bool) -> Captured {
        let deadline = Instant::now() + SOON;
        let mut events = self.lock();
        loop {
            if let Some(e) = events.iter().find(|e| pred(e)) {
                return e.clone();
            }
            let now = Instant::now();
            assert!(now < deadline, "timed out waiting for event: {what}");
            events = self
                .added
                .wait_timeout(events, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Captured>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, e: Captured) {
        self.lock().push(e);
        self.added.notify_all();
    }
}

/// The layer itself (a newtype: the capture is shared with the tests).
struct Layered(Arc<Capture>);

/// A span's fields, kept in its extensions.
struct SpanFields(BTreeMap<String, String>);

#[derive(Default)]
struct Fields {
    message: Option<String>,
    map: BTreeMap<String, String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = Some(value);
        } else {
            self.map.insert(field.name().to_owned(), value);
        }
    }
}

impl<S> Layer<S> for Layered
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(f.map));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        values.record(&mut f);
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
                fields.0.extend(f.map);
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        event.record(&mut f);
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .map(|span| {
                        let fields = span
                            .extensions()
                            .get::<SpanFields>()
                            .map(|f| f.0.clone())
                            .unwrap_or_default();
                        (span.name().to_owned(), fields)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let meta = event.metadata();
        self.0.push(Captured {
            level: *meta.level(),
            target: meta.target().to_owned(),
            message: f.message.unwrap_or_default(),
            fields: f.map,
            spans,
        });
    }
}

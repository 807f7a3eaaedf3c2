//! The panic hook an application may install so that panics the runtime catches and reports
//! (on reactor and worker threads) print nothing of their own and capture no backtrace.

use std::cell::{Cell, RefCell};

use super::{REACTOR, WORKER};
use crate::types::{on_reactor_thread, panic_message};

thread_local! {
    static ON_WORKER: Cell<bool> = const { Cell::new(false) };
    /// The last panic the hook kept quiet on this thread: its message and where it happened,
    /// for the event that reports it.
    static LAST: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
}

/// Marks the calling thread as a worker-pool thread, for the rest of its life: every job it
/// runs is under `catch_unwind`, and a panic is reported as an event.
pub(crate) fn mark_worker_thread() {
    ON_WORKER.with(|f| f.set(true));
}

/// Where the panic with this message happened, if [`set_panic_hook`]'s hook kept it quiet on
/// this thread. Taken once.
pub(crate) fn take_panic_location(message: &str) -> Option<String> {
    LAST.with(|l| l.borrow_mut().take())
        .filter(|(m, _)| m == message)
        .map(|(_, at)| at)
}

/// Wraps the process's panic hook so that panics the runtime reports itself print nothing.
///
/// A panic in component code (a handler, a continuation, a timer callback, `start`, `stop`)
/// is caught on its reactor thread, and one in a worker job on its worker thread; the runtime
/// reports each as a `tracing` event (`component failed` at `error` on `reactorium::reactor`,
/// `job panicked` at `warn` on `reactorium::worker`; see "Logs" in the crate docs). Without
/// this hook the standard library's default hook *also* prints every one of them to stderr,
/// and with `RUST_BACKTRACE=1` captures and prints a backtrace first, which stalls the
/// panicking component (about 115 ms per panic on the project's VM; see `docs/decisions.md`).
///
/// The hook installed here, for a panic on a reactor or worker thread of any runtime, keeps
/// its location for the runtime's event (its `location` field) and returns: no output, no
/// backtrace. Every other panic goes to the hook that was installed before (the default one,
/// or the application's own), as before. So does a panic on a runtime thread when the event
/// that would report it is disabled (no subscriber, or a filter that drops it): a panic is
/// never silent.
///
/// The library never calls this: the panic hook is the application's, like the subscriber.
/// Call it once, early in `main`, after installing a subscriber (and after any hook of your
/// own, which it wraps). Calling it twice wraps twice, harmlessly.
///
/// # Examples
///
/// ```
/// use reactorium::{BoxError, Component, Context, Message, Runtime};
///
/// // Once, in `main`: a subscriber (here: `tracing-subscriber`'s, filtered by `RUST_LOG`),
/// // then the hook.
/// # let _ =
/// tracing_subscriber::fmt()
///     .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
///     .try_init();
/// reactorium::set_panic_hook();
///
/// struct Fragile;
/// impl Component for Fragile {
///     fn handle(&mut self, _m: Message, _c: &mut Context<'_, Self>) -> Result<(), BoxError> {
///         panic!("boom") // reported as an event, not printed by the default hook
///     }
/// }
/// let rt = Runtime::new()?;
/// let fragile = rt.deploy("fragile", || Fragile)?;
/// rt.start()?;
/// rt.bus().send_to("fragile", Message::empty())?;
/// # while fragile.stats().failures == 0 { std::thread::yield_now() }
/// rt.stop()?;
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn set_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // The same level and target as the event that will report it, checked on this
        // thread (a subscriber set for this thread only counts).
        let reported = if on_reactor_thread() {
            tracing::enabled!(target: REACTOR, tracing::Level::ERROR)
        } else if ON_WORKER.with(Cell::get) {
            tracing::enabled!(target: WORKER, tracing::Level::WARN)
        } else {
            false
        };
        if !reported {
            previous(info);
            return;
        }
        if let Some(at) = info.location() {
            let message = panic_message(info.payload());
            LAST.with(|l| *l.borrow_mut() = Some((message, at.to_string())));
        }
    }));
}

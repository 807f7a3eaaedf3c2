//! What a watcher is told when a component goes down.

use std::fmt;

use super::Name;

/// Why a component instance went down.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownReason {
    /// It stopped itself ([`Context::stop`](crate::Context::stop)): an orderly stop.
    Normal,
    /// A handler, continuation, timer callback or `stop` panicked, with the panic's text.
    Panicked(String),
    /// A handler returned an error, or its `start` failed, with the error's text.
    Failed(String),
    /// The runtime, or its supervisor, stopped it (shutdown, or a sibling's restart under
    /// `all-for-one` / `rest-for-one`, or its group gave up).
    Shutdown,
}

impl DownReason {
    /// `true` for [`Panicked`](DownReason::Panicked) and [`Failed`](DownReason::Failed).
    pub fn is_failure(&self) -> bool {
        matches!(self, DownReason::Panicked(_) | DownReason::Failed(_))
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::Normal => f.write_str("normal"),
            DownReason::Panicked(m) => write!(f, "panicked: {m}"),
            DownReason::Failed(m) => write!(f, "failed: {m}"),
            DownReason::Shutdown => f.write_str("shutdown"),
        }
    }
}

/// The notice a watcher gets when the component it watches goes down.
///
/// A watch is by name and lasts until [`unwatch`](crate::Runtime::unwatch) or until the
/// component is down for good: a supervised component sends one `Down` per instance that went
/// down, with `restarting: true` when its supervisor is restarting it; the last has
/// `restarting: false`, and the watch ends with it. (If a supervisor decides to restart and
/// then gives up, for example because its own parent exceeded its intensity, the final
/// `restarting: false` notice follows the `true` one.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Down {
    /// The component.
    pub name: Name,
    /// Why it went down.
    pub reason: DownReason,
    /// `true` when its supervisor is restarting it (after any backoff); `false` when it is
    /// down for good.
    pub restarting: bool,
}

impl fmt::Display for Down {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` down ({})", self.name, self.reason)?;
        if self.restarting {
            f.write_str(", restarting")?;
        }
        Ok(())
    }
}

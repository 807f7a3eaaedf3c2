//! Protocol front-ends: the ways into the bus from outside the process. Each one turns what
//! arrives on the wire into bus messages (usually requests) and what comes back into the
//! wire's answers, never holding a thread per waiting request. Sits above `runtime`: each
//! front-end implements the runtime's `FrontEnd` trait and attaches itself; the runtime names
//! no protocol.
//!
//! - [`engine`]: the connection engine (public: users write their own protocols on it);
//! - [`http`]: a routed HTTP/1.1 server, a protocol on the engine.
//!
//! Design notes: `README.md` beside this file (the engine), `http/README.md` (HTTP on it).

pub mod engine;
pub(crate) mod http;

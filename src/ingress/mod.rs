//! Protocol front-ends: the ways into the bus from outside the process. Each one turns what
//! arrives on the wire into bus messages (usually requests) and what comes back into the
//! wire's answers, never holding a thread per waiting request. Sits above `runtime`: each
//! front-end implements the runtime's `FrontEnd` trait and attaches itself; the runtime names
//! no protocol.
//!
//! Now: [`http`], a routed HTTP/1.1 server on a fixed number of I/O threads.

pub(crate) mod http;

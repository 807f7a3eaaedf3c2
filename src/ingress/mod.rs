//! Protocol front-ends: the ways into the bus from outside the process. Each one turns what
//! arrives on the wire into bus messages (usually requests) and what comes back into the
//! wire's answers, never holding a thread per waiting request. Depends on `bus` and `types`
//! (and, for their admin endpoints, on hooks the runtime gives them).
//!
//! Now: [`http`], a routed HTTP/1.1 server on a fixed number of I/O threads.

pub(crate) mod http;

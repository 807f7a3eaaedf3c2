//! Interned strings: the topics and component names a process uses over and over, stored once
//! and copied as a pointer, so that building, sending and dropping a message never touches a
//! reference count shared with other threads.
//!
//! Interned text is never freed, so the table is bounded; past the bound, strings fall back to
//! a reference-counted copy and nothing is lost but speed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Most strings interned in one process.
const MAX_ENTRIES: usize = 65_536;
/// Most bytes interned in one process.
const MAX_BYTES: usize = 4 << 20;

/// A string that is either interned (free to copy) or shared (reference counted). Both are
/// thin pointers, so a `Str` is two words and a message envelope stays small.
#[derive(Clone)]
pub(crate) enum Str {
    Interned(&'static &'static str),
    Shared(Arc<String>),
}

impl Str {
    /// The empty string, interned without touching the table.
    pub(crate) const EMPTY: Str = Str::Interned(&"");

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Str::Interned(s) => s,
            Str::Shared(s) => s,
        }
    }

    /// A shared (not interned) copy of `text`.
    pub(crate) fn shared(text: &str) -> Str {
        Str::Shared(Arc::new(text.to_owned()))
    }
}

#[derive(Default)]
struct Table {
    // Key and value point at the same leaked text.
    map: HashMap<&'static str, &'static &'static str>,
    bytes: usize,
}

/// The interned copy of `text`, or a shared one once the table is full.
pub(crate) fn intern(text: &str) -> Str {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    let mut t = TABLE
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(&s) = t.map.get(text) {
        return Str::Interned(s);
    }
    if t.map.len() >= MAX_ENTRIES || t.bytes + text.len() > MAX_BYTES {
        return Str::shared(text);
    }
    let s: &'static str = Box::leak(Box::from(text));
    let thin: &'static &'static str = Box::leak(Box::new(s));
    t.map.insert(s, thin);
    t.bytes += s.len();
    Str::Interned(thin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_returns_one_copy() {
        let (a, b) = (intern("orders.created"), intern("orders.created"));
        match (a, b) {
            (Str::Interned(a), Str::Interned(b)) => assert!(std::ptr::eq(*a, *b)),
            _ => panic!("short strings are interned while the table has room"),
        }
        assert_eq!(std::mem::size_of::<Str>(), 16);
    }
}

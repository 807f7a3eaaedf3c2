//! A component's reply header (name, value, status) turned into a response: refused, or
//! written so that it reads back as exactly that header (no header or body smuggled in).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{0}');
    let (name, value, status) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("200"),
    );
    reactorium::__fuzzing::http_reply_header(name, value, status);
});

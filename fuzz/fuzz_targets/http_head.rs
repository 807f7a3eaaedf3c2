//! The request head parser on arbitrary bytes: `reactorium::__fuzzing::http_head` checks its
//! invariants (a whole head re-parses alike, an incomplete one has no whole prefix, every
//! answer is a well-formed response and never a 500) and panics when one breaks.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = reactorium::__fuzzing::http_head(data);
});

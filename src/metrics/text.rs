//! The Prometheus text exposition format, version 0.0.4: what a `GET /metrics` answers.
//!
//! One call writes one whole metric family (its `# HELP`, its `# TYPE`, then every sample);
//! writing a family again appends its samples to the first (they go in at its end), so the
//! samples of a family are contiguous by construction, as Prometheus requires.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::HistogramSnapshot;

/// Writes metric families in the Prometheus text format (0.0.4) into a `String`: what a
/// `GET /metrics` answers, and how a front-end adds its own families to it
/// ([`FrontEnd::write_metrics`](crate::FrontEnd::write_metrics)).
///
/// The samples of each family are given as `(labels, value)` pairs, `labels` being any
/// `AsRef<[(name, value)]>` (an array, a slice, a `Vec`), so a caller can write one sample per
/// component with no intermediate collection. One call writes one family: its `# HELP`, its
/// `# TYPE`, then every sample. Writing a family that this writer has written already (two
/// front-ends of one kind, each with its own `listen` label) appends the new samples to it,
/// so the samples of a family stay contiguous, as Prometheus requires; the help text of the
/// first call stands, and debug builds assert the type is the same.
///
/// A family with no samples is left out entirely. Label values are escaped (`\\`, `\"`,
/// `\n`); help texts too (`\\`, `\n`). Metric and label names are the caller's constants:
/// debug builds assert they are valid (`[a-zA-Z_:][a-zA-Z0-9_:]*`; label names without `:`
/// and without a leading `__`) and that counters end in `_total`. The samples of one family
/// must differ in their labels.
///
/// # Examples
///
/// ```
/// use reactorium::{Histogram, TextWriter};
/// use std::time::Duration;
///
/// let latency = Histogram::new();
/// latency.record(Duration::from_millis(3));
///
/// let mut out = String::new();
/// let mut w = TextWriter::new(&mut out);
/// w.counter("lines_total", "Lines read.", [([("listen", "127.0.0.1:7000")], 12)]);
/// w.gauge("open_sessions", "Sessions open now.", [([("listen", "127.0.0.1:7000")], 2.0)]);
/// w.histogram("line_seconds", "Time per line.", [([("listen", "127.0.0.1:7000")], &latency.snapshot())]);
/// // A second listener of the same kind joins the family written already.
/// w.counter("lines_total", "Lines read.", [([("listen", "127.0.0.1:7001")], 5)]);
///
/// assert!(out.starts_with(
///     "# HELP lines_total Lines read.\n# TYPE lines_total counter\n\
///      lines_total{listen=\"127.0.0.1:7000\"} 12\n\
///      lines_total{listen=\"127.0.0.1:7001\"} 5\n# HELP open_sessions Sessions open now.\n"
/// ));
/// assert!(out.contains("line_seconds_count{listen=\"127.0.0.1:7000\"} 1\n"));
/// ```
pub struct TextWriter<'a> {
    out: &'a mut String,
    /// Per family written: its type, and where its text ends in `out` (to append samples to
    /// it when it is written again).
    families: HashMap<String, (&'static str, usize)>,
    /// The samples of a family written again, gathered before they go in at its end.
    scratch: String,
}

impl std::fmt::Debug for TextWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextWriter")
            .field("families", &self.families.len())
            .finish()
    }
}

/// The value of a sample, formatted as Prometheus reads it.
trait Sample: Copy {
    fn write_to(self, out: &mut String);
}

impl Sample for u64 {
    fn write_to(self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Sample for f64 {
    fn write_to(self, out: &mut String) {
        if self.is_nan() {
            out.push_str("NaN");
        } else if self.is_infinite() {
            out.push_str(if self > 0.0 { "+Inf" } else { "-Inf" });
        } else {
            let _ = write!(out, "{self}");
        }
    }
}

impl<'a> TextWriter<'a> {
    /// A writer appending to `out` (text already in it is left as it is).
    pub fn new(out: &'a mut String) -> TextWriter<'a> {
        TextWriter {
            out,
            families: HashMap::new(),
            scratch: String::new(),
        }
    }

    /// Writes a counter family, or appends samples to it. `name` must end in `_total`.
    pub fn counter<'l, L>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, u64)>,
    ) where
        L: AsRef<[(&'l str, &'l str)]>,
    {
        debug_assert!(
            name.ends_with("_total"),
            "counter `{name}` must end in _total"
        );
        self.scalar(name, help, "counter", samples);
    }

    /// Writes a gauge family, or appends samples to it.
    pub fn gauge<'l, L>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) where
        L: AsRef<[(&'l str, &'l str)]>,
    {
        self.scalar(name, help, "gauge", samples);
    }

    /// Writes a histogram family, or appends samples to it: per sample, its cumulative
    /// `_bucket{le="..."}` lines (bounds in seconds) ending in `le="+Inf"`, then `_sum`
    /// (seconds) and `_count`. The label `le` is reserved.
    pub fn histogram<'l, 'h, L>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, &'h HistogramSnapshot)>,
    ) where
        L: AsRef<[(&'l str, &'l str)]>,
    {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return;
        }
        let again = self.begin(name, help, "histogram");
        let out = if again {
            &mut self.scratch
        } else {
            &mut *self.out
        };
        let mut le = String::new();
        for (labels, h) in samples {
            let labels = labels.as_ref();
            debug_assert!(labels.iter().all(|(n, _)| *n != "le"), "`le` is reserved");
            for (bound, count) in &h.buckets {
                le.clear();
                bound.as_secs_f64().write_to(&mut le);
                line(out, name, "_bucket", labels, Some(&le), *count);
            }
            line(out, name, "_bucket", labels, Some("+Inf"), h.count);
            line(out, name, "_sum", labels, None, h.sum.as_secs_f64());
            line(out, name, "_count", labels, None, h.count);
        }
        self.end(name, again);
    }

    fn scalar<'l, L, V: Sample>(
        &mut self,
        name: &str,
        help: &str,
        kind: &'static str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) where
        L: AsRef<[(&'l str, &'l str)]>,
    {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return;
        }
        let again = self.begin(name, help, kind);
        let out = if again {
            &mut self.scratch
        } else {
            &mut *self.out
        };
        for (labels, value) in samples {
            line(out, name, "", labels.as_ref(), None, value);
        }
        self.end(name, again);
    }

    /// Starts a family: writes its header at the end of `out` when it is new; `true` when it
    /// was written before (its samples then gather in `scratch`).
    fn begin(&mut self, name: &str, help: &str, kind: &'static str) -> bool {
        debug_assert!(valid_name(name, true), "invalid metric name `{name}`");
        if let Some((was, _)) = self.families.get(name) {
            debug_assert_eq!(*was, kind, "metric family `{name}` written with two types");
            self.scratch.clear();
            return true;
        }
        let out = &mut *self.out;
        let _ = write!(out, "# HELP {name} ");
        for c in help.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        let _ = writeln!(out, "\n# TYPE {name} {kind}");
        self.families.insert(name.to_owned(), (kind, 0));
        false
    }

    /// Ends a family: records where a new one ends, or puts the samples gathered for one
    /// written before at its end (moving the families after it along).
    fn end(&mut self, name: &str, again: bool) {
        if !again {
            let end = self.out.len();
            if let Some(f) = self.families.get_mut(name) {
                f.1 = end;
            }
            return;
        }
        let Some(&(_, at)) = self.families.get(name) else {
            return;
        };
        self.out.insert_str(at, &self.scratch);
        let moved = self.scratch.len();
        for f in self.families.values_mut() {
            if f.1 >= at {
                f.1 += moved;
            }
        }
    }
}

/// One sample line: `name{labels} value`.
fn line<V: Sample>(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(&str, &str)],
    le: Option<&str>,
    value: V,
) {
    out.push_str(name);
    out.push_str(suffix);
    let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
    for (i, (label, value)) in all.enumerate() {
        debug_assert!(valid_name(label, false), "invalid label name `{label}`");
        out.push(if i == 0 { '{' } else { ',' });
        out.push_str(label);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
    if !labels.is_empty() || le.is_some() {
        out.push('}');
    }
    out.push(' ');
    value.write_to(out);
    out.push('\n');
}

fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names; label names have no `:` and no leading `__`.
fn valid_name(name: &str, metric: bool) -> bool {
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (metric && c == ':');
    let ok_rest = |c: char| ok_first(c) || c.is_ascii_digit();
    let mut chars = name.chars();
    chars.next().is_some_and(ok_first) && chars.all(ok_rest) && (metric || !name.starts_with("__"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Histogram;
    use std::time::Duration;

    #[test]
    fn writes_each_family_once_with_help_and_type_first() {
        let mut out = String::new();
        let mut w = TextWriter::new(&mut out);
        w.counter(
            "x_total",
            "Things.\nMore \\ help.",
            [([("a", "1")], 3), ([("a", "2")], 4)],
        );
        w.gauge("depth", "Depth.", [([] as [(&str, &str); 0], 1.5)]);
        w.gauge(
            "nothing",
            "Never written.",
            Vec::<([(&str, &str); 0], f64)>::new(),
        );
        assert_eq!(
            out,
            "# HELP x_total Things.\\nMore \\\\ help.\n# TYPE x_total counter\n\
             x_total{a=\"1\"} 3\nx_total{a=\"2\"} 4\n\
             # HELP depth Depth.\n# TYPE depth gauge\ndepth 1.5\n"
        );
    }

    #[test]
    fn escapes_label_values() {
        let mut out = String::new();
        TextWriter::new(&mut out).gauge("g", "G.", [([("path", "C:\\x \"y\"\nz")], f64::INFINITY)]);
        assert!(
            out.ends_with("g{path=\"C:\\\\x \\\"y\\\"\\nz\"} +Inf\n"),
            "{out}"
        );
    }

    #[test]
    fn histograms_are_cumulative_and_end_in_inf() {
        let h = Histogram::with_bounds(&[Duration::from_micros(1), Duration::from_millis(250)])
            .unwrap();
        h.record(Duration::from_micros(1));
        h.record(Duration::from_millis(100));
        h.record(Duration::from_secs(1));
        let mut out = String::new();
        TextWriter::new(&mut out).histogram("lat_seconds", "L.", [([("c", "x")], &h.snapshot())]);
        assert_eq!(
            out,
            "# HELP lat_seconds L.\n# TYPE lat_seconds histogram\n\
             lat_seconds_bucket{c=\"x\",le=\"0.000001\"} 1\n\
             lat_seconds_bucket{c=\"x\",le=\"0.25\"} 2\n\
             lat_seconds_bucket{c=\"x\",le=\"+Inf\"} 3\n\
             lat_seconds_sum{c=\"x\"} 1.100001\n\
             lat_seconds_count{c=\"x\"} 3\n"
        );
    }

    #[test]
    fn a_family_written_again_gets_the_new_samples_at_its_end() {
        let mut out = String::from("# before\n");
        let mut w = TextWriter::new(&mut out);
        w.counter("a_total", "A.", [([("l", "1")], 1)]);
        w.gauge("b", "B.", [([("l", "1")], 2.0)]);
        w.counter("a_total", "A again.", [([("l", "2")], 3)]);
        w.gauge("b", "B.", [([("l", "2")], 4.0)]);
        w.counter("a_total", "A.", [([("l", "3")], 5)]);
        assert_eq!(
            out,
            "# before\n\
             # HELP a_total A.\n# TYPE a_total counter\n\
             a_total{l=\"1\"} 1\na_total{l=\"2\"} 3\na_total{l=\"3\"} 5\n\
             # HELP b B.\n# TYPE b gauge\nb{l=\"1\"} 2\nb{l=\"2\"} 4\n"
        );
    }

    #[test]
    #[should_panic(expected = "two types")]
    #[cfg(debug_assertions)]
    fn a_family_written_with_two_types_is_caught() {
        let mut out = String::new();
        let mut w = TextWriter::new(&mut out);
        w.gauge("g", "G.", [([] as [(&str, &str); 0], 1.0)]);
        w.counter("g_total", "G.", [([] as [(&str, &str); 0], 2)]);
        w.gauge("g_total", "G.", [([] as [(&str, &str); 0], 2.0)]);
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("reactorium_mailbox_depth", true));
        assert!(valid_name("a:b", true));
        assert!(!valid_name("a:b", false));
        assert!(!valid_name("1abc", true));
        assert!(!valid_name("", true));
        assert!(!valid_name("__x", false));
    }
}

//! The Prometheus text exposition format, version 0.0.4: what a `GET /metrics` answers.
//!
//! One call writes one whole metric family (its `# HELP`, its `# TYPE`, then every sample), so
//! the samples of a family are contiguous by construction, as Prometheus requires; writing
//! the same family twice is a bug, caught by a debug assertion.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::HistogramSnapshot;

/// Writes metric families in the Prometheus text format (0.0.4) into a `String`.
///
/// The samples of each family are given as `(labels, value)` pairs, `labels` being any
/// `AsRef<[(name, value)]>` (an array, a slice, a `Vec`), so a caller can write one sample per
/// component with no intermediate collection, as `RuntimeStats::write_prometheus` does; the
/// tests below show the exact output. A front-end adds its own families (requests by route and
/// status, a latency [`Histogram`](super::Histogram)'s snapshot, open connections) with the
/// same three calls, into the same `String`, under its own names.
///
/// A family with no samples is left out entirely. Label values are escaped (`\\`, `\"`,
/// `\n`); help texts too (`\\`, `\n`). Metric and label names are the caller's constants:
/// debug builds assert they are valid and that counters end in `_total`.
pub(crate) struct TextWriter<'a> {
    out: &'a mut String,
    written: HashSet<String>,
}

impl std::fmt::Debug for TextWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextWriter")
            .field("families", &self.written.len())
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
    /// A writer appending to `out`.
    pub(crate) fn new(out: &'a mut String) -> TextWriter<'a> {
        TextWriter {
            out,
            written: HashSet::new(),
        }
    }

    /// Writes a counter family. `name` must end in `_total`.
    pub(crate) fn counter<'l, L>(
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

    /// Writes a gauge family.
    pub(crate) fn gauge<'l, L>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (L, f64)>,
    ) where
        L: AsRef<[(&'l str, &'l str)]>,
    {
        self.scalar(name, help, "gauge", samples);
    }

    /// Writes a histogram family: per sample, its cumulative `_bucket{le="..."}` lines (bounds
    /// in seconds) ending in `le="+Inf"`, then `_sum` (seconds) and `_count`.
    pub(crate) fn histogram<'l, 'h, L>(
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
        self.header(name, help, "histogram");
        let mut le = String::new();
        for (labels, h) in samples {
            let labels = labels.as_ref();
            debug_assert!(labels.iter().all(|(n, _)| *n != "le"), "`le` is reserved");
            for (bound, count) in &h.buckets {
                le.clear();
                bound.as_secs_f64().write_to(&mut le);
                self.line(name, "_bucket", labels, Some(&le), *count);
            }
            self.line(name, "_bucket", labels, Some("+Inf"), h.count);
            self.line(name, "_sum", labels, None, h.sum.as_secs_f64());
            self.line(name, "_count", labels, None, h.count);
        }
    }

    fn scalar<'l, L, V: Sample>(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        samples: impl IntoIterator<Item = (L, V)>,
    ) where
        L: AsRef<[(&'l str, &'l str)]>,
    {
        let mut samples = samples.into_iter().peekable();
        if samples.peek().is_none() {
            return;
        }
        self.header(name, help, kind);
        for (labels, value) in samples {
            self.line(name, "", labels.as_ref(), None, value);
        }
    }

    fn header(&mut self, name: &str, help: &str, kind: &str) {
        debug_assert!(valid_name(name, true), "invalid metric name `{name}`");
        let first = self.written.insert(name.to_owned());
        debug_assert!(first, "metric family `{name}` written twice");
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
    }

    fn line<V: Sample>(
        &mut self,
        name: &str,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: V,
    ) {
        let out = &mut *self.out;
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
    #[should_panic(expected = "written twice")]
    #[cfg(debug_assertions)]
    fn a_family_written_twice_is_caught() {
        let mut out = String::new();
        let mut w = TextWriter::new(&mut out);
        w.gauge("g", "G.", [([] as [(&str, &str); 0], 1.0)]);
        w.gauge("g", "G.", [([] as [(&str, &str); 0], 2.0)]);
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

//! Topics (concrete subjects) and patterns (subjects with NATS-style wildcards).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::error::Error;
use super::intern::{intern, Str};

/// A concrete, dot-separated topic such as `orders.created`.
///
/// Cloning a `Topic` never copies the string: a topic that is subscribed exactly is interned
/// by the bus (a pointer copy), any other is reference counted. A topic has at least one segment, no empty segment, no whitespace, and no wildcard
/// segment (`*` or `>`): those belong to [`Pattern`].
///
/// # Examples
///
/// ```
/// use reactorium::Topic;
///
/// let t = Topic::new("orders.created")?;
/// assert_eq!(t.as_str(), "orders.created");
/// assert!(Topic::new("orders.*").is_err());
/// # Ok::<(), reactorium::Error>(())
/// ```
#[derive(Clone)]
pub struct Topic(Str);

impl Topic {
    /// Validates `text` as a concrete topic.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] when `text` is empty, has an empty segment (`a..b`, `.a`),
    /// contains whitespace, or has a wildcard segment.
    pub fn new(text: impl AsRef<str>) -> Result<Topic, Error> {
        let text = text.as_ref();
        Topic::parse(text).map_err(|reason| invalid(text, reason))
    }

    /// As [`new`](Topic::new), with only the reason on failure (a send builds its own error,
    /// which hands the message back).
    pub(crate) fn parse(text: &str) -> Result<Topic, &'static str> {
        check(text, false)?;
        Ok(Topic(Str::shared(text)))
    }

    /// The interned topic for `text`, which the caller has validated.
    pub(crate) fn interned(text: &str) -> Topic {
        Topic(intern(text))
    }

    /// The topic as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// A topic that has not been set: the state of a [`Message`](crate::Message) before it is
    /// sent. Its text is empty, and it costs nothing to make or drop.
    pub(crate) fn unset() -> Topic {
        Topic(Str::EMPTY)
    }
}

impl PartialEq for Topic {
    fn eq(&self, other: &Topic) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Topic {}

impl Hash for Topic {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for Topic {
    fn partial_cmp(&self, other: &Topic) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Topic {
    fn cmp(&self, other: &Topic) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// A subscription pattern: `orders.created` (exact), `orders.*` (exactly one segment in that
/// place), `orders.>` (one or more trailing segments). The syntax is NATS's, so patterns map
/// 1:1 onto NATS subjects.
///
/// # Examples
///
/// ```
/// use reactorium::Pattern;
///
/// let p = Pattern::new("orders.*.paid")?;
/// assert!(p.matches("orders.42.paid"));
/// assert!(!p.matches("orders.42.paid.late"));
/// assert!(Pattern::new("orders.>")?.matches("orders.42.paid.late"));
/// assert!(!Pattern::new("orders.>")?.matches("orders"));
/// # Ok::<(), reactorium::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern {
    text: Arc<str>,
    wildcard: bool,
}

impl Pattern {
    /// Validates `text` as a pattern.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] when `text` is empty, has an empty segment, contains whitespace,
    /// mixes a wildcard with other characters in one segment (`ord*`), or has `>` anywhere but
    /// as the last segment.
    pub fn new(text: impl AsRef<str>) -> Result<Pattern, Error> {
        let text = text.as_ref();
        let wildcard = check(text, true).map_err(|reason| invalid(text, reason))?;
        Ok(Pattern {
            text: Arc::from(text),
            wildcard,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `true` when the pattern has no wildcard, so it matches exactly one topic.
    pub fn is_exact(&self) -> bool {
        !self.wildcard
    }

    /// Whether the concrete topic `topic` matches this pattern.
    pub fn matches(&self, topic: &str) -> bool {
        if !self.wildcard {
            return *self.text == *topic;
        }
        let mut want = self.text.split('.');
        let mut have = topic.split('.');
        loop {
            match (want.next(), have.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(w), Some(h)) if w == h => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text, f)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn invalid(text: &str, reason: &'static str) -> Error {
    Error::InvalidTopic {
        topic: text.to_owned(),
        reason,
    }
}

/// Checks the shared syntax; returns whether a wildcard was seen, or what is wrong.
fn check(text: &str, allow_wildcards: bool) -> Result<bool, &'static str> {
    if text.is_empty() {
        return Err("empty");
    }
    if text.chars().any(char::is_whitespace) {
        return Err("contains whitespace");
    }
    let mut wildcard = false;
    let mut segments = text.split('.').peekable();
    while let Some(seg) = segments.next() {
        match seg {
            "" => return Err("empty segment"),
            "*" | ">" if !allow_wildcards => return Err("wildcards are only allowed in patterns"),
            ">" if segments.peek().is_some() => return Err("`>` must be the last segment"),
            "*" | ">" => wildcard = true,
            s if s.contains(['*', '>']) => {
                return Err("a wildcard must be a whole segment");
            }
            _ => {}
        }
    }
    Ok(wildcard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_nats() {
        let cases = [
            ("a.b", "a.b", true),
            ("a.b", "a.c", false),
            ("a.*", "a.b", true),
            ("a.*", "a.b.c", false),
            ("a.*", "a", false),
            ("*.b", "a.b", true),
            ("a.>", "a.b", true),
            ("a.>", "a.b.c", true),
            ("a.>", "a", false),
            (">", "a", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.b.d", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(Pattern::new(p).unwrap().matches(t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn bad_syntax_is_rejected_with_reason() {
        for bad in ["", "a..b", ".a", "a.", "a b", "a.>.b", "a.b*"] {
            assert!(
                matches!(Pattern::new(bad), Err(Error::InvalidTopic { .. })),
                "{bad:?}"
            );
        }
        assert!(Topic::new("a.*").is_err());
        assert!(Topic::new("$sys.dead_letters").is_ok());
    }
}

//! `Name`: the name of a component, a reactor, an inbox or a worker pool.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The name of a component, a reactor, an inbox or a worker pool.
///
/// Cheap to clone (one reference count), and used as a string: it dereferences to `str`,
/// compares with `str`, `&str` and `String`, and looks up a map keyed by `Name` with a
/// `&str` (`Borrow<str>`). Its representation is private.
///
/// # Examples
///
/// ```
/// use reactorium::Name;
/// use std::collections::HashMap;
///
/// let name = Name::from("orders");
/// assert_eq!(name, "orders");
/// assert_eq!(&*name, "orders");
/// assert_eq!(name.len(), 6); // any `str` method
/// assert_eq!(format!("{name} / {name:?}"), "orders / \"orders\"");
///
/// let mut handled = HashMap::new();
/// handled.insert(name.clone(), 3);
/// assert_eq!(handled.get("orders"), Some(&3));
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Arc<str>);

impl Name {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

// `Hash`, `Eq` and `Ord` are those of the `str`, as `Borrow` requires.
impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name(Arc::from(s))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name(Arc::from(s))
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Name {
        Name(Arc::from(s.as_str()))
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Name {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Name> for str {
    fn eq(&self, other: &Name) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Name> for &str {
    fn eq(&self, other: &Name) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Name> for String {
    fn eq(&self, other: &Name) -> bool {
        **self == *other.0
    }
}

#[cfg(test)]
mod tests {
    use super::Name;
    use std::collections::{BTreeSet, HashMap};

    #[test]
    fn a_name_is_used_as_a_string() {
        let n = Name::from("alpha");
        assert_eq!(n, "alpha");
        assert_eq!("alpha", n);
        assert_eq!(n, String::from("alpha"));
        assert_eq!(String::from("alpha"), n);
        assert_eq!(n, *"alpha");
        assert_eq!(n, Name::from(String::from("alpha")));
        assert_ne!(n, "beta");
        assert_eq!(n.to_string(), "alpha");
        assert_eq!(format!("{n:?}"), "\"alpha\"");
        assert_eq!(format!("{:?}", Some(n.clone())), "Some(\"alpha\")");
        let mut by_name = HashMap::new();
        by_name.insert(n.clone(), 1);
        assert_eq!(by_name.get("alpha"), Some(&1));
        let sorted: BTreeSet<Name> = ["b", "a", "c"].into_iter().map(Name::from).collect();
        let sorted: Vec<&str> = sorted.iter().map(Name::as_str).collect();
        assert_eq!(sorted, ["a", "b", "c"]);
    }
}

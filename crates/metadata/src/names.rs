//! A page of names (tags or repository names) as one string.

use serde::ser::{Serialize, SerializeSeq, Serializer};

/// A page of names in lexical order, kept as one string joined with newlines — which neither
/// tags nor repository names can contain — so that a listing of a thousand names is one
/// allocation, not a thousand, from the database's row to the response's JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    joined: String,
    count: usize,
}

impl Names {
    /// The names of `joined` (names joined with newlines; `None` or empty for none), put in
    /// lexical order if they are not: a database's ordered subquery feeding an aggregate keeps
    /// its order in practice, but no database promises it, and checking costs one comparison
    /// per name where sorting in the database costs a temporary table per query.
    pub fn from_joined(joined: Option<String>) -> Names {
        let joined = joined.unwrap_or_default();
        if joined.is_empty() {
            return Names::default();
        }
        let mut count = 1;
        let mut ordered = true;
        let mut parts = joined.split('\n');
        let mut previous = parts.next().unwrap_or_default();
        for name in parts {
            count += 1;
            ordered &= previous < name;
            previous = name;
        }
        if ordered {
            return Names { joined, count };
        }
        let mut sorted: Vec<&str> = joined.split('\n').collect();
        sorted.sort_unstable();
        sorted.into_iter().collect()
    }

    /// Appends `name`, which must sort after the names already here.
    pub fn push(&mut self, name: &str) {
        debug_assert!(!name.contains('\n'), "a name with a newline: {name:?}");
        debug_assert!(
            self.last().is_none_or(|last| last < name),
            "{name:?} out of order"
        );
        if self.count > 0 {
            self.joined.push('\n');
        }
        self.joined.push_str(name);
        self.count += 1;
    }

    /// The names, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &str> {
        // No names is an empty string, which `split` would answer with one empty name.
        (self.count > 0)
            .then(|| self.joined.split('\n'))
            .into_iter()
            .flatten()
    }

    /// How many names there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The last name.
    pub fn last(&self) -> Option<&str> {
        self.iter().next_back()
    }

    /// Keeps the first `n` names.
    pub fn truncate(&mut self, n: usize) {
        if n >= self.count {
            return;
        }
        let end = if n == 0 {
            0
        } else {
            self.joined
                .match_indices('\n')
                .nth(n - 1)
                .map_or(self.joined.len(), |(at, _)| at)
        };
        self.joined.truncate(end);
        self.count = n;
    }

    /// The names as owned strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Names {
    fn from_iter<I: IntoIterator<Item = S>>(names: I) -> Names {
        let mut all = Names::default();
        for name in names {
            all.push(name.as_ref());
        }
        all
    }
}

/// A JSON array of strings.
impl Serialize for Names {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.count))?;
        for name in self.iter() {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_in_order_and_can_be_cut() {
        let mut names = Names::from_joined(Some("a\nb\nc".to_owned()));
        assert_eq!(names.to_vec(), ["a", "b", "c"]);
        assert_eq!((names.len(), names.last()), (3, Some("c")));
        names.truncate(5);
        assert_eq!(names.len(), 3);
        names.truncate(2);
        assert_eq!(
            (names.to_vec(), names.last()),
            (vec!["a".into(), "b".into()], Some("b"))
        );
        names.push("z");
        assert_eq!(names.to_vec(), ["a", "b", "z"]);
        names.truncate(0);
        assert!(names.is_empty());
        assert_eq!(names.iter().count(), 0);
        assert_eq!(names.last(), None);
        names.push("x");
        assert_eq!(names.to_vec(), ["x"]);
    }

    #[test]
    fn none_and_empty_are_no_names() {
        assert!(Names::from_joined(None).is_empty());
        assert!(Names::from_joined(Some(String::new())).is_empty());
        assert_eq!(Names::from_joined(None), Names::default());
    }

    #[test]
    fn names_out_of_order_are_sorted() {
        let names = Names::from_joined(Some("b\na\nc".to_owned()));
        assert_eq!(names.to_vec(), ["a", "b", "c"]);
        assert_eq!(names, ["a", "b", "c"].into_iter().collect());
    }

    #[test]
    fn names_serialise_as_a_json_array() {
        let names: Names = ["a/b", "c\"d"].into_iter().collect();
        assert_eq!(serde_json::to_string(&names).unwrap(), r#"["a/b","c\"d"]"#);
        assert_eq!(serde_json::to_string(&Names::default()).unwrap(), "[]");
    }
}

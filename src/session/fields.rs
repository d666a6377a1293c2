//! `Fields`: a session's fields, as every cached session holds them.

use bytes::Bytes;

/// A session's fields, sorted by name, in an exactly sized boxed slice with
/// boxed names. Sessions hold a handful of fields, and a cached session
/// should cost little more than its bytes: a `BTreeMap` leaf alone takes
/// about 600 bytes, and a `Vec` and `String`s 8 bytes more each.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fields(Box<[(Box<str>, Bytes)]>);

impl Fields {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(n, _)| (**n).cmp(name))
    }

    pub fn get(&self, name: &str) -> Option<&Bytes> {
        let i = self.find(name).ok()?;
        self.0.get(i).map(|(_, v)| v)
    }

    /// Rebuilds the slice: for the embedded store's writes, not hot paths.
    fn edit(&mut self, f: impl FnOnce(&mut Vec<(Box<str>, Bytes)>)) {
        let mut v = std::mem::take(&mut self.0).into_vec();
        f(&mut v);
        self.0 = v.into_boxed_slice();
    }

    pub fn insert(&mut self, name: String, value: Bytes) {
        match self.find(&name) {
            Ok(i) => {
                if let Some(slot) = self.0.get_mut(i) {
                    slot.1 = value;
                }
            }
            Err(i) => self.edit(|v| v.insert(i, (name.into(), value))),
        }
    }

    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            self.edit(|v| {
                v.remove(i);
            });
        }
    }

    pub fn clear(&mut self) {
        self.0 = Box::default();
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.0.iter().map(|(n, v)| (&**n, v))
    }

    /// Names and values together, as counted against `max_session_bytes`.
    pub fn bytes(&self) -> u64 {
        self.0.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum()
    }
}

impl FromIterator<(String, Bytes)> for Fields {
    /// Sorts by name; of two equal names the later one wins.
    fn from_iter<I: IntoIterator<Item = (String, Bytes)>>(iter: I) -> Fields {
        let mut v: Vec<(Box<str>, Bytes)> = iter
            .into_iter()
            .map(|(n, v)| (n.into_boxed_str(), v))
            .collect();
        v.reverse();
        v.sort_by(|a, b| a.0.cmp(&b.0)); // stable: the later one comes first
        v.dedup_by(|later, earlier| later.0 == earlier.0);
        Fields(v.into_boxed_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_stay_sorted_and_unique() {
        let f: Fields = [("b", "1"), ("a", "2"), ("b", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Bytes::from(v)))
            .collect();
        assert_eq!(f.len(), 2);
        assert_eq!(f.get("b").unwrap(), "3", "the later value wins");
        let mut f = f;
        f.insert("c".into(), Bytes::from("4"));
        f.insert("a".into(), Bytes::from("5"));
        f.remove("b");
        let all: Vec<_> = f.iter().map(|(k, v)| (k, v.clone())).collect();
        assert_eq!(all, [("a", Bytes::from("5")), ("c", Bytes::from("4"))]);
        assert_eq!(f.bytes(), 4);
    }
}

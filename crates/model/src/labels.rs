//! Label sets: sorted by name, names unique, empty values dropped (Prometheus semantics:
//! a label with an empty value is the same as no label).

use std::fmt;

/// The reserved label that carries the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Whether a label is the metric name or one of the labels describing the metric
/// (`__type__`, `__unit__`), which are dropped together.
pub fn describes_metric(name: &str) -> bool {
    matches!(name, METRIC_NAME | "__type__" | "__unit__")
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A normalised label set. Construction sorts by name, keeps the last value of a repeated
/// name, and drops empty values, so two equal sets always compare and hash equal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<Label>);

impl Labels {
    pub fn empty() -> Self {
        Labels(Vec::new())
    }

    /// Builds from any pairs; sorts, de-duplicates (last wins) and drops empty values.
    pub fn from_pairs<I, N, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        let mut v: Vec<Label> = pairs
            .into_iter()
            .map(|(n, val)| Label::new(n, val))
            .collect();
        Self::normalise(&mut v);
        Labels(v)
    }

    /// Wraps labels already known to be sorted, unique and non-empty (e.g. read back from
    /// storage). Debug builds check the claim.
    pub fn from_sorted_unchecked(v: Vec<Label>) -> Self {
        debug_assert!(v.windows(2).all(|w| w[0].name < w[1].name));
        Labels(v)
    }

    fn normalise(v: &mut Vec<Label>) {
        // Stable sort keeps insertion order among equal names so "last wins" is well defined.
        v.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Label> = Vec::with_capacity(v.len());
        for l in v.drain(..) {
            match out.last_mut() {
                Some(last) if last.name == l.name => *last = l,
                _ => out.push(l),
            }
        }
        out.retain(|l| !l.value.is_empty());
        *v = out;
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    pub fn builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            labels: self.0.clone(),
        }
    }

    /// A copy without the metric name (what most PromQL functions return), nor the
    /// `__type__` and `__unit__` labels that describe the metric (Prometheus 3's type and
    /// unit labels go with the name).
    pub fn without_metric_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| !describes_metric(&l.name))
                .cloned()
                .collect(),
        )
    }

    /// A stable 64-bit FNV-1a hash of the set; stable across builds and platforms, so it may
    /// be stored on disk.
    pub fn stable_hash(&self) -> u64 {
        let mut h = crate::hash::Fnv1a::new();
        for l in &self.0 {
            h.update(l.name.as_bytes());
            h.update(&[0xff]);
            h.update(l.value.as_bytes());
            h.update(&[0xfe]);
        }
        h.finish()
    }

    /// Prometheus's validity rule for stored series: label names match
    /// `[a-zA-Z_][a-zA-Z0-9_]*` and the metric name, when present, `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    pub fn validate(&self) -> Result<(), String> {
        for l in &self.0 {
            if !is_valid_label_name(&l.name) {
                return Err(format!("invalid label name {:?}", l.name));
            }
            if l.name == METRIC_NAME && !is_valid_metric_name(&l.value) {
                return Err(format!("invalid metric name {:?}", l.value));
            }
        }
        Ok(())
    }
}

/// Byte classes of the name rules: every ingested series' names are checked (remote write
/// checks each label of every request), so one table lookup per byte instead of decoding
/// chars and testing ranges.
const NAME_START: u8 = 1;
const NAME_REST: u8 = 2;
const METRIC_START: u8 = 4;
const METRIC_REST: u8 = 8;

const NAME_CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        let alpha = c.is_ascii_alphabetic() || c == b'_';
        let digit = c.is_ascii_digit();
        let mut k = 0;
        if alpha {
            k |= NAME_START | NAME_REST | METRIC_START | METRIC_REST;
        }
        if digit {
            k |= NAME_REST | METRIC_REST;
        }
        if c == b':' {
            k |= METRIC_START | METRIC_REST;
        }
        t[b] = k;
        b += 1;
    }
    t
};

#[inline]
fn matches_name_rule(s: &str, start: u8, rest: u8) -> bool {
    match s.as_bytes().split_first() {
        Some((first, tail)) => {
            NAME_CLASSES[usize::from(*first)] & start != 0
                && tail
                    .iter()
                    .all(|b| NAME_CLASSES[usize::from(*b)] & rest != 0)
        }
        None => false,
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`.
#[inline]
pub fn is_valid_label_name(s: &str) -> bool {
    matches_name_rule(s, NAME_START, NAME_REST)
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
#[inline]
pub fn is_valid_metric_name(s: &str) -> bool {
    matches_name_rule(s, METRIC_START, METRIC_REST)
}

impl fmt::Display for Labels {
    /// Prometheus's notation: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.metric_name() {
            f.write_str(n)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Edits a label set in place and normalises once at the end.
#[derive(Clone, Debug, Default)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or, with an empty value, removes) a label.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) -> &mut Self {
        let name = name.into();
        let value = value.into();
        self.labels.retain(|l| l.name != name);
        if !value.is_empty() {
            self.labels.push(Label { name, value });
        }
        self
    }

    pub fn del(&mut self, name: &str) -> &mut Self {
        self.labels.retain(|l| l.name != name);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }

    pub fn retain(&mut self, f: impl FnMut(&Label) -> bool) -> &mut Self {
        self.labels.retain(f);
        self
    }

    pub fn build(&self) -> Labels {
        let mut v = self.labels.clone();
        Labels::normalise(&mut v);
        Labels(v)
    }
}

/// Appends a label value as the text exposition format quotes it (backslash, double quote
/// and newline escaped); every `/metrics` renderer shares this one rule.
pub fn push_escaped_label_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// [`push_escaped_label_value`] into a new string.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    push_escaped_label_value(&mut out, v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte table agrees with the rules spelled out char by char, for every char that
    /// may matter (ASCII, and multi-byte chars whose bytes are all above 0x7f).
    #[test]
    fn name_rules_match_the_regexes() {
        fn label_rule(s: &str) -> bool {
            let mut c = s.chars();
            matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_')
                && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
        }
        fn metric_rule(s: &str) -> bool {
            let mut c = s.chars();
            matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_' || x == ':')
                && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
        }
        let chars: Vec<char> = (0u8..128)
            .map(char::from)
            .chain(['é', 'ß', '€', '😀'])
            .collect();
        let mut cases = vec![String::new()];
        for a in &chars {
            cases.push(a.to_string());
            for b in ['a', '0', '_', ':', '-', 'é'] {
                cases.push(format!("{a}{b}"));
                cases.push(format!("{b}{a}"));
            }
        }
        for s in &cases {
            assert_eq!(is_valid_label_name(s), label_rule(s), "{s:?}");
            assert_eq!(is_valid_metric_name(s), metric_rule(s), "{s:?}");
        }
        assert!(is_valid_label_name("__name__") && !is_valid_label_name("a:b"));
        assert!(is_valid_metric_name("a:b") && !is_valid_metric_name("9a"));
    }

    #[test]
    fn normalises_order_duplicates_and_empty_values() {
        let l = Labels::from_pairs([("b", "1"), ("a", "2"), ("b", "3"), ("c", "")]);
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("a"), Some("2"));
        assert_eq!(l.get("b"), Some("3"));
        assert_eq!(l.get("c"), None);
        assert_eq!(
            l.stable_hash(),
            Labels::from_pairs([("a", "2"), ("b", "3")]).stable_hash()
        );
    }

    #[test]
    fn stable_hash_is_pinned() {
        // The value may be on disk: it must never change.
        let l = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
        assert_eq!(l.stable_hash(), 0xea0e_0ae0_a889_0532);
    }

    #[test]
    fn displays_like_prometheus() {
        let l = Labels::from_pairs([("__name__", "up"), ("job", "x"), ("instance", "h:1")]);
        assert_eq!(l.to_string(), r#"up{instance="h:1", job="x"}"#);
    }

    #[test]
    fn validates_names() {
        assert!(Labels::from_pairs([("__name__", "a:b_c")])
            .validate()
            .is_ok());
        assert!(Labels::from_pairs([("__name__", "1a")]).validate().is_err());
        assert!(Labels::from_pairs([("a-b", "x")]).validate().is_err());
    }
}

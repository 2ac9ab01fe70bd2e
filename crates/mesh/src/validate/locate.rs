//! YAML paths (`spec.http[0].route[1]`) and the file line they sit on.
//!
//! serde_yaml_ng values keep no positions, so lines are found by walking the block-style text by
//! indentation from the object's first line. Flow style (`[a, b]`, `{k: v}`) and JSON
//! files are only walked as far as they look like block YAML; past that the last line found
//! (at worst the object's own line) is used, which is never wrong, only less precise.

use std::fmt;

/// One step of a YAML path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the object's root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct YamlPath(pub Vec<Seg>);

impl YamlPath {
    pub fn root() -> Self {
        YamlPath(Vec::new())
    }
    /// This path plus a key.
    pub fn k(&self, key: &str) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Key(key.to_string()));
        p
    }
    /// This path plus an index.
    pub fn i(&self, index: usize) -> Self {
        let mut p = self.clone();
        p.0.push(Seg::Index(index));
        p
    }
    /// Parses `spec.http[0].route` (keys with dots as `["a.b"]`); for tests and callers.
    pub fn parse(s: &str) -> Self {
        let mut out = Vec::new();
        let mut rest = s;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("[\"") {
                let end = r.find("\"]").unwrap_or(r.len());
                out.push(Seg::Key(r[..end].to_string()));
                rest = r.get(end + 2..).unwrap_or("");
            } else if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').unwrap_or(r.len());
                out.push(Seg::Index(r[..end].parse().unwrap_or(0)));
                rest = r.get(end + 1..).unwrap_or("");
            } else if let Some(r) = rest.strip_prefix('.') {
                rest = r;
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                out.push(Seg::Key(rest[..end].to_string()));
                rest = &rest[end..];
            }
        }
        YamlPath(out)
    }
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(i) => write!(f, "[{i}]")?,
                Seg::Key(k) if k.contains(['.', '[', ']', ' ']) => write!(f, "[\"{k}\"]")?,
                Seg::Key(k) if n == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
            }
        }
        Ok(())
    }
}

/// A structural token of one line: a sequence dash or a mapping key (or a bare scalar).
#[derive(Debug)]
struct Tok<'a> {
    line: usize,
    indent: usize,
    dash: bool,
    key: Option<&'a str>,
}

/// Tokens of `text` from 1-based `start_line` to the end of that YAML document.
fn tokens(text: &str, start_line: usize) -> Vec<Tok<'_>> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate().skip(start_line.saturating_sub(1)) {
        let line = i + 1;
        let t = raw.trim_end();
        if line > start_line && crate::load::is_document_marker(t) {
            break;
        }
        let body = t.trim_start();
        if body.is_empty() || body.starts_with('#') {
            continue;
        }
        let mut indent = t.len() - body.len();
        let mut rest = body;
        while rest == "-" || rest.starts_with("- ") {
            out.push(Tok {
                line,
                indent,
                dash: true,
                key: None,
            });
            let after = rest[1..].trim_start();
            indent += rest.len() - after.len();
            rest = after;
            if rest.is_empty() {
                break;
            }
        }
        if !rest.is_empty() {
            out.push(Tok {
                line,
                indent,
                dash: false,
                key: key_of(rest),
            });
        }
    }
    out
}

/// The key of `key: value` / `"key": value`, if the line is a mapping entry.
fn key_of(s: &str) -> Option<&str> {
    let (k, after) = if let Some(q) = s.strip_prefix('"') {
        let end = q.find('"')?;
        (&q[..end], &q[end + 1..])
    } else if let Some(q) = s.strip_prefix('\'') {
        let end = q.find('\'')?;
        (&q[..end], &q[end + 1..])
    } else {
        let end = s
            .find(": ")
            .or_else(|| s.ends_with(':').then(|| s.len() - 1))?;
        (&s[..end], &s[end..])
    };
    let after = after.trim_start();
    (after.starts_with(':')).then_some(k.trim())
}

/// The 1-based line of `path` in the object that starts at `start_line` of `text`
/// (`start_line` itself when the path cannot be followed).
pub fn line_of(text: &str, start_line: usize, path: &YamlPath) -> usize {
    let toks = tokens(text, start_line);
    // The object itself: skip a leading list-item dash (`- apiVersion: …` in a List).
    let mut lo = toks.iter().take_while(|t| t.dash).count();
    let Some(first) = toks.get(lo) else {
        return start_line;
    };
    let top = first.indent;
    let mut hi = toks[lo..]
        .iter()
        .position(|t| t.indent < top)
        .map_or(toks.len(), |p| lo + p);
    let mut line = start_line;
    for seg in &path.0 {
        let Some(region) = toks.get(lo..hi).filter(|r| !r.is_empty()) else {
            break;
        };
        let child = region[0].indent;
        let found = match seg {
            Seg::Key(k) => region
                .iter()
                .position(|t| !t.dash && t.indent == child && t.key == Some(k.as_str())),
            Seg::Index(n) => {
                if !region[0].dash {
                    break;
                }
                region
                    .iter()
                    .enumerate()
                    .filter(|(_, t)| t.dash && t.indent == child)
                    .nth(*n)
                    .map(|(p, _)| p)
            }
        };
        let Some(p) = found else { break };
        let at = lo + p;
        line = toks[at].line;
        // The value's tokens: deeper than this one, or (for a key) a sequence whose dashes
        // sit at the key's own indentation, as kubectl writes them.
        let base = toks[at].indent;
        let is_key = matches!(seg, Seg::Key(_));
        let mut end = at + 1;
        while end < hi {
            let t = &toks[end];
            let inside = t.indent > base || (is_key && t.dash && t.indent == base);
            if !inside {
                break;
            }
            end += 1;
        }
        // A dash's own item continues on the same line with a deeper token.
        lo = at + 1;
        hi = end;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const Y: &str = "\
# c
apiVersion: x
kind: VirtualService
spec:
  hosts: [a]
  http:
  - match:
    - uri:
        regex: a
    route:
    - destination:
        host: a
    - destination:
        host: b
        subset: v2
      weight: 10
---
kind: Other
";

    #[test]
    fn walks_block_yaml() {
        let l = |p: &str| line_of(Y, 2, &YamlPath::parse(p));
        assert_eq!(l("spec.http[0].match[0].uri.regex"), 9);
        assert_eq!(l("spec.http[0].route[1].destination.subset"), 15);
        assert_eq!(l("spec.http[0].route[1].weight"), 16);
        assert_eq!(l("spec.http[0].route[0]"), 11);
        assert_eq!(l("spec.hosts"), 5);
        assert_eq!(l("spec.missing.x"), 4);
        assert_eq!(l("kind"), 3);
    }

    #[test]
    fn paths_round_trip() {
        let p = YamlPath::root()
            .k("spec")
            .k("labels")
            .k("app.kubernetes.io/name")
            .i(2);
        assert_eq!(p.to_string(), "spec.labels[\"app.kubernetes.io/name\"][2]");
        assert_eq!(YamlPath::parse(&p.to_string()), p);
    }
}

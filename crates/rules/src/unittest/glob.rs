//! File globs as Go's `filepath.Glob` expands them (`*`, `?`, `[a-z]`, `[^…]`, `\` escapes;
//! no `**`), and Go's lexical `filepath.Clean`, so rule-file paths print as promtool prints
//! them.

use std::path::Path;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("syntax error in pattern")]
pub struct BadPattern;

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

/// The files matching `pattern`, sorted per directory. A pattern without meta characters
/// matches itself if it exists; a pattern that matches nothing gives an empty list.
pub fn glob(pattern: &str) -> Result<Vec<String>, BadPattern> {
    // Validates the whole pattern, as Go does before touching the disk.
    match_pattern(pattern, "")?;
    if !has_meta(pattern) {
        return Ok(if std::fs::symlink_metadata(pattern).is_ok() {
            vec![pattern.to_string()]
        } else {
            Vec::new()
        });
    }
    let (dir, file) = match pattern.rfind('/') {
        Some(i) => (&pattern[..=i], &pattern[i + 1..]),
        None => ("", pattern),
    };
    let dir = clean_glob_dir(dir);
    if !has_meta(&dir) {
        return glob_dir(&dir, file, Vec::new());
    }
    if dir == pattern {
        return Err(BadPattern);
    }
    let mut out = Vec::new();
    for d in glob(&dir)? {
        out = glob_dir(&d, file, out)?;
    }
    Ok(out)
}

fn clean_glob_dir(dir: &str) -> String {
    match dir {
        "" => ".".into(),
        "/" => "/".into(),
        d => d[..d.len() - 1].to_string(),
    }
}

fn glob_dir(dir: &str, pattern: &str, mut out: Vec<String>) -> Result<Vec<String>, BadPattern> {
    if !Path::new(dir).is_dir() {
        return Ok(out);
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    for n in names {
        if match_pattern(pattern, &n)? {
            out.push(clean(&format!("{dir}/{n}")));
        }
    }
    Ok(out)
}

/// Go's `filepath.Match` on one path element.
pub fn match_pattern(pattern: &str, name: &str) -> Result<bool, BadPattern> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Validate the pattern fully even when the name is short: Go reports bad patterns
    // regardless of the name.
    validate(&p)?;
    Ok(match_from(&p, &n))
}

fn validate(p: &[char]) -> Result<(), BadPattern> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(BadPattern);
                }
                i += 2;
            }
            '[' => {
                let (_, next) = class(p, i, None)?;
                i = next;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn match_from(p: &[char], n: &[char]) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    loop {
        if pi < p.len() {
            match p[pi] {
                '*' => {
                    star = Some((pi, ni));
                    pi += 1;
                    continue;
                }
                '?' if ni < n.len() && n[ni] != '/' => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                '[' if ni < n.len() => {
                    if let Ok((true, next)) = class(p, pi, Some(n[ni])) {
                        pi = next;
                        ni += 1;
                        continue;
                    }
                }
                '\\' if pi + 1 < p.len() && ni < n.len() && p[pi + 1] == n[ni] => {
                    pi += 2;
                    ni += 1;
                    continue;
                }
                c if !matches!(c, '?' | '[' | '\\') && ni < n.len() && c == n[ni] => {
                    pi += 1;
                    ni += 1;
                    continue;
                }
                _ => {}
            }
        } else if ni == n.len() {
            return true;
        }
        // Backtrack: let the last star take one more character (never a separator).
        match star {
            Some((sp, sn)) if sn < n.len() && n[sn] != '/' => {
                star = Some((sp, sn + 1));
                pi = sp + 1;
                ni = sn + 1;
            }
            _ => return false,
        }
    }
}

/// Reads the class starting at `p[i] == '['`; with a character, says whether it matches.
/// Returns the index after the closing `]`.
fn class(p: &[char], i: usize, c: Option<char>) -> Result<(bool, usize), BadPattern> {
    let mut j = i + 1;
    let negated = p.get(j) == Some(&'^');
    if negated {
        j += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        match p.get(j) {
            None => return Err(BadPattern),
            Some(']') if !first => {
                j += 1;
                break;
            }
            _ => {}
        }
        first = false;
        let (lo, next) = class_char(p, j)?;
        j = next;
        let mut hi = lo;
        if p.get(j) == Some(&'-') {
            let (h, next) = class_char(p, j + 1)?;
            hi = h;
            j = next;
        }
        if let Some(c) = c {
            if lo <= c && c <= hi {
                matched = true;
            }
        }
    }
    Ok((matched != negated && c.is_some_and(|c| c != '/'), j))
}

fn class_char(p: &[char], j: usize) -> Result<(char, usize), BadPattern> {
    match p.get(j) {
        None | Some('-') | Some(']') => Err(BadPattern),
        Some('\\') => p.get(j + 1).map(|c| (*c, j + 2)).ok_or(BadPattern),
        Some(c) => Ok((*c, j + 1)),
    }
}

/// Go's `filepath.Clean`: the shortest equivalent path, lexically.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".into();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if matches!(parts.last(), Some(p) if *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Dir`: everything before the last `/`, cleaned (`.` when there is none).
pub fn dir(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => clean(&path[..=i]),
        None => ".".into(),
    }
}

/// Go's `filepath.Join(dir, file)` for a relative file.
pub fn join(dir: &str, file: &str) -> String {
    clean(&format!("{dir}/{file}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_go() {
        let m = |p, n| match_pattern(p, n).unwrap();
        assert!(m("*.yml", "a.yml"));
        assert!(m("*.yml", ".hidden.yml"));
        assert!(!m("*.yml", "a.yaml"));
        assert!(m("a?c", "abc"));
        assert!(m("[a-c]x", "bx"));
        assert!(!m("[^a-c]x", "bx"));
        assert!(
            match_pattern("[]a]", "]").is_err(),
            "Go refuses a leading ] in a class"
        );
        assert!(m("\\*", "*"));
        assert!(m("*", ""));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*", "a/b"));
        assert!(match_pattern("[", "x").is_err());
        assert!(match_pattern("a\\", "a").is_err());
        assert!(match_pattern("[a-]", "a").is_err());
    }

    #[test]
    fn globs_files_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        for f in ["b.yml", "a.yml", "c.txt"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/x.yml"), "").unwrap();
        assert_eq!(
            glob(&format!("{d}/*.yml")).unwrap(),
            vec![format!("{d}/a.yml"), format!("{d}/b.yml")]
        );
        assert_eq!(
            glob(&format!("{d}/s*/*.yml")).unwrap(),
            vec![format!("{d}/sub/x.yml")]
        );
        assert_eq!(
            glob(&format!("{d}/a.yml")).unwrap(),
            vec![format!("{d}/a.yml")]
        );
        assert!(glob(&format!("{d}/none.yml")).unwrap().is_empty());
        assert!(glob(&format!("{d}/[")).is_err());
    }

    #[test]
    fn arbitrary_patterns_never_panic() {
        let pieces = ["*", "?", "[", "]", "^", "-", "\\", "a", "b", "/", ".", "é"];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            let mut p = String::new();
            for _ in 0..(seed % 9) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                p.push_str(pieces[(seed % pieces.len() as u64) as usize]);
            }
            let _ = match_pattern(&p, "ab/é.a-b");
            let _ = match_pattern(&p, "");
            let _ = clean(&p);
        }
    }

    #[test]
    fn cleans_like_go() {
        assert_eq!(clean("./a/../b//c/."), "b/c");
        assert_eq!(clean(""), ".");
        assert_eq!(clean("../../x"), "../../x");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(join(".", "rules.yml"), "rules.yml");
        assert_eq!(dir("t.yml"), ".");
        assert_eq!(dir("/t.yml"), "/");
        assert_eq!(dir("a/b/t.yml"), "a/b");
        assert_eq!(join("tests", "../rules/r.yml"), "rules/r.yml");
    }
}

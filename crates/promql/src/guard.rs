//! Checks that run before the parser, so that no query text can make parsing slower than
//! linear or recurse deep enough to overflow a thread's stack.
//!
//! The parser, its type checks, the evaluator and dropping the syntax tree all recurse once
//! per tree level, and the parser's type check walks down the left operand of every binary
//! operator, so its cost grows with length × depth. Bounding the depth bounds both. The scan
//! is a bound from above on the tree's depth: every open bracket and every operator outside
//! label braces adds a level until its bracket closes (a chain `a + b + c` is a left-deep
//! tree, one level per operator), so it never lets through a tree deeper than the limit.

use crate::duration_expr::{after_comment, after_quoted};
use crate::error::PromqlError;

/// Longest query text accepted (Prometheus sets none; 256 KiB is far beyond any dashboard's).
pub const MAX_QUERY_BYTES: usize = 256 * 1024;

/// Deepest nesting accepted, counting brackets, function calls and operators as levels.
/// The evaluator takes up to ~8 KiB of stack a level in debug builds (nested function calls
/// and aggregations are the heaviest), so 128 levels leave half of a 2 MiB thread stack
/// (tokio's) spare; release builds need far less.
pub const MAX_QUERY_DEPTH: usize = 128;

/// Rejects a query that is too long or nests too deep, naming the length or the position.
pub(crate) fn check(query: &str) -> Result<(), PromqlError> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(PromqlError::BadData {
            message: format!(
                "query is {} bytes long, more than the limit of {MAX_QUERY_BYTES}",
                query.len()
            ),
        });
    }
    match deepest_prefix(query, MAX_QUERY_DEPTH) {
        None => Ok(()),
        Some(at) => {
            let (line, col) = line_col(query, at);
            Err(PromqlError::Parse {
                message: format!(
                    "{line}:{col}: parse error: query nests deeper than the limit of \
                     {MAX_QUERY_DEPTH} levels (brackets, function calls and operators)"
                ),
            })
        }
    }
}

/// The byte offset at which the nesting first exceeds `limit`, if it does.
fn deepest_prefix(query: &str, limit: usize) -> Option<usize> {
    let b = query.as_bytes();
    // Per open bracket: the bracket and the operators seen at its level so far.
    let mut levels: Vec<(u8, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let mut op_len = 0;
        match c {
            b'"' | b'\'' | b'`' => {
                i = after_quoted(b, i);
                continue;
            }
            b'#' => {
                i = after_comment(b, i);
                continue;
            }
            b'(' | b'[' | b'{' => {
                levels.push((c, 0));
                depth += 1;
                if depth > limit {
                    return Some(i);
                }
            }
            b')' | b']' | b'}' => {
                if let Some((_, ops)) = levels.pop() {
                    depth -= 1 + ops;
                }
            }
            _ if levels.last().is_some_and(|(open, _)| *open == b'{') => {}
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' => op_len = 1,
            b'=' | b'!' if b.get(i + 1) == Some(&b'=') => op_len = 2,
            b'<' | b'>' => op_len = if b.get(i + 1) == Some(&b'=') { 2 } else { 1 },
            _ if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let end = b[i..]
                    .iter()
                    .position(|&x| !(x.is_ascii_alphanumeric() || x == b'_' || x == b':'))
                    .map_or(b.len(), |p| i + p);
                let word = &query[i..end];
                if ["and", "or", "unless", "atan2"]
                    .iter()
                    .any(|k| word.eq_ignore_ascii_case(k))
                {
                    op_len = end - i;
                } else {
                    i = end;
                    continue;
                }
            }
            _ => {}
        }
        if op_len > 0 {
            if let Some((_, ops)) = levels.last_mut() {
                *ops += 1;
            }
            depth += 1;
            if depth > limit {
                return Some(i);
            }
            i += op_len;
            continue;
        }
        i += 1;
    }
    None
}

/// 1-based line and column (in characters) of a byte offset.
pub(crate) fn line_col(query: &str, at: usize) -> (usize, usize) {
    let at = at.min(query.len());
    let mut at = at;
    while !query.is_char_boundary(at) {
        at -= 1;
    }
    let before = &query[..at];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_error(q: &str) -> Option<usize> {
        deepest_prefix(q, 4)
    }

    #[test]
    fn counts_brackets_calls_and_operators() {
        assert_eq!(depth_error("sum(rate(x[5m]))"), None);
        assert_eq!(depth_error("((((1))))"), None);
        assert_eq!(depth_error("(((((1)))))"), Some(4));
        assert_eq!(depth_error("1 + 1 + 1 + 1 + 1"), None);
        assert_eq!(depth_error("1 + 1 + 1 + 1 + 1 + 1"), Some(18));
        assert_eq!(depth_error("-----1"), Some(4));
        assert_eq!(depth_error("a and b or c unless d atan2 e and f"), Some(30));
        assert_eq!(depth_error("1 > bool 1 >= 1 == 1 != 1"), None);
        // Operators inside a closed bracket stop counting once it closes.
        assert_eq!(depth_error("(1+1+1) + (1+1) + (1)"), None);
        assert_eq!(depth_error("(1+1+1) + (1+1+1)"), None);
        assert_eq!(depth_error("(1+1+1) + (1+1+1+1)"), Some(16));
    }

    #[test]
    fn ignores_strings_comments_and_label_matchers() {
        assert_eq!(depth_error(r#"x{a!="((((((", b=~"+-*/"}"#), None);
        assert_eq!(depth_error("x # ((((((((((\n + 1"), None);
        assert_eq!(
            depth_error(r#"label_replace(x, "a", "\"((((", "b", `((((`)"#),
            None
        );
        assert_eq!(depth_error(r#"x{a="\"(((((((((((("}"#), None);
    }

    #[test]
    fn unbalanced_and_unterminated_input_is_scanned_to_the_end() {
        assert_eq!(depth_error(")))))))((("), None);
        assert_eq!(depth_error("\"((((((((((((("), None);
        assert_eq!(depth_error("`(((((((((((("), None);
    }

    #[test]
    fn error_names_line_and_column() {
        let q = format!("sum(\n{}1", "(".repeat(MAX_QUERY_DEPTH));
        let e = check(&q).expect_err("too deep").to_string();
        assert!(
            e.starts_with(&format!("2:{}: parse error", MAX_QUERY_DEPTH)),
            "{e}"
        );
    }

    #[test]
    fn too_long_names_the_length() {
        let q = "1".repeat(MAX_QUERY_BYTES + 1);
        let e = check(&q).expect_err("too long");
        assert_eq!(e.error_type(), "bad_data");
        assert!(e.to_string().contains(&(MAX_QUERY_BYTES + 1).to_string()));
    }
}

//! `/api/v1/format_query`'s printing: Prometheus's prettifier (an expression whose one-line
//! form is longer than 100 characters is split over lines, its parts indented by two
//! spaces), over the query in Prometheus 3's syntax. promql-parser's own prettifier decides
//! where to split by the length of the rewritten text (`extended_syntax`), markers included,
//! so this one measures each expression as it is finally printed
//! ([`extended_syntax::restore`]), then restores the whole text.

use promql_parser::parser::Expr;

use crate::extended_syntax;

/// Prometheus's `maxCharactersPerLine`.
const MAX_LINE: usize = 100;

/// The query printed over lines as Prometheus's `Pretty` prints it.
pub(crate) fn prettify(e: &Expr) -> String {
    extended_syntax::restore(&pretty(e, 0))
}

fn indent(level: usize) -> String {
    "  ".repeat(level)
}

/// Whether the expression's one-line form is too long for one line. The markers the restore
/// takes out are at most a few times longer than what replaces them, so a far longer raw
/// text is too long without restoring it.
fn needs_split(e: &Expr) -> bool {
    let raw = e.to_string();
    raw.len() > 16 * MAX_LINE || extended_syntax::restore(&raw).len() > MAX_LINE
}

/// `full` without its last `tail_len` bytes.
fn head_before(full: &str, tail_len: usize) -> &str {
    &full[..full.len().saturating_sub(tail_len)]
}

fn pretty(e: &Expr, level: usize) -> String {
    let one_line = || format!("{}{e}", indent(level));
    match e {
        Expr::Unary(u) => format!("{}-{}", indent(level), pretty(&u.expr, level).trim_start()),
        Expr::Subquery(s) => {
            let full = e.to_string();
            let suffix = &full[s.expr.to_string().len()..];
            format!("{}{suffix}", pretty(&s.expr, level))
        }
        _ if !needs_split(e) => one_line(),
        Expr::Aggregate(a) => {
            let full = e.to_string();
            let param = a
                .param
                .as_ref()
                .map(|p| format!("{p}, "))
                .unwrap_or_default();
            let head = head_before(&full, param.len() + a.expr.to_string().len() + 2);
            let mut s = format!("{}{head}(\n", indent(level));
            if let Some(p) = &a.param {
                s.push_str(&pretty(p, level + 1));
                s.push_str(",\n");
            }
            s.push_str(&pretty(&a.expr, level + 1));
            s.push('\n');
            s.push_str(&indent(level));
            s.push(')');
            s
        }
        Expr::Binary(b) => {
            let full = e.to_string();
            let (lhs, rhs) = (b.lhs.to_string(), b.rhs.to_string());
            let op = &full[lhs.len() + 1..full.len() - rhs.len() - 1];
            format!(
                "{}\n{}{op}\n{}",
                pretty(&b.lhs, level + 1),
                indent(level),
                pretty(&b.rhs, level + 1)
            )
        }
        Expr::Paren(p) => format!(
            "{}(\n{}\n{})",
            indent(level),
            pretty(&p.expr, level + 1),
            indent(level)
        ),
        Expr::Call(c) => {
            let args: Vec<String> = c.args.args.iter().map(|a| pretty(a, level + 1)).collect();
            format!(
                "{}{}(\n{}\n{})",
                indent(level),
                c.func.name,
                args.join(",\n"),
                indent(level)
            )
        }
        _ => one_line(),
    }
}

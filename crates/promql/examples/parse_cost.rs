//! How long rejecting malformed (and deeply nested) queries takes as they grow, for the
//! raw parser and for `meshlens_promql::parse` (guards + error position). Each case runs in
//! a child process on a thread with a 2 MiB stack, so a stack overflow is reported, not fatal.
//!
//! `cargo run -p meshlens-promql --example parse_cost` (all cases), or
//! `… -- <case> <size> old_position` for the error-position search as it was before it was
//! bounded.

use std::process::Command;
use std::time::Instant;

const CASES: [&str; 17] = [
    "early_error_balanced_4k",
    "balanced_then_chain",
    "early_parse_error_4k",
    "early_error_4k",
    "binary_chain_valid",
    "unary_valid",
    "nested_calls_valid",
    "binary_chain_4k_prefixes",
    "open_parens",
    "nested_parens_valid",
    "nested_calls",
    "unterminated_string",
    "binary_chain_dangling",
    "repeated_matchers",
    "huge_number_dangling",
    "unary_chain",
    "nested_braces",
];

fn build(case: &str, n: usize) -> String {
    let rep = |s: &str| s.repeat(n / s.len());
    match case {
        "open_parens" => rep("("),
        "nested_parens_valid" => format!("{}1{}", "(".repeat(n / 2), ")".repeat(n / 2)),
        "nested_calls" => format!("{}up", rep("abs(")),
        "unterminated_string" => format!("\"{}", "a".repeat(n)),
        "binary_chain_dangling" => format!("{}+", rep("1 + ")),
        "repeated_matchers" => format!("up{{{}", rep("a=\"b\",")),
        "huge_number_dangling" => format!("{} +", "9".repeat(n)),
        "unary_chain" => rep("-"),
        "nested_braces" => rep("{"),
        "binary_chain_valid" => format!("{}1", rep("1 + ")),
        "unary_valid" => format!("{}1", rep("-")),
        "nested_calls_valid" => format!("{}up{}", "abs(".repeat(n / 5), ")".repeat(n / 5)),
        "early_error_balanced_4k" => {
            // Malformed at the start, costly to parse, short enough to get a position.
            let mut b = String::from("1");
            while b.len() * 2 + 6 < 3_500 {
                b = format!("({b})+({b})");
            }
            format!("1 1 {b}{}", " + 1".repeat(100))
        }
        "balanced_then_chain" => {
            // A wide balanced tree as the first operand of a long chain: each chain node's
            // type check walks the whole tree (the worst case the depth limit allows).
            let mut b = String::from("1");
            while b.len() * 2 + 6 < n * 9 / 10 {
                b = format!("({b})+({b})");
            }
            format!("{b}{}", " + 1".repeat(100))
        }
        "early_parse_error_4k" => format!("1 1 {}", "sum(rate(x[5m])) + ".repeat(200)),
        "early_error_4k" => format!("){}", "sum(rate(x[5m])) + ".repeat(200)),
        "binary_chain_4k_prefixes" => format!("{}+", "1 + ".repeat(1000)),
        _ => String::new(),
    }
}

/// The error-position search before it was bounded (every prefix up to 4 KiB, newest
/// first), to compare with.
fn old_error_position(query: &str) -> usize {
    const INCOMPLETE: [&str; 6] = [
        "end of input",
        "unclosed left",
        "<EOF>",
        "no expression found",
        "EOF",
        "unterminated",
    ];
    if promql_parser::parser::parse(query).is_ok() || query.len() > 4096 {
        return query.len();
    }
    let mut ends: Vec<usize> = query.char_indices().map(|(i, _)| i).skip(1).collect();
    ends.push(query.len());
    for &k in ends.iter().rev() {
        match promql_parser::parser::parse(&query[..k]) {
            Ok(_) => return k,
            Err(e) if INCOMPLETE.iter().any(|m| e.contains(m)) => return k,
            Err(_) => {}
        }
    }
    0
}

fn child(case: &str, n: usize, which: &str) {
    let q = build(case, n);
    let which = which.to_string();
    let h = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let start = Instant::now();
            let ok = match which.as_str() {
                "raw" => promql_parser::parser::parse(&q).is_ok(),
                "old_position" => old_error_position(&q) == usize::MAX,
                _ => meshlens_promql::parse(&q).is_ok(),
            };
            (start.elapsed(), ok)
        })
        .expect("spawn");
    let (took, ok) = h.join().expect("join");
    println!(
        "{:.3} {}",
        took.as_secs_f64() * 1000.0,
        if ok { "ok" } else { "err" }
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // One case: `<case> <size> raw|ours|old_position`.
    if args.len() == 4 {
        child(&args[1], args[2].parse().unwrap_or(1000), &args[3]);
        return;
    }
    let me = std::env::current_exe().expect("current exe");
    println!(
        "{:<24} {:>8}  {:>20}  {:>20}",
        "case", "size", "raw parser (ms)", "promql::parse (ms)"
    );
    // `PARSE_COST_CASES=a,b` runs only those cases.
    let only = std::env::var("PARSE_COST_CASES").unwrap_or_default();
    for case in CASES {
        if !only.is_empty() && !only.split(',').any(|c| c == case) {
            continue;
        }
        for n in [1_000usize, 10_000, 100_000] {
            let mut cols = Vec::new();
            for which in ["raw", "ours"] {
                let out = Command::new(&me)
                    .args([case, &n.to_string(), which])
                    .output()
                    .expect("run child");
                cols.push(if out.status.success() {
                    String::from_utf8_lossy(&out.stdout).trim().to_string()
                } else {
                    format!("CRASH ({})", out.status)
                });
            }
            println!("{case:<24} {n:>8}  {:>20}  {:>20}", cols[0], cols[1]);
        }
    }
}

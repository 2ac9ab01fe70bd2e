//! No query text makes parsing panic: the rewrite of Prometheus 3's extended syntax (trim
//! operators, `anchored` / `smoothed`), duration expressions and the parser itself see
//! every prefix, every one-character deletion and some one-character replacements of
//! queries that use them, strings, comments, braces and multibyte UTF-8 included. Each must
//! come back `Ok` or `Err`.

mod support;

use std::panic::{catch_unwind, AssertUnwindSafe};

use meshlens_promql::{format_query, parse, query_selectors, Engine, EngineOptions};

const SEEDS: &[&str] = &[
    "h </ 2",
    "h >/ on(a) group_left(b) f",
    "histogram_count(a </ (b >/ 1))",
    "h </ ignoring(a) GROUP_RIGHT() f # trim",
    "h </ bool 2",
    "rate(x[5m] anchored)",
    r#"increase(x{a="é"}[1m] offset 5m smoothed)"#,
    r#"rate({__name__="Ω", b=~'a|</'}[1m] SMOOTHED) / rate(b[5m] anchored)"#,
    "x @ 100 smoothed + 0",
    "x[5m:1m] anchored",
    "x anchored",
    "sum by (anchored) (smoothed{a=\"anchored\"})",
    "x{a=\"\\\"}\"} </ `Ω{` # é }\n + 1",
    "rate(x[5m + step()] anchored) >/ 2",
    "max_over_time((h </ 1)[5m:1m] offset 1m) # Ω",
    "label_replace(x, \"é\", \"</\", \"b\", \"(.*)\") >/ y",
    "{é=\"x\"} smoothed",
    "x{Ω} anchored",
    "sum(x) by (a) </ on() group_left count(y[1m] anchored)",
    "ΩΩ </ é",
    "x offset (1m + 2m) smoothed",
    "sum by (anchored) (smoothed[5m:] anchored) + anchored{a=\"é\"} smoothed smoothed",
    "rate(x[1m]) anchored / (y) smoothed + \"s\" anchored + 1[5m] smoothed",
    r#"info(x, {a="é"}) + info(y, {}) + info(z, {Ω="1"})"#,
    "holt_winters(x[5m], 0.5, 0.5) </ 1 # é",
    "x[é] anchored + y[5m:Ω] smoothed offset é",
    "rate(x[1m] anchored offset -1m @ end()) >/ bool ignoring(é) group_left y",
];

/// Characters dropped in at every position of a seed.
const INSERTS: &[char] = &[
    '{', '}', '(', ')', '[', ']', '"', '`', '#', '/', '<', 'é', ' ',
];

/// A few deterministic pseudo-random mutants of `seed`: two to four edits each (a deletion,
/// an insertion of a piece, or a swap of two characters).
fn mutants(seed: &str, n: usize, state: &mut u64) -> Vec<String> {
    const PIECES: &[&str] = &[
        "</",
        ">/",
        " anchored",
        " smoothed",
        "[1m]",
        "{",
        "}",
        "\"",
        "'",
        "#",
        "\n",
        "Ω",
        "é",
        "(",
        ")",
        " offset ",
        "@",
        ":",
        ",",
        " by ",
        "group_left(",
        "[5m:]",
    ];
    let mut next = move |m: usize| {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state % m as u64) as usize
    };
    (0..n)
        .map(|_| {
            let mut chars: Vec<char> = seed.chars().collect();
            for _ in 0..2 + next(3) {
                let at = next(chars.len() + 1);
                match next(3) {
                    0 if at < chars.len() => {
                        chars.remove(at);
                    }
                    1 if at + 1 < chars.len() => chars.swap(at, at + 1),
                    _ => {
                        let piece = PIECES[next(PIECES.len())];
                        for (k, c) in piece.chars().enumerate() {
                            chars.insert(at + k, c);
                        }
                    }
                }
            }
            chars.into_iter().collect()
        })
        .collect()
}

fn variants(seed: &str) -> Vec<String> {
    let bounds: Vec<usize> = seed
        .char_indices()
        .map(|(i, _)| i)
        .chain([seed.len()])
        .collect();
    let mut out = Vec::new();
    for w in bounds.windows(2) {
        let (a, b) = (w[0], w[1]);
        // Every prefix and every one-character deletion.
        out.push(seed[..a].to_string());
        out.push(format!("{}{}", &seed[..a], &seed[b..]));
    }
    out.push(seed.to_string());
    for &at in bounds.iter().step_by(2) {
        for c in INSERTS {
            out.push(format!("{}{c}{}", &seed[..at], &seed[at..]));
        }
    }
    out
}

#[test]
fn no_query_text_makes_parsing_panic() {
    let engine = Engine::new(EngineOptions::default());
    let store = support::MemStore::default();
    let mut panicked = Vec::new();
    let mut parsed = 0;
    let mut total = 0;
    let prev = std::panic::take_hook();
    let last = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = last.clone();
    std::panic::set_hook(Box::new(move |info| {
        *seen.lock().unwrap() = info.to_string().replace('\n', " ");
    }));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for seed in SEEDS {
        let mut all = variants(seed);
        all.extend(mutants(seed, 200, &mut state));
        for q in all {
            total += 1;
            let r = catch_unwind(AssertUnwindSafe(|| {
                let ok = parse(&q).is_ok();
                let _ = format_query(&q);
                let _ = query_selectors(&q);
                if ok {
                    let _ = engine.instant_query(&store, &q, 600_000);
                    let _ = engine.range_query(&store, &q, 0, 600_000, 60_000);
                }
                ok
            }));
            match r {
                Ok(ok) => parsed += usize::from(ok),
                Err(_) => panicked.push(format!("{q:?}: {}", last.lock().unwrap())),
            }
        }
    }
    std::panic::set_hook(prev);
    assert!(panicked.is_empty(), "panicked on: {panicked:#?}");
    // The variants are not all broken: some still parse.
    assert!(parsed > 50 && parsed < total, "{parsed} of {total} parsed");
}

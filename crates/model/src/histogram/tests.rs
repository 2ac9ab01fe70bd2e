use super::*;

fn h(s: &str) -> FloatHistogram {
    FloatHistogram::parse_notation(s).unwrap()
}

#[test]
fn histogram_smoke() {
    let x = h("{{schema:0 sum:5 count:4 buckets:[1 2 1]}}");
    assert_eq!(quantile(0.5, &x), 1.414213562373095);
}

//! A histogram value as Prometheus's HTTP API writes it:
//! `{"count":"4","sum":"5","buckets":[[0,"0.5","1","1"],...]}`.

use super::notation::go_e;
use super::FloatHistogram;

/// A float as a JSON string the way Prometheus's API marshals it: shortest digits, in
/// exponent form (`1e-07`, `1e+21`) below 1e-6 or from 1e21 on, else as
/// [`crate::format_value`] writes it (`+Inf`, `-Inf`, `NaN` included).
fn write_json_float(out: &mut String, v: f64) {
    out.push('"');
    let abs = v.abs();
    if abs != 0.0 && abs.is_finite() && !(1e-6..1e21).contains(&abs) {
        out.push_str(&go_e(v));
    } else {
        // Writing into a String cannot fail.
        let _ = crate::write_value(out, v);
    }
    out.push('"');
}

impl FloatHistogram {
    /// Appends the histogram as the API's JSON object: count and sum as strings, then the
    /// populated buckets from the lowest up, each `[boundary rule, lower, upper, count]`
    /// with the rule 0: (a,b], 1: [a,b), 2: (a,b), 3: [a,b]. Without populated buckets the
    /// `buckets` field is left out.
    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"count\":");
        write_json_float(out, self.count);
        out.push_str(",\"sum\":");
        write_json_float(out, self.sum);
        let mut first = true;
        for b in self.buckets() {
            if b.count == 0.0 {
                continue;
            }
            out.push_str(if first { ",\"buckets\":[" } else { "," });
            first = false;
            let rule = match (b.lower_inclusive, b.upper_inclusive) {
                (false, true) => 0,
                (true, false) => 1,
                (false, false) => 2,
                (true, true) => 3,
            };
            out.push('[');
            out.push(char::from(b'0' + rule));
            out.push(',');
            write_json_float(out, b.lower);
            out.push(',');
            write_json_float(out, b.upper);
            out.push(',');
            write_json_float(out, b.count);
            out.push(']');
        }
        if !first {
            out.push(']');
        }
        out.push('}');
    }
}

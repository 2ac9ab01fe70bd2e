//! The Prometheus text exposition format 0.0.4, OpenMetrics 1.0 and the protobuf format
//! ([`protobuf`], the one carrying native histograms), as Prometheus parses them when
//! scraping.
//!
//! One pass over the lines, no regexes: scraping large targets is a hot path. Every error names
//! the 1-based line and what is wrong there, and the whole scrape fails on the first one, as in
//! Prometheus (a half-ingested scrape would corrupt staleness tracking).

use std::collections::HashMap;

pub use meshlens_model::format_value;
use meshlens_model::{Label, Labels, MetricMetadata, METRIC_NAME};

pub mod protobuf;

/// What a scrape's Content-Type says the body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    PrometheusText,
    OpenMetrics,
    /// Delimited `io.prometheus.client.MetricFamily` messages.
    Protobuf,
}

/// The Accept header Prometheus 2.42 sends: OpenMetrics preferred, then text 0.0.4.
pub const SCRAPE_ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// The Accept header with native histograms on: the protobuf format first, as Prometheus
/// asks for it then.
pub const SCRAPE_ACCEPT_HEADER_PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Decides the parser from a response's Content-Type the way Prometheus does: OpenMetrics or
/// protobuf only when the media type says so, the text format for anything else (including
/// no header).
pub fn format_from_content_type(content_type: Option<&str>) -> Format {
    let is_protobuf = content_type.is_some_and(|ct| {
        let mut parts = ct.split(';').map(str::trim);
        parts
            .next()
            .is_some_and(|m| m.eq_ignore_ascii_case("application/vnd.google.protobuf"))
            && parts.any(|p| p.eq_ignore_ascii_case("proto=io.prometheus.client.MetricFamily"))
    });
    if is_protobuf {
        return Format::Protobuf;
    }
    match content_type {
        Some(ct)
            if ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/openmetrics-text")
            }) =>
        {
            Format::OpenMetrics
        }
        _ => Format::PrometheusText,
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScrapedSample {
    /// Includes `__name__`.
    pub labels: Labels,
    pub timestamp_ms: Option<i64>,
    pub value: f64,
    /// An OpenMetrics exemplar on the line (`# {trace_id="…"} 0.42 1600000000.123`).
    pub exemplar: Option<ScrapedExemplar>,
    /// The created timestamp (ms, positive) of the counter, summary or histogram the sample
    /// belongs to, read only with [`ParseOptions::created_timestamps`].
    pub created_ms: Option<i64>,
}

/// An exemplar as exposed: without a timestamp it takes the sample's (the scrape's) time,
/// as in Prometheus. Its label length is not checked here but by the store, which refuses
/// that one exemplar and keeps the scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapedExemplar {
    pub labels: Labels,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// A native histogram sample of a protobuf scrape, with the exemplars exposed beside it.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapedHistogram {
    /// Includes `__name__`.
    pub labels: Labels,
    pub timestamp_ms: Option<i64>,
    pub h: std::sync::Arc<meshlens_model::FloatHistogram>,
    pub exemplars: Vec<ScrapedExemplar>,
    /// As [`ScrapedSample::created_ms`].
    pub created_ms: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedScrape {
    pub samples: Vec<ScrapedSample>,
    pub metadata: Vec<MetricMetadata>,
    /// Native histograms (protobuf scrapes only).
    pub histograms: Vec<ScrapedHistogram>,
}

/// Where a scrape body is wrong: the 1-based line of a text body (0 for a protobuf body,
/// whose reason names the metric family instead), and what is wrong there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => f.write_str(&self.reason),
            line => write!(f, "line {line}: {}", self.reason),
        }
    }
}

impl std::error::Error for ParseError {}

/// How a scrape body is read beyond its format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParseOptions {
    /// Also keep the classic buckets of native histograms (`scrape_classic_histograms`,
    /// protobuf only).
    pub classic_histograms: bool,
    /// `created-timestamp-zero-ingestion`: read created timestamps into `created_ms`, from
    /// the protobuf format's `created_timestamp` fields and from OpenMetrics `<family>_created`
    /// lines. As in Prometheus, the `_created` lines of counters, summaries and histograms
    /// are then not series of their own; without this option they are, as before.
    pub created_timestamps: bool,
    /// With `created_timestamps`: keep OpenMetrics `_created` lines as series all the same
    /// (an agent reads created timestamps to forward them, and cannot know whether the hubs
    /// store zeros or the `_created` series, so it sends both).
    pub keep_created_series: bool,
}

/// Parses a whole scrape body (a protobuf one without classic buckets of native histograms;
/// see [`parse_with`]).
pub fn parse(body: &[u8], format: Format) -> Result<ParsedScrape, ParseError> {
    parse_with(body, format, ParseOptions::default())
}

/// [`parse`] with options.
pub fn parse_with(
    body: &[u8],
    format: Format,
    opts: ParseOptions,
) -> Result<ParsedScrape, ParseError> {
    if format == Format::Protobuf {
        return protobuf::parse(body, opts);
    }
    let text = std::str::from_utf8(body).map_err(|e| {
        let line = body[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        ParseError {
            line,
            reason: "invalid UTF-8".into(),
        }
    })?;
    let mut p = Parser {
        format,
        out: ParsedScrape::default(),
        families: HashMap::new(),
        saw_eof: false,
        created: (opts.created_timestamps && format == Format::OpenMetrics).then(|| CreatedLines {
            keep: opts.keep_created_series,
            ..CreatedLines::default()
        }),
    };
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        // A trailing newline leaves one empty final piece: that is not a blank line.
        if line.is_empty() && lines.peek().is_none() {
            break;
        }
        p.line(line, line_no).map_err(|reason| ParseError {
            line: line_no,
            reason,
        })?;
    }
    if format == Format::OpenMetrics && !p.saw_eof {
        return Err(ParseError {
            line: text.split('\n').count(),
            reason: "OpenMetrics input must end with \"# EOF\"".into(),
        });
    }
    let mut families: Vec<(String, MetricMetadata)> = p.families.into_iter().collect();
    families.sort_by(|a, b| a.0.cmp(&b.0));
    p.out.metadata = families.into_iter().map(|(_, m)| m).collect();
    Ok(p.out)
}

struct Parser {
    format: Format,
    out: ParsedScrape,
    families: HashMap<String, MetricMetadata>,
    saw_eof: bool,
    /// OpenMetrics with [`ParseOptions::created_timestamps`] only.
    created: Option<CreatedLines>,
}

/// OpenMetrics `_created` lines as Prometheus reads them with created-timestamp zero
/// ingestion: a sample of a counter, summary or histogram family takes its created
/// timestamp from the family's next `<family>_created` line with the same labels (`le` of
/// a histogram and `quantile` of a summary aside, so every series of one histogram or
/// summary shares it). The search never leaves the family (a HELP, TYPE or UNIT line ends
/// it), and `_created` lines of those families are not kept as series.
#[derive(Default)]
struct CreatedLines {
    /// The family of the latest HELP, TYPE or UNIT line.
    family: String,
    /// Samples of the family still waiting for their `_created` line: label key -> indexes
    /// into `out.samples`.
    pending: HashMap<Labels, Vec<usize>>,
    /// [`ParseOptions::keep_created_series`].
    keep: bool,
}

impl Parser {
    fn line(&mut self, line: &str, _line_no: usize) -> Result<(), String> {
        if self.saw_eof {
            return Err("content after \"# EOF\"".into());
        }
        if line.trim().is_empty() {
            return match self.format {
                Format::PrometheusText | Format::Protobuf => Ok(()),
                Format::OpenMetrics => Err("blank lines are not allowed in OpenMetrics".into()),
            };
        }
        if let Some(rest) = line.strip_prefix('#') {
            return self.comment(rest);
        }
        let sample = self.sample(line)?;
        if self.created.is_some() {
            return self.created_line_or_sample(sample);
        }
        self.out.samples.push(sample);
        Ok(())
    }

    /// With [`CreatedLines`]: a `_created` line of a counter, summary or histogram family
    /// gives its value (seconds, truncated to ms as Prometheus does) to the family's samples
    /// with its labels and is dropped; any other sample is kept and may wait for one.
    fn created_line_or_sample(&mut self, sample: ScrapedSample) -> Result<(), String> {
        let Some(created) = self.created.as_mut() else {
            self.out.samples.push(sample);
            return Ok(());
        };
        let kind = self
            .families
            .get(&created.family)
            .map_or("unknown", |m| m.kind.as_str());
        let skip = match kind {
            "counter" => None,
            "histogram" => Some("le"),
            "summary" => Some("quantile"),
            _ => {
                self.out.samples.push(sample);
                return Ok(());
            }
        };
        let name = sample.labels.metric_name().unwrap_or("");
        let key = Labels::from_pairs(
            sample
                .labels
                .iter()
                .filter(|l| l.name != METRIC_NAME && Some(l.name.as_str()) != skip)
                .map(|l| (l.name.clone(), l.value.clone())),
        );
        match name.strip_suffix("_created") {
            Some(family) => {
                if family == created.family {
                    // NaN casts to 0, which like a negative time is no created timestamp.
                    let ct = Some((sample.value * 1000.0) as i64).filter(|&t| t > 0);
                    for i in created.pending.remove(&key).unwrap_or_default() {
                        self.out.samples[i].created_ms = ct;
                    }
                }
                if created.keep {
                    self.out.samples.push(sample);
                }
            }
            None => {
                created
                    .pending
                    .entry(key)
                    .or_default()
                    .push(self.out.samples.len());
                self.out.samples.push(sample);
            }
        }
        Ok(())
    }

    fn comment(&mut self, rest: &str) -> Result<(), String> {
        let rest_trim = rest.trim_start();
        if self.format == Format::OpenMetrics && rest == " EOF" {
            self.saw_eof = true;
            return Ok(());
        }
        let mut parts = rest_trim.splitn(3, [' ', '\t']);
        let keyword = parts.next().unwrap_or("");
        let (kind, needs_name) = match keyword {
            "HELP" => ("help", true),
            "TYPE" => ("type", true),
            "UNIT" if self.format == Format::OpenMetrics => ("unit", true),
            _ => ("", false),
        };
        if !needs_name {
            // Free comments are allowed in the text format; OpenMetrics has only these lines.
            return match self.format {
                Format::PrometheusText | Format::Protobuf => Ok(()),
                Format::OpenMetrics => Err(format!("unknown comment line \"#{rest}\"")),
            };
        }
        let name = parts.next().unwrap_or("");
        if !meshlens_model::labels::is_valid_metric_name(name) {
            return Err(format!("invalid metric name {name:?} in {keyword} line"));
        }
        if let Some(created) = &mut self.created {
            // A metadata line ends the search for `_created` lines of the family before.
            created.pending.clear();
            if created.family != name {
                created.family = name.to_string();
            }
        }
        let value = parts.next().unwrap_or("").trim_start_matches([' ', '\t']);
        let family = self
            .families
            .entry(name.to_string())
            .or_insert_with(|| MetricMetadata {
                metric_family: name.to_string(),
                kind: "unknown".into(),
                ..Default::default()
            });
        match kind {
            "help" => family.help = unescape_help(value),
            "unit" => family.unit = value.trim().to_string(),
            _ => {
                let t = value.trim();
                let ok = match self.format {
                    Format::PrometheusText | Format::Protobuf => {
                        matches!(t, "counter" | "gauge" | "histogram" | "summary" | "untyped")
                    }
                    Format::OpenMetrics => matches!(
                        t,
                        "counter"
                            | "gauge"
                            | "histogram"
                            | "gaugehistogram"
                            | "summary"
                            | "info"
                            | "stateset"
                            | "unknown"
                    ),
                };
                if !ok {
                    return Err(format!("invalid metric type {t:?}"));
                }
                family.kind = if t == "untyped" { "unknown" } else { t }.to_string();
            }
        }
        Ok(())
    }

    fn sample(&self, line: &str) -> Result<ScrapedSample, String> {
        let mut c = Cursor {
            s: line.as_bytes(),
            pos: 0,
        };
        let name = c.metric_name()?;
        let mut labels: Vec<Label> = Vec::with_capacity(8);
        labels.push(Label::new(METRIC_NAME, name));
        if c.peek() == Some(b'{') {
            c.pos += 1;
            c.label_set(&mut labels)?;
        }
        if !c.skip_blanks() {
            return Err(format!("expected a value after {name:?}"));
        }
        let value_tok = c.token();
        let value = parse_float(value_tok)
            .ok_or_else(|| format!("invalid value {value_tok:?} for {name:?}"))?;
        let mut timestamp_ms = None;
        if c.skip_blanks() && c.peek() != Some(b'#') {
            let tok = c.token();
            timestamp_ms = Some(match self.format {
                Format::PrometheusText | Format::Protobuf => tok
                    .parse::<i64>()
                    .map_err(|_| format!("invalid timestamp {tok:?}"))?,
                Format::OpenMetrics => {
                    let secs = parse_float(tok)
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| format!("invalid timestamp {tok:?}"))?;
                    (secs * 1000.0).round() as i64
                }
            });
            c.skip_blanks();
        }
        let mut exemplar = None;
        if c.peek() == Some(b'#') {
            if self.format == Format::PrometheusText {
                return Err("unexpected \"#\" after the sample".into());
            }
            c.pos += 1;
            c.skip_blanks();
            if c.peek() != Some(b'{') {
                return Err("exemplar must start with a label set".into());
            }
            c.pos += 1;
            let mut ex = Vec::new();
            c.label_set(&mut ex).map_err(|e| format!("exemplar: {e}"))?;
            c.skip_blanks();
            let tok = c.token();
            let ex_value =
                parse_float(tok).ok_or_else(|| format!("invalid exemplar value {tok:?}"))?;
            c.skip_blanks();
            let mut ex_ts = None;
            if !c.at_end() {
                let tok = c.token();
                let secs = parse_float(tok)
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("invalid exemplar timestamp {tok:?}"))?;
                ex_ts = Some((secs * 1000.0).round() as i64);
                c.skip_blanks();
            }
            let mut names: Vec<&str> = ex.iter().map(|l| l.name.as_str()).collect();
            names.sort_unstable();
            if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
                return Err(format!("duplicate exemplar label name {:?}", w[0]));
            }
            exemplar = Some(ScrapedExemplar {
                labels: Labels::from_pairs(ex.into_iter().map(|l| (l.name, l.value))),
                value: ex_value,
                timestamp_ms: ex_ts,
            });
        }
        if !c.at_end() {
            return Err(format!(
                "unexpected {:?} at column {}",
                String::from_utf8_lossy(&c.s[c.pos..]),
                c.pos + 1
            ));
        }
        let mut seen = labels.iter().map(|l| l.name.as_str()).collect::<Vec<_>>();
        seen.sort_unstable();
        if let Some(w) = seen.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("duplicate label name {:?}", w[0]));
        }
        Ok(ScrapedSample {
            labels: Labels::from_pairs(labels.into_iter().map(|l| (l.name, l.value))),
            timestamp_ms,
            value,
            exemplar,
            created_ms: None,
        })
    }
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    /// Skips spaces and tabs; true when anything follows.
    fn skip_blanks(&mut self) -> bool {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        !self.at_end()
    }

    fn token(&mut self) -> &'a str {
        let start = self.pos;
        while !matches!(self.peek(), None | Some(b' ' | b'\t')) {
            self.pos += 1;
        }
        // Token boundaries are ASCII, so this slice is valid UTF-8.
        std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("")
    }

    fn ident(&mut self, allow_colon: bool) -> &'a str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            let ok = b.is_ascii_alphanumeric() || b == b'_' || (allow_colon && b == b':');
            let first_digit = self.pos == start && b.is_ascii_digit();
            if !ok || first_digit {
                break;
            }
            self.pos += 1;
        }
        std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("")
    }

    fn metric_name(&mut self) -> Result<&'a str, String> {
        let name = self.ident(true);
        if name.is_empty() {
            return Err(format!(
                "expected a metric name at column {}, found {:?}",
                self.pos + 1,
                String::from_utf8_lossy(&self.s[self.pos..])
                    .chars()
                    .next()
                    .unwrap_or(' ')
            ));
        }
        Ok(name)
    }

    /// Parses `name="value", ...}` (the opening brace already consumed).
    fn label_set(&mut self, out: &mut Vec<Label>) -> Result<(), String> {
        loop {
            self.skip_blanks();
            if self.peek() == Some(b'}') {
                self.pos += 1;
                return Ok(());
            }
            let name = self.ident(false);
            if name.is_empty() {
                return Err(format!("expected a label name at column {}", self.pos + 1));
            }
            self.skip_blanks();
            if self.peek() != Some(b'=') {
                return Err(format!("expected \"=\" after label name {name:?}"));
            }
            self.pos += 1;
            self.skip_blanks();
            if self.peek() != Some(b'"') {
                return Err(format!("expected a quoted value for label {name:?}"));
            }
            self.pos += 1;
            let value = self.quoted().map_err(|e| format!("label {name:?}: {e}"))?;
            out.push(Label::new(name, value));
            self.skip_blanks();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {}
                _ => return Err(format!("expected \",\" or \"}}\" after label {name:?}")),
            }
        }
    }

    /// Reads an escaped string up to the closing quote.
    fn quoted(&mut self) -> Result<String, String> {
        let mut v = Vec::new();
        loop {
            match self.peek() {
                None => return Err("unterminated label value".into()),
                Some(b'"') => {
                    self.pos += 1;
                    return String::from_utf8(v).map_err(|_| "invalid UTF-8".into());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b'n') => v.push(b'\n'),
                        Some(b'\\') => v.push(b'\\'),
                        Some(b'"') => v.push(b'"'),
                        Some(other) => {
                            v.push(b'\\');
                            v.push(other);
                        }
                        None => return Err("unterminated escape".into()),
                    }
                    self.pos += 1;
                }
                Some(b) => {
                    v.push(b);
                    self.pos += 1;
                }
            }
        }
    }
}

/// Go's ParseFloat accepts what Prometheus accepts: decimals, exponents, and the spellings of
/// Inf and NaN in any case with an optional sign.
fn parse_float(s: &str) -> Option<f64> {
    if s.is_empty() || s.contains('_') {
        return None;
    }
    s.parse::<f64>().ok()
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Renders samples in the text format 0.0.4 (for /federate, /metrics and tests).
pub fn render_text(samples: &[ScrapedSample]) -> String {
    let mut out = String::new();
    for s in samples {
        write_sample(&mut out, &s.labels, s.value, s.timestamp_ms);
    }
    out
}

/// Appends one sample line in the text format.
pub fn write_sample(out: &mut String, labels: &Labels, value: f64, timestamp_ms: Option<i64>) {
    use std::fmt::Write;
    out.push_str(labels.metric_name().unwrap_or(""));
    let mut first = true;
    for l in labels.iter().filter(|l| l.name != METRIC_NAME) {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(&l.name);
        out.push_str("=\"");
        meshlens_model::push_escaped_label_value(out, &l.value);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_value(value));
    if let Some(t) = timestamp_ms {
        let _ = write!(out, " {t}");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests;

//! The few certificate fields the probes report, read by a small DER walk rather than a full
//! X.509 library (which would double this crate's build for four fields): `notAfter`, the
//! subject and issuer (as raw DER for chain matching, and printed as Go's
//! `pkix.Name.String()` so `probe_ssl_last_chain_info` labels equal blackbox_exporter's), and
//! the DNS names of the subjectAltName extension.

use meshlens_model::time::days_from_civil;

/// What a certificate tells the probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// Unix seconds.
    pub not_after: i64,
    pub subject_der: Vec<u8>,
    pub issuer_der: Vec<u8>,
    pub subject: String,
    pub issuer: String,
    pub dns_names: Vec<String>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed certificate: {0}")]
pub(crate) struct X509Error(&'static str);

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const EXTENSIONS: u8 = 0xa3;
const DNS_NAME: u8 = 0x82;
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];

/// One DER element: its tag, its contents, and its whole encoding.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn next(&mut self) -> Result<Tlv<'a>, X509Error> {
        let buf = self.0;
        let tag = *buf.first().ok_or(X509Error("truncated"))?;
        if tag & 0x1f == 0x1f {
            return Err(X509Error("high tag numbers are not used in certificates"));
        }
        let first = *buf.get(1).ok_or(X509Error("truncated length"))?;
        let (len, header) = if first < 0x80 {
            (usize::from(first), 2)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 {
                return Err(X509Error("unsupported length"));
            }
            let bytes = buf.get(2..2 + n).ok_or(X509Error("truncated length"))?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, 2 + n)
        };
        let end = header
            .checked_add(len)
            .filter(|e| *e <= buf.len())
            .ok_or(X509Error("element longer than its container"))?;
        self.0 = &buf[end..];
        Ok(Tlv {
            tag,
            content: &buf[header..end],
            whole: &buf[..end],
        })
    }

    fn expect(&mut self, tag: u8) -> Result<Tlv<'a>, X509Error> {
        let t = self.next()?;
        if t.tag == tag {
            Ok(t)
        } else {
            Err(X509Error("unexpected element"))
        }
    }
}

/// Reads the fields the probes report from one DER certificate.
pub(crate) fn parse_cert(der: &[u8]) -> Result<CertInfo, X509Error> {
    let cert = Reader(der).expect(SEQUENCE)?;
    let tbs = Reader(cert.content).expect(SEQUENCE)?;
    let mut r = Reader(tbs.content);
    let mut t = r.next()?;
    if t.tag == 0xa0 {
        t = r.next()?; // the explicit version; the serial number follows
    }
    if t.tag != 0x02 {
        return Err(X509Error("missing serial number"));
    }
    r.expect(SEQUENCE)?; // signature algorithm
    let issuer = r.expect(SEQUENCE)?;
    let validity = r.expect(SEQUENCE)?;
    let subject = r.expect(SEQUENCE)?;
    r.expect(SEQUENCE)?; // subject public key info
    let mut dns_names = Vec::new();
    while !r.is_empty() {
        let t = r.next()?;
        if t.tag == EXTENSIONS {
            dns_names = san_dns_names(t.content)?;
        }
    }
    let mut v = Reader(validity.content);
    let _not_before = v.next()?;
    let not_after = parse_time(&v.next()?)?;
    Ok(CertInfo {
        not_after,
        subject_der: subject.whole.to_vec(),
        issuer_der: issuer.whole.to_vec(),
        subject: go_name_string(subject.content)?,
        issuer: go_name_string(issuer.content)?,
        dns_names,
    })
}

fn san_dns_names(extensions: &[u8]) -> Result<Vec<String>, X509Error> {
    let list = Reader(extensions).expect(SEQUENCE)?;
    let mut r = Reader(list.content);
    while !r.is_empty() {
        let ext = r.expect(SEQUENCE)?;
        let mut e = Reader(ext.content);
        if e.expect(OID)?.content != SAN_OID {
            continue;
        }
        let mut value = e.next()?;
        if value.tag == 0x01 {
            value = e.next()?; // the critical flag
        }
        if value.tag != OCTET_STRING {
            return Err(X509Error("bad extension value"));
        }
        let names = Reader(value.content).expect(SEQUENCE)?;
        let mut n = Reader(names.content);
        let mut out = Vec::new();
        while !n.is_empty() {
            let name = n.next()?;
            if name.tag == DNS_NAME {
                out.push(String::from_utf8_lossy(name.content).into_owned());
            }
        }
        return Ok(out);
    }
    Ok(Vec::new())
}

/// UTCTime (`YYMMDDHHMM[SS]`, years 50–99 in the 1900s) or GeneralizedTime
/// (`YYYYMMDDHHMMSS[.f]`), each with `Z` or a `±hhmm` offset, as Go accepts them.
fn parse_time(t: &Tlv<'_>) -> Result<i64, X509Error> {
    let bad = X509Error("bad time");
    let s = std::str::from_utf8(t.content).map_err(|_| X509Error("bad time"))?;
    let num = |a: usize, b: usize| -> Result<i64, X509Error> {
        let part = s.get(a..b).ok_or(X509Error("bad time"))?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(X509Error("bad time"));
        }
        part.parse().map_err(|_| X509Error("bad time"))
    };
    let (year, rest) = match t.tag {
        UTC_TIME => {
            let yy = num(0, 2)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, 2)
        }
        GENERALIZED_TIME => (num(0, 4)?, 4),
        _ => return Err(bad),
    };
    let (month, day, hour, minute) = (
        num(rest, rest + 2)?,
        num(rest + 2, rest + 4)?,
        num(rest + 4, rest + 6)?,
        num(rest + 6, rest + 8)?,
    );
    let mut i = rest + 8;
    let mut second = 0;
    if s.get(i..i + 2)
        .is_some_and(|p| p.bytes().all(|c| c.is_ascii_digit()))
    {
        second = num(i, i + 2)?;
        i += 2;
    }
    if t.tag == GENERALIZED_TIME && s.get(i..i + 1) == Some(".") {
        i += 1;
        while s.as_bytes().get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let offset = match s.get(i..) {
        Some("Z") => 0,
        Some(z) if z.len() == 5 && (z.starts_with('+') || z.starts_with('-')) => {
            let mins = num(i + 1, i + 3)? * 60 + num(i + 3, i + 5)?;
            if z.starts_with('+') {
                mins * 60
            } else {
                -mins * 60
            }
        }
        _ => return Err(bad),
    };
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(bad);
    }
    if second > 60 {
        return Err(bad);
    }
    let days = days_from_civil(year, month as u32, day as u32);
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Go's short names for the attribute types it prints by name, keyed by the OID's last arc
/// under 2.5.4.
fn short_name(arc: u8) -> Option<&'static str> {
    Some(match arc {
        3 => "CN",
        5 => "SERIALNUMBER",
        6 => "C",
        7 => "L",
        8 => "ST",
        9 => "STREET",
        10 => "O",
        11 => "OU",
        17 => "POSTALCODE",
        _ => return None,
    })
}

/// One attribute: its OID's contents, the value's string tag and bytes.
struct Attr<'a> {
    oid: &'a [u8],
    tag: u8,
    value: &'a [u8],
}

impl Attr<'_> {
    /// The standard arc (under 2.5.4) Go parses into a named field, if it is one.
    fn standard_arc(&self) -> Option<u8> {
        match self.oid {
            [0x55, 0x04, arc] if short_name(*arc).is_some() => Some(*arc),
            _ => None,
        }
    }

    fn text(&self) -> String {
        match self.tag {
            // BMPString: UTF-16 big-endian.
            0x1e => {
                let units: Vec<u16> = self
                    .value
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                    .collect();
                String::from_utf16_lossy(&units)
            }
            _ => String::from_utf8_lossy(self.value).into_owned(),
        }
    }
}

/// Prints a Name as Go's `pkix.Name.String()`: attributes Go does not name first (so last in
/// the output, as `OID=#hex`), then C, ST, L, STREET, POSTALCODE, O, OU, CN, SERIALNUMBER as
/// one RDN each, all in reverse, values escaped per RFC 2253.
fn go_name_string(name: &[u8]) -> Result<String, X509Error> {
    let mut attrs = Vec::new();
    let mut rdns = Reader(name);
    while !rdns.is_empty() {
        let set = rdns.expect(SET)?;
        let mut atvs = Reader(set.content);
        while !atvs.is_empty() {
            let atv = atvs.expect(SEQUENCE)?;
            let mut a = Reader(atv.content);
            let oid = a.expect(OID)?.content;
            let value = a.next()?;
            attrs.push(Attr {
                oid,
                tag: value.tag,
                value: value.content,
            });
        }
    }
    // Each RDN is a list of "TYPE=value" strings joined by '+'.
    let mut seq: Vec<Vec<String>> = attrs
        .iter()
        .filter(|a| a.standard_arc().is_none())
        .map(|a| {
            vec![format!(
                "{}=#{}",
                oid_string(a.oid),
                hex(&go_marshal_string(&a.text()))
            )]
        })
        .collect();
    for arc in [6u8, 8, 7, 9, 17, 10, 11] {
        let values: Vec<String> = attrs
            .iter()
            .filter(|a| a.standard_arc() == Some(arc))
            .map(|a| format!("{}={}", short_name(arc).unwrap_or("?"), escape(&a.text())))
            .collect();
        if !values.is_empty() {
            seq.push(values);
        }
    }
    for arc in [3u8, 5] {
        // Go keeps the last value of these single-valued fields, and drops an empty one.
        if let Some(a) = attrs.iter().rev().find(|a| a.standard_arc() == Some(arc)) {
            let v = a.text();
            if !v.is_empty() {
                seq.push(vec![format!(
                    "{}={}",
                    short_name(arc).unwrap_or("?"),
                    escape(&v)
                )]);
            }
        }
    }
    Ok(seq
        .iter()
        .rev()
        .map(|rdn| rdn.join("+"))
        .collect::<Vec<_>>()
        .join(","))
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (k, c) in v.char_indices() {
        let esc = match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => true,
            ' ' => k == 0 || k == v.len() - 1,
            '#' => k == 0,
            _ => false,
        };
        if esc {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The DER Go's `asn1.Marshal` gives a string: PrintableString when every character allows
/// it, else UTF8String.
fn go_marshal_string(s: &str) -> Vec<u8> {
    let printable = s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b" '()+,-./:=?".contains(&b));
    let mut out = vec![if printable { 0x13 } else { 0x0c }];
    let len = s.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(s.as_bytes());
    out
}

fn oid_string(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut acc: u64 = 0;
    for b in oid {
        acc = (acc << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (acc / 40).min(2);
                arcs.push(first);
                arcs.push(acc - first * 40);
            } else {
                arcs.push(acc);
            }
            acc = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[path = "x509_tests.rs"]
mod tests;

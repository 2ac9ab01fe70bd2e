//! The server name (SNI) of a TLS ClientHello, read without terminating TLS, so that `tls:`
//! routes can pass the connection through unopened (RFC 8446 §4.1.2 and RFC 6066 §3 give
//! the layout: records, a handshake header, the hello's fixed fields, then extensions).

/// What the bytes read so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello {
    /// A whole ClientHello: the host name it asked for, if any (lower case).
    Complete(Option<String>),
    /// A ClientHello so far: read more.
    Incomplete,
    /// Not a TLS ClientHello, or a malformed one.
    NotTls,
}

const HANDSHAKE: u8 = 0x16;
const CLIENT_HELLO: u8 = 1;
const SERVER_NAME: u16 = 0;
const HOST_NAME: u8 = 0;

/// Reads the ClientHello at the start of `buf` (possibly spread over several records).
pub fn client_hello(buf: &[u8]) -> Hello {
    let mut handshake = Vec::new();
    let mut rest = buf;
    loop {
        if rest.is_empty() {
            return Hello::Incomplete;
        }
        if rest[0] != HANDSHAKE {
            return Hello::NotTls;
        }
        if rest.len() < 5 {
            return Hello::Incomplete;
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 {
            return Hello::NotTls;
        }
        let Some(payload) = rest.get(5..5 + len) else {
            return Hello::Incomplete;
        };
        handshake.extend_from_slice(payload);
        rest = &rest[5 + len..];
        if handshake[0] != CLIENT_HELLO {
            return Hello::NotTls;
        }
        if handshake.len() < 4 {
            continue;
        }
        let body_len = usize::from(handshake[1]) << 16
            | usize::from(handshake[2]) << 8
            | usize::from(handshake[3]);
        if handshake.len() >= 4 + body_len {
            return match server_name(&handshake[4..4 + body_len]) {
                Some(name) => Hello::Complete(name),
                None => Hello::NotTls,
            };
        }
    }
}

/// The SNI host name of a ClientHello body: `Some(None)` when it names none, `None` when
/// the body is malformed.
fn server_name(body: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(body);
    r.skip(2 + 32)?; // legacy_version, random
    let n = usize::from(r.u8()?);
    r.skip(n)?; // legacy_session_id
    let n = usize::from(r.u16()?);
    r.skip(n)?; // cipher_suites
    let n = usize::from(r.u8()?);
    r.skip(n)?; // legacy_compression_methods
    if r.0.is_empty() {
        return Some(None); // no extensions at all
    }
    let n = usize::from(r.u16()?);
    let mut exts = Reader(r.take(n)?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let n = usize::from(exts.u16()?);
        let data = exts.take(n)?;
        if kind != SERVER_NAME {
            continue;
        }
        let mut list = Reader(data);
        let n = usize::from(list.u16()?);
        let mut names = Reader(list.take(n)?);
        while !names.0.is_empty() {
            let kind = names.u8()?;
            let n = usize::from(names.u16()?);
            let name = names.take(n)?;
            if kind == HOST_NAME {
                let name = std::str::from_utf8(name).ok()?;
                return Some(Some(name.to_ascii_lowercase()));
            }
        }
        return Some(None);
    }
    Some(None)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real ClientHello, as rustls writes it for `name`.
    fn hello(name: &str) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let server = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), server).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_the_name_from_a_real_hello_in_any_number_of_pieces() {
        let bytes = hello("API.Example.com");
        assert_eq!(
            client_hello(&bytes),
            Hello::Complete(Some("api.example.com".into()))
        );
        for cut in [0, 1, 4, 5, 9, 40, bytes.len() - 1] {
            assert_eq!(
                client_hello(&bytes[..cut]),
                Hello::Incomplete,
                "cut at {cut}"
            );
        }
        // The same handshake split over two records.
        let payload = &bytes[5..];
        let (a, b) = payload.split_at(30);
        let mut split = Vec::new();
        for part in [a, b] {
            split.extend_from_slice(&[0x16, 3, 1]);
            split.extend_from_slice(&(part.len() as u16).to_be_bytes());
            split.extend_from_slice(part);
        }
        assert_eq!(
            client_hello(&split),
            Hello::Complete(Some("api.example.com".into()))
        );
    }

    #[test]
    fn ip_addresses_send_no_name_and_other_bytes_are_not_tls() {
        assert_eq!(client_hello(&hello("10.1.2.3")), Hello::Complete(None));
        assert_eq!(client_hello(b"GET / HTTP/1.1\r\n"), Hello::NotTls);
        // A handshake record that is not a ClientHello, and one cut short inside.
        assert_eq!(client_hello(&[0x16, 3, 1, 0, 4, 2, 0, 0, 0]), Hello::NotTls);
        // Any byte changed: an answer, never a panic or a read past the end.
        let good = hello("a.example.com");
        for i in 0..good.len() {
            for v in [0u8, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[i] = v;
                let _ = client_hello(&bad);
            }
        }
    }
}

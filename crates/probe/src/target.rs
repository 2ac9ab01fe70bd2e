//! Target strings: HTTP URLs (with blackbox_exporter's `http://` default) and `host:port`,
//! and the resolution of a redirect's `Location` against the URL that answered it.

/// A parsed HTTP probe target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HttpTarget {
    pub https: bool,
    /// Without IPv6 brackets, as resolvers and TLS names want it.
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written: the Host header.
    pub authority: String,
    /// Never empty: `/` when the URL has no path.
    pub path_and_query: String,
}

impl HttpTarget {
    fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
    }

    /// The absolute form, as HTTP/2 requests carry it.
    pub fn absolute(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme(),
            self.authority,
            self.path_and_query
        )
    }

    /// Where a redirect's `Location` points, relative references resolved against `self`.
    pub fn join(&self, location: &str) -> Result<HttpTarget, String> {
        let loc = location.trim();
        let lower = loc.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            return parse_http_target(loc);
        }
        if let Some(rest) = loc.strip_prefix("//") {
            return parse_http_target(&format!("{}://{rest}", self.scheme()));
        }
        let path = if loc.starts_with('/') {
            loc.to_string()
        } else if loc.starts_with('?') {
            let base = self.path_and_query.split('?').next().unwrap_or("/");
            format!("{base}{loc}")
        } else {
            let base = self.path_and_query.split('?').next().unwrap_or("/");
            let dir = base.rfind('/').map_or("/", |i| &base[..=i]);
            format!("{dir}{loc}")
        };
        parse_http_target(&format!("{}://{}{path}", self.scheme(), self.authority))
    }
}

/// Parses an HTTP probe target; without a scheme `http://` is assumed.
pub(crate) fn parse_http_target(target: &str) -> Result<HttpTarget, String> {
    let lower = target.to_ascii_lowercase();
    let full = if lower.starts_with("http://") || lower.starts_with("https://") {
        target.to_string()
    } else {
        format!("http://{target}")
    };
    let uri: http::Uri = full
        .parse()
        .map_err(|e| format!("not a valid URL {target:?}: {e}"))?;
    let https = uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("https"));
    let authority = uri
        .authority()
        .ok_or_else(|| format!("URL {target:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "URL {target:?}: credentials in the URL are not supported"
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(format!("URL {target:?} has no host"));
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    let path_and_query = if path_and_query.starts_with('/') {
        path_and_query.to_string()
    } else {
        format!("/{path_and_query}")
    };
    Ok(HttpTarget {
        https,
        host,
        port,
        authority: authority.as_str().to_string(),
        path_and_query,
    })
}

/// Splits `host:port` (`[v6]:port` for IPv6) as Go's `net.SplitHostPort` does.
pub(crate) fn parse_host_port(target: &str) -> Result<(String, u16), String> {
    let bad = |why: &str| format!("target {target:?}: {why} (want host:port)");
    let (host, port) = if let Some(rest) = target.strip_prefix('[') {
        let (h, p) = rest.split_once("]:").ok_or_else(|| bad("bad IPv6 form"))?;
        (h, p)
    } else {
        let (h, p) = target.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
        if h.contains(':') {
            return Err(bad("too many colons"));
        }
        (h, p)
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_targets() {
        let t = parse_http_target("127.0.0.1:8080").unwrap();
        assert!(!t.https);
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8080));
        assert_eq!(t.path_and_query, "/");
        let t = parse_http_target("https://[::1]/health?x=1").unwrap();
        assert!(t.https);
        assert_eq!((t.host.as_str(), t.port), ("::1", 443));
        assert_eq!(t.authority, "[::1]");
        assert_eq!(t.path_and_query, "/health?x=1");
        assert!(parse_http_target("http://u:p@h/").is_err());
        assert!(parse_http_target("http:// bad").is_err());
    }

    #[test]
    fn redirects_resolve() {
        let base = parse_http_target("http://a:1/x/y?q").unwrap();
        assert_eq!(base.join("/z").unwrap().absolute(), "http://a:1/z");
        assert_eq!(base.join("z").unwrap().absolute(), "http://a:1/x/z");
        assert_eq!(base.join("?r").unwrap().absolute(), "http://a:1/x/y?r");
        assert_eq!(base.join("//b/c").unwrap().absolute(), "http://b/c");
        assert_eq!(
            base.join("https://c:2/").unwrap().absolute(),
            "https://c:2/"
        );
    }

    #[test]
    fn host_ports() {
        assert_eq!(parse_host_port("h:1"), Ok(("h".into(), 1)));
        assert_eq!(parse_host_port("[::1]:2"), Ok(("::1".into(), 2)));
        for bad in ["h", ":1", "h:x", "::1:2", "h:70000", "[::1]"] {
            assert!(parse_host_port(bad).is_err(), "{bad}");
        }
    }
}

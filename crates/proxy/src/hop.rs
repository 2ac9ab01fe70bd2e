//! Headers that belong to one connection (RFC 9110 7.6.1, and the common non-standard
//! ones): never forwarded. One list for both request paths: the raw-byte head parser of
//! [`crate::h1client`] and the header-map edits of [`crate::pipeline::request`].

const CONNECTION: &str = "connection";
const KEEP_ALIVE: &str = "keep-alive";
const PROXY_CONNECTION: &str = "proxy-connection";
const TRANSFER_ENCODING: &str = "transfer-encoding";
const UPGRADE: &str = "upgrade";
const PROXY_AUTHENTICATE: &str = "proxy-authenticate";
const PROXY_AUTHORIZATION: &str = "proxy-authorization";

/// The names, lower case, in the order of their bits in [`bit`]: `connection` first, as
/// its value names further headers to drop.
pub(crate) const NAMES: [&str; 7] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
];

/// The bit of a lower-case name in [`NAMES`] (`1 << index`), 0 for any other name.
pub(crate) fn bit(name: &str) -> u8 {
    // One string match (dispatched on length) instead of seven comparisons: this runs for
    // every header of every request and response.
    match name {
        CONNECTION => 1,
        KEEP_ALIVE => 1 << 1,
        PROXY_CONNECTION => 1 << 2,
        TRANSFER_ENCODING => 1 << 3,
        UPGRADE => 1 << 4,
        PROXY_AUTHENTICATE => 1 << 5,
        PROXY_AUTHORIZATION => 1 << 6,
        _ => 0,
    }
}

/// Whether a name of any case is one of [`NAMES`].
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    NAMES
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_has_its_own_bit_in_list_order() {
        for (i, n) in NAMES.iter().enumerate() {
            assert_eq!(bit(n), 1 << i, "{n}");
            assert!(is_hop_by_hop(n.to_ascii_uppercase().as_bytes()), "{n}");
        }
        assert_eq!(bit("host"), 0);
        assert_eq!(bit("x-connection"), 0);
        assert!(!is_hop_by_hop(b"x-connection"));
    }
}

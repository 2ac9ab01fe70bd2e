//! Request bodies: gzip (and deflate) decoded with a ceiling, so a small compressed body
//! cannot expand without bound.

use std::borrow::Cow;
use std::io::Read;

use flate2::read::{GzDecoder, ZlibDecoder};

#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body decompresses to more than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("{encoding} body is malformed: {reason}")]
    Malformed {
        encoding: &'static str,
        reason: String,
    },
    #[error("unsupported Content-Encoding {0:?} (use gzip, deflate or none)")]
    Unsupported(String),
}

/// Decodes `body` per its Content-Encoding; an identity body is returned as it is.
pub fn decode<'b>(
    encoding: Option<&str>,
    body: &'b [u8],
    limit: usize,
) -> Result<Cow<'b, [u8]>, BodyError> {
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => {
            if body.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            Ok(Cow::Borrowed(body))
        }
        Some("gzip") | Some("x-gzip") => {
            read_limited(GzDecoder::new(body), "gzip", limit).map(Cow::Owned)
        }
        Some("deflate") => read_limited(ZlibDecoder::new(body), "deflate", limit).map(Cow::Owned),
        Some(other) => Err(BodyError::Unsupported(other.to_string())),
    }
}

fn read_limited(r: impl Read, encoding: &'static str, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| BodyError::Malformed {
            encoding,
            reason: e.to_string(),
        })?;
    if out.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_is_decoded_within_the_limit() {
        assert_eq!(&*decode(Some("gzip"), &gzip(b"[]"), 10).unwrap(), b"[]");
        assert!(matches!(decode(None, b"[]", 10), Ok(Cow::Borrowed(b"[]"))));
        let bomb = gzip(&vec![0u8; 1 << 20]);
        assert!(matches!(
            decode(Some("gzip"), &bomb, 1000),
            Err(BodyError::TooLarge { .. })
        ));
        assert!(matches!(
            decode(Some("gzip"), b"not gzip", 1000),
            Err(BodyError::Malformed { .. })
        ));
        assert!(matches!(
            decode(Some("br"), b"x", 1000),
            Err(BodyError::Unsupported(_))
        ));
    }
}

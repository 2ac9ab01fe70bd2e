//! Which remote-write message a request holds, from its `Content-Type` and
//! `Content-Encoding` headers (the basic content negotiation of remote write 2.0).
//!
//! `application/x-protobuf` without a `proto` parameter, or with
//! `proto=prometheus.WriteRequest`, is 1.0; `proto=io.prometheus.write.v2.Request` is 2.0;
//! any other media type or `proto` is refused (the receiver answers 415). Senders that
//! predate 2.0 sometimes leave the headers out, so a 1.0 request without `Content-Type` or
//! `Content-Encoding` is still taken as snappy-compressed 1.0; a 2.0 sender must name
//! `snappy`, as the 2.0 specification requires of it.

/// The fully qualified protobuf message names, as `proto=` and Prometheus's
/// `protobuf_message` setting spell them.
pub const PROTO_V1: &str = "prometheus.WriteRequest";
pub const PROTO_V2: &str = "io.prometheus.write.v2.Request";

/// The only media type remote write uses.
pub const MEDIA_TYPE: &str = "application/x-protobuf";

/// The response headers a 2.0 receiver answers with the counts it wrote.
pub const SAMPLES_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Samples-Written";
pub const HISTOGRAMS_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Histograms-Written";
pub const EXEMPLARS_WRITTEN_HEADER: &str = "X-Prometheus-Remote-Write-Exemplars-Written";
/// The request header naming the protocol version a sender speaks.
pub const VERSION_HEADER: &str = "X-Prometheus-Remote-Write-Version";

/// A remote-write protobuf message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ProtobufMessage {
    /// Remote write 1.0's `prometheus.WriteRequest` (deprecated by 2.0, still what most
    /// senders speak).
    #[default]
    V1,
    /// Remote write 2.0's `io.prometheus.write.v2.Request`.
    V2,
}

impl ProtobufMessage {
    /// The message's fully qualified name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtobufMessage::V1 => PROTO_V1,
            ProtobufMessage::V2 => PROTO_V2,
        }
    }

    /// By fully qualified name, as Prometheus's `protobuf_message` setting takes it.
    pub fn parse(name: &str) -> Result<ProtobufMessage, String> {
        match name {
            PROTO_V1 => Ok(ProtobufMessage::V1),
            PROTO_V2 => Ok(ProtobufMessage::V2),
            other => Err(format!(
                "unknown remote-write protobuf message {other:?}; {PROTO_V1:?} or {PROTO_V2:?}"
            )),
        }
    }

    /// The `Content-Type` a sender puts on this message (1.0 without the parameter, which
    /// 1.0 receivers expect).
    pub fn content_type(self) -> &'static str {
        match self {
            ProtobufMessage::V1 => MEDIA_TYPE,
            ProtobufMessage::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    /// The `X-Prometheus-Remote-Write-Version` a sender puts on this message.
    pub fn version(self) -> &'static str {
        match self {
            ProtobufMessage::V1 => "0.1.0",
            ProtobufMessage::V2 => "2.0.0",
        }
    }
}

/// Why a request's headers are refused: the receiver answers 415 Unsupported Media Type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error("unsupported Content-Type {0:?}: remote write takes application/x-protobuf")]
    MediaType(String),
    #[error(
        "unsupported remote-write message proto={0:?}: this receiver takes {PROTO_V1:?} and {PROTO_V2:?}"
    )]
    Proto(String),
    #[error("unsupported Content-Encoding {0:?}: remote write takes snappy")]
    Encoding(String),
    #[error("a {PROTO_V2} request must say Content-Encoding: snappy")]
    MissingEncoding,
}

/// The message a request holds, from its `Content-Type` and `Content-Encoding` header
/// values (None when absent).
pub fn negotiate(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<ProtobufMessage, Unsupported> {
    let message = match content_type.map(str::trim).filter(|s| !s.is_empty()) {
        None => ProtobufMessage::V1,
        Some(ct) => {
            let mut parts = ct.split(';');
            let media = parts.next().unwrap_or_default().trim();
            if !media.eq_ignore_ascii_case(MEDIA_TYPE) {
                return Err(Unsupported::MediaType(ct.to_string()));
            }
            let mut message = ProtobufMessage::V1;
            for param in parts {
                let Some((name, value)) = param.split_once('=') else {
                    continue;
                };
                if !name.trim().eq_ignore_ascii_case("proto") {
                    continue;
                }
                let value = value.trim().trim_matches('"');
                message = ProtobufMessage::parse(value)
                    .map_err(|_| Unsupported::Proto(value.to_string()))?;
            }
            message
        }
    };
    match content_encoding.map(str::trim).filter(|s| !s.is_empty()) {
        Some(enc) if enc.eq_ignore_ascii_case("snappy") => Ok(message),
        Some(enc) => Err(Unsupported::Encoding(enc.to_string())),
        None if message == ProtobufMessage::V2 => Err(Unsupported::MissingEncoding),
        None => Ok(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_pick_the_message() {
        let snappy = Some("snappy");
        for (ct, want) in [
            (None, ProtobufMessage::V1),
            (Some(""), ProtobufMessage::V1),
            (Some("application/x-protobuf"), ProtobufMessage::V1),
            (
                Some("application/x-protobuf;proto=prometheus.WriteRequest"),
                ProtobufMessage::V1,
            ),
            (
                Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
                ProtobufMessage::V2,
            ),
            (
                Some("Application/X-Protobuf; charset=utf-8; Proto=\"io.prometheus.write.v2.Request\""),
                ProtobufMessage::V2,
            ),
        ] {
            assert_eq!(negotiate(ct, snappy), Ok(want), "{ct:?}");
        }
    }

    #[test]
    fn unknown_messages_media_types_and_encodings_are_refused() {
        assert_eq!(
            negotiate(
                Some("application/x-protobuf;proto=io.prometheus.write.v3.Request"),
                Some("snappy")
            ),
            Err(Unsupported::Proto("io.prometheus.write.v3.Request".into()))
        );
        assert!(matches!(
            negotiate(Some("application/json"), Some("snappy")),
            Err(Unsupported::MediaType(_))
        ));
        assert!(matches!(
            negotiate(None, Some("zstd")),
            Err(Unsupported::Encoding(_))
        ));
        // 1.0 senders without the header are still served; 2.0 ones must name snappy.
        assert_eq!(negotiate(None, None), Ok(ProtobufMessage::V1));
        assert_eq!(
            negotiate(Some(ProtobufMessage::V2.content_type()), None),
            Err(Unsupported::MissingEncoding)
        );
    }

    #[test]
    fn names_round_trip() {
        for m in [ProtobufMessage::V1, ProtobufMessage::V2] {
            assert_eq!(ProtobufMessage::parse(m.as_str()), Ok(m));
            assert_eq!(
                negotiate(Some(m.content_type()), Some("snappy")),
                Ok(m),
                "a sender's own header is understood"
            );
        }
        assert!(ProtobufMessage::parse("v2").is_err());
    }
}

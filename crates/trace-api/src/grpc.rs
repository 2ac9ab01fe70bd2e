//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export` over HTTP/2
//! without TLS (h2c), as collectors and SDKs send to port 4317.
//!
//! A unary gRPC call is one length-prefixed message each way and a status in the trailers,
//! so it is served directly on hyper rather than through a gRPC framework.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use meshlens_ingest::otlp;
use tokio::net::TcpListener;

use crate::counters::Transport;
use crate::TraceApiState;

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// gRPC status codes used here.
const OK: u32 = 0;
const INVALID_ARGUMENT: u32 = 3;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNIMPLEMENTED: u32 = 12;
const INTERNAL: u32 = 13;
const UNAVAILABLE: u32 = 14;

/// Serves OTLP/gRPC on `listener` until `shutdown` resolves.
pub async fn serve_otlp_grpc(
    listener: TcpListener,
    state: Arc<TraceApiState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "otlp grpc accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, req).await) }
            });
            if let Err(e) = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "otlp grpc connection ended");
            }
        });
    }
}

/// Answers one OTLP/gRPC call into `state`'s store; callers that pick the store per request
/// (tenants) serve this from their own service.
pub async fn handle(state: Arc<TraceApiState>, req: Request<Incoming>) -> Response<GrpcBody> {
    if req.uri().path() != EXPORT_PATH {
        return status_only(
            UNIMPLEMENTED,
            &format!("unknown method {}", req.uri().path()),
        );
    }
    let message = match read_unary(req, state.max_body_bytes, state.max_decompressed_bytes).await {
        Ok(m) => m,
        Err((code, msg)) => {
            state.counters.failed(Transport::OtlpGrpc);
            return status_only(code, &msg);
        }
    };
    let decoded = match crate::ingest::ingest(
        &state,
        Bytes::from(message),
        crate::ingest::Format::OtlpProto,
        Transport::OtlpGrpc,
    )
    .await
    {
        Ok(d) => d,
        Err(crate::ingest::IngestError::Decode(msg)) => {
            state.counters.failed(Transport::OtlpGrpc);
            return status_only(INVALID_ARGUMENT, &msg);
        }
        Err(crate::ingest::IngestError::Store(e)) => {
            state.counters.failed(Transport::OtlpGrpc);
            let code = match crate::ingest::storage_status(&e).as_u16() {
                503 => UNAVAILABLE,
                429 => RESOURCE_EXHAUSTED,
                400 => INVALID_ARGUMENT,
                _ => INTERNAL,
            };
            return status_only(code, &format!("storing spans failed: {e}"));
        }
    };
    let reply = otlp::encode_response(
        decoded.rejected,
        decoded.first_rejection.as_deref().unwrap_or(""),
    );
    unary_reply(&reply)
}

/// The request message of a unary call, read within `max_body_bytes` and decompressed
/// within `max_decompressed_bytes`; an error is the gRPC status code and message to answer
/// with. Shared with the other OTLP services on this listener.
pub async fn read_unary(
    req: Request<Incoming>,
    max_body_bytes: usize,
    max_decompressed_bytes: usize,
) -> Result<Vec<u8>, (u32, String)> {
    let compressed_with = req
        .headers()
        .get("grpc-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match Limited::new(req.into_body(), max_body_bytes)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let code = if e.is::<http_body_util::LengthLimitError>() {
                RESOURCE_EXHAUSTED
            } else {
                INVALID_ARGUMENT
            };
            return Err((code, format!("reading the request failed: {e}")));
        }
    };
    unframe(&body, compressed_with.as_deref(), max_decompressed_bytes)
}

/// A successful unary reply: `message` framed, then `grpc-status: 0` in the trailers.
pub fn unary_reply(message: &[u8]) -> Response<GrpcBody> {
    let mut framed = Vec::with_capacity(message.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(OK));
    Response::builder()
        .header("content-type", "application/grpc")
        .body(GrpcBody {
            data: Some(Bytes::from(framed)),
            trailers: Some(trailers),
        })
        .expect("static response parts")
}

/// The one message of a unary call, decompressed when its flag says so; an error is the
/// gRPC status code and message to answer with. Public for the fuzz target.
pub fn unframe(
    body: &[u8],
    encoding: Option<&str>,
    max_decompressed_bytes: usize,
) -> Result<Vec<u8>, (u32, String)> {
    if body.len() < 5 {
        return Err((INVALID_ARGUMENT, "gRPC message frame is truncated".into()));
    }
    let compressed = body[0] == 1;
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    let payload = body.get(5..5 + len).ok_or((
        INVALID_ARGUMENT,
        format!(
            "gRPC frame announces {len} bytes, body has {}",
            body.len() - 5
        ),
    ))?;
    if !compressed {
        return Ok(payload.to_vec());
    }
    match encoding {
        Some("gzip") => crate::body::decode(Some("gzip"), payload, max_decompressed_bytes)
            .map(std::borrow::Cow::into_owned)
            .map_err(|e| (INVALID_ARGUMENT, e.to_string())),
        other => Err((
            UNIMPLEMENTED,
            format!("compressed message with grpc-encoding {other:?}; only gzip is supported"),
        )),
    }
}

/// A trailers-only response (the status travels in the headers); `code` is a gRPC status
/// code.
pub fn status_only(code: u32, message: &str) -> Response<GrpcBody> {
    tracing::debug!(code, message, "otlp grpc call refused");
    let encoded: String = message
        .bytes()
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    Response::builder()
        .header("content-type", "application/grpc")
        .header("grpc-status", code)
        .header(
            "grpc-message",
            HeaderValue::from_str(&encoded).unwrap_or(HeaderValue::from_static("error")),
        )
        .body(GrpcBody {
            data: None,
            trailers: None,
        })
        .expect("static response parts")
}

/// One data frame, then trailers.
pub struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(d) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

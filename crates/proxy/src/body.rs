//! The response body the proxy returns: the upstream's (or a local reply's) frames passed
//! through unchanged while bytes are counted; telemetry is recorded and the in-flight slots
//! (connection pool permit, endpoint load) are released when the body ends or is dropped.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};

use crate::config::table::Endpoint;
use crate::resilience::pool::Permit;
use crate::telemetry::{RequestRecord, Telemetry};
use crate::upload::Meter;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Inner = UnsyncBoxBody<Bytes, BoxError>;

/// Releases what a request holds while in flight.
#[derive(Default)]
pub struct InFlight {
    pub permit: Option<Permit>,
    pub endpoint: Option<Arc<Endpoint>>,
}

impl InFlight {
    pub fn on(endpoint: Arc<Endpoint>, permit: Option<Permit>) -> Self {
        endpoint.health.active.fetch_add(1, Ordering::Relaxed);
        InFlight {
            permit,
            endpoint: Some(endpoint),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(e) = &self.endpoint {
            e.health.active.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

struct Finish {
    telemetry: Arc<Telemetry>,
    record: RequestRecord,
    _in_flight: InFlight,
}

pub struct ProxyBody {
    inner: Inner,
    bytes: u64,
    grpc_status: Option<u16>,
    finish: Option<Box<Finish>>,
    /// A streamed request's byte count, read when the exchange ends.
    request_meter: Option<Meter>,
}

impl ProxyBody {
    /// A body without telemetry (admin answers, malformed requests).
    pub fn plain(b: impl Into<Bytes>) -> Self {
        ProxyBody {
            inner: Full::new(b.into()).map_err(|e| match e {}).boxed_unsync(),
            bytes: 0,
            grpc_status: None,
            finish: None,
            request_meter: None,
        }
    }

    pub fn empty() -> Self {
        ProxyBody {
            inner: Empty::new().map_err(|e| match e {}).boxed_unsync(),
            bytes: 0,
            grpc_status: None,
            finish: None,
            request_meter: None,
        }
    }

    /// Wraps an upstream body.
    pub fn upstream(b: crate::forward::UpBody) -> Self {
        ProxyBody {
            inner: match b {
                crate::forward::UpBody::Hyper(b) => b.map_err(BoxError::from).boxed_unsync(),
                crate::forward::UpBody::Own(b) => b.boxed_unsync(),
            },
            bytes: 0,
            grpc_status: None,
            finish: None,
            request_meter: None,
        }
    }

    /// Takes `request_bytes` from a streamed request's meter when the exchange ends (the
    /// request body may still be arriving when the response starts). Call before
    /// [`ProxyBody::with_telemetry`].
    pub fn counting_request(mut self, meter: Option<Meter>) -> Self {
        self.request_meter = meter;
        self
    }

    /// Records `record` with `telemetry` when this body ends.
    pub fn with_telemetry(
        mut self,
        telemetry: Arc<Telemetry>,
        record: RequestRecord,
        in_flight: InFlight,
        grpc_status: Option<u16>,
    ) -> Self {
        self.grpc_status = grpc_status;
        self.finish = Some(Box::new(Finish {
            telemetry,
            record,
            _in_flight: in_flight,
        }));
        if self.inner.is_end_stream() {
            self.done();
        }
        self
    }

    fn done(&mut self) {
        if let Some(mut f) = self.finish.take() {
            if let Some(m) = &self.request_meter {
                f.record.request_bytes = m.bytes();
            }
            f.telemetry.finish(&f.record, self.bytes, self.grpc_status);
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let res = Pin::new(&mut this.inner).poll_frame(cx);
        match &res {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                } else if let Some(t) = frame.trailers_ref() {
                    if let Some(g) = t
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                    {
                        this.grpc_status = Some(g);
                    }
                }
                if this.inner.is_end_stream() {
                    this.done();
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => this.done(),
            Poll::Pending => {}
        }
        res
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        self.done();
    }
}

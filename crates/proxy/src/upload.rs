//! The request body on its way upstream. Frames (data and trailers) are passed on as they
//! arrive, never collected first, so uploads of any size and client-streaming or
//! bidirectional gRPC go through.
//!
//! Retries and mirrors need the body a second time, so what has been read is also kept in a
//! replay buffer of at most the proxy's `max_request_body` bytes (the replay limit). The rule:
//! - while the bytes read stay within the limit, a retry resends them, then goes on with the
//!   rest as it arrives;
//! - once the body exceeds the limit, the buffer is dropped and the request is not retried:
//!   the attempt under way keeps streaming and its outcome is final;
//! - a mirror is sent once the whole body has arrived within the limit, with a copy of it; a
//!   body over the limit (or one that fails or is abandoned) skips its mirrors;
//! - once the outcome is final (upstream answered and no retry follows) and no mirror waits,
//!   the buffer is released and later frames are only passed on, so a long gRPC stream holds
//!   no more than what is in flight.
//!
//! A bodiless request (GET, HEAD) is [`Upload::Empty`]: no buffer, no allocation. Bytes are
//! counted as they are read from downstream (`istio_request_bytes`), whatever is buffered.
//!
//! Only one attempt reads at a time: each attempt's body carries a generation, and starting
//! a new attempt (or abandoning the request) makes the older bodies fail, so a connection
//! still writing a superseded attempt stops instead of racing the new one.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body, Frame, SizeHint};

use crate::h1server::InBody;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::body::BoxError;

/// One frame kept for replay.
#[derive(Debug, Clone)]
pub enum Chunk {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Chunk {
    fn frame(&self) -> Frame<Bytes> {
        match self {
            Chunk::Data(b) => Frame::data(b.clone()),
            Chunk::Trailers(t) => Frame::trailers(t.clone()),
        }
    }

    fn into_frame(self) -> Frame<Bytes> {
        match self {
            Chunk::Data(b) => Frame::data(b),
            Chunk::Trailers(t) => Frame::trailers(t),
        }
    }

    fn len(&self) -> usize {
        match self {
            Chunk::Data(b) => b.len(),
            Chunk::Trailers(_) => 0,
        }
    }
}

/// Why an attempt's body stopped short.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("request body superseded by a newer attempt, or the request was abandoned")]
    Superseded,
    #[error("request body exceeded the replay limit and cannot be sent again")]
    NotReplayable,
    #[error("downstream request body failed")]
    Downstream,
}

/// The shared reading state of one streamed body: the downstream body, the replay buffer and
/// the current attempt's position in it.
pub struct Source<B> {
    state: Mutex<State<B>>,
}

struct State<B> {
    /// `None` once the body has ended, failed or been abandoned.
    body: Option<B>,
    buf: VecDeque<Chunk>,
    /// Data bytes in `buf` while `keep`.
    buffered: usize,
    limit: usize,
    /// The current attempt's next chunk in `buf`. While `keep` is false it is 0 and `buf`
    /// holds only chunks the current attempt has yet to send.
    pos: usize,
    generation: u64,
    /// Chunks read are kept for replay.
    keep: bool,
    /// Every chunk read so far is in `buf` (within the limit, no failure).
    replayable: bool,
    /// No further attempt will start.
    committed: bool,
    failed: bool,
    /// Data bytes read from downstream.
    read: u64,
    /// Data bytes the current attempt has yielded.
    sent: u64,
    /// The body's declared length (`content-length`), if any.
    exact: Option<u64>,
    mirrors: Vec<oneshot::Sender<Arc<[Chunk]>>>,
    /// Told once the body has ended or failed (see [`Upload::received`]).
    waiting_for_end: Vec<oneshot::Sender<()>>,
}

impl<B> State<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    fn poll(&mut self, generation: u64, cx: &mut Context<'_>) -> Poll<Option<FrameResult>> {
        if generation != self.generation {
            return Poll::Ready(Some(Err(UploadError::Superseded.into())));
        }
        if self.pos < self.buf.len() {
            let frame = if self.keep {
                self.pos += 1;
                self.buf[self.pos - 1].frame()
            } else {
                match self.buf.pop_front() {
                    Some(c) => c.into_frame(),
                    None => return Poll::Ready(None),
                }
            };
            self.sent += frame.data_ref().map_or(0, |d| d.len() as u64);
            return Poll::Ready(Some(Ok(frame)));
        }
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(if self.failed {
                Some(Err(UploadError::Downstream.into()))
            } else {
                None
            });
        };
        match Pin::new(&mut *body).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.body = None;
                self.ended();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                self.body = None;
                self.failed = true;
                self.give_up();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(Some(Ok(frame))) => {
                // A body of known length ends with its last byte: the connection writing it
                // stops there and never polls for the end, so it is noticed here.
                let at_end = body.is_end_stream();
                let len = frame.data_ref().map_or(0, |d| d.len());
                self.read += len as u64;
                self.sent += len as u64;
                if self.keep {
                    if self.buffered + len > self.limit {
                        self.give_up();
                    } else if let Some(c) = chunk_of(&frame) {
                        self.buffered += len;
                        self.buf.push_back(c);
                        self.pos += 1;
                    }
                }
                if at_end {
                    self.body = None;
                    self.ended();
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self, generation: u64) -> bool {
        generation == self.generation
            && self.pos >= self.buf.len()
            && self.body.is_none()
            && !self.failed
    }

    fn size_hint(&self) -> SizeHint {
        let remaining = match (self.exact, &self.body) {
            (Some(n), _) => Some(n.saturating_sub(self.sent)),
            (None, None) if !self.failed => {
                Some(self.buf.iter().skip(self.pos).map(|c| c.len() as u64).sum())
            }
            _ => None,
        };
        match remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl<B> State<B> {
    /// Starts an attempt: returns its generation, or `None` when the body read so far can
    /// no longer be replayed.
    fn attempt(&mut self) -> Option<u64> {
        self.generation += 1;
        let pristine = self.read == 0 && self.body.is_some();
        if !(pristine || self.replayable && self.keep) {
            return None;
        }
        self.pos = 0;
        self.sent = 0;
        Some(self.generation)
    }

    /// The whole body arrived: mirrors get their copy.
    fn ended(&mut self) {
        self.tell_end();
        if self.replayable && self.keep && !self.mirrors.is_empty() {
            let copy: Arc<[Chunk]> = self.buf.iter().cloned().collect();
            for m in self.mirrors.drain(..) {
                let _ = m.send(copy.clone());
            }
        }
        self.mirrors.clear();
        if self.committed {
            self.stop_keeping();
        }
    }

    fn tell_end(&mut self) {
        for w in self.waiting_for_end.drain(..) {
            let _ = w.send(());
        }
    }

    /// Over the limit or failed: no retry, no mirror.
    fn give_up(&mut self) {
        if self.failed {
            self.tell_end();
        }
        self.replayable = false;
        self.mirrors.clear();
        self.stop_keeping();
    }

    fn stop_keeping(&mut self) {
        if self.keep {
            self.buf.drain(..self.pos);
            self.pos = 0;
            self.buffered = 0;
            self.keep = false;
        }
    }
}

type FrameResult = Result<Frame<Bytes>, BoxError>;

fn chunk_of(frame: &Frame<Bytes>) -> Option<Chunk> {
    if let Some(d) = frame.data_ref() {
        Some(Chunk::Data(d.clone()))
    } else {
        frame.trailers_ref().map(|t| Chunk::Trailers(t.clone()))
    }
}

/// A request body as the request template holds it; each attempt and mirror gets its own
/// [`ReqBody`] from it.
pub enum Upload<B = InBody> {
    /// No body (GET, HEAD): nothing allocated, nothing to replay.
    Empty,
    /// A body being read from downstream.
    Stream(Arc<Source<B>>),
    /// A complete copy (what a mirror sends).
    Copy(Arc<[Chunk]>),
}

impl<B> Upload<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// `limit`: the replay limit (see the module's rule).
    pub fn new(body: B, limit: usize) -> Self {
        if body.is_end_stream() {
            return Upload::Empty;
        }
        let exact = body.size_hint().exact();
        Upload::Stream(Arc::new(Source {
            state: Mutex::new(State {
                body: Some(body),
                buf: VecDeque::new(),
                buffered: 0,
                limit,
                pos: 0,
                generation: 0,
                keep: true,
                replayable: true,
                committed: false,
                failed: false,
                read: 0,
                sent: 0,
                exact,
                mirrors: Vec::new(),
                waiting_for_end: Vec::new(),
            }),
        }))
    }
}

impl<B> Upload<B> {
    /// Resolves once the whole body has been read from downstream (or has failed): where
    /// Envoy starts a route's timeout, so a long upload is not cut off while it streams.
    pub async fn received(&self) {
        let rx = match self {
            Upload::Empty | Upload::Copy(_) => return,
            Upload::Stream(src) => {
                let mut st = src.state.lock();
                if st.body.is_none() {
                    return;
                }
                let (tx, rx) = oneshot::channel();
                st.waiting_for_end.push(tx);
                rx
            }
        };
        // A sender dropped without a word (the request abandoned) counts as the end too.
        let _ = rx.await;
    }

    /// The body of a new attempt. Older attempts' bodies fail from now on.
    pub fn attempt(&self) -> ReqBody<B> {
        let kind = match self {
            Upload::Empty => Kind::Empty,
            Upload::Copy(c) => Kind::Copy {
                chunks: c.clone(),
                next: 0,
            },
            Upload::Stream(s) => match s.state.lock().attempt() {
                Some(generation) => Kind::Live {
                    source: s.clone(),
                    generation,
                },
                None => Kind::Broken,
            },
        };
        ReqBody { kind }
    }

    /// Whether a retry could resend the body.
    pub fn replayable(&self) -> bool {
        match self {
            Upload::Stream(s) => {
                let st = s.state.lock();
                st.replayable && st.keep
            }
            _ => true,
        }
    }

    /// The outcome is final: no further attempt will start, so the replay buffer is released
    /// (once mirrors have their copy).
    pub fn commit(&self) {
        if let Upload::Stream(s) = self {
            let mut st = s.state.lock();
            st.committed = true;
            if st.mirrors.is_empty() {
                st.stop_keeping();
            }
        }
    }

    /// The request was answered without upstream (timeout, no endpoint): stop reading the
    /// body and fail any attempt still sending it.
    pub fn abandon(&self) {
        if let Upload::Stream(s) = self {
            let mut st = s.state.lock();
            st.generation += 1;
            st.body = None;
            st.failed = true;
            st.give_up();
            st.buf.clear();
        }
    }

    /// Data bytes read from downstream so far; `None` for a body that is not streamed.
    pub fn read_bytes(&self) -> Option<u64> {
        match self {
            Upload::Stream(s) => Some(s.state.lock().read),
            _ => None,
        }
    }

    /// What a mirror of this request will send, resolved once the body is complete.
    pub fn for_mirror(&self) -> MirrorBody<B> {
        match self {
            Upload::Empty => MirrorBody::Ready(Some(Upload::Empty)),
            Upload::Copy(c) => MirrorBody::Ready(Some(Upload::Copy(c.clone()))),
            Upload::Stream(s) => {
                let mut st = s.state.lock();
                if !st.replayable || !st.keep || st.failed {
                    MirrorBody::Ready(None)
                } else if st.body.is_none() {
                    MirrorBody::Ready(Some(Upload::Copy(st.buf.iter().cloned().collect())))
                } else {
                    let (tx, rx) = oneshot::channel();
                    st.mirrors.push(tx);
                    MirrorBody::Wait(rx)
                }
            }
        }
    }
}

impl Upload<InBody> {
    /// A handle that reads the byte count later (telemetry, when the response ends).
    pub fn meter(&self) -> Option<Meter> {
        match self {
            Upload::Stream(s) => Some(Meter(s.clone())),
            _ => None,
        }
    }
}

/// Reads how many body bytes a streamed request has delivered so far.
pub struct Meter(Arc<Source<InBody>>);

impl Meter {
    pub fn bytes(&self) -> u64 {
        self.0.state.lock().read
    }
}

/// A mirror's body: ready, or waiting for the whole body to arrive. `None`: skip the mirror.
pub enum MirrorBody<B = InBody> {
    Ready(Option<Upload<B>>),
    Wait(oneshot::Receiver<Arc<[Chunk]>>),
}

impl<B> MirrorBody<B> {
    pub async fn resolve(self) -> Option<Upload<B>> {
        match self {
            MirrorBody::Ready(u) => u,
            MirrorBody::Wait(rx) => rx.await.ok().map(Upload::Copy),
        }
    }
}

/// The body of one upstream attempt (or mirror).
pub struct ReqBody<B = InBody> {
    kind: Kind<B>,
}

enum Kind<B> {
    Empty,
    Live {
        source: Arc<Source<B>>,
        generation: u64,
    },
    Copy {
        chunks: Arc<[Chunk]>,
        next: usize,
    },
    /// A retry of a body that can no longer be replayed.
    Broken,
}

impl<B> ReqBody<B> {
    pub fn empty() -> Self {
        ReqBody { kind: Kind::Empty }
    }
}

impl<B> Body for ReqBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().kind {
            Kind::Empty => Poll::Ready(None),
            Kind::Broken => Poll::Ready(Some(Err(UploadError::NotReplayable.into()))),
            Kind::Copy { chunks, next } => match chunks.get(*next) {
                Some(c) => {
                    *next += 1;
                    Poll::Ready(Some(Ok(c.frame())))
                }
                None => Poll::Ready(None),
            },
            Kind::Live { source, generation } => source.state.lock().poll(*generation, cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Empty => true,
            Kind::Broken => false,
            Kind::Copy { chunks, next } => *next >= chunks.len(),
            Kind::Live { source, generation } => source.state.lock().is_end_stream(*generation),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Broken => SizeHint::default(),
            Kind::Copy { chunks, next } => SizeHint::with_exact(
                chunks
                    .get(*next..)
                    .unwrap_or_default()
                    .iter()
                    .map(|c| c.len() as u64)
                    .sum(),
            ),
            Kind::Live { source, .. } => source.state.lock().size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::convert::Infallible;

    /// A downstream body whose frames are all available at once.
    struct Frames(VecDeque<Frame<Bytes>>);

    impl Body for Frames {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(Ok))
        }
    }

    fn upload(parts: &[&'static str], trailers: bool, limit: usize) -> Upload<Frames> {
        let mut f: VecDeque<Frame<Bytes>> =
            parts.iter().map(|p| Frame::data(Bytes::from(*p))).collect();
        if trailers {
            let mut t = HeaderMap::new();
            t.insert("grpc-status", "0".parse().unwrap());
            f.push_back(Frame::trailers(t));
        }
        Upload::new(Frames(f), limit)
    }

    /// Reads a body to its end: data joined, and whether trailers came.
    async fn drain(mut b: ReqBody<Frames>) -> Result<(String, bool), BoxError> {
        let (mut data, mut trailers) = (String::new(), false);
        for _ in 0..100 {
            match b.frame().await {
                None => return Ok((data, trailers)),
                Some(Err(e)) => return Err(e),
                Some(Ok(f)) => match f.into_data() {
                    Ok(d) => data.push_str(std::str::from_utf8(&d).unwrap()),
                    Err(f) => trailers |= f.is_trailers(),
                },
            }
        }
        panic!("body did not end");
    }

    #[tokio::test]
    async fn a_retry_resends_what_was_read_then_continues() {
        let u = upload(&["ab", "cd", "ef"], true, 100);
        let mut first = u.attempt();
        let f = first.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "ab");
        assert!(u.replayable());
        let second = u.attempt();
        assert!(
            first.frame().await.unwrap().is_err(),
            "the superseded attempt stops"
        );
        assert_eq!(drain(second).await.unwrap(), ("abcdef".into(), true));
        assert_eq!(u.read_bytes(), Some(6), "bytes are counted once");
        // A third attempt after the body ended replays all of it.
        let third = u.attempt();
        assert!(third.size_hint().exact() == Some(6));
        assert_eq!(drain(third).await.unwrap(), ("abcdef".into(), true));
    }

    #[tokio::test]
    async fn over_the_limit_streams_on_without_retry_or_mirror() {
        let u = upload(&["abc", "def", "ghi"], false, 5);
        let mirror = u.for_mirror();
        let first = u.attempt();
        assert_eq!(drain(first).await.unwrap().0, "abcdefghi");
        assert_eq!(u.read_bytes(), Some(9));
        assert!(!u.replayable());
        assert!(
            drain(u.attempt()).await.is_err(),
            "a retry cannot resend it"
        );
        assert!(mirror.resolve().await.is_none(), "the mirror is skipped");
        assert!(u.for_mirror().resolve().await.is_none());
    }

    #[tokio::test]
    async fn mirrors_get_a_copy_once_the_body_is_complete() {
        let u = upload(&["ab", "cd"], true, 100);
        let mirror = u.for_mirror();
        u.commit();
        assert_eq!(drain(u.attempt()).await.unwrap().0, "abcd");
        let Some(copy) = mirror.resolve().await else {
            panic!("mirror skipped")
        };
        assert_eq!(drain(copy.attempt()).await.unwrap(), ("abcd".into(), true));
        match &u {
            Upload::Stream(s) => assert!(s.state.lock().buf.is_empty(), "buffer released"),
            _ => unreachable!(),
        }
    }

    #[tokio::test]
    async fn commit_releases_the_buffer_and_abandon_stops_the_attempt() {
        let u = upload(&["ab", "cd"], false, 100);
        let mut b = u.attempt();
        b.frame().await.unwrap().unwrap();
        u.commit();
        match &u {
            Upload::Stream(s) => assert!(s.state.lock().buf.is_empty()),
            _ => unreachable!(),
        }
        assert_eq!(drain(b).await.unwrap().0, "cd");
        let v = upload(&["ab"], false, 100);
        let b = v.attempt();
        v.abandon();
        assert!(drain(b).await.is_err());
    }

    #[test]
    fn an_empty_body_allocates_nothing() {
        let u = Upload::new(Frames(VecDeque::new()), 100);
        // `Frames` never says it ended; a real bodiless request does.
        assert!(matches!(u, Upload::Stream(_)));
        let e = Upload::new(http_body_util::Empty::<Bytes>::new(), 100);
        assert!(matches!(e, Upload::Empty));
        assert!(e.attempt().is_end_stream());
    }
}

//! Spreading the HTTP listener's connections evenly over the serving threads.
//!
//! Why not one `SO_REUSEPORT` listener per thread: the kernel then picks a thread by hashing
//! the connection's addresses, blind to load, so a client with a handful of keep-alive
//! connections often lands them all, or all but one, on one thread while the other idles
//! (with 4 connections and 2 threads, an even split happens 3 times in 8). Here one thread
//! accepts and gives each connection to the thread with the fewest open ones, counting
//! itself (as Envoy's `exact_balance`): a hand-off per connection, never per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// A connection given to another serving thread, with its place in the count.
pub struct Handed {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub open: Open,
}

/// Where a serving thread receives the connections given to it.
pub type Inbox = mpsc::UnboundedReceiver<Handed>;

/// One open connection of one thread: counted while held.
pub struct Open {
    counts: Arc<[AtomicUsize]>,
    thread: usize,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.counts[self.thread].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The accepting thread's (thread 0's) side: open connections per thread and the other
/// threads' inboxes.
pub struct Spread {
    counts: Arc<[AtomicUsize]>,
    inboxes: Vec<mpsc::UnboundedSender<Handed>>,
}

impl Spread {
    /// For `threads` serving threads: the spread and the inboxes of threads 1 to
    /// `threads - 1`, in order.
    pub fn new(threads: usize) -> (Spread, Vec<Inbox>) {
        let counts: Arc<[AtomicUsize]> = (0..threads.max(1)).map(|_| AtomicUsize::new(0)).collect();
        let (senders, inboxes) = (1..threads).map(|_| mpsc::unbounded_channel()).unzip();
        (
            Spread {
                counts,
                inboxes: senders,
            },
            inboxes,
        )
    }

    /// The open-connection count of each thread, thread 0 first, as it changes.
    pub fn counts(&self) -> Arc<[AtomicUsize]> {
        self.counts.clone()
    }

    /// Open connections of each thread, thread 0 first.
    pub fn open_counts(&self) -> Vec<usize> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    fn count(&self, thread: usize) -> Open {
        self.counts[thread].fetch_add(1, Ordering::Relaxed);
        Open {
            counts: self.counts.clone(),
            thread,
        }
    }

    /// Gives `stream` to the thread with the fewest open connections (this one on a tie).
    /// `Some`: it is this thread's to serve.
    pub fn place(&self, stream: TcpStream, peer: SocketAddr) -> Option<(TcpStream, Open)> {
        let least = self
            .counts
            .iter()
            .enumerate()
            .min_by_key(|(i, c)| (c.load(Ordering::Relaxed), *i))
            .map_or(0, |(i, _)| i);
        if least == 0 {
            return Some((stream, self.count(0)));
        }
        let std_stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "could not hand a connection over");
                return None;
            }
        };
        let handed = Handed {
            stream: std_stream,
            peer,
            open: self.count(least),
        };
        match self.inboxes[least - 1].send(handed) {
            Ok(()) => None,
            // That thread has stopped: serve it here.
            Err(mpsc::error::SendError(h)) => {
                drop(h.open);
                let stream = TcpStream::from_std(h.stream).ok()?;
                Some((stream, self.count(0)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn pair(listener: &tokio::net::TcpListener) -> (TcpStream, SocketAddr, TcpStream) {
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        (server, peer, client)
    }

    #[tokio::test]
    async fn connections_go_to_the_least_loaded_thread_and_are_uncounted_when_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (spread, mut inboxes) = Spread::new(3);
        let mut here = Vec::new();
        let mut clients = Vec::new();
        for _ in 0..7 {
            let (s, peer, c) = pair(&listener).await;
            clients.push(c);
            if let Some(x) = spread.place(s, peer) {
                here.push(x);
            }
        }
        // 7 over 3 threads: 3 here (ties stay here), 2 and 2 handed over.
        assert_eq!(spread.open_counts(), vec![3, 2, 2]);
        assert_eq!(here.len(), 3);
        let mut handed = Vec::new();
        for inbox in &mut inboxes {
            let mut n = 0;
            while let Ok(h) = inbox.try_recv() {
                assert_eq!(h.stream.peer_addr().unwrap(), h.peer);
                handed.push(h);
                n += 1;
            }
            assert_eq!(n, 2);
        }
        // Closing connections of thread 1 makes it the next one's home.
        handed.retain(|h| h.open.thread != 1);
        assert_eq!(spread.open_counts(), vec![3, 0, 2]);
        let (s, peer, _c) = pair(&listener).await;
        assert!(spread.place(s, peer).is_none());
        assert_eq!(spread.open_counts(), vec![3, 1, 2]);
        here.clear();
        assert_eq!(spread.open_counts(), vec![0, 1, 2]);
    }

    #[tokio::test]
    async fn a_stopped_thread_s_connections_are_served_here() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (spread, inboxes) = Spread::new(2);
        drop(inboxes);
        let (s, peer, _c1) = pair(&listener).await;
        let first = spread.place(s, peer);
        assert!(first.is_some());
        let (s, peer, _c2) = pair(&listener).await;
        let second = spread.place(s, peer);
        assert!(second.is_some(), "thread 1 is gone: served here");
        assert_eq!(spread.open_counts(), vec![2, 0]);
    }
}

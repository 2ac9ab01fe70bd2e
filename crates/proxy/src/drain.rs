//! Socket reads that leave tokio's read readiness as the kernel left the socket.
//!
//! `TcpStream::try_read_buf` keeps a stream marked readable until a read finds nothing, so
//! after a request that arrived in one read the next wait returns at once, costs a read
//! that finds nothing, and (under the head timeout) sets up a timer whose registration
//! wakes the runtime's driver: three syscalls a request on a keep-alive connection.
//! tokio's own `poll_read` avoids that by treating a read that left room in the buffer as
//! having drained the socket; [`try_read_buf`] does the same for the proxy's own codec.

use std::io::ErrorKind;

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// `io.try_read_buf(buf)`, with the stream's read readiness cleared when the read left
/// room in `buf`: the socket held no more, and edge-triggered epoll reports the next bytes
/// as a new event.
pub(crate) fn try_read_buf(io: &TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    let spare = buf.capacity() - buf.len();
    let mut read = 0;
    let r = io.try_io(Interest::READABLE, || {
        read = io.try_read_buf(buf)?;
        if read > 0 && read < spare {
            // Clears the readiness this read observed; the bytes are reported below.
            Err(ErrorKind::WouldBlock.into())
        } else {
            Ok(read)
        }
    });
    match r {
        Err(e) if e.kind() == ErrorKind::WouldBlock && read > 0 => Ok(read),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A short read reports its bytes and leaves the stream waiting for the next ones; a
    /// read that fills the buffer keeps it readable; bytes sent later are read after the
    /// wait they end.
    #[tokio::test]
    async fn short_reads_clear_readiness_and_keep_their_bytes() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        client.write_all(b"hello").await.unwrap();
        server.readable().await.unwrap();
        let mut buf = BytesMut::with_capacity(64);
        assert_eq!(try_read_buf(&server, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..], b"hello");
        // Not readable any more: a wait does not return before new bytes come.
        let waited =
            tokio::time::timeout(std::time::Duration::from_millis(50), server.readable()).await;
        assert!(waited.is_err(), "readiness was left set");
        client.write_all(&[7u8; 100]).await.unwrap();
        server.readable().await.unwrap();
        let mut small = BytesMut::with_capacity(10);
        let n = try_read_buf(&server, &mut small).unwrap();
        assert!(n >= 10, "{n}");
        // The buffer filled: the rest is still there, readiness kept.
        let mut rest = BytesMut::with_capacity(200);
        let got = try_read_buf(&server, &mut rest).unwrap();
        assert_eq!(n + got, 100);
        drop(client);
        server.readable().await.unwrap();
        assert_eq!(try_read_buf(&server, &mut rest).unwrap(), 0);
    }
}

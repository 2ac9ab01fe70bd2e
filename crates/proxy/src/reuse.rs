//! Header maps and head buffers reused within a thread. Every proxied request builds two
//! header maps (the request's and the upstream response's), each two heap blocks, and two
//! heads to write; taking them from per-thread stacks of cleared spares instead of the
//! allocator saves more per request than the maps' own work.
//!
//! Bounded both ways: a thread keeps at most [`KEEP`] spares of each kind, and one that grew
//! past [`LARGEST`] headers or [`LARGEST_BUFFER`] bytes (a rare, large head) goes back to the
//! allocator.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use http::HeaderMap;

/// Spare maps kept per thread: about as many as requests in flight on one core under load.
const KEEP: usize = 64;
/// Capacity (headers) above which a map is not kept.
const LARGEST: usize = 64;
/// Capacity (bytes) above which a buffer is not kept.
const LARGEST_BUFFER: usize = 4096;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    static SPARE_BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty byte buffer with room for `bytes`, back to the thread's spares when dropped.
pub fn buffer(bytes: usize) -> Buffer {
    let mut b = SPARE_BUFFERS
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_default();
    b.reserve(bytes);
    Buffer(b)
}

/// A buffer from [`buffer`].
pub struct Buffer(Vec<u8>);

impl Deref for Buffer {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let mut b = std::mem::take(&mut self.0);
        if b.capacity() == 0 || b.capacity() > LARGEST_BUFFER {
            return;
        }
        b.clear();
        let _ = SPARE_BUFFERS.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < KEEP {
                s.push(b);
            }
        });
    }
}

/// An empty map with room for `headers` headers.
pub fn header_map(headers: usize) -> HeaderMap {
    let spare = SPARE.with(|s| s.borrow_mut().pop());
    match spare {
        Some(mut map) => {
            if map.capacity() < headers {
                map.reserve(headers);
            }
            map
        }
        None => HeaderMap::with_capacity(headers),
    }
}

/// Gives a map back for reuse (its headers are dropped now).
pub fn give_header_map(mut map: HeaderMap) {
    if map.capacity() == 0 || map.capacity() > LARGEST {
        return;
    }
    map.clear();
    // `try_with`: a map dropped while the thread exits is simply freed.
    let _ = SPARE.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < KEEP {
            s.push(map);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_come_back_empty_with_their_room_and_the_stack_is_bounded() {
        let mut m = header_map(8);
        m.insert("x-a", "1".parse().unwrap());
        let room = m.capacity();
        give_header_map(m);
        let again = header_map(4);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), room);
        let big = HeaderMap::with_capacity(LARGEST * 4);
        give_header_map(big);
        assert!(
            header_map(1).capacity() <= LARGEST,
            "a large map is not kept"
        );
        for _ in 0..KEEP * 2 {
            give_header_map(HeaderMap::with_capacity(8));
        }
        assert_eq!(SPARE.with(|s| s.borrow().len()), KEEP);
    }

    #[test]
    fn buffers_come_back_empty_and_large_ones_are_not_kept() {
        let mut b = buffer(100);
        b.extend_from_slice(b"head");
        let room = b.capacity();
        drop(b);
        let again = buffer(10);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), room);
        drop(again);
        drop(buffer(LARGEST_BUFFER * 2));
        assert!(buffer(1).capacity() <= LARGEST_BUFFER);
    }
}

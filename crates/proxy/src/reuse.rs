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
use std::thread::LocalKey;

use http::HeaderMap;

/// Spares of each kind kept per thread: about as many as requests in flight on one core
/// under load.
const KEEP: usize = 64;
/// Capacity (headers) above which a map is not kept.
const LARGEST: usize = 64;
/// Capacity (bytes) above which a buffer is not kept.
const LARGEST_BUFFER: usize = 4096;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
    static SPARE_BUFFERS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// What can be kept as a spare: emptied keeping its room, and grown.
trait Spare: Default {
    /// Capacity above which one is not kept.
    const LARGEST: usize;
    fn capacity(&self) -> usize;
    fn clear(&mut self);
    fn reserve(&mut self, additional: usize);
}

impl Spare for HeaderMap {
    const LARGEST: usize = LARGEST;
    fn capacity(&self) -> usize {
        HeaderMap::capacity(self)
    }
    fn clear(&mut self) {
        HeaderMap::clear(self)
    }
    fn reserve(&mut self, additional: usize) {
        HeaderMap::reserve(self, additional)
    }
}

impl Spare for Vec<u8> {
    const LARGEST: usize = LARGEST_BUFFER;
    fn capacity(&self) -> usize {
        Vec::capacity(self)
    }
    fn clear(&mut self) {
        Vec::clear(self)
    }
    fn reserve(&mut self, additional: usize) {
        Vec::reserve(self, additional)
    }
}

/// An empty spare from `spares` (or a new one) with room for `room`.
fn take<T: Spare>(spares: &'static LocalKey<RefCell<Vec<T>>>, room: usize) -> T {
    let mut t = spares.with(|s| s.borrow_mut().pop()).unwrap_or_default();
    if t.capacity() < room {
        t.reserve(room);
    }
    t
}

/// Keeps `t` in `spares` when it is worth keeping and there is room (its contents are
/// dropped now).
fn keep<T: Spare>(spares: &'static LocalKey<RefCell<Vec<T>>>, mut t: T) {
    if t.capacity() == 0 || t.capacity() > T::LARGEST {
        return;
    }
    t.clear();
    // `try_with`: one dropped while the thread exits is simply freed.
    let _ = spares.try_with(|s| {
        let mut s = s.borrow_mut();
        if s.len() < KEEP {
            s.push(t);
        }
    });
}

/// An empty byte buffer with room for `bytes`, back to the thread's spares when dropped.
pub fn buffer(bytes: usize) -> Buffer {
    Buffer(take(&SPARE_BUFFERS, bytes))
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
        keep(&SPARE_BUFFERS, std::mem::take(&mut self.0));
    }
}

/// An empty map with room for `headers` headers.
pub fn header_map(headers: usize) -> HeaderMap {
    take(&SPARE, headers)
}

/// Gives a map back for reuse (its headers are dropped now).
pub fn give_header_map(map: HeaderMap) {
    keep(&SPARE, map);
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

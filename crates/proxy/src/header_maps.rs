//! Header maps reused within a thread. Every proxied request builds two maps (the request's
//! and the upstream response's), each two heap blocks; taking them from a per-thread stack of
//! cleared maps instead of the allocator saves more per request than the maps' own work.
//!
//! Bounded both ways: a thread keeps at most [`KEEP`] spare maps, and a map that grew past
//! [`LARGEST`] headers (a rare, large head) goes back to the allocator.

use std::cell::RefCell;

use http::HeaderMap;

/// Spare maps kept per thread: about as many as requests in flight on one core under load.
const KEEP: usize = 64;
/// Capacity (headers) above which a map is not kept.
const LARGEST: usize = 64;

thread_local! {
    static SPARE: RefCell<Vec<HeaderMap>> = const { RefCell::new(Vec::new()) };
}

/// An empty map with room for `headers` headers.
pub fn take(headers: usize) -> HeaderMap {
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
pub fn give(mut map: HeaderMap) {
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
        let mut m = take(8);
        m.insert("x-a", "1".parse().unwrap());
        let room = m.capacity();
        give(m);
        let again = take(4);
        assert!(again.is_empty());
        assert_eq!(again.capacity(), room);
        let big = HeaderMap::with_capacity(LARGEST * 4);
        give(big);
        assert!(take(1).capacity() <= LARGEST, "a large map is not kept");
        for _ in 0..KEEP * 2 {
            give(HeaderMap::with_capacity(8));
        }
        assert_eq!(SPARE.with(|s| s.borrow().len()), KEEP);
    }
}

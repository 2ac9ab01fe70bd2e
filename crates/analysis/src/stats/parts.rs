//! Running a computation over the parts of a span store on all cores.

use meshlens_model::SpanPart;

/// Threads at most (the store is shared and read-only).
const MAX_THREADS: usize = 8;

/// `f` over every part, on up to one thread per core; results in part order, whatever
/// thread computed them, so merging them is deterministic. Threads take the next part from
/// a shared counter, so one big segment does not leave the other cores idle; the first
/// error is returned.
pub(super) fn map_parts<T, E, F>(parts: &[Box<dyn SpanPart + '_>], f: F) -> Result<Vec<T>, E>
where
    T: Send,
    E: Send,
    F: Fn(&dyn SpanPart) -> Result<T, E> + Sync,
{
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
        .min(parts.len());
    if threads <= 1 {
        return parts.iter().map(|p| f(p.as_ref())).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<T, E>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(p) = parts.get(i) else {
                            return out;
                        };
                        out.push((i, f(p.as_ref())));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use meshlens_model::{Projection, SpanRow, StorageError};

    use super::*;

    struct Numbered(u64);

    impl SpanPart for Numbered {
        fn time_range(&self) -> Option<(u64, u64)> {
            Some((self.0, self.0))
        }
        fn scan(
            &self,
            _: &Projection<'_>,
            _: &mut dyn FnMut(&SpanRow<'_>),
        ) -> Result<(), StorageError> {
            Ok(())
        }
    }

    #[test]
    fn results_come_in_part_order() {
        let parts: Vec<Box<dyn SpanPart>> = (0..50).map(|i| Box::new(Numbered(i)) as _).collect();
        let got: Result<Vec<u64>, ()> = map_parts(&parts, |p| Ok(p.time_range().unwrap().0));
        assert_eq!(got.unwrap(), (0..50).collect::<Vec<_>>());
        let err: Result<Vec<u64>, u64> = map_parts(&parts, |p| {
            let i = p.time_range().unwrap().0;
            if i % 7 == 3 {
                Err(i)
            } else {
                Ok(i)
            }
        });
        assert_eq!(err, Err(3));
    }
}

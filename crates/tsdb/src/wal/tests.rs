use super::*;
use meshlens_model::Labels;

fn series(id: u64) -> Record {
    Record::Series {
        id,
        labels: Labels::from_pairs([("__name__", "m"), ("i", id.to_string().as_str())]),
    }
}

fn samples(id: u64, n: i64) -> Record {
    Record::Samples(
        (0..n)
            .map(|t| WalSample {
                series: id,
                t: t * 1000,
                v: t as f64,
            })
            .collect(),
    )
}

fn replay(dir: &Path) -> (Vec<Record>, ReplayReport) {
    let mut got = Vec::new();
    let (_wal, report) = Wal::open(dir, |r| got.push(r)).unwrap();
    (got, report)
}

#[test]
fn records_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), |_| {}).unwrap();
        let t = wal.append(&[series(1), samples(1, 10)]).unwrap();
        wal.sync(t).unwrap();
    }
    let (got, report) = replay(dir.path());
    assert_eq!(got, vec![series(1), samples(1, 10)]);
    assert_eq!(report.dropped_records, 0);
}

#[test]
fn torn_tail_is_truncated_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), |_| {}).unwrap();
        let t = wal
            .append(&[series(1), samples(1, 5), samples(1, 6)])
            .unwrap();
        wal.sync(t).unwrap();
    }
    let seg = segment_path(dir.path(), 1);
    let len = fs::metadata(&seg).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let (got, report) = replay(dir.path());
    assert_eq!(got, vec![series(1), samples(1, 5)]);
    assert_eq!(report.dropped_records, 1);
    // The repair is durable: a second replay sees a clean log.
    let (got2, report2) = replay(dir.path());
    assert_eq!(got2.len(), 2);
    assert_eq!(report2.dropped_records, 0);
}

#[test]
fn bit_flip_drops_the_record_and_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), |_| {}).unwrap();
        let t = wal
            .append(&[series(1), samples(1, 5), samples(1, 6), samples(1, 7)])
            .unwrap();
        wal.sync(t).unwrap();
    }
    let seg = segment_path(dir.path(), 1);
    let mut data = fs::read(&seg).unwrap();
    let mut first = Vec::new();
    encode_frame(&mut first, &series(1));
    let mut second = Vec::new();
    encode_frame(&mut second, &samples(1, 5));
    let at = first.len() + second.len() + 12;
    data[at] ^= 0x40;
    fs::write(&seg, &data).unwrap();
    let (got, report) = replay(dir.path());
    assert_eq!(got.len(), 2);
    assert_eq!(report.dropped_records, 2);
}

#[test]
fn checkpoint_replaces_the_log() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), |_| {}).unwrap();
        wal.append(&[series(1), samples(1, 5)]).unwrap();
        wal.checkpoint([series(2)]).unwrap();
        let t = wal.append(&[samples(2, 2)]).unwrap();
        wal.sync(t).unwrap();
    }
    let (got, _) = replay(dir.path());
    assert_eq!(got, vec![series(2), samples(2, 2)]);
}

fn batch(id: u64, n: i64) -> SampleBatch {
    let mut b = SampleBatch::with_capacity(n as usize);
    for t in 0..n {
        b.push(id, t * 1000, t as f64);
    }
    b
}

#[test]
fn sample_batches_replay_as_appended() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), |_| {}).unwrap();
        wal.append(&[series(1)]).unwrap();
        wal.append_batch(&mut batch(1, 10)).unwrap();
        let t = wal.append_batch(&mut batch(1, 3)).unwrap();
        wal.sync(t).unwrap();
    }
    let (got, report) = replay(dir.path());
    assert_eq!(got, vec![series(1), samples(1, 10), samples(1, 3)]);
    assert_eq!(report.dropped_records, 0);
}

#[test]
fn torn_batch_drops_only_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (wal, _) = Wal::open(dir.path(), |_| {}).unwrap();
        wal.append(&[series(1)]).unwrap();
        wal.append_batch(&mut batch(1, 4)).unwrap();
        let t = wal.append_batch(&mut batch(1, 50)).unwrap();
        wal.sync(t).unwrap();
    }
    let seg = segment_path(dir.path(), 1);
    let len = fs::metadata(&seg).unwrap().len();
    // Cut inside the last batch, as a crash mid-write would.
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    let (got, report) = replay(dir.path());
    assert_eq!(got, vec![series(1), samples(1, 4)]);
    assert_eq!(report.dropped_records, 1);
}

/// Batches around and above the buffer's size replay in order, and the buffer never
/// grows past its one allocation.
#[test]
fn batches_larger_than_the_buffer_keep_order_and_the_buffer_its_size() {
    let dir = tempfile::tempdir().unwrap();
    // About 0.4, 0.9 and 1.9 MiB of samples (6 bytes each), and small ones between.
    let sizes = [70_000, 7, 150_000, 3, 330_000, 1, 70_000, 70_000, 70_000];
    let want: Vec<Record> = sizes
        .iter()
        .enumerate()
        .map(|(i, n)| samples(i as u64, *n))
        .collect();
    let bytes = |r: &Record| {
        let mut f = Vec::new();
        encode_frame(&mut f, r);
        f.len()
    };
    assert!(bytes(&want[4]) > BUFFER_BYTES && bytes(&want[2]) > BUFFER_BYTES / 2);
    {
        let (wal, _) = Wal::open(dir.path(), |_| {}).unwrap();
        for r in &want {
            let t = wal.append(std::slice::from_ref(r)).unwrap();
            assert!(wal.active.lock().buf.capacity() <= BUFFER_BYTES);
            if matches!(r, Record::Samples(s) if s.len() == 3) {
                wal.sync(t).unwrap();
            }
        }
        wal.sync(u64::MAX).unwrap();
    }
    let (got, report) = replay(dir.path());
    assert_eq!(got, want);
    assert_eq!(report.dropped_records, 0);
}

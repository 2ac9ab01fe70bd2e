//! The write-ahead log: CRC-checked frames, one per written batch, with group commit.
//!
//! Many writers append concurrently; whoever finds no sync in progress becomes the leader,
//! writes everything pending with one `write` and one `fdatasync`, and wakes the others.
//! So N concurrent writers pay for about one fsync, not N.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

#[cfg(test)]
use crate::codec::put_uvarint;
use crate::codec::Reader;

/// Frame header: payload length (u32 LE) and CRC-32 of the payload (u32 LE).
pub const FRAME_HEADER: usize = 8;
/// Frames larger than this are treated as corruption on replay (a torn length field).
pub const MAX_FRAME: usize = 256 << 20;

pub fn wal_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

pub fn parse_wal_name(name: &str) -> Option<u64> {
    name.strip_suffix(".wal")?.parse().ok()
}

/// Builds one frame for `n` records already encoded in `records`.
#[cfg(test)]
pub fn build_frame(n: usize, records: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(records.len() + 10);
    put_uvarint(&mut payload, n as u64);
    payload.extend_from_slice(records);
    let mut frame = Vec::with_capacity(payload.len() + FRAME_HEADER);
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

/// A decoded frame payload: span count and the records bytes.
pub fn split_payload(payload: &[u8]) -> Option<(usize, &[u8])> {
    let mut r = Reader::new(payload);
    let n = r.uvarint().ok()? as usize;
    Some((n, &payload[r.pos..]))
}

/// Result of reading one WAL file back.
pub struct Replayed {
    pub payloads: Vec<Vec<u8>>,
    pub file_len: u64,
}

/// Reads every intact frame; stops at the first torn or corrupt one.
pub fn read_wal(path: &Path) -> io::Result<Replayed> {
    let mut buf = Vec::new();
    File::open(path)?.read_to_end(&mut buf)?;
    let mut pos = 0usize;
    let mut payloads = Vec::new();
    while pos + FRAME_HEADER <= buf.len() {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().unwrap());
        if len == 0 || len > MAX_FRAME || pos + FRAME_HEADER + len > buf.len() {
            break;
        }
        let payload = &buf[pos + FRAME_HEADER..pos + FRAME_HEADER + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        payloads.push(payload.to_vec());
        pos += FRAME_HEADER + len;
    }
    Ok(Replayed {
        payloads,
        file_len: buf.len() as u64,
    })
}

struct WalState {
    file: Arc<File>,
    seq: u64,
    pending: Vec<u8>,
    appended: u64,
    synced: u64,
    syncing: bool,
    bytes: u64,
    /// Set after a failed write/sync: the file may now hold a torn frame, so later frames
    /// would be unreachable on replay. Every later append fails until the next rotation.
    poisoned: Option<String>,
}

pub struct Wal {
    dir: PathBuf,
    fsync: bool,
    state: Mutex<WalState>,
    cond: Condvar,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Starts a fresh WAL file with sequence `seq`.
    pub fn create(dir: &Path, seq: u64, fsync: bool) -> io::Result<Wal> {
        let file = open_append(&wal_path(dir, seq))?;
        if fsync {
            sync_dir(dir)?;
        }
        Ok(Wal {
            dir: dir.to_path_buf(),
            fsync,
            state: Mutex::new(WalState {
                file: Arc::new(file),
                seq,
                pending: Vec::new(),
                appended: 0,
                synced: 0,
                syncing: false,
                bytes: 0,
                poisoned: None,
            }),
            cond: Condvar::new(),
        })
    }

    /// Appends one frame and returns once it is on disk (group commit).
    pub fn append(&self, frame: &[u8]) -> io::Result<()> {
        let mut st = self.state.lock();
        if let Some(e) = &st.poisoned {
            return Err(io::Error::other(format!("wal unusable after error: {e}")));
        }
        st.pending.extend_from_slice(frame);
        st.appended += 1;
        let me = st.appended;
        loop {
            if st.synced >= me {
                return Ok(());
            }
            if let Some(e) = &st.poisoned {
                return Err(io::Error::other(format!("wal write failed: {e}")));
            }
            if st.syncing {
                self.cond.wait(&mut st);
                continue;
            }
            st.syncing = true;
            let mut buf = std::mem::take(&mut st.pending);
            let target = st.appended;
            let file = st.file.clone();
            let fsync = self.fsync;
            let res = parking_lot::MutexGuard::unlocked(&mut st, || {
                (&*file).write_all(&buf)?;
                if fsync {
                    file.sync_data()?;
                }
                Ok::<(), io::Error>(())
            });
            st.syncing = false;
            match res {
                Ok(()) => {
                    st.synced = target;
                    st.bytes += buf.len() as u64;
                    if st.pending.is_empty() && buf.capacity() <= 8 << 20 {
                        buf.clear();
                        st.pending = buf;
                    }
                }
                Err(e) => st.poisoned = Some(e.to_string()),
            }
            self.cond.notify_all();
        }
    }

    /// Switches to a new file `seq`; the caller guarantees no append is in flight.
    pub fn rotate(&self, seq: u64) -> io::Result<()> {
        let file = open_append(&wal_path(&self.dir, seq))?;
        if self.fsync {
            sync_dir(&self.dir)?;
        }
        let mut st = self.state.lock();
        debug_assert!(st.pending.is_empty() && !st.syncing);
        st.file = Arc::new(file);
        st.seq = seq;
        st.bytes = 0;
        st.appended = 0;
        st.synced = 0;
        st.poisoned = None;
        Ok(())
    }

    /// Makes sure everything written is synced (a no-op when every append already was).
    pub fn flush(&self) -> io::Result<()> {
        let file = self.state.lock().file.clone();
        file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_torn_tail_stops_replay() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::create(dir.path(), 1, true).unwrap();
        wal.append(&build_frame(1, b"abc")).unwrap();
        wal.append(&build_frame(2, b"defg")).unwrap();
        let p = wal_path(dir.path(), 1);
        let r = read_wal(&p).unwrap();
        assert_eq!(r.payloads.len(), 2);
        assert_eq!(split_payload(&r.payloads[1]).unwrap(), (2, &b"defg"[..]));
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let r = read_wal(&p).unwrap();
        assert_eq!(r.payloads.len(), 2);
        assert_eq!(r.file_len, wal.state.lock().bytes + 6);
    }
}

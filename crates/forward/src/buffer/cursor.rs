//! Cursor files: `cursors/<fnv-1a 64 of the destination, hex>`, holding two 16-byte slots
//! `[next_seq u64][crc32 u32][0 u32]` and then the destination's name. Writes alternate
//! between the slots (one `pwrite` + `fdatasync` each), so a write torn by a crash leaves
//! the other slot, one commit older, to read back.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{io_err, sync_dir, ForwardError};

const SLOT: usize = 16;
const NAME_AT: usize = 2 * SLOT;

/// FNV-1a, 64 bits: a stable file name for any destination string.
pub(crate) fn file_name(dest: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dest.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn slot_bytes(seq: u64, name: &str) -> [u8; SLOT] {
    let mut s = [0u8; SLOT];
    s[..8].copy_from_slice(&seq.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&s[..8]);
    crc.update(name.as_bytes());
    s[8..12].copy_from_slice(&crc.finalize().to_le_bytes());
    s
}

fn parse_slot(s: &[u8], name: &str) -> Option<u64> {
    let seq = u64::from_le_bytes(s[..8].try_into().ok()?);
    (slot_bytes(seq, name)[..12] == s[..12]).then_some(seq)
}

pub(crate) struct CursorFile {
    file: File,
    path: PathBuf,
    name: String,
    next_slot: u64,
    /// The value on disk.
    pub stored: u64,
}

impl CursorFile {
    /// The destination's cursor file if it exists and holds this destination (a file of
    /// another name, a hash collision or damage, counts as absent and is logged).
    pub fn load(dir: &Path, name: &str) -> Result<Option<CursorFile>, ForwardError> {
        let path = dir.join(file_name(name));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path, e)),
        };
        if bytes.len() < NAME_AT || &bytes[NAME_AT..] != name.as_bytes() {
            tracing::warn!(file = %path.display(), destination = name,
                "forwarding buffer: cursor file names another destination or is damaged; starting this destination afresh");
            return Ok(None);
        }
        let a = parse_slot(&bytes[..SLOT], name);
        let b = parse_slot(&bytes[SLOT..NAME_AT], name);
        let (seq, next_slot) = match (a, b) {
            (Some(a), Some(b)) if b > a => (b, 0),
            (Some(a), _) => (a, 1),
            (None, Some(b)) => (b, 0),
            (None, None) => {
                tracing::warn!(file = %path.display(), destination = name,
                    "forwarding buffer: both cursor slots are damaged; starting this destination afresh");
                return Ok(None);
            }
        };
        let file = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        Ok(Some(CursorFile {
            file,
            path,
            name: name.to_string(),
            next_slot,
            stored: seq,
        }))
    }

    /// Writes a new cursor file atomically (temporary file, fsync, rename, fsync of the
    /// directory).
    pub fn create(dir: &Path, name: &str, seq: u64) -> Result<CursorFile, ForwardError> {
        let path = dir.join(file_name(name));
        let tmp = dir.join(format!("{}.tmp", file_name(name)));
        let mut bytes = Vec::with_capacity(NAME_AT + name.len());
        bytes.extend_from_slice(&slot_bytes(seq, name));
        bytes.extend_from_slice(&slot_bytes(seq, name));
        bytes.extend_from_slice(name.as_bytes());
        let write = || -> io::Result<File> {
            let f = File::create(&tmp)?;
            f.write_all_at(&bytes, 0)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            Ok(f)
        };
        let file = write().map_err(|e| io_err(&path, e))?;
        sync_dir(dir)?;
        Ok(CursorFile {
            file,
            path,
            name: name.to_string(),
            next_slot: 1,
            stored: seq,
        })
    }

    /// Records `seq` durably.
    pub fn store(&mut self, seq: u64) -> Result<(), ForwardError> {
        let at = (self.next_slot % 2) * SLOT as u64;
        self.file
            .write_all_at(&slot_bytes(seq, &self.name), at)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io_err(&self.path, e))?;
        self.next_slot += 1;
        self.stored = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_alternate_slots_and_a_torn_slot_falls_back_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = CursorFile::create(dir.path(), "http://hub:9090", 5).unwrap();
        c.store(9).unwrap();
        c.store(12).unwrap();
        assert_eq!(
            CursorFile::load(dir.path(), "http://hub:9090")
                .unwrap()
                .unwrap()
                .stored,
            12
        );
        // 12 went to slot 0 (5 at creation in both, 9 in slot 1): tear it.
        let path = dir.path().join(file_name("http://hub:9090"));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let mut c = CursorFile::load(dir.path(), "http://hub:9090")
            .unwrap()
            .unwrap();
        assert_eq!(c.stored, 9);
        // The next store overwrites the damaged slot, keeping 9 until it is done.
        c.store(20).unwrap();
        assert_eq!(
            CursorFile::load(dir.path(), "http://hub:9090")
                .unwrap()
                .unwrap()
                .stored,
            20
        );
    }

    #[test]
    fn another_name_or_damage_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        CursorFile::create(dir.path(), "a", 3).unwrap();
        assert!(CursorFile::load(dir.path(), "b").unwrap().is_none());
        let path = dir.path().join(file_name("a"));
        std::fs::write(&path, b"short").unwrap();
        assert!(CursorFile::load(dir.path(), "a").unwrap().is_none());
        let mut bytes = vec![0xffu8; NAME_AT];
        bytes.extend_from_slice(b"a");
        std::fs::write(&path, &bytes).unwrap();
        assert!(CursorFile::load(dir.path(), "a").unwrap().is_none());
        assert_eq!(file_name("a").len(), 16);
        assert_ne!(file_name("a"), file_name("b"));
    }
}

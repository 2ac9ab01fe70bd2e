//! Segment files: `<16-digit first sequence number>.seg`, a run of records
//! `[len u32][crc32 u32][kind u8][items u32][buffered_at_ms i64][payload]` (little endian;
//! `len` is the stored payload's length, the payload being snappy-compressed (raw format);
//! the CRC covers everything after itself). A record's sequence number is its segment's
//! first plus its index, so no number is stored.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{io_err, ForwardError, Kind};

pub(crate) const HEADER_LEN: usize = 21;
/// Larger payloads are refused: offsets in a segment stay below 4 GiB.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;
/// Segments are cut at this size whatever the options say (offsets are `u32`).
pub(crate) const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// What the buffer keeps in memory per record: enough to plan reads, count drops and
/// compute lag without touching the file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub offset: u32,
    pub items: u32,
    /// `buffered_at_ms << 1 | kind`: 16 bytes a record.
    at_kind: u64,
}

impl Meta {
    pub fn new(offset: u64, items: u32, at_ms: i64, kind: Kind) -> Meta {
        let bit = match kind {
            Kind::Metrics => 0,
            Kind::Spans => 1,
        };
        Meta {
            offset: offset as u32,
            items,
            at_kind: ((at_ms.max(0) as u64) << 1) | bit,
        }
    }
    pub fn at_ms(&self) -> i64 {
        (self.at_kind >> 1) as i64
    }
    pub fn kind(&self) -> Kind {
        if self.at_kind & 1 == 0 {
            Kind::Metrics
        } else {
            Kind::Spans
        }
    }
}

pub(crate) fn kind_byte(kind: Kind) -> u8 {
    match kind {
        Kind::Metrics => 1,
        Kind::Spans => 2,
    }
}

fn kind_of(b: u8) -> Option<Kind> {
    match b {
        1 => Some(Kind::Metrics),
        2 => Some(Kind::Spans),
        _ => None,
    }
}

/// The header of a record holding `payload`, checksum included.
pub(crate) fn encode_header(
    kind: Kind,
    items: u32,
    at_ms: i64,
    payload: &[u8],
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    h[8] = kind_byte(kind);
    h[9..13].copy_from_slice(&items.to_le_bytes());
    h[13..21].copy_from_slice(&at_ms.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[8..]);
    crc.update(payload);
    h[4..8].copy_from_slice(&crc.finalize().to_le_bytes());
    h
}

/// A decoded header; the checksum is checked against the payload by [`Header::verify`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub len: u32,
    crc: u32,
    pub kind: Kind,
    pub items: u32,
    pub at_ms: i64,
}

impl Header {
    /// None when the kind byte or length cannot be a record's.
    pub fn parse(h: &[u8]) -> Option<Header> {
        let h: &[u8; HEADER_LEN] = h.get(..HEADER_LEN)?.try_into().ok()?;
        let len = u32::from_le_bytes(h[0..4].try_into().ok()?);
        if len as usize > MAX_PAYLOAD {
            return None;
        }
        Some(Header {
            len,
            crc: u32::from_le_bytes(h[4..8].try_into().ok()?),
            kind: kind_of(h[8])?,
            items: u32::from_le_bytes(h[9..13].try_into().ok()?),
            at_ms: i64::from_le_bytes(h[13..21].try_into().ok()?),
        })
    }

    pub fn verify(&self, raw_header: &[u8], payload: &[u8]) -> bool {
        let mut crc = crc32fast::Hasher::new();
        crc.update(&raw_header[8..HEADER_LEN]);
        crc.update(payload);
        crc.finalize() == self.crc
    }
}

/// Writes header and payload with as few `writev` calls as the kernel allows (one, in
/// practice), without first copying the payload next to its header.
pub(crate) fn write_record(mut file: &File, header: &[u8], payload: &[u8]) -> io::Result<()> {
    let mut bufs = [IoSlice::new(header), IoSlice::new(payload)];
    let mut slices: &mut [IoSlice<'_>] = &mut bufs;
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(crate) struct Segment {
    pub first: u64,
    pub metas: Vec<Meta>,
    /// Bytes of complete records; appends go here.
    pub size: u64,
    /// Opened for reading and appending; readers use positional reads.
    pub file: Arc<File>,
    pub path: PathBuf,
}

impl Segment {
    pub fn end(&self) -> u64 {
        self.first + self.metas.len() as u64
    }

    /// The file offset at which record `seq` starts (`size` for the end).
    pub fn offset_of(&self, seq: u64) -> u64 {
        match self.metas.get((seq - self.first) as usize) {
            Some(m) => m.offset as u64,
            None => self.size,
        }
    }

    pub fn path_for(dir: &Path, first: u64) -> PathBuf {
        dir.join(format!("{first:016}.seg"))
    }

    /// Creates an empty segment (an existing file of that name, necessarily one without
    /// records, is emptied).
    pub fn create(dir: &Path, first: u64) -> Result<Segment, ForwardError> {
        let path = Segment::path_for(dir, first);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        file.set_len(0).map_err(|e| io_err(&path, e))?;
        Ok(Segment {
            first,
            metas: Vec::new(),
            size: 0,
            file: Arc::new(file),
            path,
        })
    }

    /// Reads a segment, checking every record; a torn or corrupt record and everything
    /// after it are cut off the file (and logged), so appends can continue after the last
    /// complete record.
    pub fn recover(path: PathBuf, first: u64) -> Result<Segment, ForwardError> {
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        let file_len = file.metadata().map_err(|e| io_err(&path, e))?.len();
        let mut reader = BufReader::with_capacity(1 << 20, &file);
        let mut metas = Vec::new();
        let mut pos = 0u64;
        let mut header = [0u8; HEADER_LEN];
        let mut payload = Vec::new();
        let problem = loop {
            if pos == file_len {
                break None;
            }
            if pos > u32::MAX as u64 {
                break Some("segment larger than 4 GiB");
            }
            if pos + HEADER_LEN as u64 > file_len {
                break Some("torn record header");
            }
            reader
                .read_exact(&mut header)
                .map_err(|e| io_err(&path, e))?;
            let Some(h) = Header::parse(&header) else {
                break Some("corrupt record header");
            };
            if pos + (HEADER_LEN as u64) + h.len as u64 > file_len {
                break Some("torn record payload");
            }
            payload.resize(h.len as usize, 0);
            reader
                .read_exact(&mut payload)
                .map_err(|e| io_err(&path, e))?;
            if !h.verify(&header, &payload) {
                break Some("record checksum mismatch");
            }
            metas.push(Meta::new(pos, h.items, h.at_ms, h.kind));
            pos += HEADER_LEN as u64 + h.len as u64;
        };
        drop(reader);
        if let Some(what) = problem {
            tracing::warn!(
                segment = %path.display(),
                offset = pos,
                cut_bytes = file_len - pos,
                kept_records = metas.len(),
                "forwarding buffer: {what}; the segment is truncated after its last complete record"
            );
            file.set_len(pos).map_err(|e| io_err(&path, e))?;
            file.sync_all().map_err(|e| io_err(&path, e))?;
        }
        Ok(Segment {
            first,
            metas,
            size: pos,
            file: Arc::new(file),
            path,
        })
    }
}

/// The segment files of `dir`, sorted by first sequence number; other files are ignored.
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, ForwardError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let entry = entry.map_err(|e| io_err(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".seg") else {
            continue;
        };
        if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(first) = stem.parse::<u64>() {
            out.push((first, entry.path()));
        }
    }
    out.sort_by_key(|(first, _)| *first);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_segment(dir: &Path, payloads: &[&[u8]]) -> (PathBuf, Vec<u64>) {
        let seg = Segment::create(dir, 0).unwrap();
        let mut ends = Vec::new();
        let mut at = 0u64;
        for (i, p) in payloads.iter().enumerate() {
            let h = encode_header(Kind::Spans, i as u32, 1_700_000_000_000 + i as i64, p);
            write_record(&seg.file, &h, p).unwrap();
            at += (HEADER_LEN + p.len()) as u64;
            ends.push(at);
        }
        (seg.path, ends)
    }

    #[test]
    fn a_cut_anywhere_keeps_exactly_the_complete_records() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ends) = write_segment(dir.path(), &[b"first", b"", b"third record", b"4"]);
        let full = std::fs::read(&path).unwrap();
        for cut in 0..=full.len() {
            let p = dir.path().join("cut.seg");
            std::fs::write(&p, &full[..cut]).unwrap();
            let seg = Segment::recover(p.clone(), 7).unwrap();
            let complete = ends.iter().filter(|e| **e <= cut as u64).count();
            assert_eq!(seg.metas.len(), complete, "cut at {cut}");
            assert_eq!(
                seg.size,
                ends.get(complete.wrapping_sub(1)).copied().unwrap_or(0)
            );
            assert_eq!(
                std::fs::metadata(&p).unwrap().len(),
                seg.size,
                "file truncated"
            );
            assert_eq!(seg.end(), 7 + complete as u64);
            for (i, m) in seg.metas.iter().enumerate() {
                assert_eq!((m.items, m.kind()), (i as u32, Kind::Spans));
                assert_eq!(m.at_ms(), 1_700_000_000_000 + i as i64);
            }
        }
    }

    #[test]
    fn any_flipped_byte_ends_the_segment_at_the_damaged_record() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ends) = write_segment(dir.path(), &[b"alpha", b"beta", b"gamma"]);
        let full = std::fs::read(&path).unwrap();
        for at in 0..full.len() {
            let mut bytes = full.clone();
            bytes[at] ^= 0x5a;
            let p = dir.path().join("flip.seg");
            std::fs::write(&p, &bytes).unwrap();
            let seg = Segment::recover(p, 0).unwrap();
            let damaged = ends.iter().filter(|e| **e <= at as u64).count();
            assert_eq!(seg.metas.len(), damaged, "flip at {at}");
        }
    }

    #[test]
    fn headers_reject_unknown_kinds_and_huge_lengths() {
        let h = encode_header(Kind::Metrics, 3, 5, b"abc");
        let parsed = Header::parse(&h).unwrap();
        assert!(parsed.verify(&h, b"abc"));
        assert!(!parsed.verify(&h, b"abd"));
        let mut bad = h;
        bad[8] = 9;
        assert!(Header::parse(&bad).is_none());
        let mut huge = h;
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Header::parse(&huge).is_none());
        assert!(Header::parse(&h[..20]).is_none());
    }

    #[test]
    fn list_takes_only_numbered_segments_in_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "0000000000000010.seg",
            "0000000000000002.seg",
            "x.seg",
            "12.tmp",
            ".seg",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let firsts: Vec<u64> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|(f, _)| f)
            .collect();
        assert_eq!(firsts, vec![2, 10]);
    }
}

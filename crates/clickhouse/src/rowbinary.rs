//! ClickHouse's `RowBinary` format, the subset meshlens uses: fixed-width little-endian
//! numbers, `Date` (days as UInt16), `String` (LEB128 length + bytes) and arrays of strings
//! and numbers (LEB128 count + elements). Chosen over text formats because values need no escaping and
//! floats (the staleness NaN included) travel bit for bit.
//!
//! The reader checks every length against what is left, so a short or corrupt answer is an
//! error, never a panic or a huge allocation.

use crate::ClickHouseError;

/// Rows being encoded for an insert.
#[derive(Default)]
pub struct RowWriter {
    buf: Vec<u8>,
}

impl RowWriter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    /// An array of numbers: LEB128 count, then each element as `put` writes it.
    pub fn array_of<T: Copy>(&mut self, items: &[T], put: impl Fn(&mut Self, T)) {
        self.varint(items.len() as u64);
        for &v in items {
            put(self, v);
        }
    }

    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn string(&mut self, s: &str) {
        self.varint(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub fn strings<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a str>) {
        self.varint(items.len() as u64);
        for s in items {
            self.string(s);
        }
    }

    /// `Array(UInt64)`: LEB128 count, then the numbers.
    pub fn u64s(&mut self, items: impl ExactSizeIterator<Item = u64>) {
        self.varint(items.len() as u64);
        for v in items {
            self.u64(v);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes encoded so far: what batching measures.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from(self.buf)
    }
}

/// Rows being decoded from a query's answer.
pub struct RowReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> RowReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        RowReader { buf, pos: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ClickHouseError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(ClickHouseError::Decode {
                reason: format!(
                    "RowBinary answer ends at byte {} but {n} more bytes were expected at {}",
                    self.buf.len(),
                    self.pos
                ),
            }),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ClickHouseError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, ClickHouseError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, ClickHouseError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, ClickHouseError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, ClickHouseError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> Result<i64, ClickHouseError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn i32(&mut self) -> Result<i32, ClickHouseError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub fn f64(&mut self) -> Result<f64, ClickHouseError> {
        Ok(f64::from_bits(u64::from_le_bytes(self.array()?)))
    }

    fn varint(&mut self) -> Result<u64, ClickHouseError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ClickHouseError::Decode {
            reason: format!("varint longer than 10 bytes at {}", self.pos),
        })
    }

    /// A length, checked against the bytes left (each element takes at least one byte).
    fn len(&mut self) -> Result<usize, ClickHouseError> {
        let at = self.pos;
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n > left {
            return Err(ClickHouseError::Decode {
                reason: format!("length {n} at byte {at} exceeds the {left} bytes left"),
            });
        }
        Ok(n as usize)
    }

    /// An array's element count, its elements taking `width` bytes each: checked against
    /// the bytes left before anyone allocates for it.
    pub fn fixed_len(&mut self, width: usize) -> Result<usize, ClickHouseError> {
        let at = self.pos;
        let n = self.varint()?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.checked_mul(width as u64).is_none_or(|b| b > left) {
            return Err(ClickHouseError::Decode {
                reason: format!(
                    "{n} elements of {width} bytes at byte {at} exceed the {left} bytes left"
                ),
            });
        }
        Ok(n as usize)
    }

    pub fn string(&mut self) -> Result<String, ClickHouseError> {
        let n = self.len()?;
        let at = self.pos;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| ClickHouseError::Decode {
            reason: format!("string at byte {at} is not UTF-8"),
        })
    }

    pub fn strings(&mut self) -> Result<Vec<String>, ClickHouseError> {
        let n = self.len()?;
        (0..n).map(|_| self.string()).collect()
    }

    /// `Array(UInt64)`; the count is checked against the bytes left before anything is
    /// allocated.
    pub fn u64s(&mut self) -> Result<Vec<u64>, ClickHouseError> {
        let n = self.len()?;
        (0..n).map(|_| self.u64()).collect()
    }

    /// An array of `width`-byte numbers read by `get`; the count is checked against the
    /// bytes left before anything is allocated.
    pub fn array_of<T>(
        &mut self,
        width: usize,
        get: impl Fn(&mut Self) -> Result<T, ClickHouseError>,
    ) -> Result<Vec<T>, ClickHouseError> {
        let n = self.fixed_len(width)?;
        (0..n).map(|_| get(self)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let mut w = RowWriter::new();
        w.u64(u64::MAX);
        w.i64(-5);
        w.f64(meshlens_model::STALE_NAN);
        w.u16(20_000);
        w.string(&"x".repeat(300));
        w.strings(["a", "", "ü"].into_iter());
        let b = w.into_bytes();
        let mut r = RowReader::new(&b);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.i64().unwrap(), -5);
        assert!(meshlens_model::is_stale_nan(r.f64().unwrap()));
        assert_eq!(
            u16::from_le_bytes([r.u8().unwrap(), r.u8().unwrap()]),
            20_000
        );
        assert_eq!(r.string().unwrap().len(), 300);
        assert_eq!(r.strings().unwrap(), vec!["a", "", "ü"]);
        assert!(r.is_done());
    }

    #[test]
    fn truncated_or_corrupt_input_is_an_error() {
        let mut w = RowWriter::new();
        w.strings(["abc", "def"].into_iter());
        let b = w.into_bytes();
        for cut in 0..b.len() {
            assert!(RowReader::new(&b[..cut]).strings().is_err(), "cut at {cut}");
        }
        // A length far beyond the buffer never allocates it.
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(RowReader::new(&huge).strings().is_err());
        assert!(RowReader::new(&huge).fixed_len(16).is_err());
        assert!(RowReader::new(&[2, 0, 0, 0, 0, 0, 0, 0, 0])
            .fixed_len(8)
            .is_err());
        assert_eq!(
            RowReader::new(&[1, 0, 0, 0, 0, 0, 0, 0, 0])
                .fixed_len(8)
                .unwrap(),
            1
        );
        let endless = [0x80u8; 20];
        assert!(RowReader::new(&endless).string().is_err());
        assert!(RowReader::new(&[1, 0xff]).string().is_err());
    }
}

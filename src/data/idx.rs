//! The IDX file format of MNIST (LeCun et al.), gzipped or raw.
//!
//! ```text
//! bytes 0-1   0x00 0x00
//! byte  2     element type (0x08 = unsigned byte; the only type MNIST uses)
//! byte  3     number of dimensions d
//! 4 .. 4+4d   each dimension as a big-endian u32
//! then        the elements, row-major
//! ```

use crate::error::{Error, Result};
use crate::tensor::MAX_ELEMENTS;
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// An IDX array of unsigned bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxArray {
    /// The dimensions, outermost first (`[60000, 28, 28]` for MNIST training images).
    pub dims: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<u8>,
}

/// The largest IDX body this reader accepts: [`MAX_ELEMENTS`] bytes (256 MiB; MNIST's largest file holds 47 MB).
pub const MAX_IDX_BYTES: usize = MAX_ELEMENTS;

/// Reads an IDX file, decompressing it first if it is gzipped (detected by its magic bytes,
/// not its name).
///
/// The reader never reads more than the header promises plus one byte (to detect trailing
/// data), so a small gzip file that inflates to gigabytes is rejected after reading
/// `size + 1` bytes, not after inflating all of it. A header promising more than
/// [`MAX_IDX_BYTES`] is rejected before reading the body.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let file_err = |message: String| Error::File {
        path: path.to_path_buf(),
        message,
    };
    // Opening a named pipe would wait for a writer forever; a device is no IDX file.
    let meta = std::fs::metadata(path).map_err(|e| file_err(format!("cannot read: {e}")))?;
    if !meta.is_file() && !meta.is_dir() {
        return Err(file_err(
            "not a regular file (a pipe, socket or device), so not read".into(),
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| file_err(format!("cannot read: {e}")))?;
    let mut reader = std::io::BufReader::new(file);
    let gzipped = {
        use std::io::BufRead;
        let head = reader
            .fill_buf()
            .map_err(|e| file_err(format!("cannot read: {e}")))?;
        head.starts_with(&[0x1f, 0x8b])
    };
    let source: Box<dyn Read> = if gzipped {
        Box::new(GzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    read_idx_from(source).map_err(file_err)
}

/// [`read_idx`] on bytes in memory (gzipped or raw), with the same limits. The error is a
/// plain message.
pub fn decode_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        read_idx_from(GzDecoder::new(bytes))
    } else {
        read_idx_from(bytes)
    }
}

/// Reads IDX bytes from a stream, stopping at the size the header promises plus one byte.
fn read_idx_from(mut source: impl Read) -> std::result::Result<IdxArray, String> {
    let io = |e: std::io::Error| format!("corrupt or unreadable data: {e}");
    let mut head = [0u8; 4];
    let got = read_up_to(&mut source, &mut head).map_err(io)?;
    let mut header: Vec<u8> = head.iter().take(got).copied().collect();
    if let [_, _, _, ndim] = header[..] {
        let mut dims = vec![0u8; 4 * ndim as usize];
        let got = read_up_to(&mut source, &mut dims).map_err(io)?;
        header.extend(dims.iter().take(got));
    }
    // Validate the header alone first (magic, type, dims, size limit).
    let count = parse_header(&header)?.1;
    let mut body = Vec::new();
    body.try_reserve_exact(count.saturating_add(1))
        .map_err(|e| format!("cannot allocate {count} bytes for the data: {e}"))?;
    source
        .take(count as u64 + 1)
        .read_to_end(&mut body)
        .map_err(io)?;
    header.extend_from_slice(&body);
    parse_idx(&header)
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_up_to(source: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match source.read(rest) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Parses and checks the header at the start of `bytes`: the dims and the body size.
fn parse_header(bytes: &[u8]) -> std::result::Result<(Vec<usize>, usize), String> {
    let &[b0, b1, kind, ndim, ..] = bytes else {
        return Err(format!(
            "truncated header: {} bytes, an IDX header needs at least 4",
            bytes.len()
        ));
    };
    if b0 != 0 || b1 != 0 {
        return Err(format!(
            "bad magic number {b0:02x} {b1:02x} {kind:02x} {ndim:02x}: not an IDX file"
        ));
    }
    if kind != 0x08 {
        return Err(format!(
            "element type 0x{kind:02x} is not supported (only 0x08, unsigned byte)"
        ));
    }
    let ndim = ndim as usize;
    let header = 4 + 4 * ndim;
    let Some(dim_bytes) = bytes.get(4..header) else {
        return Err(format!(
            "truncated header: {} bytes, {ndim} dimensions need {header}",
            bytes.len()
        ));
    };
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes(crate::io::byte_array(b)) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&c| c <= MAX_IDX_BYTES)
        .ok_or_else(|| {
            format!("dimensions {dims:?} hold more than {MAX_IDX_BYTES} bytes (256 MiB), the limit")
        })?;
    Ok((dims, count))
}

/// Parses IDX bytes (already decompressed). The error is a plain message; [`read_idx`] adds
/// the file name.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    let (dims, count) = parse_header(bytes)?;
    let body = bytes.get(4 + 4 * dims.len()..).unwrap_or_default();
    if body.len() != count {
        let kind = if body.len() < count {
            "truncated"
        } else {
            "trailing bytes"
        };
        return Err(format!(
            "{kind}: dimensions {dims:?} need {count} bytes of data, found {}",
            body.len()
        ));
    }
    Ok(IdxArray {
        dims,
        data: body.to_vec(),
    })
}

/// Serialises an array in IDX format (uncompressed). Used to make test files.
pub fn encode_idx(array: &IdxArray) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, array.dims.len() as u8];
    for &d in &array.dims {
        out.extend_from_slice(&(d as u32).to_be_bytes());
    }
    out.extend_from_slice(&array.data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IdxArray {
        IdxArray {
            dims: vec![2, 3],
            data: vec![1, 2, 3, 4, 5, 6],
        }
    }

    #[test]
    fn round_trip() {
        assert_eq!(parse_idx(&encode_idx(&sample())).unwrap(), sample());
    }

    #[test]
    fn malformed_files_are_explained() {
        let good = encode_idx(&sample());
        let mut bad_magic = good.clone();
        bad_magic[0] = 0x12;
        assert!(parse_idx(&bad_magic).unwrap_err().contains("bad magic"));
        let mut bad_type = good.clone();
        bad_type[2] = 0x0d;
        assert!(parse_idx(&bad_type).unwrap_err().contains("element type"));
        assert!(parse_idx(&good[..good.len() - 1])
            .unwrap_err()
            .contains("truncated"));
        assert!(parse_idx(&good[..6])
            .unwrap_err()
            .contains("truncated header"));
        let mut long = good.clone();
        long.push(0);
        assert!(parse_idx(&long).unwrap_err().contains("trailing"));
    }

    /// A counting reader: how many bytes a consumer pulled from it.
    struct Counting<R> {
        inner: R,
        read: std::rc::Rc<std::cell::Cell<u64>>,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read.set(self.read.get() + n as u64);
            Ok(n)
        }
    }

    #[test]
    fn a_gzip_bomb_is_rejected_after_reading_the_promised_size_plus_one_byte() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        // A header promising 10 bytes, followed by 64 MiB of zeros: compressed, ~64 KiB.
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&encode_idx(&IdxArray {
            dims: vec![10],
            data: vec![0; 10],
        }))
        .unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..64 {
            enc.write_all(&zeros).unwrap();
        }
        let gz = enc.finish().unwrap();
        assert!(gz.len() < 1 << 20);
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let source = Counting {
            inner: GzDecoder::new(&gz[..]),
            read: read.clone(),
        };
        let err = read_idx_from(source).unwrap_err();
        assert!(err.contains("trailing bytes"), "{err}");
        // Header (8) + promised body (10) + one byte: not one byte more is inflated.
        assert_eq!(read.get(), 8 + 10 + 1);
        // The same check through a file on disk.
        let dir = std::env::temp_dir().join(format!("convnet-idx-bomb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bomb-idx1-ubyte.gz");
        std::fs::write(&path, &gz).unwrap();
        let msg = read_idx(&path).unwrap_err().to_string();
        assert!(
            msg.contains("trailing bytes") && msg.contains("bomb-idx1-ubyte.gz"),
            "{msg}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_header_promising_more_than_the_limit_is_rejected_before_reading() {
        let header = [
            0u8, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 2,
        ];
        let err = read_idx_from(&header[..]).unwrap_err();
        assert!(err.contains("limit"), "{err}");
        assert!(parse_idx(&header).unwrap_err().contains("limit"));
    }

    #[test]
    fn gzip_and_raw_files_read_the_same_and_errors_name_the_file() {
        use flate2::write::GzEncoder;
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("convnet-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let raw = dir.join("a-idx2-ubyte");
        std::fs::write(&raw, encode_idx(&sample())).unwrap();
        let gz = dir.join("a-idx2-ubyte.gz");
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&encode_idx(&sample())).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert_eq!(read_idx(&raw).unwrap(), sample());
        assert_eq!(read_idx(&gz).unwrap(), sample());

        let broken = dir.join("broken.gz");
        let bytes = std::fs::read(&gz).unwrap();
        std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
        let msg = read_idx(&broken).unwrap_err().to_string();
        assert!(msg.contains("broken.gz"), "{msg}");
        let missing = read_idx(&dir.join("nope")).unwrap_err().to_string();
        assert!(
            missing.contains("nope") && missing.contains("cannot read"),
            "{missing}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}

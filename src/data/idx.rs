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

/// Reads an IDX file, decompressing it first if it is gzipped (detected by its magic bytes,
/// not its name).
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let file_err = |message: String| Error::File {
        path: path.display().to_string(),
        message,
    };
    let raw = std::fs::read(path).map_err(|e| file_err(format!("cannot read: {e}")))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| file_err(format!("corrupt gzip data: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx(&bytes).map_err(file_err)
}

/// Parses IDX bytes (already decompressed). The error is a plain message; [`read_idx`] adds
/// the file name.
pub fn parse_idx(bytes: &[u8]) -> std::result::Result<IdxArray, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "truncated header: {} bytes, an IDX header needs at least 4",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(format!(
            "bad magic number {:02x} {:02x} {:02x} {:02x}: not an IDX file",
            bytes[0], bytes[1], bytes[2], bytes[3]
        ));
    }
    if bytes[2] != 0x08 {
        return Err(format!(
            "element type 0x{:02x} is not supported (only 0x08, unsigned byte)",
            bytes[2]
        ));
    }
    let ndim = bytes[3] as usize;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err(format!(
            "truncated header: {} bytes, {ndim} dimensions need {header}",
            bytes.len()
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or("dimensions overflow")?;
    let body = &bytes[header..];
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

//! Just enough of the zip format to read `torch.save` archives: the central directory (with
//! its zip64 extensions, which `torch.save` always writes), stored and deflated entries, CRC-32
//! checks. Everything is bounds-checked; a damaged archive is an error, never a panic.
//!
//! Layout (APPNOTE.TXT): `[local header, data]* central-directory [zip64 end record, zip64
//! locator] end-of-central-directory`. Sizes are taken from the central directory because
//! `torch.save` writes zeros in the local headers (flag bit 3, data descriptor).

use super::PthError;
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Read;

const LOCAL_HEADER: u32 = 0x0403_4b50;
const CENTRAL_HEADER: u32 = 0x0201_4b50;
const END_RECORD: u32 = 0x0605_4b50;
const ZIP64_END_RECORD: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const ZIP64_EXTRA: u16 = 0x0001;

/// Where one entry's data lies and how it is encoded.
#[derive(Clone, Debug)]
struct Entry {
    method: u16,
    crc: u32,
    compressed: u64,
    size: u64,
    local_offset: u64,
    encrypted: bool,
}

/// The table of contents of a zip archive held in memory.
#[derive(Debug)]
pub(super) struct ZipIndex {
    entries: HashMap<String, Entry>,
    names: Vec<String>,
}

fn zip_err(message: impl Into<String>) -> PthError {
    PthError::Zip(message.into())
}

/// Little-endian reads at absolute positions, failing (not panicking) past the end.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn slice(&self, at: u64, len: u64, what: &str) -> Result<&'a [u8], PthError> {
        let range = usize::try_from(at).ok().zip(
            at.checked_add(len)
                .and_then(|end| usize::try_from(end).ok()),
        );
        match range.and_then(|(at, end)| self.0.get(at..end)) {
            Some(bytes) => Ok(bytes),
            None => Err(zip_err(format!(
                "{what} at byte {at} runs past the end of the file ({} bytes); the file is \
                 truncated or damaged",
                self.0.len()
            ))),
        }
    }
    fn u16(&self, at: u64) -> Result<u16, PthError> {
        let b = self.slice(at, 2, "a field")?;
        Ok(u16::from_le_bytes(crate::io::byte_array(b)))
    }
    fn u32(&self, at: u64) -> Result<u32, PthError> {
        let b = self.slice(at, 4, "a field")?;
        Ok(u32::from_le_bytes(crate::io::byte_array(b)))
    }
    fn u64(&self, at: u64) -> Result<u64, PthError> {
        let b = self.slice(at, 8, "a field")?;
        Ok(u64::from_le_bytes(crate::io::byte_array(b)))
    }
}

/// True when `bytes` starts like a zip archive (a local file header).
pub(super) fn is_zip(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && u32::from_le_bytes(crate::io::byte_array(bytes)) == LOCAL_HEADER
}

/// The position of the end-of-central-directory record: the last signature whose comment
/// length reaches exactly to the end of the file.
fn find_end_record(b: &Bytes) -> Result<u64, PthError> {
    let len = b.0.len();
    if len < 22 {
        return Err(zip_err(format!(
            "{len} bytes is too short for a zip archive (the end record alone is 22 bytes)"
        )));
    }
    let lowest = len.saturating_sub(22 + 0xffff);
    for pos in (lowest..=len - 22).rev() {
        if b.u32(pos as u64)? == END_RECORD {
            let comment = b.u16(pos as u64 + 20)? as usize;
            if pos + 22 + comment == len {
                return Ok(pos as u64);
            }
        }
    }
    Err(zip_err(
        "no end-of-central-directory record: the file is truncated or not a zip archive",
    ))
}

impl ZipIndex {
    /// Reads the central directory of the archive in `bytes`.
    pub(super) fn parse(bytes: &[u8]) -> Result<Self, PthError> {
        let b = Bytes(bytes);
        let end = find_end_record(&b)?;
        let mut count = b.u16(end + 10)? as u64;
        let mut dir_size = b.u32(end + 12)? as u64;
        let mut dir_offset = b.u32(end + 16)? as u64;
        // A zip64 locator sits just before the end record; its record has the 64-bit values.
        if end >= 20 && b.u32(end - 20)? == ZIP64_LOCATOR {
            let record = b.u64(end - 20 + 8)?;
            if b.u32(record)? != ZIP64_END_RECORD {
                return Err(zip_err(format!(
                    "the zip64 locator points at byte {record}, where there is no zip64 end record"
                )));
            }
            count = b.u64(record + 32)?;
            dir_size = b.u64(record + 40)?;
            dir_offset = b.u64(record + 48)?;
        }
        let dir = b.slice(dir_offset, dir_size, "the central directory")?;
        // Each central header is at least 46 bytes: a bound on the count before allocating.
        if count > dir.len() as u64 / 46 {
            return Err(zip_err(format!(
                "the end record announces {count} entries, more than a {}-byte central \
                 directory can hold",
                dir.len()
            )));
        }
        let d = Bytes(dir);
        let mut at = 0u64;
        let mut entries = HashMap::new();
        let mut names = Vec::new();
        for _ in 0..count {
            if d.u32(at)? != CENTRAL_HEADER {
                return Err(zip_err(format!(
                    "bad central-directory header at byte {}",
                    dir_offset + at
                )));
            }
            let flags = d.u16(at + 8)?;
            let method = d.u16(at + 10)?;
            let crc = d.u32(at + 16)?;
            let mut compressed = d.u32(at + 20)? as u64;
            let mut size = d.u32(at + 24)? as u64;
            let name_len = d.u16(at + 28)? as u64;
            let extra_len = d.u16(at + 30)? as u64;
            let comment_len = d.u16(at + 32)? as u64;
            let mut local_offset = d.u32(at + 42)? as u64;
            let name =
                String::from_utf8_lossy(d.slice(at + 46, name_len, "an entry name")?).into_owned();
            let extra = Bytes(d.slice(at + 46 + name_len, extra_len, "an extra field")?);
            // Zip64 extended information: the 64-bit values of the fields saturated at 2^32-1.
            let mut e = 0u64;
            while e + 4 <= extra_len {
                let id = extra.u16(e)?;
                let len = extra.u16(e + 2)? as u64;
                if id == ZIP64_EXTRA {
                    let mut f = e + 4;
                    for field in [&mut size, &mut compressed, &mut local_offset] {
                        if *field == 0xffff_ffff {
                            *field = extra.u64(f)?;
                            f += 8;
                        }
                    }
                }
                e += 4 + len;
            }
            at += 46 + name_len + extra_len + comment_len;
            let entry = Entry {
                method,
                crc,
                compressed,
                size,
                local_offset,
                encrypted: flags & 1 != 0,
            };
            if entries.insert(name.clone(), entry).is_none() {
                names.push(name);
            }
        }
        Ok(ZipIndex { entries, names })
    }

    /// The entry names in directory order.
    pub(super) fn names(&self) -> &[String] {
        &self.names
    }

    /// True when the archive has an entry called `name`.
    pub(super) fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The contents of entry `name`: borrowed when stored, inflated when deflated; the CRC-32
    /// is checked either way.
    pub(super) fn read<'a>(&self, bytes: &'a [u8], name: &str) -> Result<Cow<'a, [u8]>, PthError> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| PthError::MissingEntry(name.to_string()))?;
        if e.encrypted {
            return Err(zip_err(format!("entry {name} is encrypted")));
        }
        let b = Bytes(bytes);
        if b.u32(e.local_offset)? != LOCAL_HEADER {
            return Err(zip_err(format!(
                "entry {name}: no local header at byte {}",
                e.local_offset
            )));
        }
        let name_len = b.u16(e.local_offset + 26)? as u64;
        let extra_len = b.u16(e.local_offset + 28)? as u64;
        let start = e.local_offset + 30 + name_len + extra_len;
        let raw = b.slice(start, e.compressed, &format!("the data of entry {name}"))?;
        let data: Cow<'a, [u8]> = match e.method {
            0 => {
                if e.size != e.compressed {
                    return Err(zip_err(format!(
                        "stored entry {name} has size {} but {} stored bytes",
                        e.size, e.compressed
                    )));
                }
                Cow::Borrowed(raw)
            }
            8 => {
                // Deflate cannot expand by more than about 1032:1; a larger claim is a lie.
                if e.size > e.compressed.saturating_mul(1032).saturating_add(64) {
                    return Err(zip_err(format!(
                        "entry {name} claims {} bytes from {} deflated bytes",
                        e.size, e.compressed
                    )));
                }
                let mut out = Vec::with_capacity(e.size as usize);
                flate2::read::DeflateDecoder::new(raw)
                    .take(e.size + 1)
                    .read_to_end(&mut out)
                    .map_err(|err| zip_err(format!("entry {name}: bad deflate data: {err}")))?;
                if out.len() as u64 != e.size {
                    return Err(zip_err(format!(
                        "entry {name} inflates to {} bytes, the directory says {}",
                        out.len(),
                        e.size
                    )));
                }
                Cow::Owned(out)
            }
            m => {
                return Err(zip_err(format!(
                    "entry {name} uses compression method {m}; only stored (0) and deflate (8) \
                     are supported"
                )))
            }
        };
        let mut crc = flate2::Crc::new();
        crc.update(&data);
        if crc.sum() != e.crc {
            return Err(zip_err(format!(
                "entry {name} fails its CRC-32 check (stored {:08x}, computed {:08x}): the \
                 file is damaged",
                e.crc,
                crc.sum()
            )));
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-entry stored archive written by hand from the APPNOTE layout (no zip64).
    fn tiny_zip(name: &str, data: &[u8]) -> Vec<u8> {
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let crc = crc.sum();
        let mut z = Vec::new();
        let header = |z: &mut Vec<u8>, central: bool| {
            z.extend_from_slice(
                &if central {
                    CENTRAL_HEADER
                } else {
                    LOCAL_HEADER
                }
                .to_le_bytes(),
            );
            if central {
                z.extend_from_slice(&20u16.to_le_bytes()); // version made by
            }
            z.extend_from_slice(&20u16.to_le_bytes()); // version needed
            z.extend_from_slice(&0u16.to_le_bytes()); // flags
            z.extend_from_slice(&0u16.to_le_bytes()); // method: stored
            z.extend_from_slice(&[0; 4]); // time, date
            z.extend_from_slice(&crc.to_le_bytes());
            z.extend_from_slice(&(data.len() as u32).to_le_bytes());
            z.extend_from_slice(&(data.len() as u32).to_le_bytes());
            z.extend_from_slice(&(name.len() as u16).to_le_bytes());
            z.extend_from_slice(&0u16.to_le_bytes()); // extra
            if central {
                z.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
                z.extend_from_slice(&[0; 4]); // external attributes
                z.extend_from_slice(&0u32.to_le_bytes()); // local header offset
            }
            z.extend_from_slice(name.as_bytes());
        };
        header(&mut z, false);
        z.extend_from_slice(data);
        let dir = z.len();
        header(&mut z, true);
        let dir_size = z.len() - dir;
        z.extend_from_slice(&END_RECORD.to_le_bytes());
        z.extend_from_slice(&[0; 4]);
        z.extend_from_slice(&1u16.to_le_bytes());
        z.extend_from_slice(&1u16.to_le_bytes());
        z.extend_from_slice(&(dir_size as u32).to_le_bytes());
        z.extend_from_slice(&(dir as u32).to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z
    }

    #[test]
    fn reads_a_stored_entry_and_checks_its_crc() {
        let z = tiny_zip("a/data.pkl", b"hello zip");
        assert!(is_zip(&z));
        let index = ZipIndex::parse(&z).unwrap();
        assert_eq!(index.names(), ["a/data.pkl"]);
        assert_eq!(&*index.read(&z, "a/data.pkl").unwrap(), b"hello zip");
        assert!(matches!(
            index.read(&z, "a/other"),
            Err(PthError::MissingEntry(n)) if n == "a/other"
        ));
        // Flip one data byte: the CRC catches it.
        let mut bad = z.clone();
        bad[30 + 10] ^= 1;
        let msg = ZipIndex::parse(&bad)
            .unwrap()
            .read(&bad, "a/data.pkl")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("CRC-32"), "{msg}");
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let z = tiny_zip("a/data.pkl", b"hello zip");
        for cut in 0..z.len() {
            let part = &z[..cut];
            let result = ZipIndex::parse(part).and_then(|i| i.read(part, "a/data.pkl"));
            assert!(matches!(result, Err(PthError::Zip(_))), "cut at {cut}");
        }
    }

    #[test]
    fn impossible_counts_and_offsets_are_errors() {
        let mut z = tiny_zip("x", b"data");
        let end = z.len() - 22;
        z[end + 10] = 0xff; // announce 255 entries
        z[end + 11] = 0x00;
        assert!(ZipIndex::parse(&z).is_err());
        let mut z = tiny_zip("x", b"data");
        let end = z.len() - 22;
        z[end + 16..end + 20].copy_from_slice(&u32::MAX.to_le_bytes()); // directory offset
        assert!(ZipIndex::parse(&z).is_err());
    }
}

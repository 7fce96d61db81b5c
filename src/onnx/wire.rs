//! The protobuf wire format, read from a byte slice: varints, fixed 32/64-bit values and
//! length-delimited fields, each checked against the bytes that remain.
//!
//! ```text
//! message  = field*
//! field    = key value          key = varint (field_number << 3 | wire_type)
//! wire_type 0: varint   1: 8 bytes   2: varint length, then that many bytes   5: 4 bytes
//!           3, 4: groups (deprecated; refused)
//! ```
//!
//! Nothing here allocates in proportion to a length read from the file: a length is first
//! compared with the bytes left, so a corrupt length is an error, not an allocation.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::OnnxError;

/// The wire types of protobuf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wire {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

impl Wire {
    fn name(self) -> &'static str {
        match self {
            Wire::Varint => "varint",
            Wire::Fixed64 => "64-bit",
            Wire::Len => "length-delimited",
            Wire::Fixed32 => "32-bit",
        }
    }
}

/// One decoded field value, still in its wire form.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl Value<'_> {
    fn wire(&self) -> Wire {
        match self {
            Value::Varint(_) => Wire::Varint,
            Value::Fixed64(_) => Wire::Fixed64,
            Value::Len(_) => Wire::Len,
            Value::Fixed32(_) => Wire::Fixed32,
        }
    }
}

/// A cursor over one message's bytes; `message` names it in errors (`"NodeProto"`).
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], message: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            message,
        }
    }

    fn truncated(&self, need: usize) -> OnnxError {
        OnnxError::Truncated {
            message: self.message,
            need,
            left: self.buf.len() - self.pos,
        }
    }

    fn varint(&mut self) -> Result<u64, OnnxError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(self.truncated(1));
            };
            self.pos += 1;
            // The tenth byte may only carry the top bit of a 64-bit value.
            if i == 9 && byte > 1 {
                break;
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(OnnxError::Malformed(format!(
            "{}: a varint longer than 64 bits",
            self.message
        )))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], OnnxError> {
        let buf = self.buf;
        let Some(bytes) = buf.get(self.pos..).and_then(|rest| rest.get(..n)) else {
            return Err(self.truncated(n));
        };
        self.pos += n;
        Ok(bytes)
    }

    /// The next field as `(field number, value)`, or `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>, OnnxError> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 || field > u64::from(u32::MAX >> 3) {
            return Err(OnnxError::Malformed(format!(
                "{}: field number {field} is out of range",
                self.message
            )));
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(crate::io::byte_array(self.take(8)?))),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| self.truncated(usize::MAX))?;
                Value::Len(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(crate::io::byte_array(self.take(4)?))),
            w => {
                return Err(OnnxError::Malformed(format!(
                    "{}: field {field} has wire type {w} (groups and unknown types are not \
                     supported)",
                    self.message
                )))
            }
        };
        Ok(Some((field as u32, value)))
    }

    fn wrong(&self, field: u32, expected: Wire, got: &Value) -> OnnxError {
        OnnxError::WireType {
            message: self.message,
            field,
            expected: expected.name(),
            got: got.wire().name(),
        }
    }

    /// A varint field as `i64` (int64, int32 and enum fields are varints on the wire).
    pub(crate) fn int(&self, field: u32, v: &Value) -> Result<i64, OnnxError> {
        match v {
            Value::Varint(x) => Ok(*x as i64),
            _ => Err(self.wrong(field, Wire::Varint, v)),
        }
    }

    /// A `float` field (fixed 32 bits).
    pub(crate) fn float(&self, field: u32, v: &Value) -> Result<f32, OnnxError> {
        match v {
            Value::Fixed32(x) => Ok(f32::from_bits(*x)),
            _ => Err(self.wrong(field, Wire::Fixed32, v)),
        }
    }

    /// A `bytes` field or an embedded message.
    pub(crate) fn bytes(&self, field: u32, v: &Value<'a>) -> Result<&'a [u8], OnnxError> {
        match v {
            Value::Len(b) => Ok(b),
            _ => Err(self.wrong(field, Wire::Len, v)),
        }
    }

    /// A `string` field (UTF-8).
    pub(crate) fn string(&self, field: u32, v: &Value<'a>) -> Result<String, OnnxError> {
        let bytes = self.bytes(field, v)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            OnnxError::Malformed(format!(
                "{}: field {field} is not valid UTF-8",
                self.message
            ))
        })
    }

    /// Appends a repeated varint field, packed (one length-delimited run) or not.
    pub(crate) fn ints(&self, field: u32, v: &Value, out: &mut Vec<i64>) -> Result<(), OnnxError> {
        match v {
            Value::Varint(x) => out.push(*x as i64),
            Value::Len(bytes) => {
                let mut packed = Reader::new(bytes, self.message);
                while packed.pos < bytes.len() {
                    out.push(packed.varint()? as i64);
                }
            }
            _ => return Err(self.wrong(field, Wire::Varint, v)),
        }
        Ok(())
    }

    /// Appends a repeated `float` field, packed or not.
    pub(crate) fn floats(
        &self,
        field: u32,
        v: &Value,
        out: &mut Vec<f32>,
    ) -> Result<(), OnnxError> {
        match v {
            Value::Fixed32(x) => out.push(f32::from_bits(*x)),
            Value::Len(bytes) => {
                if bytes.len() % 4 != 0 {
                    return Err(self.packed_len(field, bytes.len(), 4));
                }
                out.extend(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(crate::io::byte_array(c))),
                );
            }
            _ => return Err(self.wrong(field, Wire::Fixed32, v)),
        }
        Ok(())
    }

    /// Appends a repeated `double` field, packed or not.
    pub(crate) fn doubles(
        &self,
        field: u32,
        v: &Value,
        out: &mut Vec<f64>,
    ) -> Result<(), OnnxError> {
        match v {
            Value::Fixed64(x) => out.push(f64::from_bits(*x)),
            Value::Len(bytes) => {
                if bytes.len() % 8 != 0 {
                    return Err(self.packed_len(field, bytes.len(), 8));
                }
                out.extend(
                    bytes
                        .chunks_exact(8)
                        .map(|c| f64::from_le_bytes(crate::io::byte_array(c))),
                );
            }
            _ => return Err(self.wrong(field, Wire::Fixed64, v)),
        }
        Ok(())
    }

    fn packed_len(&self, field: u32, len: usize, size: usize) -> OnnxError {
        OnnxError::Malformed(format!(
            "{}: packed field {field} has {len} bytes, not a multiple of {size}",
            self.message
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_as_the_protobuf_documentation_encodes_them() {
        // 150 = 0x96 0x01 (the example of the protobuf encoding guide), field 1 varint.
        let mut r = Reader::new(&[0x08, 0x96, 0x01], "Test");
        let (field, v) = r.next_field().unwrap().unwrap();
        assert_eq!((field, r.int(field, &v).unwrap()), (1, 150));
        assert!(r.next_field().unwrap().is_none());
        // -1 as int64 is ten bytes.
        let mut bytes = vec![0x08];
        bytes.extend([0xff; 9]);
        bytes.push(0x01);
        let mut r = Reader::new(&bytes, "Test");
        let (f, v) = r.next_field().unwrap().unwrap();
        assert_eq!(r.int(f, &v).unwrap(), -1);
    }

    #[test]
    fn corrupt_bytes_are_errors() {
        // Truncated varint, length past the end, an 11-byte varint, group wire type, field 0.
        let cases: [&[u8]; 5] = [
            &[0x08, 0x96],
            &[0x12, 0x05, 0x61],
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
            &[0x0b],
            &[0x00, 0x01],
        ];
        for bytes in cases {
            let mut r = Reader::new(bytes, "Test");
            assert!(r.next_field().is_err(), "{bytes:?}");
        }
        // A string where a varint belongs.
        let mut r = Reader::new(&[0x0a, 0x01, 0x61], "Test");
        let (f, v) = r.next_field().unwrap().unwrap();
        let err = r.int(f, &v).unwrap_err().to_string();
        assert!(
            err.contains("field 1") && err.contains("length-delimited"),
            "{err}"
        );
    }

    #[test]
    fn packed_and_unpacked_repeated_fields() {
        let mut out = Vec::new();
        let r = Reader::new(&[], "Test");
        r.ints(1, &Value::Len(&[0x01, 0x96, 0x01]), &mut out)
            .unwrap();
        r.ints(1, &Value::Varint(7), &mut out).unwrap();
        assert_eq!(out, vec![1, 150, 7]);
        let mut f = Vec::new();
        r.floats(4, &Value::Len(&1.5f32.to_le_bytes()), &mut f)
            .unwrap();
        assert_eq!(f, vec![1.5]);
        assert!(r.floats(4, &Value::Len(&[0, 0, 0]), &mut f).is_err());
    }
}

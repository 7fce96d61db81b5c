//! Constant tensors: initializers and `Constant` nodes decoded from `TensorProto`, inline or
//! from an external data file, and the small integer vectors of shape arithmetic.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::proto::TensorProto;
use super::OnnxError;
use crate::io::half::{bf16_to_f32, f16_to_f32};
use crate::tensor::{checked_numel, Float, Tensor};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path};

/// One integer of a constant shape vector: a known number, or the model's batch size when
/// the batch axis is symbolic (what `Shape` of an activation yields at index 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Int {
    Known(i64),
    Batch,
}

/// The elements of a constant: floating point (widened to `f64`) or integers.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Data {
    Float(Vec<f64>),
    Int(Vec<Int>),
}

/// A constant tensor known while importing.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Const {
    pub dims: Vec<usize>,
    pub data: Data,
}

impl Const {
    pub(crate) fn ints(dims: Vec<usize>, values: Vec<Int>) -> Self {
        Const {
            dims,
            data: Data::Int(values),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match &self.data {
            Data::Float(v) => v.len(),
            Data::Int(v) => v.len(),
        }
    }

    /// The values as floats (`None` when an integer is the symbolic batch size).
    pub(crate) fn floats(&self) -> Option<Vec<f64>> {
        match &self.data {
            Data::Float(v) => Some(v.clone()),
            Data::Int(v) => v
                .iter()
                .map(|i| match i {
                    Int::Known(k) => Some(*k as f64),
                    Int::Batch => None,
                })
                .collect(),
        }
    }

    /// The constant with every value negated (the symbolic batch size stays as it is; it is
    /// never a float).
    pub(crate) fn negated(self) -> Self {
        let data = match self.data {
            Data::Float(v) => Data::Float(v.into_iter().map(|x| -x).collect()),
            Data::Int(v) => Data::Int(
                v.into_iter()
                    .map(|i| match i {
                        Int::Known(k) => Int::Known(k.saturating_neg()),
                        Int::Batch => Int::Batch,
                    })
                    .collect(),
            ),
        };
        Const {
            dims: self.dims,
            data,
        }
    }

    /// The values as integers (`None` for floating-point data).
    pub(crate) fn int_values(&self) -> Option<&[Int]> {
        match &self.data {
            Data::Int(v) => Some(v),
            Data::Float(_) => None,
        }
    }

    /// The values as a tensor of `T` with the constant's dims.
    pub(crate) fn to_tensor<T: Float>(&self) -> Option<Tensor<T>> {
        let values: Vec<T> = self.floats()?.into_iter().map(T::of).collect();
        Tensor::from_shape_vec(ndarray::IxDyn(&self.dims), values).ok()
    }
}

/// ONNX `TensorProto.DataType` codes this importer reads.
mod dtype {
    pub const FLOAT: i64 = 1;
    pub const UINT8: i64 = 2;
    pub const INT8: i64 = 3;
    pub const INT16: i64 = 5;
    pub const INT32: i64 = 6;
    pub const INT64: i64 = 7;
    pub const BOOL: i64 = 9;
    pub const FLOAT16: i64 = 10;
    pub const DOUBLE: i64 = 11;
    pub const BFLOAT16: i64 = 16;
}

/// Whether a data type code is a floating-point type this importer reads.
pub(crate) fn is_float_type(code: i64) -> bool {
    matches!(
        code,
        dtype::FLOAT | dtype::DOUBLE | dtype::FLOAT16 | dtype::BFLOAT16
    )
}

/// Whether a data type code is an integer (or bool) type this importer reads.
pub(crate) fn is_int_type(code: i64) -> bool {
    matches!(
        code,
        dtype::UINT8 | dtype::INT8 | dtype::INT16 | dtype::INT32 | dtype::INT64 | dtype::BOOL
    )
}

fn elem_size(code: i64) -> Option<usize> {
    Some(match code {
        dtype::UINT8 | dtype::INT8 | dtype::BOOL => 1,
        dtype::INT16 | dtype::FLOAT16 | dtype::BFLOAT16 => 2,
        dtype::FLOAT | dtype::INT32 => 4,
        dtype::INT64 | dtype::DOUBLE => 8,
        _ => return None,
    })
}

/// Decodes a tensor's elements, reading external data relative to `dir` (the model's folder).
pub(crate) fn decode(t: &TensorProto, dir: Option<&Path>) -> Result<Const, OnnxError> {
    let fail = |message: String| OnnxError::Tensor {
        name: t.name.clone(),
        message,
    };
    let code = t.data_type;
    let size = elem_size(code).ok_or_else(|| {
        fail(format!(
            "data type {code} is not supported (float, double, float16, bfloat16 and integer \
             types are)"
        ))
    })?;
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| fail(format!("negative dim {d}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let numel = checked_numel(&format!("tensor `{}`", t.name), &dims)
        .map_err(|e| fail(format!("dims {dims:?}: {e}")))?;
    let external;
    let raw: Option<&[u8]> = if t.data_location == 1 {
        external = read_external(t, dir, numel * size)?;
        Some(&external)
    } else {
        t.raw_data.as_deref()
    };
    let data = match raw {
        Some(bytes) => {
            if bytes.len() != numel * size {
                return Err(fail(format!(
                    "{} bytes of data for {numel} elements of {size} bytes",
                    bytes.len()
                )));
            }
            from_raw(code, bytes)
        }
        None => {
            let count = match code {
                dtype::FLOAT => t.float_data.len(),
                dtype::DOUBLE => t.double_data.len(),
                dtype::INT64 => t.int64_data.len(),
                _ => t.int32_data.len(),
            };
            if count != numel {
                return Err(fail(format!(
                    "{count} values for dims {dims:?} ({numel} elements)"
                )));
            }
            match code {
                dtype::FLOAT => Data::Float(t.float_data.iter().map(|&x| x as f64).collect()),
                dtype::DOUBLE => Data::Float(t.double_data.clone()),
                dtype::INT64 => Data::Int(t.int64_data.iter().map(|&x| Int::Known(x)).collect()),
                dtype::FLOAT16 => Data::Float(
                    t.int32_data
                        .iter()
                        .map(|&x| f16_to_f32(x as u16) as f64)
                        .collect(),
                ),
                dtype::BFLOAT16 => Data::Float(
                    t.int32_data
                        .iter()
                        .map(|&x| bf16_to_f32(x as u16) as f64)
                        .collect(),
                ),
                _ => Data::Int(
                    t.int32_data
                        .iter()
                        .map(|&x| Int::Known(x as i32 as i64))
                        .collect(),
                ),
            }
        }
    };
    Ok(Const { dims, data })
}

fn from_raw(code: i64, bytes: &[u8]) -> Data {
    fn le<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        bytes.chunks_exact(N).map(crate::io::byte_array::<N>)
    }
    let ints = |v: Vec<i64>| Data::Int(v.into_iter().map(Int::Known).collect());
    match code {
        dtype::FLOAT => Data::Float(
            le::<4>(bytes)
                .map(|b| f32::from_le_bytes(b) as f64)
                .collect(),
        ),
        dtype::DOUBLE => Data::Float(le::<8>(bytes).map(f64::from_le_bytes).collect()),
        dtype::FLOAT16 => Data::Float(
            le::<2>(bytes)
                .map(|b| f16_to_f32(u16::from_le_bytes(b)) as f64)
                .collect(),
        ),
        dtype::BFLOAT16 => Data::Float(
            le::<2>(bytes)
                .map(|b| bf16_to_f32(u16::from_le_bytes(b)) as f64)
                .collect(),
        ),
        dtype::INT64 => ints(le::<8>(bytes).map(i64::from_le_bytes).collect()),
        dtype::INT32 => ints(
            le::<4>(bytes)
                .map(|b| i32::from_le_bytes(b) as i64)
                .collect(),
        ),
        dtype::INT16 => ints(
            le::<2>(bytes)
                .map(|b| i16::from_le_bytes(b) as i64)
                .collect(),
        ),
        dtype::INT8 => ints(bytes.iter().map(|&b| b as i8 as i64).collect()),
        _ => ints(bytes.iter().map(|&b| b as i64).collect()), // UINT8, BOOL
    }
}

/// Reads `expected` bytes of an external tensor: `location` (a relative path inside the
/// model's folder), `offset` and `length` checked against the file before anything is read.
fn read_external(
    t: &TensorProto,
    dir: Option<&Path>,
    expected: usize,
) -> Result<Vec<u8>, OnnxError> {
    let key = |k: &str| {
        t.external_data
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    let location = key("location").ok_or_else(|| OnnxError::Tensor {
        name: t.name.clone(),
        message: "external data without a `location`".into(),
    })?;
    let fail = |message: String, source: Option<std::io::Error>| OnnxError::ExternalData {
        name: t.name.clone(),
        file: location.into(),
        message,
        source,
    };
    let number = |k: &str| -> Result<Option<u64>, OnnxError> {
        key(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| fail(format!("`{k}` is `{v}`, not a whole number"), None))
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?;
    let relative = Path::new(location);
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(fail(
            "the location must be a relative path inside the model's folder".into(),
            None,
        ));
    }
    let dir = dir.ok_or_else(|| {
        fail(
            "the model was read from memory, so there is no folder to find the file in".into(),
            None,
        )
    })?;
    let path = dir.join(relative);
    // Opening a named pipe would wait for a writer forever.
    let meta = std::fs::metadata(&path).map_err(|e| fail("cannot open".into(), Some(e)))?;
    if !meta.is_file() {
        return Err(fail(
            "not a regular file (a folder, pipe, socket or device)".into(),
            None,
        ));
    }
    let mut file = std::fs::File::open(&path).map_err(|e| fail("cannot open".into(), Some(e)))?;
    let file_len = file
        .metadata()
        .map_err(|e| fail("cannot read its size".into(), Some(e)))?
        .len();
    let want = length.unwrap_or(expected as u64);
    if want != expected as u64 {
        return Err(fail(
            format!("length {want} bytes, but the tensor needs {expected}"),
            None,
        ));
    }
    if offset.checked_add(want).is_none_or(|end| end > file_len) {
        return Err(fail(
            format!(
                "bytes {offset}..{offset}+{want} lie beyond the end of the file ({file_len} bytes)"
            ),
            None,
        ));
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(expected)
        .map_err(|_| fail(format!("cannot allocate {expected} bytes"), None))?;
    bytes.resize(expected, 0);
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(&mut bytes))
        .map_err(|e| fail("cannot read".into(), Some(e)))?;
    Ok(bytes)
}

use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use safetensors::tensor::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A tensor ready to serialise: dtype, shape and little-endian bytes.
struct Encoded {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl View for &Encoded {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

fn encode<T: Float>(t: &Tensor<T>, as_i64: bool) -> Encoded {
    let mut bytes = Vec::with_capacity(t.len() * 8);
    let dtype = if as_i64 {
        t.iter()
            .for_each(|x| bytes.extend_from_slice(&(x.as_f64().round() as i64).to_le_bytes()));
        Dtype::I64
    } else if T::DTYPE == "F32" {
        t.iter()
            .for_each(|x| bytes.extend_from_slice(&(x.as_f64() as f32).to_le_bytes()));
        Dtype::F32
    } else {
        t.iter()
            .for_each(|x| bytes.extend_from_slice(&x.as_f64().to_le_bytes()));
        Dtype::F64
    };
    Encoded {
        dtype,
        shape: t.shape().to_vec(),
        bytes,
    }
}

/// Serialises named tensors as safetensors bytes in the element type `T` (names ending in
/// `num_batches_tracked` are stored as int64, as PyTorch stores them).
pub fn encode_tensors<T: Float>(
    tensors: &[(String, Tensor<T>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>> {
    let encoded: Vec<(String, Encoded)> = tensors
        .iter()
        .map(|(name, t)| {
            (
                name.clone(),
                encode(t, name.ends_with("num_batches_tracked")),
            )
        })
        .collect();
    safetensors::serialize(encoded.iter().map(|(n, e)| (n.as_str(), e)), metadata)
        .map_err(|e| Error::input("safetensors", e.to_string()))
}

/// Parses safetensors bytes into named tensors of element type `T`, converting from F32, F64,
/// F16, BF16 and the integer types I64, I32, U8 as needed. `path` only labels errors.
pub fn decode_tensors<T: Float>(bytes: &[u8], path: &str) -> Result<Vec<(String, Tensor<T>)>> {
    let file_err = |message: String| Error::File {
        path: PathBuf::from(path),
        message,
    };
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| file_err(format!("not a valid safetensors file: {e}")))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let values: Vec<T> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| T::of(f32::from_le_bytes(super::byte_array(b)) as f64))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| T::of(f64::from_le_bytes(super::byte_array(b))))
                .collect(),
            Dtype::F16 => data
                .chunks_exact(2)
                .map(|b| {
                    T::of(super::half::f16_to_f32(u16::from_le_bytes(super::byte_array(b))) as f64)
                })
                .collect(),
            Dtype::BF16 => data
                .chunks_exact(2)
                .map(|b| {
                    T::of(super::half::bf16_to_f32(u16::from_le_bytes(super::byte_array(b))) as f64)
                })
                .collect(),
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|b| T::of(i64::from_le_bytes(super::byte_array(b)) as f64))
                .collect(),
            Dtype::I32 => data
                .chunks_exact(4)
                .map(|b| T::of(i32::from_le_bytes(super::byte_array(b)) as f64))
                .collect(),
            Dtype::U8 => data.iter().map(|&b| T::of(b as f64)).collect(),
            other => {
                return Err(file_err(format!(
                    "tensor {name}: dtype {other:?} is not supported"
                )))
            }
        };
        let t = Tensor::from_shape_vec(ndarray::IxDyn(view.shape()), values)
            .map_err(|e| file_err(format!("tensor {name}: {e}")))?;
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Reads every tensor of a safetensors file.
pub fn read_tensors<T: Float>(path: &Path) -> Result<Vec<(String, Tensor<T>)>> {
    let bytes = super::read_regular_file(path, "cannot read")?;
    decode_tensors(&bytes, &path.display().to_string())
}

/// Writes named tensors to a safetensors file, atomically.
pub fn write_tensors<T: Float>(
    path: &Path,
    tensors: &[(String, Tensor<T>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    super::write_atomic(path, &encode_tensors(tensors, metadata)?)
}

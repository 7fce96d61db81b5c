//! PyTorch checkpoints: files written by `torch.save(obj, path)` (the zip format, PyTorch's
//! default since 1.6), read in pure Rust without running anything from the file.
//!
//! Such a file is a zip archive `<name>/data.pkl` (a pickle of `obj`, in which every tensor is
//! a strided view of a storage named by a persistent id), `<name>/data/<key>` (the raw
//! little-endian bytes of each storage), `<name>/byteorder` and `<name>/version`. The reader
//! parses the zip (`zip.rs`), unpickles `data.pkl` with a restricted unpickler that knows only
//! plain data and torch's tensor constructors (`pickle.rs`), then gathers each tensor from its
//! storage, honouring offsets and strides (transposed views, slices, several tensors sharing
//! one storage) and widening float16/bfloat16/int64 to the model's float type.
//!
//! ```no_run
//! use convnet::io::PthFile;
//! let file = PthFile::open("checkpoint.pth".as_ref())?;
//! println!("{:?}", file.tensor_dicts()); // e.g. ["model"] for {"model": ..., "epoch": 3}
//! let tensors = file.tensors::<f32>(Some("model"))?;
//! # Ok::<(), convnet::Error>(())
//! ```

mod pickle;
mod zip;

use super::half::{bf16_to_f32, f16_to_f32};
use crate::error::{Error, Result};
use crate::tensor::{Float, Tensor};
use pickle::{Storage, TensorView, Unpickled, Value};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use zip::ZipIndex;

/// Why a PyTorch checkpoint could not be read; carried by [`Error::Pth`] with the file name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PthError {
    /// The zip container is damaged: truncated, a bad signature, a failed CRC check, an
    /// unsupported compression method...
    #[error("not a readable zip archive: {0}")]
    Zip(String),

    /// A file in the format of PyTorch before 1.6 (or `_use_new_zipfile_serialization=False`).
    #[error(
        "this is torch.save's legacy (pre-1.6) format, which convnet does not read; load it in \
         Python and save it again with a recent PyTorch: torch.save(torch.load(old), new)"
    )]
    LegacyFormat,

    /// An entry the archive should have, such as `data.pkl` or a storage `data/<key>`.
    #[error("the archive has no entry {0}")]
    MissingEntry(String),

    /// The pickle names a Python global that is not plain data or a torch tensor constructor
    /// (for instance `os.system` or `builtins.eval`). It is refused, never called.
    #[error(
        "the pickle refers to the Python global {module}.{name}; only tensors and plain data \
         (dicts, lists, numbers, strings) are loaded, and nothing from the file is ever run"
    )]
    ForbiddenGlobal {
        /// The global's module, as written in the pickle.
        module: String,
        /// The global's name.
        name: String,
    },

    /// A pickle opcode this reader does not implement.
    #[error(
        "the pickle uses opcode {name} (0x{opcode:02x}) at byte {offset}, which is not supported"
    )]
    UnsupportedOpcode {
        /// The opcode byte.
        opcode: u8,
        /// Its name in Python's `pickletools` (`"?"` when the byte is no opcode).
        name: &'static str,
        /// Its position in `data.pkl`.
        offset: usize,
    },

    /// The pickle stream is malformed (truncated, an empty stack, a bad memo reference...).
    #[error("malformed pickle at byte {offset}: {message}")]
    Pickle {
        /// The position of the offending opcode in `data.pkl`.
        offset: usize,
        /// What is wrong.
        message: String,
    },

    /// Something valid that this reader does not handle (a big-endian file, complex tensors...).
    #[error("unsupported: {0}")]
    Unsupported(String),

    /// A tensor whose view does not fit its storage, or a selected entry that is no tensor.
    #[error("tensor {name}: {message}")]
    Tensor {
        /// The tensor's key in the state dict.
        name: String,
        /// What is wrong.
        message: String,
    },

    /// The checkpoint holds no dict of tensors, or several, or not the one asked for.
    #[error("{0}")]
    StateDict(String),
}

/// The element type of a storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    /// Element `i` of little-endian `bytes`, widened to `f64` (the caller checks the bounds;
    /// an element past the end would read as zero, never panic).
    fn read(self, bytes: &[u8], i: usize) -> f64 {
        let n = self.size();
        let b = i
            .checked_mul(n)
            .and_then(|start| bytes.get(start..start.checked_add(n)?))
            .unwrap_or_default();
        let a2 = || crate::io::byte_array::<2>(b);
        let a4 = || crate::io::byte_array::<4>(b);
        let a8 = || crate::io::byte_array::<8>(b);
        match self {
            Dtype::F64 => f64::from_le_bytes(a8()),
            Dtype::F32 => f32::from_le_bytes(a4()) as f64,
            Dtype::F16 => f16_to_f32(u16::from_le_bytes(a2())) as f64,
            Dtype::BF16 => bf16_to_f32(u16::from_le_bytes(a2())) as f64,
            Dtype::I64 => i64::from_le_bytes(a8()) as f64,
            Dtype::I32 => i32::from_le_bytes(a4()) as f64,
            Dtype::I16 => i16::from_le_bytes(a2()) as f64,
            Dtype::I8 => crate::io::byte_array::<1>(b)[0] as i8 as f64,
            Dtype::U8 | Dtype::Bool => crate::io::byte_array::<1>(b)[0] as f64,
        }
    }
}

/// No tensor is materialised with more elements than the crate's limit (a zero stride can
/// make a small storage look arbitrarily large: one float viewed as 2^32 of them).
use crate::tensor::MAX_ELEMENTS;

/// How deep nested dicts are searched for a state dict.
const MAX_DEPTH: usize = 32;

/// True when `bytes` is, by its content, a `torch.save` file: a zip archive, or the legacy
/// format (a pickle that starts with torch's magic number, or a tar archive).
pub(crate) fn is_torch_file(bytes: &[u8]) -> bool {
    zip::is_zip(bytes) || is_legacy(bytes)
}

fn is_legacy(bytes: &[u8]) -> bool {
    // Legacy files pickle the magic number 0x1950a86a20f9469cfc6c first: PROTO 2, LONG1 10.
    const MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";
    let tar = bytes.get(257..262) == Some(b"ustar".as_slice());
    bytes.starts_with(MAGIC) || tar
}

/// A checkpoint written by `torch.save`: the unpickled object, ready to hand out its tensors.
pub struct PthFile {
    source: String,
    bytes: Vec<u8>,
    index: ZipIndex,
    /// The archive's folder, with its trailing slash (`"resnet18/"`).
    prefix: String,
    object: Unpickled,
}

impl std::fmt::Debug for PthFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PthFile")
            .field("source", &self.source)
            .field("bytes", &self.bytes.len())
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl PthFile {
    /// Reads and unpickles the checkpoint at `path`. Errors name the file.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = crate::io::read_regular_file(path, "cannot read")?;
        Self::from_bytes(bytes, &path.display().to_string())
    }

    /// Parses a checkpoint held in memory; `source` labels errors.
    pub fn from_bytes(bytes: Vec<u8>, source: &str) -> Result<Self> {
        let fail = |e: PthError| Error::Pth {
            path: PathBuf::from(source),
            source: e,
        };
        if !zip::is_zip(&bytes) {
            return Err(fail(if is_legacy(&bytes) {
                PthError::LegacyFormat
            } else {
                PthError::Zip("the file does not start with a zip signature (PK\\x03\\x04)".into())
            }));
        }
        let index = ZipIndex::parse(&bytes).map_err(fail)?;
        let pickles: Vec<&String> = index
            .names()
            .iter()
            .filter(|n| n.ends_with("/data.pkl") && n.matches('/').count() == 1)
            .collect();
        let prefix = match pickles.as_slice() {
            [one] => one.trim_end_matches("data.pkl").to_string(),
            [] => return Err(fail(PthError::MissingEntry("<name>/data.pkl".into()))),
            many => {
                return Err(fail(PthError::Unsupported(format!(
                    "an archive with several pickles ({})",
                    many.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))))
            }
        };
        if index.contains(&format!("{prefix}constants.pkl")) {
            return Err(fail(PthError::Unsupported(
                "a TorchScript archive (torch.jit.save), whose pickle holds scripted modules \
                 rather than a state dict; save the weights with \
                 torch.save(model.state_dict(), path) instead"
                    .into(),
            )));
        }
        let byteorder = format!("{prefix}byteorder");
        if index.contains(&byteorder) {
            let order = index.read(&bytes, &byteorder).map_err(fail)?;
            if order.as_ref() != b"little" {
                return Err(fail(PthError::Unsupported(format!(
                    "byte order {:?} (only little-endian files are read)",
                    String::from_utf8_lossy(&order)
                ))));
            }
        }
        let object = {
            let data = index
                .read(&bytes, &format!("{prefix}data.pkl"))
                .map_err(fail)?;
            pickle::unpickle(&data).map_err(fail)?
        };
        Ok(PthFile {
            source: source.to_string(),
            bytes,
            index,
            prefix,
            object,
        })
    }

    fn fail(&self, e: PthError) -> Error {
        Error::Pth {
            path: PathBuf::from(self.source.clone()),
            source: e,
        }
    }

    /// The dicts of tensors in the checkpoint, as key paths: `[""]` when the saved object is
    /// itself a `state_dict`, `["model"]` for `{"model": state_dict, "epoch": 3}`,
    /// `["a/b"]` for `{"a": {"b": state_dict}}`. Only dicts with string keys are searched
    /// (so an optimizer's per-parameter state is not mistaken for weights).
    pub fn tensor_dicts(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        self.search(&self.object.root, String::new(), 0, &mut seen, &mut found);
        found
    }

    fn search(
        &self,
        v: &Value,
        path: String,
        depth: usize,
        seen: &mut HashSet<usize>,
        found: &mut Vec<String>,
    ) {
        let Value::Dict(id) = v else { return };
        if depth > MAX_DEPTH || !seen.insert(*id) {
            return;
        }
        let d = self.object.dict(*id);
        if !d.entries.iter().all(|(k, _)| matches!(k, Value::Str(_))) {
            return;
        }
        if !d.entries.is_empty() && d.entries.iter().all(|(_, v)| matches!(v, Value::Tensor(_))) {
            found.push(path);
            return;
        }
        for (k, v) in &d.entries {
            if let Value::Str(k) = k {
                let child = if path.is_empty() {
                    k.to_string()
                } else {
                    format!("{path}/{k}")
                };
                self.search(v, child, depth + 1, seen, found);
            }
        }
    }

    /// The number at key path `key` (`"epoch"`, `"meta/step"`): an int, float or bool saved
    /// beside the weights; `None` when there is no such key or it holds something else.
    pub fn number(&self, key: &str) -> Option<f64> {
        let mut v = &self.object.root;
        for part in key.split('/') {
            let Value::Dict(id) = v else { return None };
            v = self
                .object
                .dict(*id)
                .entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if &**s == part))
                .map(|(_, v)| v)?;
        }
        match v {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            Value::Bool(b) => Some(*b as u8 as f64),
            _ => None,
        }
    }

    /// The dict at key path `key` (`a/b` for nested dicts), or the only dict of tensors.
    fn select(&self, key: Option<&str>) -> std::result::Result<usize, PthError> {
        let key = match key {
            Some(k) => k.to_string(),
            None => match self.tensor_dicts().as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(PthError::StateDict(format!(
                        "the checkpoint holds no dict of tensors (the saved object is {})",
                        self.object.root.kind()
                    )))
                }
                many => {
                    return Err(PthError::StateDict(format!(
                        "the checkpoint holds several dicts of tensors ({}); choose one by key",
                        quoted(many)
                    )))
                }
            },
        };
        let mut v = &self.object.root;
        let mut walked = String::new();
        for part in key.split('/').filter(|p| !p.is_empty()) {
            let Value::Dict(id) = v else {
                return Err(PthError::StateDict(format!(
                    "`{walked}` is {}, not a dict, so it has no key `{part}`",
                    v.kind()
                )));
            };
            let d = self.object.dict(*id);
            v = match d
                .entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Str(s) if &**s == part))
            {
                Some((_, v)) => v,
                None => {
                    let keys: Vec<String> = d
                        .entries
                        .iter()
                        .filter_map(|(k, _)| match k {
                            Value::Str(s) => Some(s.to_string()),
                            _ => None,
                        })
                        .take(12)
                        .collect();
                    let place = if walked.is_empty() {
                        "the checkpoint".to_string()
                    } else {
                        format!("`{walked}`")
                    };
                    return Err(PthError::StateDict(format!(
                        "{place} has no key `{part}` (its keys: {}); dicts of tensors: {}",
                        quoted(&keys),
                        quoted(&self.tensor_dicts())
                    )));
                }
            };
            if !walked.is_empty() {
                walked.push('/');
            }
            walked.push_str(part);
        }
        match v {
            Value::Dict(id) => Ok(*id),
            other => Err(PthError::StateDict(format!(
                "`{key}` is {}, not a dict of tensors",
                other.kind()
            ))),
        }
    }

    /// The tensors of the dict at `key` (see [`tensor_dicts`](Self::tensor_dicts); `None`
    /// picks the only dict of tensors), converted to `T`, sorted by name. Float16, bfloat16,
    /// float64 and integer tensors are converted; strided views are gathered.
    pub fn tensors<T: Float>(&self, key: Option<&str>) -> Result<Vec<(String, Tensor<T>)>> {
        let id = self.select(key).map_err(|e| self.fail(e))?;
        let mut storages: HashMap<&str, Cow<'_, [u8]>> = HashMap::new();
        let mut out = Vec::new();
        for (k, v) in &self.object.dict(id).entries {
            let name = match k {
                Value::Str(s) => s.to_string(),
                other => {
                    return Err(self.fail(PthError::StateDict(format!(
                        "a key of the selected dict is {}, not a string",
                        other.kind()
                    ))))
                }
            };
            let view = match v {
                Value::Tensor(t) => t,
                other => {
                    return Err(self.fail(PthError::Tensor {
                        name,
                        message: format!("is {}, not a tensor", other.kind()),
                    }))
                }
            };
            let key = view.storage.key.as_str();
            if !storages.contains_key(key) {
                let entry = format!("{}data/{key}", self.prefix);
                let data = self
                    .index
                    .read(&self.bytes, &entry)
                    .map_err(|e| self.fail(e))?;
                storages.insert(key, data);
            }
            let data = storages.get(key).map(|d| &d[..]).unwrap_or_default();
            let t = gather(data, view).map_err(|message| {
                self.fail(PthError::Tensor {
                    name: name.clone(),
                    message,
                })
            })?;
            out.push((name, t));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The elements of `view` in row-major order, read from `bytes` (the storage) and converted.
fn gather<T: Float>(bytes: &[u8], view: &TensorView) -> std::result::Result<Tensor<T>, String> {
    let Storage { dtype, numel, .. } = *view.storage;
    let available = bytes.len() / dtype.size();
    if available < numel {
        return Err(format!(
            "its storage holds {} bytes, fewer than {numel} {dtype:?} elements",
            bytes.len()
        ));
    }
    let count = view
        .size
        .iter()
        .try_fold(1usize, |n, &s| n.checked_mul(s))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            format!(
                "size {:?} holds more than the limit of {MAX_ELEMENTS} elements (2^28)",
                view.size
            )
        })?;
    if count > 0 {
        // The last element the view touches must lie inside the storage.
        let last = view
            .size
            .iter()
            .zip(&view.stride)
            .try_fold(view.offset, |acc, (&s, &st)| {
                (s - 1).checked_mul(st).and_then(|x| acc.checked_add(x))
            });
        match last {
            Some(last) if last < numel => {}
            _ => {
                return Err(format!(
                    "size {:?}, stride {:?} and offset {} reach past the end of its storage of \
                     {numel} elements",
                    view.size, view.stride, view.offset
                ))
            }
        }
    }
    let mut values = Vec::new();
    values
        .try_reserve_exact(count)
        .map_err(|_| format!("cannot allocate {count} elements"))?;
    let read = |i: usize| T::of(dtype.read(bytes, i));
    let rank = view.size.len();
    let mut contiguous = true;
    let mut expected = 1usize;
    for (&size, &stride) in view.size.iter().zip(&view.stride).rev() {
        if size != 1 && stride != expected {
            contiguous = false;
        }
        // `count` (the product of the sizes) did not overflow, so neither does this.
        expected = expected.saturating_mul(size);
    }
    if count == 0 {
    } else if contiguous {
        values.extend((view.offset..view.offset + count).map(read));
    } else {
        // An odometer over the indices; `pos` follows the strides.
        let mut index = vec![0usize; rank];
        let mut pos = view.offset;
        for _ in 0..count {
            values.push(read(pos));
            let dims = index.iter_mut().zip(&view.size).zip(&view.stride).rev();
            for ((i, &size), &stride) in dims {
                // Wrapping: a dimension of size 1 may carry any stride; the sum comes back.
                *i += 1;
                pos = pos.wrapping_add(stride);
                if *i < size {
                    break;
                }
                pos = pos.wrapping_sub(stride.wrapping_mul(size));
                *i = 0;
            }
        }
    }
    Tensor::from_shape_vec(ndarray::IxDyn(&view.size), values).map_err(|e| e.to_string())
}

/// Reads the tensors of the dict at `key` (or of the only dict of tensors) in the
/// `torch.save` file at `path`. See [`PthFile`].
pub fn read_pth<T: Float>(path: &Path, key: Option<&str>) -> Result<Vec<(String, Tensor<T>)>> {
    PthFile::open(path)?.tensors(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn view(numel: usize, offset: usize, size: &[usize], stride: &[usize]) -> TensorView {
        TensorView {
            storage: Arc::new(Storage {
                dtype: Dtype::F32,
                key: "0".into(),
                numel,
            }),
            offset,
            size: size.to_vec(),
            stride: stride.to_vec(),
        }
    }

    fn storage(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn gathers_strided_views_like_torch() {
        // x = torch.arange(12.).reshape(3, 4)
        let s = storage(&(0..12).map(|i| i as f32).collect::<Vec<_>>());
        let t: Tensor<f64> = gather(&s, &view(12, 0, &[4, 3], &[1, 4])).unwrap(); // x.t()
        assert_eq!(
            t.iter().copied().collect::<Vec<_>>(),
            [0., 4., 8., 1., 5., 9., 2., 6., 10., 3., 7., 11.]
        );
        let t: Tensor<f64> = gather(&s, &view(12, 6, &[2, 2], &[4, 1])).unwrap(); // x[1:, 2:]
        assert_eq!(t.iter().copied().collect::<Vec<_>>(), [6., 7., 10., 11.]);
        let t: Tensor<f64> = gather(&s, &view(12, 5, &[], &[])).unwrap(); // x[1, 1]
        assert_eq!(t.shape(), &[] as &[usize]);
        assert_eq!(t[[]], 5.0);
        let t: Tensor<f32> = gather(&s, &view(12, 1, &[2, 3], &[0, 2])).unwrap(); // expand
        assert_eq!(
            t.iter().copied().collect::<Vec<_>>(),
            [1., 3., 5., 1., 3., 5.]
        );
        let t: Tensor<f32> = gather(&s, &view(12, 0, &[0, 4], &[4, 1])).unwrap();
        assert_eq!(t.shape(), &[0, 4]);
    }

    #[test]
    fn views_outside_their_storage_are_errors() {
        let s = storage(&[0.0; 12]);
        assert!(gather::<f32>(&s, &view(12, 1, &[3, 4], &[4, 1])).is_err()); // one past
        assert!(gather::<f32>(&s, &view(13, 0, &[13], &[1])).is_err()); // storage too short
        assert!(gather::<f32>(&s, &view(12, 0, &[2, usize::MAX], &[1, 1])).is_err());
        assert!(gather::<f32>(&s, &view(12, 0, &[1 << 20, 1 << 20], &[0, 0])).is_err());
        assert!(gather::<f32>(&s, &view(12, 0, &[2, 2], &[usize::MAX, 1])).is_err());
    }

    #[test]
    fn a_zero_stride_view_larger_than_the_tensor_limit_is_refused_before_allocating() {
        // One float seen through stride 0 as 2^30 of them: the reader's own limit was 2^32
        // elements, so this allocated and filled 4 GiB (8 GiB as f64) from a file of a few
        // hundred bytes. The crate-wide limit (2^28) applies now, as for every other tensor.
        let s = storage(&[1.0]);
        for size in [
            vec![1 << 30],
            vec![1 << 15, 1 << 15],
            vec![MAX_ELEMENTS + 1],
        ] {
            let strides = vec![0; size.len()];
            let e = gather::<f64>(&s, &view(1, 0, &size, &strides)).unwrap_err();
            assert!(e.contains("limit of 268435456 elements"), "{e}");
        }
        let t = gather::<f32>(&s, &view(1, 0, &[3, 2], &[0, 0])).unwrap();
        assert_eq!(t.iter().copied().collect::<Vec<_>>(), [1.0; 6]);
    }

    #[test]
    fn mutated_pickles_give_errors_or_tensors_never_panics() {
        // Every single-byte change (at 600 pseudo-random places, to pseudo-random values) of
        // a real torch.save pickle must unpickle to something or fail cleanly, and whatever
        // unpickles must hand out tensors or fail cleanly too.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/pth/checkpoint_nested.pth"
        );
        let file = PthFile::open(Path::new(path)).unwrap();
        let pickle = file
            .index
            .read(&file.bytes, &format!("{}data.pkl", file.prefix))
            .unwrap()
            .into_owned();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut parsed, mut loaded) = (0, 0);
        for _ in 0..600 {
            let mut bad = pickle.clone();
            let at = next() as usize % bad.len();
            bad[at] = next() as u8;
            let Ok(object) = pickle::unpickle(&bad) else {
                continue;
            };
            parsed += 1;
            let mutated = PthFile {
                source: "mutated".into(),
                bytes: file.bytes.clone(),
                index: ZipIndex::parse(&file.bytes).unwrap(),
                prefix: file.prefix.clone(),
                object,
            };
            let _ = mutated.tensor_dicts();
            let _ = mutated.number("epoch");
            if mutated.tensors::<f32>(None).is_ok() {
                loaded += 1;
            }
        }
        // Many mutations hit numbers or strings and still parse; some still load.
        assert!(
            parsed > 50 && loaded > 10,
            "parsed {parsed}, loaded {loaded}"
        );
    }

    #[test]
    fn a_checkpoint_can_move_between_threads() {
        fn send_sync<X: Send + Sync>() {}
        send_sync::<PthFile>();
    }

    #[test]
    fn legacy_and_foreign_content_is_recognised() {
        let legacy = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.\x80\x02";
        assert!(is_torch_file(legacy));
        assert!(matches!(
            PthFile::from_bytes(legacy.to_vec(), "old.pth"),
            Err(Error::Pth {
                source: PthError::LegacyFormat,
                ..
            })
        ));
        assert!(!is_torch_file(b"\x10\x00\x00\x00\x00\x00\x00\x00{}"));
        let msg = PthFile::from_bytes(b"hello".to_vec(), "x.pth")
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("x.pth: "), "{msg}");
    }
}

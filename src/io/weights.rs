//! Model weights under PyTorch `state_dict` names: saved as safetensors, loaded from
//! safetensors or from `torch.save` checkpoints (`.pth`/`.pt`).

use super::pth::{is_torch_file, PthFile};
use super::tensors::{decode_tensors, write_tensors};
use crate::error::{Error, Result};
use crate::layer::{Layer, Slot, SlotMut};
use crate::tensor::{Float, Tensor};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Every parameter and buffer of `model`, by `state_dict` name, in visiting order.
pub fn state_dict<T: Float>(model: &dyn Layer<T>) -> Vec<(String, Tensor<T>)> {
    let mut out = Vec::new();
    model.visit(&mut |name, slot| {
        let t = match slot {
            Slot::Param(p) => p.value.clone(),
            Slot::Buffer(b) => b.clone(),
        };
        out.push((name.to_string(), t));
    });
    out
}

/// Rejects a list of named tensors in which a name occurs twice (two children of a container
/// named alike): such a `state_dict` cannot be saved or loaded unambiguously. `source` (the
/// file) labels the error.
pub fn check_unique_names<'a>(
    names: impl IntoIterator<Item = &'a str>,
    source: &str,
) -> Result<()> {
    let mut seen = HashSet::new();
    let mut dups: Vec<&str> = names.into_iter().filter(|n| !seen.insert(*n)).collect();
    if dups.is_empty() {
        return Ok(());
    }
    dups.sort();
    dups.dedup();
    Err(Error::File {
        path: PathBuf::from(source),
        message: format!(
            "the model's state_dict names [{}] more than once (two children named alike); \
             give every child of a container its own name",
            dups.join(", ")
        ),
    })
}

/// Saves every parameter and buffer of `model` to a safetensors file (atomically), with
/// PyTorch `state_dict` names; `num_batches_tracked` is stored as int64 as PyTorch does.
/// A model whose `state_dict` names an entry twice is an error, and nothing is written.
pub fn save_weights<T: Float>(model: &dyn Layer<T>, path: &Path) -> Result<()> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    let tensors = state_dict(model);
    check_unique_names(
        tensors.iter().map(|(n, _)| n.as_str()),
        &path.display().to_string(),
    )?;
    write_tensors(path, &tensors, Some(meta))
}

/// Loads a `state_dict` into `model` from a safetensors file or a PyTorch checkpoint written
/// by `torch.save` (`.pth`/`.pt`), told apart by content, not by extension. Float32, float64,
/// float16 and bfloat16 tensors load into `f32` and `f64` models alike; `num_batches_tracked`
/// may be int64. A checkpoint that nests its weights (`{"model": state_dict, "epoch": 3}`) is
/// searched for its one dict of tensors; use [`load_pth_weights`] to name the key.
///
/// Every key must match a model entry with the same shape and vice versa, otherwise nothing
/// is changed and an [`Error::StateDict`] lists the missing, unexpected and mis-shaped keys.
/// As with PyTorch's `load_state_dict`, a file without BatchNorm's `num_batches_tracked`
/// (older torchvision releases saved none) loads, and the model keeps its own count.
pub fn load_weights<T: Float>(model: &mut dyn Layer<T>, path: &Path) -> Result<()> {
    let source = path.display().to_string();
    let bytes = super::read_regular_file(path, "cannot read")?;
    let torch_extension = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["pth", "pt", "ckpt", "bin", "tar"].contains(&e));
    // By content first; the extension only decides which format's error a foreign file gets.
    let tensors = if !looks_like_safetensors(&bytes) && (is_torch_file(&bytes) || torch_extension) {
        PthFile::from_bytes(bytes, &source)?.tensors(None)?
    } else {
        decode_tensors(&bytes, &source)?
    };
    load_state_dict(model, tensors, &source)
}

/// Loads the dict of tensors at `key` of a `torch.save` checkpoint into `model`, with the
/// checks of [`load_weights`]. `key` is a path through nested dicts (`"model"`,
/// `"ema/state_dict"`); `None` picks the checkpoint's only dict of tensors.
pub fn load_pth_weights<T: Float>(
    model: &mut dyn Layer<T>,
    path: &Path,
    key: Option<&str>,
) -> Result<()> {
    let tensors = PthFile::open(path)?.tensors(key)?;
    load_state_dict(model, tensors, &path.display().to_string())
}

/// A safetensors file starts with the length of its JSON header, then the header's `{`.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.get(8) == Some(&b'{')
}

/// True for the key of BatchNorm's batch counter, which a `state_dict` may lack.
fn is_batch_counter(name: &str) -> bool {
    name == "num_batches_tracked" || name.ends_with(".num_batches_tracked")
}

/// Loads named tensors into `model` with the checks of [`load_weights`]; `source` labels errors.
/// All or nothing: every check runs before the first tensor is replaced.
pub fn load_state_dict<T: Float>(
    model: &mut dyn Layer<T>,
    tensors: Vec<(String, Tensor<T>)>,
    source: &str,
) -> Result<()> {
    let file = check_state_dict(model, tensors, source)?;
    apply_state_dict(model, file);
    Ok(())
}

/// The checks of [`load_state_dict`] without changing the model: the file's names must be
/// unique and match the model's exactly, with equal shapes. Returns the tensors by name,
/// ready for [`apply_state_dict`].
pub(crate) fn check_state_dict<T: Float>(
    model: &dyn Layer<T>,
    tensors: Vec<(String, Tensor<T>)>,
    source: &str,
) -> Result<HashMap<String, Tensor<T>>> {
    check_unique_names(tensors.iter().map(|(n, _)| n.as_str()), source)?;
    let mut model_names = Vec::new();
    model.visit(&mut |name, _| model_names.push(name.to_string()));
    check_unique_names(model_names.iter().map(String::as_str), source)?;
    let file: HashMap<String, Tensor<T>> = tensors.into_iter().collect();
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    let mut expected = Vec::new();
    model.visit(&mut |name, slot| {
        let shape = match slot {
            Slot::Param(p) => p.value.shape().to_vec(),
            Slot::Buffer(b) => b.shape().to_vec(),
        };
        match file.get(name) {
            None if is_batch_counter(name) => {}
            None => missing.push(name.to_string()),
            Some(t) if t.shape() != shape.as_slice() => {
                mismatched.push((name.to_string(), shape, t.shape().to_vec()))
            }
            Some(_) => {}
        }
        expected.push(name.to_string());
    });
    let mut unexpected: Vec<String> = file
        .keys()
        .filter(|k| !expected.contains(k))
        .cloned()
        .collect();
    unexpected.sort();
    if !missing.is_empty() || !unexpected.is_empty() || !mismatched.is_empty() {
        return Err(Error::StateDict {
            path: PathBuf::from(source),
            missing,
            unexpected,
            mismatched,
        });
    }
    Ok(file)
}

/// Moves checked tensors (from [`check_state_dict`]) into the model.
pub(crate) fn apply_state_dict<T: Float>(
    model: &mut dyn Layer<T>,
    mut file: HashMap<String, Tensor<T>>,
) {
    model.visit_mut(&mut |name, slot| {
        if let Some(t) = file.remove(name) {
            match slot {
                SlotMut::Param(p) => p.value = t,
                SlotMut::Buffer(b) => *b = t,
            }
        }
    });
}

/// Parses a safetensors or `torch.save` byte buffer (told apart by content) as a
/// `state_dict` and loads it (for weights embedded in a binary or received over the wire).
pub fn load_weights_from_bytes<T: Float>(
    model: &mut dyn Layer<T>,
    bytes: &[u8],
    source: &str,
) -> Result<()> {
    let tensors = if !looks_like_safetensors(bytes) && is_torch_file(bytes) {
        PthFile::from_bytes(bytes.to_vec(), source)?.tensors(None)?
    } else {
        decode_tensors(bytes, source)?
    };
    load_state_dict(model, tensors, source)
}

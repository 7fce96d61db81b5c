//! Model weights as safetensors under PyTorch `state_dict` names.

use super::tensors::{decode_tensors, read_tensors, write_tensors};
use crate::error::{Error, Result};
use crate::layer::{Layer, Slot, SlotMut};
use crate::tensor::{Float, Tensor};
use std::collections::HashMap;
use std::path::Path;

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

/// Saves every parameter and buffer of `model` to a safetensors file (atomically), with
/// PyTorch `state_dict` names; `num_batches_tracked` is stored as int64 as PyTorch does.
pub fn save_weights<T: Float>(model: &dyn Layer<T>, path: &Path) -> Result<()> {
    let mut meta = HashMap::new();
    meta.insert("format".to_string(), "pt".to_string());
    write_tensors(path, &state_dict(model), Some(meta))
}

/// Loads a safetensors `state_dict` (any float dtype; int64 `num_batches_tracked`) into
/// `model`. Every key must match a model entry with the same shape and vice versa, otherwise
/// nothing is changed and an [`Error::StateDict`] lists the missing, unexpected and
/// mis-shaped keys.
pub fn load_weights<T: Float>(model: &mut dyn Layer<T>, path: &Path) -> Result<()> {
    let tensors = read_tensors::<T>(path)?;
    load_state_dict(model, tensors, &path.display().to_string())
}

/// Loads named tensors into `model` with the checks of [`load_weights`]; `source` labels errors.
pub fn load_state_dict<T: Float>(
    model: &mut dyn Layer<T>,
    tensors: Vec<(String, Tensor<T>)>,
    source: &str,
) -> Result<()> {
    let mut file: HashMap<String, Tensor<T>> = tensors.into_iter().collect();
    let mut missing = Vec::new();
    let mut mismatched = Vec::new();
    let mut expected = Vec::new();
    model.visit(&mut |name, slot| {
        let shape = match slot {
            Slot::Param(p) => p.value.shape().to_vec(),
            Slot::Buffer(b) => b.shape().to_vec(),
        };
        match file.get(name) {
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
            path: source.to_string(),
            missing,
            unexpected,
            mismatched,
        });
    }
    model.visit_mut(&mut |name, slot| {
        if let Some(t) = file.remove(name) {
            match slot {
                SlotMut::Param(p) => p.value = t,
                SlotMut::Buffer(b) => *b = t,
            }
        }
    });
    Ok(())
}

/// Parses a safetensors byte buffer as a `state_dict` and loads it (for weights embedded in a
/// binary or received over the wire).
pub fn load_weights_from_bytes<T: Float>(
    model: &mut dyn Layer<T>,
    bytes: &[u8],
    source: &str,
) -> Result<()> {
    load_state_dict(model, decode_tensors(bytes, source)?, source)
}

//! Composite blocks built from layers, themselves layers: ResNet's residual block and
//! GoogLeNet's Inception module.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod inception;
mod residual;

pub use inception::Inception;
pub use residual::Residual;

use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::tensor::Float;
use std::collections::BTreeSet;

/// Checks a child's name as PyTorch's `add_module` does: not empty, no `.` (it would split
/// into two levels of the `state_dict` key).
fn check_child_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.contains('.') {
        return Err(Error::config(
            what,
            format!("child name `{name}` must be non-empty and contain no `.`"),
        ));
    }
    Ok(())
}

/// Every `state_dict` key and generator name of `layer`, each prefixed with `prefix.` when a
/// prefix is given.
fn state_keys<T: Float>(layer: &mut dyn Layer<T>, prefix: Option<&str>) -> BTreeSet<String> {
    let full = |name: &str| match prefix {
        Some(p) => format!("{p}.{name}"),
        None => name.to_string(),
    };
    let mut keys = BTreeSet::new();
    layer.visit(&mut |name, _| {
        keys.insert(full(name));
    });
    layer.visit_rngs_mut(&mut |name, _| {
        keys.insert(full(name));
    });
    keys
}

/// An error naming the keys that two parts of a block would both write, if any.
fn check_disjoint(what: &str, a: &BTreeSet<String>, b: &BTreeSet<String>) -> Result<()> {
    let shared: Vec<&String> = a.intersection(b).collect();
    if shared.is_empty() {
        Ok(())
    } else {
        Err(Error::config(
            what,
            format!("the state_dict keys {shared:?} would be named twice"),
        ))
    }
}

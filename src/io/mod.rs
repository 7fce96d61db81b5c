//! Files: safetensors tensors, PyTorch checkpoints (`.pth`), model weights under PyTorch
//! `state_dict` names, atomic writes.
//!
//! Every byte here may come from a file the user did not write: no `unwrap`, `expect` or
//! unchecked indexing (the lints below keep it so; an `allow` names its invariant).
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod atomic;
pub(crate) mod half;
mod pth;
mod tensors;
mod weights;

pub use atomic::write_atomic;
pub use pth::{read_pth, PthError, PthFile};
pub use tensors::{decode_tensors, encode_tensors, read_tensors, write_tensors};
pub(crate) use weights::{apply_state_dict, check_state_dict};
pub use weights::{
    check_unique_names, load_pth_weights, load_state_dict, load_weights, load_weights_from_bytes,
    save_weights, state_dict,
};

/// The first `N` bytes of `bytes` as an array (zero-filled if there are fewer), for decoding
/// fixed-size little- or big-endian numbers from chunks the caller cut to `N` bytes. Cannot
/// panic, whatever the input.
pub(crate) fn byte_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    out
}

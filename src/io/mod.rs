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

/// The bytes of the file at `path`, refusing a path that names a pipe, socket or device:
/// reading `/dev/zero` (or a link to it named like a weights file) never ends and takes all
/// memory, and a named pipe without a writer waits forever. A folder goes on to the read,
/// which fails with the system's error as before. `action` labels the I/O error
/// (`"cannot read"`, `"cannot read image"`).
pub(crate) fn read_regular_file(path: &std::path::Path, action: &str) -> crate::Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| crate::Error::io(path, action, e))?;
    if !meta.is_file() && !meta.is_dir() {
        return Err(crate::Error::File {
            path: path.to_path_buf(),
            message: "not a regular file (a pipe, socket or device), so not read".into(),
        });
    }
    std::fs::read(path).map_err(|e| crate::Error::io(path, action, e))
}

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

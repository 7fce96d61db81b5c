//! Files: safetensors tensors, PyTorch checkpoints (`.pth`), model weights under PyTorch
//! `state_dict` names, atomic writes.

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

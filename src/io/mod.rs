//! Files: safetensors tensors, model weights under PyTorch `state_dict` names, atomic writes.

mod atomic;
mod tensors;
mod weights;

pub use atomic::write_atomic;
pub use tensors::{decode_tensors, encode_tensors, read_tensors, write_tensors};
pub(crate) use weights::{apply_state_dict, check_state_dict};
pub use weights::{
    check_unique_names, load_state_dict, load_weights, load_weights_from_bytes, save_weights,
    state_dict,
};

//! The model zoo: the case studies of the course, built from the library's own layers, with
//! PyTorch/torchvision parameter names.

mod googlenet;
mod lenet;

pub use googlenet::{googlenet, googlenet_torchvision, inception_torchvision, inception_v1_paper};
pub use lenet::{lenet5, lenet5_modern};

//! The model zoo: the case studies of the course, built from the library's own layers, with
//! PyTorch/torchvision parameter names.

mod lenet;

pub use lenet::{lenet5, lenet5_modern};

//! The model zoo: the case studies of the course (LeNet-5 → AlexNet → VGG → GoogLeNet →
//! ResNet), built from the library's own layers, with PyTorch/torchvision parameter names so
//! that torchvision `state_dict`s load unchanged. One family per file.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod alexnet;
mod googlenet;
mod lenet;
mod registry;
mod resnet;
mod vgg;

pub use alexnet::{alexnet, alexnet_torchvision};
pub use googlenet::{
    googlenet, googlenet_torchvision, inception_torchvision, inception_torchvision_with_norm,
    inception_v1_paper,
};
pub use lenet::{lenet5, lenet5_modern};
pub use registry::{build, build_default, info, ModelInfo, MODELS};
pub use resnet::{
    basic_block, basic_block_with_norm, bottleneck, bottleneck_with_norm, resnet101, resnet152,
    resnet18, resnet34, resnet50,
};
pub use vgg::{vgg11, vgg11_bn, vgg13, vgg13_bn, vgg16, vgg16_bn, vgg19, vgg19_bn};

//! Every zoo model by name, for command-line tools and tests.

use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::tensor::Float;

/// A zoo model's name, its input `[C, H, W]` and a one-line description.
#[derive(Clone, Copy, Debug)]
pub struct ModelInfo {
    /// The constructor's name (`resnet50`).
    pub name: &'static str,
    /// The input it was designed for, `[channels, height, width]`.
    pub input: [usize; 3],
    /// What it is.
    pub about: &'static str,
}

const fn model(name: &'static str, side: usize, about: &'static str) -> ModelInfo {
    let channels = if side == 32 || side == 28 { 1 } else { 3 };
    ModelInfo {
        name,
        input: [channels, side, side],
        about,
    }
}

/// Every model [`build`] knows, in the order of the course's case studies.
pub const MODELS: &[ModelInfo] = &[
    model(
        "lenet5",
        32,
        "LeNet-5 (LeCun et al. 1998): tanh, average pooling, 61,706 params",
    ),
    model(
        "lenet5_modern",
        28,
        "LeNet-5 for MNIST: ReLU, max pooling, padded C1, 61,706 params",
    ),
    model(
        "alexnet",
        227,
        "AlexNet as in the paper/course listing (LRN, 227x227), 62,378,344 params",
    ),
    model(
        "alexnet_torchvision",
        224,
        "torchvision's AlexNet, 61,100,840 params",
    ),
    model("vgg11", 224, "VGG-11 (config A), 132,863,336 params"),
    model("vgg11_bn", 224, "VGG-11 with batch norm"),
    model("vgg13", 224, "VGG-13 (config B), 133,047,848 params"),
    model("vgg13_bn", 224, "VGG-13 with batch norm"),
    model("vgg16", 224, "VGG-16 (config D), 138,357,544 params"),
    model(
        "vgg16_bn",
        224,
        "VGG-16 with batch norm, 138,365,992 params",
    ),
    model("vgg19", 224, "VGG-19 (config E), 143,667,240 params"),
    model("vgg19_bn", 224, "VGG-19 with batch norm"),
    model(
        "googlenet",
        224,
        "GoogLeNet / Inception v1 as in the paper (LRN, 5x5 branches, aux heads)",
    ),
    model(
        "googlenet_torchvision",
        224,
        "torchvision's GoogLeNet (BN, no aux heads), 6,624,904 params",
    ),
    model("resnet18", 224, "ResNet-18 (BasicBlock), 11,689,512 params"),
    model("resnet34", 224, "ResNet-34 (BasicBlock), 21,797,672 params"),
    model("resnet50", 224, "ResNet-50 (Bottleneck), 25,557,032 params"),
    model(
        "resnet101",
        224,
        "ResNet-101 (Bottleneck), 44,549,160 params",
    ),
    model(
        "resnet152",
        224,
        "ResNet-152 (Bottleneck), 60,192,808 params",
    ),
];

/// The [`ModelInfo`] of a model name, or an error listing the names.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// let info = convnet::zoo::info("alexnet")?;
/// assert_eq!(info.input, [3, 227, 227]);
/// assert!(convnet::zoo::info("alexnet2").unwrap_err().to_string().contains("known models"));
/// # Ok(())
/// # }
/// ```
pub fn info(name: &str) -> Result<ModelInfo> {
    MODELS
        .iter()
        .copied()
        .find(|m| m.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
            Error::config(
                "zoo",
                format!("unknown model `{name}`; known models: {}", names.join(", ")),
            )
        })
}

/// Builds a zoo model by name with `num_classes` outputs.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::build::<f32>("lenet5_modern", 10)?;
/// let info = convnet::zoo::info("lenet5_modern")?;
/// assert_eq!(info.input, [1, 28, 28]);
/// assert_eq!(net.output_shape(&[1, 1, 28, 28])?, vec![1, 10]);
/// assert!(convnet::zoo::build::<f32>("lenet6", 10).is_err());
/// # Ok(())
/// # }
/// ```
pub fn build<T: Float>(name: &str, num_classes: usize) -> Result<Box<dyn Layer<T>>> {
    use super::*;
    info(name)?;
    let n = num_classes;
    Ok(match name {
        "lenet5" => Box::new(lenet5::<T>(n)?),
        "lenet5_modern" => Box::new(lenet5_modern::<T>(n)?),
        "alexnet" => Box::new(alexnet::<T>(n)?),
        "alexnet_torchvision" => Box::new(alexnet_torchvision::<T>(n)?),
        "vgg11" => Box::new(vgg11::<T>(n)?),
        "vgg11_bn" => Box::new(vgg11_bn::<T>(n)?),
        "vgg13" => Box::new(vgg13::<T>(n)?),
        "vgg13_bn" => Box::new(vgg13_bn::<T>(n)?),
        "vgg16" => Box::new(vgg16::<T>(n)?),
        "vgg16_bn" => Box::new(vgg16_bn::<T>(n)?),
        "vgg19" => Box::new(vgg19::<T>(n)?),
        "vgg19_bn" => Box::new(vgg19_bn::<T>(n)?),
        "googlenet" => Box::new(googlenet::<T>(n)?),
        "googlenet_torchvision" => Box::new(googlenet_torchvision::<T>(n)?),
        "resnet18" => Box::new(resnet18::<T>(n)?),
        "resnet34" => Box::new(resnet34::<T>(n)?),
        "resnet50" => Box::new(resnet50::<T>(n)?),
        "resnet101" => Box::new(resnet101::<T>(n)?),
        _ => Box::new(resnet152::<T>(n)?),
    })
}

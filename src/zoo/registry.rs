//! Every zoo model by name, for command-line tools and tests.

use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::tensor::Float;

/// A zoo model's name, its input `[C, H, W]`, its natural number of classes and a one-line
/// description.
#[derive(Clone, Copy, Debug)]
pub struct ModelInfo {
    /// The constructor's name (`resnet50`).
    pub name: &'static str,
    /// The input it was designed for, `[channels, height, width]`.
    pub input: [usize; 3],
    /// The number of classes it was designed for: 10 for the LeNet-5s (digits), 1,000 for the
    /// ImageNet models. [`build_default`] builds it with this many outputs.
    pub classes: usize,
    /// What it is.
    pub about: &'static str,
}

const fn model(name: &'static str, side: usize, about: &'static str) -> ModelInfo {
    // The LeNet-5s read 32x32 or 28x28 grey digits; everything else 3-channel ImageNet photos.
    let digits = side == 32 || side == 28;
    ModelInfo {
        name,
        input: [if digits { 1 } else { 3 }, side, side],
        classes: if digits { 10 } else { 1000 },
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

/// Builds a zoo model by name with its natural number of classes ([`ModelInfo::classes`]:
/// 10 for the LeNet-5s, 1,000 for the ImageNet models).
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::Layer;
/// let lenet = convnet::zoo::build_default::<f32>("lenet5")?;
/// assert_eq!(lenet.output_shape(&[1, 1, 32, 32])?, vec![1, 10]);
/// let resnet = convnet::zoo::build_default::<f32>("resnet18")?;
/// assert_eq!(resnet.num_params(), 11_689_512); // torchvision's count, 1,000 classes
/// # Ok(())
/// # }
/// ```
pub fn build_default<T: Float>(name: &str) -> Result<Box<dyn Layer<T>>> {
    build(name, info(name)?.classes)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_class_counts_give_the_published_parameter_counts() {
        // LeCun et al. 1998 / the course: 61,706 with 10 outputs; torchvision: 11,689,512.
        for (name, classes, params) in [
            ("lenet5", 10, 61_706),
            ("lenet5_modern", 10, 61_706),
            ("resnet18", 1000, 11_689_512),
        ] {
            assert_eq!(info(name).unwrap().classes, classes, "{name}");
            let model = build_default::<f32>(name).unwrap();
            assert_eq!(model.num_params(), params, "{name}");
            let [c, h, w] = info(name).unwrap().input;
            assert_eq!(model.output_shape(&[1, c, h, w]).unwrap(), [1, classes]);
        }
        for m in MODELS {
            let expected = if m.name.starts_with("lenet") {
                10
            } else {
                1000
            };
            assert_eq!(m.classes, expected, "{}", m.name);
        }
        assert!(build_default::<f32>("nonet").is_err());
    }
}

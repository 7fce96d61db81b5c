//! VGG (Simonyan and Zisserman, 2014, "Very Deep Convolutional Networks for Large-Scale Image
//! Recognition"), configurations A, B, D and E, with and without batch norm, as torchvision
//! builds them.

use crate::error::Result;
use crate::init::Init;
use crate::layer::{Layer, SlotMut};
use crate::layers::{
    AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, BatchNorm2d, BatchNorm2dConfig, Conv2d,
    Conv2dConfig, Dropout, DropoutConfig, Flatten, FlattenConfig, Linear, LinearConfig, MaxPool2d,
    MaxPool2dConfig, ReLU,
};
use crate::model::Sequential;
use crate::tensor::Float;

/// One entry of a VGG configuration: a 3x3 convolution to that many channels, or a max pool.
#[derive(Clone, Copy)]
enum V {
    C(usize),
    M,
}
use V::{C, M};

/// The paper's table 1, as torchvision's `cfgs`.
const A: &[V] = &[
    C(64),
    M,
    C(128),
    M,
    C(256),
    C(256),
    M,
    C(512),
    C(512),
    M,
    C(512),
    C(512),
    M,
];
const B: &[V] = &[
    C(64),
    C(64),
    M,
    C(128),
    C(128),
    M,
    C(256),
    C(256),
    M,
    C(512),
    C(512),
    M,
    C(512),
    C(512),
    M,
];
const D: &[V] = &[
    C(64),
    C(64),
    M,
    C(128),
    C(128),
    M,
    C(256),
    C(256),
    C(256),
    M,
    C(512),
    C(512),
    C(512),
    M,
    C(512),
    C(512),
    C(512),
    M,
];
const E: &[V] = &[
    C(64),
    C(64),
    M,
    C(128),
    C(128),
    M,
    C(256),
    C(256),
    C(256),
    C(256),
    M,
    C(512),
    C(512),
    C(512),
    C(512),
    M,
    C(512),
    C(512),
    C(512),
    C(512),
    M,
];

/// A 3x3 pad-1 convolution initialised as torchvision's VGG: Kaiming normal (fan_out), zero
/// bias.
fn conv3x3<T: Float>(in_channels: usize, out_channels: usize) -> Result<Conv2d<T>> {
    let cfg = Conv2dConfig::new(in_channels, out_channels, 3)
        .padding(1)
        .init(Init::KaimingNormalFanOut);
    let mut conv = Conv2d::new(cfg)?;
    conv.visit_mut(&mut |name, slot| {
        if let (SlotMut::Param(p), "bias") = (slot, name) {
            p.value.fill(T::zero());
        }
    });
    Ok(conv)
}

/// A fully connected layer initialised as torchvision's VGG: `N(0, 0.01)`, zero bias.
fn fc<T: Float>(in_features: usize, out_features: usize) -> Result<Linear<T>> {
    Linear::new(
        LinearConfig::new(in_features, out_features)
            .init(Init::Normal(0.01))
            .bias_init(Init::Constant(0.0)),
    )
}

/// `features`, `avgpool`, `flatten`, `classifier` for one configuration.
fn vgg<T: Float>(cfg: &[V], batch_norm: bool, num_classes: usize) -> Result<Sequential<T>> {
    let mut features = Sequential::new();
    let mut channels = 3;
    for &v in cfg {
        match v {
            M => features = features.add(MaxPool2d::new(MaxPool2dConfig::new(2).stride(2))?),
            C(out) => {
                features = features.add(conv3x3(channels, out)?);
                if batch_norm {
                    features = features.add(BatchNorm2d::new(BatchNorm2dConfig::new(out))?);
                }
                features = features.add(ReLU::new());
                channels = out;
            }
        }
    }
    let classifier = Sequential::new()
        .add(fc(512 * 7 * 7, 4096)?)
        .add(ReLU::new())
        .add(Dropout::new(DropoutConfig::new().p(0.5))?)
        .add(fc(4096, 4096)?)
        .add(ReLU::new())
        .add(Dropout::new(DropoutConfig::new().p(0.5))?)
        .add(fc(4096, num_classes)?);
    Sequential::new()
        .add_named("features", features)?
        .add_named(
            "avgpool",
            AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new([7, 7]))?,
        )?
        .add_named("flatten", Flatten::new(FlattenConfig::new())?)?
        .add_named("classifier", classifier)
}

/// VGG configuration A (11 weight layers), torchvision's `vgg11()`: 132,863,336
/// parameters for 1000 classes. See [`vgg16`] for the layout and the names.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::vgg11::<f32>(1000)?;
/// assert_eq!(net.num_params(), 132_863_336);
/// assert_eq!(net.output_shape(&[1, 3, 224, 224])?, vec![1, 1000]);
/// # Ok(())
/// # }
/// ```
pub fn vgg11<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    vgg(A, false, num_classes)
}

/// VGG configuration B (13 weight layers), torchvision's `vgg13()`: 133,047,848
/// parameters for 1000 classes. See [`vgg16`] for the layout and the names.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::vgg13::<f32>(1000)?;
/// assert_eq!(net.num_params(), 133_047_848);
/// assert_eq!(net.output_shape(&[1, 3, 224, 224])?, vec![1, 1000]);
/// # Ok(())
/// # }
/// ```
pub fn vgg13<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    vgg(B, false, num_classes)
}

/// VGG configuration E (19 weight layers), torchvision's `vgg19()`: 143,667,240
/// parameters for 1000 classes. See [`vgg16`] for the layout and the names.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::vgg19::<f32>(1000)?;
/// assert_eq!(net.num_params(), 143_667_240);
/// assert_eq!(net.output_shape(&[1, 3, 224, 224])?, vec![1, 1000]);
/// # Ok(())
/// # }
/// ```
pub fn vgg19<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    vgg(E, false, num_classes)
}

/// VGG configuration A (11 weight layers, batch norm after every convolution), torchvision's `vgg11_bn()`: 132,868,840
/// parameters for 1000 classes. See [`vgg16`] for the layout and the names.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::vgg11_bn::<f32>(1000)?;
/// assert_eq!(net.num_params(), 132_868_840);
/// assert_eq!(net.output_shape(&[1, 3, 224, 224])?, vec![1, 1000]);
/// # Ok(())
/// # }
/// ```
pub fn vgg11_bn<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    vgg(A, true, num_classes)
}

/// VGG configuration B (13 weight layers, batch norm after every convolution), torchvision's `vgg13_bn()`: 133,053,736
/// parameters for 1000 classes. See [`vgg16`] for the layout and the names.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::vgg13_bn::<f32>(1000)?;
/// assert_eq!(net.num_params(), 133_053_736);
/// assert_eq!(net.output_shape(&[1, 3, 224, 224])?, vec![1, 1000]);
/// # Ok(())
/// # }
/// ```
pub fn vgg13_bn<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    vgg(B, true, num_classes)
}

/// VGG configuration D (16 weight layers, batch norm after every convolution), torchvision's `vgg16_bn()`: 138,365,992
/// parameters for 1000 classes. See [`vgg16`] for the layout and the names.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::vgg16_bn::<f32>(1000)?;
/// assert_eq!(net.num_params(), 138_365_992);
/// assert_eq!(net.output_shape(&[1, 3, 224, 224])?, vec![1, 1000]);
/// # Ok(())
/// # }
/// ```
pub fn vgg16_bn<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    vgg(D, true, num_classes)
}

/// VGG configuration E (19 weight layers, batch norm after every convolution), torchvision's `vgg19_bn()`: 143,678,248
/// parameters for 1000 classes. See [`vgg16`] for the layout and the names.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::vgg19_bn::<f32>(1000)?;
/// assert_eq!(net.num_params(), 143_678_248);
/// assert_eq!(net.output_shape(&[1, 3, 224, 224])?, vec![1, 1000]);
/// # Ok(())
/// # }
/// ```
pub fn vgg19_bn<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    vgg(E, true, num_classes)
}

/// VGG-16 (configuration D), torchvision's `vgg16()`: 138,357,544 parameters for 1000
/// classes. All VGGs share this layout; only the stack of 3x3 convolutions differs:
///
/// ```text
///            A (vgg11)   B (vgg13)   D (vgg16)   E (vgg19)      output at 224x224
/// block 1    64          64 x2       64 x2       64 x2          [112x112x64]  after max pool
/// block 2    128         128 x2      128 x2      128 x2         [56x56x128]
/// block 3    256 x2      256 x2      256 x3      256 x4         [28x28x256]
/// block 4    512 x2      512 x2      512 x3      512 x4         [14x14x512]
/// block 5    512 x2      512 x2      512 x3      512 x4         [7x7x512]
/// avgpool    AdaptiveAvgPool2d((7, 7))                          [7x7x512]
/// classifier FC 25088 -> 4096, ReLU, Dropout(0.5),
///            FC 4096 -> 4096, ReLU, Dropout(0.5), FC 4096 -> num_classes
/// ```
///
/// Every convolution is 3x3, stride 1, pad 1, followed by ReLU (`_bn` variants put a
/// `BatchNorm2d` between them); each block ends with a 2x2 stride-2 max pool. Names follow
/// torchvision: `features.N` numbers the convolutions, norms, ReLUs and pools in order
/// (`features.0.weight`, and for vgg16 `features.28.weight` is the last conv), then
/// `classifier.0`, `classifier.3`, `classifier.6`. Because of the adaptive pool, any input
/// of at least 32x32 works (the five pools leave 1x1, which is repeated to 7x7).
///
/// Initialisation as torchvision: convolutions Kaiming normal (fan_out) with zero bias, batch
/// norm weight 1 and bias 0, linear layers `N(0, 0.01)` with zero bias.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::vgg16::<f32>(1000)?;
/// assert_eq!(net.num_params(), 138_357_544);
/// assert_eq!(net.output_shape(&[1, 3, 224, 224])?, vec![1, 1000]);
/// # Ok(())
/// # }
/// ```
pub fn vgg16<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    vgg(D, false, num_classes)
}

#[cfg(test)]
mod tests {
    use super::super::alexnet::testkit::*;
    use super::*;
    use crate::error::Error;
    use crate::layer::Mode;

    type Ctor = fn(usize) -> Result<Sequential<f32>>;

    #[test]
    fn parameter_counts_match_torchvision() {
        // One at a time: the largest holds 143M values and as many gradients.
        let cases: [(&str, Ctor, usize); 8] = [
            ("vgg11", vgg11, 132_863_336),
            ("vgg13", vgg13, 133_047_848),
            ("vgg16", vgg16, 138_357_544),
            ("vgg19", vgg19, 143_667_240),
            ("vgg11_bn", vgg11_bn, 132_868_840),
            ("vgg13_bn", vgg13_bn, 133_053_736),
            ("vgg16_bn", vgg16_bn, 138_365_992),
            ("vgg19_bn", vgg19_bn, 143_678_248),
        ];
        for (name, ctor, count) in cases {
            let net = ctor(1000).unwrap();
            assert_eq!(net.num_params(), count, "{name}");
            assert_eq!(
                net.output_shape(&[2, 3, 224, 224]).unwrap(),
                [2, 1000],
                "{name}"
            );
            match name {
                "vgg11" => assert_keys(&net, include_str!("../../tests/fixtures/zoo/vgg11.keys")),
                "vgg11_bn" => {
                    assert_keys(&net, include_str!("../../tests/fixtures/zoo/vgg11_bn.keys"))
                }
                "vgg16_bn" => {
                    assert_keys(&net, include_str!("../../tests/fixtures/zoo/vgg16_bn.keys"))
                }
                _ => {}
            }
        }
    }

    #[test]
    fn shapes_and_smallest_input() {
        let net = vgg11::<f32>(10).unwrap();
        assert_eq!(net.output_shape(&[4, 3, 32, 32]).unwrap(), [4, 10]);
        assert_eq!(net.output_shape(&[1, 3, 100, 60]).unwrap(), [1, 10]);
        let err = net.output_shape(&[1, 3, 31, 31]).unwrap_err();
        assert!(matches!(err, Error::Geometry { .. }), "{err}");
        assert!(net.output_shape(&[1, 1, 32, 32]).is_err());
        let summary = net.summary(&[1, 3, 224, 224]).unwrap();
        let text = summary.to_string();
        assert!(
            text.contains("CONV8: 512 3x3 filters at stride 1, pad 1"),
            "{text}"
        );
        assert!(text.contains("FC9: 4096 neurons"), "{text}");
        assert!(text.ends_with("Total params: 128,807,306"), "{text}");
    }

    #[test]
    fn vgg11_training_step_lowers_the_loss() {
        let mut net = vgg11::<f32>(10).unwrap();
        let x = input::<f32>(&[2, 3, 32, 32], 11);
        let targets = [1, 6];
        let (a, b) = sgd_step(&mut net, Mode::Train, &x, &targets, 0.01);
        assert!(a.is_finite() && b.is_finite(), "{a} {b}");
        // Dropout off: the step is gradient descent on one fixed function.
        let (before, after) = sgd_step(&mut net, Mode::Eval, &x, &targets, 0.01);
        assert!(after < before, "loss {before} -> {after}");
    }
}

//! GoogLeNet / Inception v1 (Szegedy et al., "Going Deeper with Convolutions", 2014), as the
//! paper describes it and as torchvision implements it.
//!
//! An Inception module runs four branches over the same input and concatenates them along
//! channels; 1x1 "reduce" convolutions shrink the channels before the expensive 3x3 and 5x5
//! filters:
//!
//! ```text
//!        ┌─ 1x1 (#1x1) ─────────────────────────┐
//!   x ───┼─ 1x1 (#3x3red) ─ 3x3 pad 1 (#3x3) ───┼── concat: #1x1 + #3x3 + #5x5 + pool proj
//!        ├─ 1x1 (#5x5red) ─ 5x5 pad 2 (#5x5) ───┤
//!        └─ maxpool 3/1 pad 1 ─ 1x1 (pool proj) ┘
//! ```
//!
//! Table 1 of the paper, for a 224x224x3 input (both models share the channel numbers):
//!
//! ```text
//! layer          output       #1x1 #3x3red #3x3 #5x5red #5x5 pool proj
//! conv 7x7/2     112x112x64
//! maxpool 3/2    56x56x64
//! conv 1x1, 3x3  56x56x192                 (64 then 192)
//! maxpool 3/2    28x28x192
//! inception 3a   28x28x256     64    96    128    16     32     32
//! inception 3b   28x28x480    128   128    192    32     96     64
//! maxpool 3/2    14x14x480
//! inception 4a   14x14x512    192    96    208    16     48     64   → aux classifier 1
//! inception 4b   14x14x512    160   112    224    24     64     64
//! inception 4c   14x14x512    128   128    256    24     64     64
//! inception 4d   14x14x528    112   144    288    32     64     64   → aux classifier 2
//! inception 4e   14x14x832    256   160    320    32    128    128
//! maxpool 3/2    7x7x832
//! inception 5a   7x7x832      256   160    320    32    128    128
//! inception 5b   7x7x1024     384   192    384    48    128    128
//! avgpool 7x7/1  1x1x1024
//! dropout 40%, linear        num_classes
//! ```

use crate::blocks::Inception;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::layers::{
    AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, AvgPool2d, AvgPool2dConfig, BatchNorm2dConfig,
    Conv2d, Conv2dConfig, Dropout, DropoutConfig, Flatten, FlattenConfig, Linear, LinearConfig,
    LocalResponseNorm, LocalResponseNormConfig, MaxPool2d, MaxPool2dConfig, ReLU,
};
use crate::model::{Graph, GraphBuilder, Sequential};
use crate::tensor::Float;

/// The nine Inception modules of Table 1: name and
/// `[in_channels, #1x1, #3x3red, #3x3, #5x5red, #5x5, pool proj]`.
const MODULES: [(&str, [usize; 7]); 9] = [
    ("inception3a", [192, 64, 96, 128, 16, 32, 32]),
    ("inception3b", [256, 128, 128, 192, 32, 96, 64]),
    ("inception4a", [480, 192, 96, 208, 16, 48, 64]),
    ("inception4b", [512, 160, 112, 224, 24, 64, 64]),
    ("inception4c", [512, 128, 128, 256, 24, 64, 64]),
    ("inception4d", [512, 112, 144, 288, 32, 64, 64]),
    ("inception4e", [528, 256, 160, 320, 32, 128, 128]),
    ("inception5a", [832, 256, 160, 320, 32, 128, 128]),
    ("inception5b", [832, 384, 192, 384, 48, 128, 128]),
];

/// torchvision's `BasicConv2d` batch norm: eps 1e-3, momentum 0.1 (the template of
/// [`inception_torchvision`]; its `num_features` is not used).
fn default_norm() -> BatchNorm2dConfig {
    BatchNorm2dConfig::new(0).eps(1e-3)
}

/// torchvision's `BasicConv2d`: conv (no bias, weights N(0, 0.01²)) → BN (from the template
/// `norm`) → ReLU, with children named `conv`, `bn`, `relu`.
fn basic_conv<T: Float>(
    (cin, cout): (usize, usize),
    kernel: usize,
    stride: usize,
    pad: usize,
    norm: &BatchNorm2dConfig,
) -> Result<Sequential<T>> {
    let conv = Conv2dConfig::new(cin, cout, kernel)
        .stride(stride)
        .padding(pad)
        .bias(false)
        .init(Init::Normal(0.01));
    Sequential::new()
        .add_named("conv", Conv2d::new(conv)?)?
        .add_named("bn", super::resnet::bn(norm, cout)?)?
        .add_named("relu", ReLU::new())
}

/// The paper's conv: with a bias, followed by ReLU (He-normal weights, since there is no BN).
fn conv<T: Float>(
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
) -> Result<Conv2d<T>> {
    Conv2d::new(
        Conv2dConfig::new(cin, cout, kernel)
            .stride(stride)
            .padding(pad)
            .init(Init::KaimingNormal),
    )
}

/// Max pooling `kernel/stride`, no padding, `ceil_mode` (Caffe's and torchvision's rounding).
fn max_pool<T: Float>(kernel: usize, stride: usize) -> Result<MaxPool2d<T>> {
    MaxPool2d::new(MaxPool2dConfig::new(kernel).stride(stride).ceil_mode(true))
}

/// The pool branch's max pooling: 3x3, stride 1, pad 1, `ceil_mode` (size preserving).
fn branch_pool<T: Float>() -> Result<MaxPool2d<T>> {
    MaxPool2d::new(MaxPool2dConfig::new(3).stride(1).padding(1).ceil_mode(true))
}

fn check_channels(what: &str, channels: [usize; 7]) -> Result<()> {
    if channels.contains(&0) {
        return Err(Error::config(
            what,
            format!(
                "every channel count must be at least 1, got in {}, 1x1 {}, 3x3red {}, 3x3 {}, \
                 5x5red {}, 5x5 {}, pool_proj {}",
                channels[0],
                channels[1],
                channels[2],
                channels[3],
                channels[4],
                channels[5],
                channels[6]
            ),
        ));
    }
    Ok(())
}

/// torchvision's `Inception` module (`torchvision.models.googlenet.Inception`), every conv a
/// `BasicConv2d` (conv without bias → BatchNorm eps 1e-3 → ReLU):
///
/// ```text
/// branch1: BasicConv2d 1x1 in→ch1x1                          branch1.conv.weight, branch1.bn.*
/// branch2: [BasicConv2d 1x1 in→ch3x3red, 3x3 pad 1 →ch3x3]    branch2.0.*, branch2.1.*
/// branch3: [BasicConv2d 1x1 in→ch5x5red, 3x3 pad 1 →ch5x5]    branch3.0.*, branch3.1.*
/// branch4: [MaxPool 3/1 pad 1 ceil_mode, BasicConv2d 1x1 →pool_proj]        branch4.1.*
/// output:  ch1x1 + ch3x3 + ch5x5 + pool_proj channels, same H x W
/// ```
///
/// Branch 3 really is 3x3: torchvision's known deviation from the paper's 5x5 (kept for
/// compatibility with its pretrained weights). Errors if any channel count is 0.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let m = convnet::zoo::inception_torchvision::<f32>(192, 64, 96, 128, 16, 32, 32)?;
/// assert_eq!(m.output_shape(&[1, 192, 28, 28])?, vec![1, 256, 28, 28]);
/// # Ok(())
/// # }
/// ```
pub fn inception_torchvision<T: Float>(
    in_channels: usize,
    ch1x1: usize,
    ch3x3red: usize,
    ch3x3: usize,
    ch5x5red: usize,
    ch5x5: usize,
    pool_proj: usize,
) -> Result<Inception<T>> {
    let c = [
        in_channels,
        ch1x1,
        ch3x3red,
        ch3x3,
        ch5x5red,
        ch5x5,
        pool_proj,
    ];
    inception_torchvision_with_norm(c, &default_norm())
}

/// [`inception_torchvision`] whose batch norms are made from the template `norm` (as
/// torchvision's `conv_block`; eps, momentum, affine and running statistics come from it).
/// `channels` is `[in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj]`.
pub fn inception_torchvision_with_norm<T: Float>(
    channels: [usize; 7],
    norm: &BatchNorm2dConfig,
) -> Result<Inception<T>> {
    check_channels("Inception (torchvision)", channels)?;
    let [in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj] = channels;
    Inception::new()
        .branch("branch1", basic_conv((in_channels, ch1x1), 1, 1, 0, norm)?)?
        .branch(
            "branch2",
            Sequential::new()
                .add(basic_conv((in_channels, ch3x3red), 1, 1, 0, norm)?)
                .add(basic_conv((ch3x3red, ch3x3), 3, 1, 1, norm)?),
        )?
        .branch(
            "branch3",
            Sequential::new()
                .add(basic_conv((in_channels, ch5x5red), 1, 1, 0, norm)?)
                .add(basic_conv((ch5x5red, ch5x5), 3, 1, 1, norm)?),
        )?
        .branch(
            "branch4",
            Sequential::new().add(branch_pool()?).add(basic_conv(
                (in_channels, pool_proj),
                1,
                1,
                0,
                norm,
            )?),
        )
}

/// The paper's Inception module: every conv has a bias and is followed by ReLU, no batch norm,
/// and branch 3 is a real 5x5:
///
/// ```text
/// branch1: [conv 1x1 in→ch1x1, ReLU]                                  branch1.0.*
/// branch2: [conv 1x1 in→ch3x3red, ReLU, conv 3x3 pad 1 →ch3x3, ReLU]  branch2.0.*, branch2.2.*
/// branch3: [conv 1x1 in→ch5x5red, ReLU, conv 5x5 pad 2 →ch5x5, ReLU]  branch3.0.*, branch3.2.*
/// branch4: [MaxPool 3/1 pad 1 ceil_mode, conv 1x1 →pool_proj, ReLU]   branch4.1.*
/// output:  ch1x1 + ch3x3 + ch5x5 + pool_proj channels, same H x W
/// ```
///
/// Weights are He-normal (`N(0, 2/fan_in)`), biases PyTorch's default. Errors if any channel
/// count is 0.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let m = convnet::zoo::inception_v1_paper::<f32>(192, 64, 96, 128, 16, 32, 32)?;
/// assert_eq!(m.output_shape(&[1, 192, 28, 28])?, vec![1, 256, 28, 28]);
/// // 1x1: 192·64+64; 3x3: 192·96+96 + 96·128·9+128; 5x5: 192·16+16 + 16·32·25+32; pool: 192·32+32.
/// assert_eq!(m.num_params(), 12_352 + 18_528 + 110_720 + 3_088 + 12_832 + 6_176);
/// # Ok(())
/// # }
/// ```
pub fn inception_v1_paper<T: Float>(
    in_channels: usize,
    ch1x1: usize,
    ch3x3red: usize,
    ch3x3: usize,
    ch5x5red: usize,
    ch5x5: usize,
    pool_proj: usize,
) -> Result<Inception<T>> {
    let c = [
        in_channels,
        ch1x1,
        ch3x3red,
        ch3x3,
        ch5x5red,
        ch5x5,
        pool_proj,
    ];
    check_channels("Inception (paper)", c)?;
    Inception::new()
        .branch(
            "branch1",
            Sequential::new()
                .add(conv(in_channels, ch1x1, 1, 1, 0)?)
                .add(ReLU::new()),
        )?
        .branch(
            "branch2",
            Sequential::new()
                .add(conv(in_channels, ch3x3red, 1, 1, 0)?)
                .add(ReLU::new())
                .add(conv(ch3x3red, ch3x3, 3, 1, 1)?)
                .add(ReLU::new()),
        )?
        .branch(
            "branch3",
            Sequential::new()
                .add(conv(in_channels, ch5x5red, 1, 1, 0)?)
                .add(ReLU::new())
                .add(conv(ch5x5red, ch5x5, 5, 1, 2)?)
                .add(ReLU::new()),
        )?
        .branch(
            "branch4",
            Sequential::new()
                .add(branch_pool()?)
                .add(conv(in_channels, pool_proj, 1, 1, 0)?)
                .add(ReLU::new()),
        )
}

/// An Inception constructor taking Table 1's seven channel numbers.
type MakeInception<T> = fn(usize, usize, usize, usize, usize, usize, usize) -> Result<Inception<T>>;

/// Builds one module from `[in, #1x1, #3x3red, #3x3, #5x5red, #5x5, pool proj]`.
fn module<T: Float>(c: [usize; 7], make: MakeInception<T>) -> Result<Inception<T>> {
    make(c[0], c[1], c[2], c[3], c[4], c[5], c[6])
}

/// torchvision's GoogLeNet (`torchvision.models.googlenet(aux_logits=False,
/// transform_input=False)`) with exactly its `state_dict` names, 6,624,904 parameters for
/// 1000 classes:
///
/// ```text
/// conv1     BasicConv2d 7x7/2 pad 3, 3→64          [112x112x64]   (224x224 input)
/// maxpool1  max 3/2 ceil_mode                      [56x56x64]
/// conv2     BasicConv2d 1x1, 64→64
/// conv3     BasicConv2d 3x3 pad 1, 64→192          [56x56x192]
/// maxpool2  max 3/2 ceil_mode                      [28x28x192]
/// inception3a, inception3b                         [28x28x480]
/// maxpool3  max 3/2 ceil_mode                      [14x14x480]
/// inception4a .. inception4e                       [14x14x832]
/// maxpool4  max 2/2 ceil_mode                      [7x7x832]
/// inception5a, inception5b                         [7x7x1024]
/// avgpool   AdaptiveAvgPool2d(1, 1), flatten       [1024]
/// dropout   p = 0.2
/// fc        1024 → num_classes
/// ```
///
/// Every `BasicConv2d` is conv (no bias) → BatchNorm (eps 1e-3) → ReLU; the Inception modules
/// are [`inception_torchvision`] (3x3 in the "5x5" branch, as torchvision). The adaptive
/// average pool accepts any input size whose maps survive the four stride-2 stages (32x32
/// works: 16, 8, 4, 2, 1). Initialised as torchvision: conv and linear weights N(0, 0.01²),
/// BN weight 1 and bias 0.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::googlenet_torchvision::<f32>(1000)?;
/// assert_eq!(net.num_params(), 6_624_904);
/// assert_eq!(net.output_shape(&[1, 3, 224, 224])?, vec![1, 1000]);
/// # Ok(())
/// # }
/// ```
pub fn googlenet_torchvision<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    let norm = &default_norm();
    let mut net = Sequential::new()
        .add_named("conv1", basic_conv((3, 64), 7, 2, 3, norm)?)?
        .add_named("maxpool1", max_pool(3, 2)?)?
        .add_named("conv2", basic_conv((64, 64), 1, 1, 0, norm)?)?
        .add_named("conv3", basic_conv((64, 192), 3, 1, 1, norm)?)?
        .add_named("maxpool2", max_pool(3, 2)?)?;
    for (name, channels) in MODULES {
        net = net.add_named(name, module(channels, inception_torchvision)?)?;
        match name {
            "inception3b" => net = net.add_named("maxpool3", max_pool(3, 2)?)?,
            "inception4e" => net = net.add_named("maxpool4", max_pool(2, 2)?)?,
            _ => {}
        }
    }
    let fc = LinearConfig::new(1024, num_classes).init(Init::Normal(0.01));
    net.add_named(
        "avgpool",
        AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new([1, 1]))?,
    )?
    .add_named("flatten", Flatten::new(FlattenConfig::new())?)?
    .add_named("dropout", Dropout::new(DropoutConfig::new().p(0.2))?)?
    .add_named("fc", Linear::new(fc)?)
}

/// The paper's conv + ReLU, children named `conv` and `relu` (`conv1.conv.weight`, `.bias`).
fn conv_relu<T: Float>(
    cin: usize,
    cout: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
) -> Result<Sequential<T>> {
    Sequential::new()
        .add_named("conv", conv(cin, cout, kernel, stride, pad)?)?
        .add_named("relu", ReLU::new())
}

/// The paper's auxiliary classifier on a 14x14 map: average pool 5x5/3 (→ 4x4), conv 1x1 to
/// 128 + ReLU, FC 2048→1024 + ReLU, dropout 70%, FC 1024→num_classes.
fn aux_head<T: Float>(in_channels: usize, num_classes: usize) -> Result<Sequential<T>> {
    Sequential::new()
        .add_named(
            "avgpool",
            AvgPool2d::new(AvgPool2dConfig::new(5).stride(3))?,
        )?
        .add_named("conv", conv(in_channels, 128, 1, 1, 0)?)?
        .add_named("relu1", ReLU::new())?
        .add_named("flatten", Flatten::new(FlattenConfig::new())?)?
        .add_named("fc1", Linear::new(LinearConfig::new(128 * 4 * 4, 1024))?)?
        .add_named("relu2", ReLU::new())?
        .add_named("dropout", Dropout::new(DropoutConfig::new().p(0.7))?)?
        .add_named("fc2", Linear::new(LinearConfig::new(1024, num_classes))?)
}

/// The local response normalisation of the paper's stem, as in its Caffe model:
/// size 5, alpha 1e-4 (divided by the size), beta 0.75, k 1.
fn lrn<T: Float>() -> Result<LocalResponseNorm<T>> {
    LocalResponseNorm::new(LocalResponseNormConfig::new(5))
}

/// GoogLeNet as in the paper (Table 1 above; Inception modules from [`inception_v1_paper`],
/// real 5x5 convolutions, no batch norm, every conv with a bias and a ReLU), with its two
/// auxiliary classifiers, as a [`Graph`] with three outputs: the main logits first, then
/// `aux1` (after inception 4a) and `aux2` (after inception 4d).
///
/// ```text
/// conv1     conv 7x7/2 pad 3, 3→64 + ReLU         [112x112x64]
/// maxpool1  max 3/2 ceil_mode                     [56x56x64]
/// lrn1      LRN(5, 1e-4, 0.75, 1)
/// conv2     conv 1x1, 64→64 + ReLU
/// conv3     conv 3x3 pad 1, 64→192 + ReLU         [56x56x192]
/// lrn2      LRN(5, 1e-4, 0.75, 1)
/// maxpool2  max 3/2 ceil_mode                     [28x28x192]
/// inception3a, inception3b                        [28x28x480]
/// maxpool3  max 3/2 ceil_mode                     [14x14x480]
/// inception4a ──► aux1: avg 5/3 → [4x4x512], conv 1x1 →128 + ReLU, FC 2048→1024 + ReLU,
///                       dropout 70%, FC 1024→num_classes
/// inception4b, 4c, 4d ──► aux2: the same head on [14x14x528]
/// inception4e                                     [14x14x832]
/// maxpool4  max 3/2 ceil_mode                     [7x7x832]
/// inception5a, inception5b                        [7x7x1024]
/// avgpool   avg 7x7/1, dropout 40%, flatten       [1024]
/// fc        1024 → num_classes
/// ```
///
/// Paddings are the "same" choices that give 112, 56, 28, 14, 7 maps for 224x224 input:
/// pad 3 for the 7x7/2 conv, pad 1 for 3x3 convs, pad 2 for 5x5 convs, no padding but
/// `ceil_mode` for the stride-2 max pools (Caffe's rounding, as torchvision), pad 1 for the
/// stride-1 pool branch. The fixed 7x7 average pool (its FC takes exactly 1024 features) and
/// the auxiliary heads' FC 2048 (a 4x4 map after their 5/3 pool, so a 14..16 map at stage 4)
/// pin the input size: square inputs from 223x223 to 254x254 work, 224x224 being the
/// standard; smaller inputs are rejected with an error naming the node.
///
/// Training: weight the losses as the paper does, `loss = main + 0.3·(aux1 + aux2)`, with
/// [`Graph::forward_all`] and [`Graph::backward_all`] (three gradients, the aux ones scaled by
/// 0.3). Inference: only the first output matters; [`Graph::forward_all`] and
/// [`crate::Layer::forward`] (which returns the first output) still compute the auxiliary
/// heads in eval mode, which costs little (about 0.5% of the FLOPs). The graph hands each
/// value on to its readers and keeps none ([`GraphBuilder::keep_values`]`(false)`); call
/// [`Graph::set_keep_values`] to read inner activations with [`Graph::node_output`].
/// Weights are He-normal
/// (the paper's Caffe model used Xavier with constant 0.2 biases), biases PyTorch's default.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::googlenet::<f32>(1000)?;
/// assert_eq!(net.output_names(), ["fc", "aux1", "aux2"]);
/// assert_eq!(net.output_shape(&[1, 3, 224, 224])?, vec![1, 1000]);
/// # Ok(())
/// # }
/// ```
// Indexing: `inc` is called with the literals 0..=8 below, and `MODULES` has nine entries.
#[allow(clippy::indexing_slicing)]
pub fn googlenet<T: Float>(num_classes: usize) -> Result<Graph<T>> {
    let inc = |i: usize| module::<T>(MODULES[i].1, inception_v1_paper);
    GraphBuilder::new("input")
        .layer("conv1", "input", conv_relu(3, 64, 7, 2, 3)?)
        .layer("maxpool1", "conv1", max_pool(3, 2)?)
        .layer("lrn1", "maxpool1", lrn()?)
        .layer("conv2", "lrn1", conv_relu(64, 64, 1, 1, 0)?)
        .layer("conv3", "conv2", conv_relu(64, 192, 3, 1, 1)?)
        .layer("lrn2", "conv3", lrn()?)
        .layer("maxpool2", "lrn2", max_pool(3, 2)?)
        .layer("inception3a", "maxpool2", inc(0)?)
        .layer("inception3b", "inception3a", inc(1)?)
        .layer("maxpool3", "inception3b", max_pool(3, 2)?)
        .layer("inception4a", "maxpool3", inc(2)?)
        .layer("aux1", "inception4a", aux_head(512, num_classes)?)
        .layer("inception4b", "inception4a", inc(3)?)
        .layer("inception4c", "inception4b", inc(4)?)
        .layer("inception4d", "inception4c", inc(5)?)
        .layer("aux2", "inception4d", aux_head(528, num_classes)?)
        .layer("inception4e", "inception4d", inc(6)?)
        .layer("maxpool4", "inception4e", max_pool(3, 2)?)
        .layer("inception5a", "maxpool4", inc(7)?)
        .layer("inception5b", "inception5a", inc(8)?)
        .layer(
            "avgpool",
            "inception5b",
            AvgPool2d::new(AvgPool2dConfig::new(7).stride(1))?,
        )
        .layer(
            "dropout",
            "avgpool",
            Dropout::new(DropoutConfig::new().p(0.4))?,
        )
        .layer("flatten", "dropout", Flatten::new(FlattenConfig::new())?)
        .layer(
            "fc",
            "flatten",
            Linear::new(LinearConfig::new(1024, num_classes))?,
        )
        .output("fc")
        .output("aux1")
        .output("aux2")
        // Each value is handed to the layer that reads it and dropped after its last reader.
        .keep_values(false)
        .build(&[1, 3, 224, 224])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};
    use crate::layer::{Layer, Mode, Slot, SlotMut};
    use crate::loss::CrossEntropyLoss;
    use crate::optim::{Optimizer, Sgd, SgdConfig};
    use crate::tensor::Tensor;
    use crate::testutil::{assert_close, parity};
    use std::collections::HashMap;

    type Make = MakeInception<f64>;

    /// Sets every parameter and buffer of `m` from the case's `param.<name>` entries and
    /// checks that no stored entry was left unused.
    fn load_params<L: Layer<f64>>(m: &mut L, t: &HashMap<String, Tensor<f64>>) {
        let mut loaded = 0;
        m.visit_mut(&mut |name, slot| {
            let want = t
                .get(&format!("param.{name}"))
                .unwrap_or_else(|| panic!("param.{name} missing from the case"));
            match slot {
                SlotMut::Param(p) => {
                    assert_eq!(p.value.shape(), want.shape(), "{name}");
                    p.value = want.clone();
                }
                SlotMut::Buffer(b) => {
                    assert_eq!(b.shape(), want.shape(), "{name}");
                    *b = want.clone();
                }
            }
            loaded += 1;
        });
        let stored = t.keys().filter(|k| k.starts_with("param.")).count();
        assert_eq!(
            loaded, stored,
            "every stored parameter is a parameter of the module"
        );
    }

    fn build(cfg: &serde_json::Value, make: Make) -> Inception<f64> {
        let c = |k: &str| cfg[k].as_u64().unwrap() as usize;
        make(
            c("in_channels"),
            c("ch1x1"),
            c("ch3x3red"),
            c("ch3x3"),
            c("ch5x5red"),
            c("ch5x5"),
            c("pool_proj"),
        )
        .unwrap()
    }

    fn run_parity(file: &str, make: Make) {
        let (cfg, t) = parity(file);
        let mut m = build(&cfg, make);
        load_params(&mut m, &t);
        match cfg.get("mode").and_then(|v| v.as_str()) {
            Some("eval") => m.set_mode(Mode::Eval),
            Some("train") | None => m.set_mode(Mode::Train),
            Some(other) => panic!("unknown mode {other}"),
        }
        let out = m.forward(&t["input"]).unwrap();
        assert_close(&format!("{file} output"), &out, &t["output"]);
        m.zero_grad();
        let gi = m.backward(&t["grad_output"]).unwrap();
        assert_close(&format!("{file} grad_input"), &gi, &t["grad_input"]);
        let (mut grads, mut buffers) = (0, 0);
        m.visit(&mut |name, slot| match slot {
            Slot::Param(p) => {
                assert_close(
                    &format!("{file} grad.{name}"),
                    &p.grad,
                    &t[&format!("grad.{name}")],
                );
                grads += 1;
            }
            Slot::Buffer(b) => {
                let want = &t[&format!("param_after.{name}")];
                assert_close(&format!("{file} param_after.{name}"), b, want);
                buffers += 1;
            }
        });
        let count = |p: &str| t.keys().filter(|k| k.starts_with(p)).count();
        assert_eq!(
            grads,
            count("grad."),
            "{file}: every stored gradient checked"
        );
        assert_eq!(
            buffers,
            count("param_after."),
            "{file}: every buffer checked"
        );
    }

    #[test]
    fn inception_torchvision_matches_pytorch() {
        run_parity("inception_torchvision_000", inception_torchvision::<f64>); // eval
        run_parity("inception_torchvision_001", inception_torchvision::<f64>); // train
    }

    #[test]
    fn inception_v1_paper_matches_pytorch() {
        run_parity("inception_v1_paper_000", inception_v1_paper::<f64>);
        run_parity("inception_v1_paper_001", inception_v1_paper::<f64>);
    }

    #[test]
    fn inception_modules_pass_gradient_checks() {
        // Odd sizes, batch 1 and 2, a one-channel input, 5x5 on a map smaller than the kernel.
        let cases: [([usize; 7], [usize; 4]); 3] = [
            ([3, 2, 2, 3, 1, 2, 2], [2, 3, 5, 4]),
            ([1, 1, 1, 1, 1, 1, 1], [1, 1, 3, 3]),
            ([4, 3, 2, 2, 3, 1, 2], [1, 4, 2, 7]),
        ];
        for (i, (c, shape)) in cases.into_iter().enumerate() {
            let x = random_tensor(&shape, 10 + i as u64);
            let [a, b, cc, d, e, f, g] = c;
            let mut paper = inception_v1_paper::<f64>(a, b, cc, d, e, f, g).unwrap();
            check_layer(&mut paper, &x, GradCheck::default())
                .unwrap_or_else(|e| panic!("paper case {i}: {e}"));
            let mut tv = inception_torchvision::<f64>(a, b, cc, d, e, f, g).unwrap();
            // Train mode (batch statistics, the harder backward), and eval mode.
            check_layer(&mut tv, &x, GradCheck::default())
                .unwrap_or_else(|e| panic!("torchvision train case {i}: {e}"));
            tv.set_mode(Mode::Eval);
            check_layer(&mut tv, &x, GradCheck::default())
                .unwrap_or_else(|e| panic!("torchvision eval case {i}: {e}"));
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        let (cfg, t) = parity("inception_torchvision_001");
        let mut m64 = build(&cfg, inception_torchvision::<f64>);
        load_params(&mut m64, &t);
        let c = |k: &str| cfg[k].as_u64().unwrap() as usize;
        let mut m32 = inception_torchvision::<f32>(
            c("in_channels"),
            c("ch1x1"),
            c("ch3x3red"),
            c("ch3x3"),
            c("ch5x5red"),
            c("ch5x5"),
            c("pool_proj"),
        )
        .unwrap();
        m32.visit_mut(&mut |name, slot| {
            let v = t[&format!("param.{name}")].mapv(|x| x as f32);
            match slot {
                SlotMut::Param(p) => p.value = v,
                SlotMut::Buffer(b) => *b = v,
            }
        });
        let y64 = m64.forward(&t["input"]).unwrap();
        let y32 = m32.forward(&t["input"].mapv(|x| x as f32)).unwrap();
        let g64 = m64.backward(&t["grad_output"]).unwrap();
        let g32 = m32.backward(&t["grad_output"].mapv(|x| x as f32)).unwrap();
        for (what, a, b) in [("output", &y64, &y32), ("grad_input", &g64, &g32)] {
            let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let err = a
                .iter()
                .zip(b.iter())
                .fold(0.0f64, |m, (x, y)| m.max((x - *y as f64).abs()));
            assert!(
                err <= 1e-4 * (1.0 + scale),
                "{what}: {err} vs scale {scale}"
            );
        }
    }

    #[test]
    fn inception_errors() {
        for make in [
            inception_torchvision::<f64> as Make,
            inception_v1_paper::<f64>,
        ] {
            for zero in 0..7 {
                let mut c = [4, 2, 2, 3, 1, 2, 2];
                c[zero] = 0;
                let [a, b, cc, d, e, f, g] = c;
                let err = make(a, b, cc, d, e, f, g)
                    .err()
                    .expect("zero channels rejected");
                assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
            }
            let mut m = make(4, 2, 2, 3, 1, 2, 2).unwrap();
            let err = m.backward(&random_tensor(&[1, 9, 5, 5], 0)).unwrap_err();
            assert!(matches!(err, Error::BackwardBeforeForward { .. }), "{err}");
            let err = m.forward(&random_tensor(&[1, 3, 5, 5], 0)).unwrap_err();
            assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
            let err = m.forward(&random_tensor(&[4, 5, 5], 0)).unwrap_err();
            assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
            assert_eq!(m.output_shape(&[2, 4, 5, 5]).unwrap(), vec![2, 9, 5, 5]);
            m.forward(&random_tensor(&[1, 4, 5, 5], 0)).unwrap();
            let err = m.backward(&random_tensor(&[1, 8, 5, 5], 0)).unwrap_err();
            assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        }
        assert!(googlenet_torchvision::<f32>(0).is_err());
        assert!(googlenet::<f32>(0).is_err());
    }

    /// `name shape` lines of a key fixture generated with PyTorch (shape empty for 0-d).
    fn fixture_keys(file: &str) -> Vec<(String, Vec<usize>)> {
        let path = format!("{}/tests/fixtures/zoo/{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.lines()
            .map(|line| {
                let mut parts = line.split_whitespace();
                let name = parts.next().unwrap().to_string();
                let shape = parts
                    .next()
                    .map(|s| s.split(',').map(|d| d.parse().unwrap()).collect())
                    .unwrap_or_default();
                (name, shape)
            })
            .collect()
    }

    fn keys<L: Layer<f32>>(m: &L) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        m.visit(&mut |name, slot| {
            let shape = match slot {
                Slot::Param(p) => p.value.shape().to_vec(),
                Slot::Buffer(b) => b.shape().to_vec(),
            };
            out.push((name.to_string(), shape));
        });
        out
    }

    #[test]
    fn googlenet_torchvision_matches_the_torchvision_state_dict() {
        let m = googlenet_torchvision::<f32>(1000).unwrap();
        assert_eq!(m.num_params(), 6_624_904);
        let want = fixture_keys("googlenet_torchvision.keys");
        assert_eq!(want.len(), 344);
        assert_eq!(keys(&m), want);
        assert_eq!(m.output_shape(&[2, 3, 224, 224]).unwrap(), vec![2, 1000]);
        let summary = m.summary(&[1, 3, 224, 224]).unwrap().to_string();
        assert!(summary.contains("6,624,904"), "{summary}");
    }

    #[test]
    fn googlenet_torchvision_maps_follow_table_1() {
        let m = googlenet_torchvision::<f32>(10).unwrap();
        let mut shape = vec![1, 3, 224, 224];
        let mut seen = HashMap::new();
        for (name, layer) in m.names().iter().zip(m.layers()) {
            shape = layer.output_shape(&shape).unwrap();
            seen.insert(name.clone(), shape.clone());
        }
        for (name, want) in [
            ("conv1", [64, 112, 112]),
            ("maxpool1", [64, 56, 56]),
            ("conv3", [192, 56, 56]),
            ("maxpool2", [192, 28, 28]),
            ("inception3a", [256, 28, 28]),
            ("inception3b", [480, 28, 28]),
            ("maxpool3", [480, 14, 14]),
            ("inception4a", [512, 14, 14]),
            ("inception4d", [528, 14, 14]),
            ("inception4e", [832, 14, 14]),
            ("maxpool4", [832, 7, 7]),
            ("inception5b", [1024, 7, 7]),
        ] {
            assert_eq!(seen[name][1..], want, "{name}");
        }
    }

    #[test]
    fn googlenet_torchvision_runs_at_64x64() {
        let mut m = googlenet_torchvision::<f32>(10).unwrap();
        m.set_mode(Mode::Eval);
        let x = random_tensor(&[2, 3, 64, 64], 3).mapv(|v| v as f32);
        let y = m.forward(&x).unwrap();
        assert_eq!(y.shape(), &[2, 10]);
        assert!(y.iter().all(|v| v.is_finite()));
        let gi = m.backward(&Tensor::ones(y.raw_dim())).unwrap();
        assert_eq!(gi.shape(), x.shape());
    }

    #[test]
    fn googlenet_torchvision_training_step_lowers_the_loss() {
        // 32x32 is small but every stage keeps a map: 16, 8, 4, 2, 1. Batch norm trains on batch
        // statistics; the dropout layer is switched to eval so that the loss is the same
        // function of the weights before and after the step.
        crate::init::manual_seed(7);
        let mut m = googlenet_torchvision::<f32>(10).unwrap();
        let i = m.names().iter().position(|n| n == "dropout").unwrap();
        m.layers_mut()[i].set_mode(Mode::Eval);
        let x = random_tensor(&[4, 3, 32, 32], 5).mapv(|v| v as f32);
        let y = [1, 7, 3, 3];
        let ce = CrossEntropyLoss::new();
        let mut opt = Sgd::new(SgdConfig::new(0.05)).unwrap();
        let (before, dlogits) = ce.forward(&m.forward(&x).unwrap(), &y).unwrap();
        m.zero_grad();
        m.backward(&dlogits).unwrap();
        opt.step(&mut m).unwrap();
        let (after, _) = ce.forward(&m.forward(&x).unwrap(), &y).unwrap();
        assert!(after < before, "loss {before} -> {after}");
    }

    /// The paper model's parameter count from Table 1's channel numbers, computed
    /// independently of the constructor (a conv with bias has `cin·cout·k² + cout`
    /// parameters): the main path, and each auxiliary head.
    fn paper_param_count(num_classes: usize) -> (usize, [usize; 2]) {
        let conv = |cin: usize, cout: usize, k: usize| cin * cout * k * k + cout;
        let fc = |i: usize, o: usize| i * o + o;
        // #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj; and Table 1's output depth.
        let table: [([usize; 6], usize); 9] = [
            ([64, 96, 128, 16, 32, 32], 256),
            ([128, 128, 192, 32, 96, 64], 480),
            ([192, 96, 208, 16, 48, 64], 512),
            ([160, 112, 224, 24, 64, 64], 512),
            ([128, 128, 256, 24, 64, 64], 512),
            ([112, 144, 288, 32, 64, 64], 528),
            ([256, 160, 320, 32, 128, 128], 832),
            ([256, 160, 320, 32, 128, 128], 832),
            ([384, 192, 384, 48, 128, 128], 1024),
        ];
        let mut main = conv(3, 64, 7) + conv(64, 64, 1) + conv(64, 192, 3);
        let mut depth = 192;
        for ([c1, r3, c3, r5, c5, pp], out_depth) in table {
            main += conv(depth, c1, 1)
                + conv(depth, r3, 1)
                + conv(r3, c3, 3)
                + conv(depth, r5, 1)
                + conv(r5, c5, 5)
                + conv(depth, pp, 1);
            depth = c1 + c3 + c5 + pp;
            assert_eq!(depth, out_depth, "Table 1 output depth");
        }
        main += fc(1024, num_classes);
        // The heads sit on 4a (512 channels) and 4d (528): conv 1x1 → 128, FC 4·4·128 → 1024,
        // FC 1024 → classes.
        let aux = |cin: usize| conv(cin, 128, 1) + fc(4 * 4 * 128, 1024) + fc(1024, num_classes);
        (main, [aux(512), aux(528)])
    }

    #[test]
    fn googlenet_paper_parameter_count() {
        // About 7.0M on the main path (torchvision's BN variant with 3x3 "5x5" convs: 6.6M).
        assert_eq!(paper_param_count(1000).0, 6_998_552);
        for classes in [1000, 10] {
            let m = googlenet::<f32>(classes).unwrap();
            let (main, aux) = paper_param_count(classes);
            let mut got = [0usize; 3];
            m.visit(&mut |name, slot| {
                if let Slot::Param(p) = slot {
                    let i = if name.starts_with("aux1.") {
                        1
                    } else if name.starts_with("aux2.") {
                        2
                    } else {
                        0
                    };
                    got[i] += p.len();
                }
            });
            assert_eq!(got, [main, aux[0], aux[1]], "{classes} classes");
            assert_eq!(m.num_params(), main + aux[0] + aux[1]);
        }
    }

    #[test]
    fn googlenet_paper_shapes_and_input_size() {
        let m = googlenet::<f32>(10).unwrap();
        assert_eq!(m.output_names(), vec!["fc", "aux1", "aux2"]);
        assert_eq!(m.output_shape(&[2, 3, 224, 224]).unwrap(), vec![2, 10]);
        // Inputs 223..=254 give the 14x14 (or 15x15) stage-4 and 7x7 stage-5 maps that the
        // auxiliary heads (FC 2048) and the fixed 7x7 average pool need; nothing else does.
        for size in [223, 238, 239, 254] {
            assert_eq!(m.output_shape(&[1, 3, size, size]).unwrap(), vec![1, 10]);
        }
        for size in [222, 255, 192, 112] {
            assert!(m.output_shape(&[1, 3, size, size]).is_err(), "{size}");
        }
        let summary = m.summary(&[1, 3, 224, 224]).unwrap().to_string();
        assert!(summary.contains("[7x7x1024]"), "{summary}");
        assert!(summary.contains("[14x14x528]"), "{summary}");
    }

    /// One SGD step on `loss = main + 0.3·(aux1 + aux2)` with the three heads' gradients.
    /// Returns the loss before and after (on the same batch).
    fn paper_step(m: &mut Graph<f32>, x: &Tensor<f32>, y: &[usize], lr: f64) -> (f32, f32) {
        let ce = CrossEntropyLoss::new();
        let weights = [1.0f32, 0.3, 0.3];
        let loss = |outs: &[Tensor<f32>]| -> (f32, Vec<Tensor<f32>>) {
            let mut total = 0.0;
            let mut grads = Vec::new();
            for (out, w) in outs.iter().zip(weights) {
                let (l, g) = ce.forward(out, y).unwrap();
                total += w * l;
                grads.push(g * w);
            }
            (total, grads)
        };
        let outs = m.forward_all(x).unwrap();
        assert_eq!(outs.len(), 3);
        for o in &outs {
            assert_eq!(o.shape(), &[x.shape()[0], 10]);
            assert!(o.iter().all(|v| v.is_finite()));
        }
        let (before, grads) = loss(&outs);
        m.zero_grad();
        let gi = m
            .backward_all(&[Some(&grads[0]), Some(&grads[1]), Some(&grads[2])])
            .unwrap();
        assert_eq!(gi.shape(), x.shape());
        Sgd::new(SgdConfig::new(lr)).unwrap().step(m).unwrap();
        let (after, _) = loss(&m.forward_all(x).unwrap());
        (before, after)
    }

    #[test]
    fn googlenet_paper_training_step_with_aux_losses_lowers_the_loss() {
        // The heads need 14x14 stage-4 maps, so the smallest usable input is 223x223 (see
        // googlenet's docs); batch 2. Eval mode only turns dropout off (the paper model has no
        // batch norm), so the loss is the same function of the weights before and after.
        crate::init::manual_seed(11);
        let mut m = googlenet::<f32>(10).unwrap();
        m.set_mode(Mode::Eval);
        let x = random_tensor(&[2, 3, 223, 223], 8).mapv(|v| v as f32);
        let (before, after) = paper_step(&mut m, &x, &[2, 9], 1e-4);
        assert!(after < before, "loss {before} -> {after}");
        // Layer::forward is the main head of forward_all; in train mode (dropout on) all three
        // heads still come out.
        let x1 = x.slice_axis(ndarray::Axis(0), (0..1).into()).to_owned();
        let main = m.forward(&x1).unwrap();
        assert_eq!(main, m.forward_all(&x1).unwrap()[0]);
        m.set_mode(Mode::Train);
        let outs = m.forward_all(&x1).unwrap();
        assert_eq!(outs.len(), 3);
        assert!(outs.iter().all(|o| o.shape() == [1, 10]));
        assert_ne!(outs[0], main, "dropout is active in train mode");
    }
}

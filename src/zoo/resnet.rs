//! ResNet (He, Zhang, Ren and Sun, 2015, "Deep Residual Learning for Image Recognition"), as
//! torchvision builds it (v1.5: a bottleneck's stride sits on its 3x3 convolution).

use crate::blocks::Residual;
use crate::error::{Error, Result};
use crate::init::Init;
use crate::layers::{
    AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, BatchNorm2d, BatchNorm2dConfig, Conv2d,
    Conv2dConfig, Flatten, FlattenConfig, Linear, LinearConfig, MaxPool2d, MaxPool2dConfig, ReLU,
};
use crate::model::Sequential;
use crate::tensor::Float;

/// A convolution without bias, initialised as torchvision's ResNet (Kaiming normal, fan_out).
fn conv<T: Float>(cfg: Conv2dConfig) -> Result<Conv2d<T>> {
    Conv2d::new(cfg.bias(false).init(Init::KaimingNormalFanOut))
}

/// torchvision's batch norm: PyTorch's defaults (eps 1e-5, momentum 0.1), weight 1, bias 0.
/// The template of [`basic_block`] and [`bottleneck`]; its `num_features` is not used.
fn default_norm() -> BatchNorm2dConfig {
    BatchNorm2dConfig::new(0)
}

/// A batch norm of `channels` channels made from the template `norm` (torchvision's
/// `norm_layer`: everything but the channel count comes from it).
pub(crate) fn bn<T: Float>(norm: &BatchNorm2dConfig, channels: usize) -> Result<BatchNorm2d<T>> {
    BatchNorm2d::new(BatchNorm2dConfig {
        num_features: channels,
        ..*norm
    })
}

/// The projection shortcut `downsample`: 1x1 convolution with stride `stride`, then BN.
fn projection<T: Float>(
    inplanes: usize,
    out: usize,
    stride: usize,
    norm: &BatchNorm2dConfig,
) -> Result<Sequential<T>> {
    Ok(Sequential::new()
        .add(conv(Conv2dConfig::new(inplanes, out, 1).stride(stride))?)
        .add(bn(norm, out)?))
}

/// Without a projection the block adds its input to its output, so both must agree.
fn check_identity(
    what: &str,
    inplanes: usize,
    out: usize,
    stride: usize,
    downsample: bool,
) -> Result<()> {
    if downsample || (stride == 1 && inplanes == out) {
        Ok(())
    } else {
        Err(Error::config(
            what,
            format!(
                "an identity shortcut needs stride 1 and inplanes == {out}, got stride {stride} \
                 and inplanes {inplanes}; pass downsample = true"
            ),
        ))
    }
}

/// torchvision's `BasicBlock` (ResNet-18/34), expansion 1:
///
/// ```text
/// y = relu( bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x) )
/// conv1: 3x3, stride `stride`, pad 1, inplanes -> planes, no bias
/// conv2: 3x3, stride 1, pad 1, planes -> planes, no bias
/// shortcut: x, or `downsample` = 1x1 conv (stride `stride`, no bias) -> BN
/// ```
///
/// Parameter names are torchvision's: `conv1.weight`, `bn1.*`, `conv2.weight`, `bn2.*`,
/// `downsample.0.weight`, `downsample.1.*`. Fails when the identity shortcut cannot be added
/// (`downsample == false` with `stride != 1` or `inplanes != planes`).
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// // The first block of layer2 in ResNet-18: stride 2 halves the maps, a 1x1 projection matches.
/// let block = convnet::zoo::basic_block::<f32>(64, 128, 2, true)?;
/// assert_eq!(block.output_shape(&[1, 64, 56, 56])?, vec![1, 128, 28, 28]);
/// // Without the projection the sum would not fit: an error, not a panic.
/// assert!(convnet::zoo::basic_block::<f32>(64, 128, 2, false).is_err());
/// # Ok(())
/// # }
/// ```
pub fn basic_block<T: Float>(
    inplanes: usize,
    planes: usize,
    stride: usize,
    downsample: bool,
) -> Result<Residual<T>> {
    basic_block_with_norm(inplanes, planes, stride, downsample, &default_norm())
}

/// [`basic_block`] whose batch norms are made from the template `norm` (torchvision's
/// `norm_layer`, e.g. `partial(nn.BatchNorm2d, momentum=0.01)`): eps, momentum, affine and
/// running statistics come from it, the channel count from the block.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::layers::BatchNorm2dConfig;
/// use convnet::prelude::*;
/// let norm = BatchNorm2dConfig::new(0).momentum(0.01);
/// let block = convnet::zoo::basic_block_with_norm::<f32>(64, 64, 1, false, &norm)?;
/// assert!(block.summary(&[1, 64, 56, 56])?.to_string().contains("momentum 0.01"));
/// # Ok(())
/// # }
/// ```
pub fn basic_block_with_norm<T: Float>(
    inplanes: usize,
    planes: usize,
    stride: usize,
    downsample: bool,
    norm: &BatchNorm2dConfig,
) -> Result<Residual<T>> {
    check_identity("BasicBlock", inplanes, planes, stride, downsample)?;
    let body = Sequential::new()
        .add_named(
            "conv1",
            conv(
                Conv2dConfig::new(inplanes, planes, 3)
                    .stride(stride)
                    .padding(1),
            )?,
        )?
        .add_named("bn1", bn(norm, planes)?)?
        .add_named("relu", ReLU::new())?
        .add_named(
            "conv2",
            conv(Conv2dConfig::new(planes, planes, 3).padding(1))?,
        )?
        .add_named("bn2", bn(norm, planes)?)?;
    let block = Residual::new(body);
    let block = if downsample {
        block.shortcut("downsample", projection(inplanes, planes, stride, norm)?)?
    } else {
        block
    };
    block.post(ReLU::new())
}

/// torchvision's `Bottleneck` (ResNet-50/101/152, ResNeXt, Wide ResNet), expansion 4:
///
/// ```text
/// width = (planes · base_width / 64) · groups
/// y = relu( bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x) )
/// conv1: 1x1, inplanes -> width, no bias
/// conv2: 3x3, width -> width, stride `stride`, pad = dilation, dilation, groups, no bias
/// conv3: 1x1, width -> 4·planes, no bias
/// shortcut: x, or `downsample` = 1x1 conv (inplanes -> 4·planes, stride `stride`) -> BN
/// ```
///
/// The stride sits on the 3x3 convolution ("ResNet v1.5"; the paper put it on conv1). Batch
/// norms use eps 1e-5 and momentum 0.1. Names: `conv1..3.weight`, `bn1..3.*`, `downsample.*`.
/// Fails for `groups == 0`, a zero width, or an identity shortcut that cannot be added.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// // layer1.0 of ResNet-50: 64 -> 1x1 64 -> 3x3 64 -> 1x1 256, projected shortcut.
/// let block = convnet::zoo::bottleneck::<f32>(64, 64, 1, true, 1, 64, 1)?;
/// assert_eq!(block.output_shape(&[1, 64, 56, 56])?, vec![1, 256, 56, 56]);
/// # Ok(())
/// # }
/// ```
pub fn bottleneck<T: Float>(
    inplanes: usize,
    planes: usize,
    stride: usize,
    downsample: bool,
    groups: usize,
    base_width: usize,
    dilation: usize,
) -> Result<Residual<T>> {
    let shape = (inplanes, planes, stride, downsample);
    bottleneck_with_norm(shape, groups, base_width, dilation, &default_norm())
}

/// [`bottleneck`] whose batch norms are made from the template `norm` (see
/// [`basic_block_with_norm`]); `shape` is `(inplanes, planes, stride, downsample)`.
pub fn bottleneck_with_norm<T: Float>(
    (inplanes, planes, stride, downsample): (usize, usize, usize, bool),
    groups: usize,
    base_width: usize,
    dilation: usize,
    norm: &BatchNorm2dConfig,
) -> Result<Residual<T>> {
    const WHAT: &str = "Bottleneck";
    if groups == 0 {
        return Err(Error::config(WHAT, "groups must be at least 1"));
    }
    let width = planes * base_width / 64 * groups;
    if width == 0 {
        return Err(Error::config(
            WHAT,
            format!("width = planes·base_width/64·groups is 0 (planes {planes}, base_width {base_width})"),
        ));
    }
    let out = planes * 4;
    check_identity(WHAT, inplanes, out, stride, downsample)?;
    let conv2 = Conv2dConfig::new(width, width, 3)
        .stride(stride)
        .padding(dilation)
        .dilation(dilation)
        .groups(groups);
    let body = Sequential::new()
        .add_named("conv1", conv(Conv2dConfig::new(inplanes, width, 1))?)?
        .add_named("bn1", bn(norm, width)?)?
        .add_named("relu", ReLU::new())?
        .add_named("conv2", conv(conv2)?)?
        .add_named("bn2", bn(norm, width)?)?
        .add_named("relu", ReLU::new())?
        .add_named("conv3", conv(Conv2dConfig::new(width, out, 1))?)?
        .add_named("bn3", bn(norm, out)?)?;
    let block = Residual::new(body);
    let block = if downsample {
        block.shortcut("downsample", projection(inplanes, out, stride, norm)?)?
    } else {
        block
    };
    block.post(ReLU::new())
}

/// Which block a ResNet stacks.
#[derive(Clone, Copy)]
enum Block {
    Basic,
    Bottleneck,
}

impl Block {
    fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

/// torchvision's `_make_layer`: `blocks` blocks of `planes`, the first one with `stride` and a
/// projection whenever the shape changes. Returns the stage and its output channels.
fn stage<T: Float>(
    block: Block,
    inplanes: usize,
    planes: usize,
    blocks: usize,
    stride: usize,
) -> Result<(Sequential<T>, usize)> {
    let out = planes * block.expansion();
    let mut layer = Sequential::new();
    let mut channels = inplanes;
    for i in 0..blocks {
        let s = if i == 0 { stride } else { 1 };
        let downsample = s != 1 || channels != out;
        layer = match block {
            Block::Basic => layer.add(basic_block(channels, planes, s, downsample)?),
            Block::Bottleneck => layer.add(bottleneck(channels, planes, s, downsample, 1, 64, 1)?),
        };
        channels = out;
    }
    Ok((layer, out))
}

/// The stem, four stages of `layers[i]` blocks and the classifier.
fn resnet<T: Float>(block: Block, layers: [usize; 4], num_classes: usize) -> Result<Sequential<T>> {
    let mut net = Sequential::new()
        .add_named(
            "conv1",
            conv(Conv2dConfig::new(3, 64, 7).stride(2).padding(3))?,
        )?
        .add_named("bn1", bn(&default_norm(), 64)?)?
        .add_named("relu", ReLU::new())?
        .add_named(
            "maxpool",
            MaxPool2d::new(MaxPool2dConfig::new(3).stride(2).padding(1))?,
        )?;
    let mut channels = 64;
    for (i, (&blocks, planes)) in layers.iter().zip([64, 128, 256, 512]).enumerate() {
        let stride = if i == 0 { 1 } else { 2 };
        let (layer, out) = stage(block, channels, planes, blocks, stride)?;
        net = net.add_named(&format!("layer{}", i + 1), layer)?;
        channels = out;
    }
    net.add_named(
        "avgpool",
        AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new([1, 1]))?,
    )?
    .add_named("flatten", Flatten::new(FlattenConfig::new())?)?
    .add_named("fc", Linear::new(LinearConfig::new(channels, num_classes))?)
}

/// ResNet-18, torchvision's `resnet18()`: 11,689,512 parameters for 1000 classes.
///
/// ```text
/// conv1    7x7, 64, stride 2, pad 3, no bias; bn1; relu       [112x112x64]  at 224x224
/// maxpool  3x3, stride 2, pad 1                               [56x56x64]
/// layer1   BasicBlock(64)  x2                                 [56x56x64]
/// layer2   BasicBlock(128) x2, first with stride 2            [28x28x128]
/// layer3   BasicBlock(256) x2, first with stride 2            [14x14x256]
/// layer4   BasicBlock(512) x2, first with stride 2            [7x7x512]
/// avgpool  AdaptiveAvgPool2d((1, 1)); flatten                 [512]
/// fc       Linear 512 -> num_classes
/// ```
///
/// The first block of layer2..4 has a `downsample` projection (1x1 conv stride 2 + BN).
/// Names are torchvision's (`layer2.0.downsample.0.weight`, `fc.bias`). Any input of at least
/// 1x1 runs; 32x32 reaches layer4 as 1x1. Convolutions are initialised Kaiming normal
/// (fan_out), batch norms with weight 1 and bias 0, `fc` with PyTorch's default.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::resnet18::<f32>(1000)?;
/// assert_eq!(net.num_params(), 11_689_512);
/// assert_eq!(net.names()[4], "layer1");
/// // Inference (batch norm on its running statistics); any input size works thanks to the
/// // adaptive pool, and 32x32 is quick.
/// let logits = net.infer(&Tensor::zeros(ndarray::IxDyn(&[1, 3, 32, 32])))?;
/// assert_eq!(logits.shape(), &[1, 1000]);
/// # Ok(())
/// # }
/// ```
pub fn resnet18<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    resnet(Block::Basic, [2, 2, 2, 2], num_classes)
}

/// ResNet-34: [`resnet18`]'s layout with `[3, 4, 6, 3]` basic blocks; 21,797,672 parameters.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::resnet34::<f32>(1000)?;
/// assert_eq!(net.num_params(), 21_797_672);
/// # Ok(())
/// # }
/// ```
pub fn resnet34<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    resnet(Block::Basic, [3, 4, 6, 3], num_classes)
}

/// ResNet-50: `[3, 4, 6, 3]` bottleneck blocks (channels 256, 512, 1024, 2048 out of each
/// stage; layer1.0 also projects, 64 -> 256), `fc` 2048 -> num_classes; 25,557,032 parameters.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::resnet50::<f32>(1000)?;
/// assert_eq!(net.num_params(), 25_557_032);
/// # Ok(())
/// # }
/// ```
pub fn resnet50<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    resnet(Block::Bottleneck, [3, 4, 6, 3], num_classes)
}

/// ResNet-101: `[3, 4, 23, 3]` bottleneck blocks; 44,549,160 parameters.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::resnet101::<f32>(1000)?;
/// assert_eq!(net.num_params(), 44_549_160);
/// # Ok(())
/// # }
/// ```
pub fn resnet101<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    resnet(Block::Bottleneck, [3, 4, 23, 3], num_classes)
}

/// ResNet-152: `[3, 8, 36, 3]` bottleneck blocks; 60,192,808 parameters.
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::resnet152::<f32>(1000)?;
/// assert_eq!(net.num_params(), 60_192_808);
/// # Ok(())
/// # }
/// ```
pub fn resnet152<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    resnet(Block::Bottleneck, [3, 8, 36, 3], num_classes)
}

#[cfg(test)]
mod tests {
    use super::super::alexnet::testkit::*;
    use super::*;
    use crate::layer::{Layer, Mode, SlotMut};
    use crate::model::thousands;
    use crate::testutil::{assert_close, parity};

    type Ctor = fn(usize) -> Result<Sequential<f32>>;

    #[test]
    fn parameter_counts_match_torchvision() {
        let cases: [(&str, Ctor, usize); 5] = [
            ("resnet18", resnet18, 11_689_512),
            ("resnet34", resnet34, 21_797_672),
            ("resnet50", resnet50, 25_557_032),
            ("resnet101", resnet101, 44_549_160),
            ("resnet152", resnet152, 60_192_808),
        ];
        for (name, ctor, count) in cases {
            let net = ctor(1000).unwrap();
            assert_eq!(net.num_params(), count, "{name}");
            assert_eq!(
                net.output_shape(&[2, 3, 224, 224]).unwrap(),
                [2, 1000],
                "{name}"
            );
        }
    }

    #[test]
    fn state_dicts_match_torchvision() {
        let r18 = resnet18::<f32>(1000).unwrap();
        assert_keys(&r18, include_str!("../../tests/fixtures/zoo/resnet18.keys"));
        let r50 = resnet50::<f32>(1000).unwrap();
        assert_keys(&r50, include_str!("../../tests/fixtures/zoo/resnet50.keys"));
    }

    #[test]
    fn summary_numbers_layers_by_depth_like_the_paper() {
        let net = resnet18::<f32>(1000).unwrap();
        let text = net.summary(&[1, 3, 224, 224]).unwrap().to_string();
        let rows: Vec<String> = text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            rows[1],
            "[112x112x64] CONV1: 64 7x7 filters at stride 2, pad 3, no bias 9,408"
        );
        assert_eq!(
            rows[4],
            "[56x56x64] MAX POOL1: 3x3 filters at stride 2, pad 1"
        );
        // layer1.0 lists its body: conv1 (64·64·9), bn1, relu, conv2, bn2, then the addition.
        assert_eq!(
            rows[5],
            "[56x56x64] CONV2: 64 3x3 filters at stride 1, pad 1, no bias 36,864"
        );
        assert_eq!(rows[10], "[56x56x64] Residual: add identity shortcut");
        // layer2.0's projection shortcut: 1x1 conv 64 -> 128 and its batch norm.
        let projection = rows.iter().position(|r| r.contains("projection")).unwrap();
        assert_eq!(
            rows[projection],
            format!(
                "[28x28x128] Residual: add projection shortcut `downsample` {}",
                thousands(128 * 64 + 2 * 128)
            )
        );
        // The paper's depth: 17 convolutions on the main path, then FC18.
        assert!(
            rows[rows.len() - 2].starts_with("[1000] FC18: 1000 neurons"),
            "{}",
            rows[rows.len() - 2]
        );
        assert_eq!(rows.last().unwrap(), "Total params: 11,689,512");
    }

    #[test]
    fn forward_shapes_at_reduced_resolution() {
        let mut r50 = resnet50::<f32>(10).unwrap();
        r50.set_mode(Mode::Eval);
        let y = r50.forward(&input(&[2, 3, 64, 64], 3)).unwrap();
        assert_eq!(y.shape(), [2, 10]);
        assert!(y.iter().all(|v| v.is_finite()));
        assert_eq!(r50.output_shape(&[5, 3, 1, 1]).unwrap(), [5, 10]);
        let err = r50.forward(&input(&[2, 1, 64, 64], 3)).unwrap_err();
        assert!(err.to_string().contains("Conv2d(3 -> 64)"), "{err}");
    }

    #[test]
    fn resnet18_training_step_lowers_the_loss() {
        let mut net = resnet18::<f32>(10).unwrap();
        let x = input::<f32>(&[2, 3, 32, 32], 5);
        // No dropout: in training mode batch norm uses this batch's statistics, so both
        // passes compute the same function of the parameters.
        let (before, after) = sgd_step(&mut net, Mode::Train, &x, &[4, 9], 0.01);
        assert!(after < before, "loss {before} -> {after}");
    }

    #[test]
    fn blocks_reject_impossible_shortcuts() {
        assert!(basic_block::<f64>(64, 128, 1, false).is_err());
        assert!(basic_block::<f64>(64, 64, 2, false).is_err());
        assert!(basic_block::<f64>(64, 64, 1, false).is_ok());
        assert!(bottleneck::<f64>(64, 64, 1, false, 1, 64, 1).is_err());
        assert!(bottleneck::<f64>(256, 64, 1, false, 1, 64, 1).is_ok());
        assert!(bottleneck::<f64>(256, 64, 1, false, 0, 64, 1).is_err());
        assert!(bottleneck::<f64>(256, 64, 1, true, 1, 0, 1).is_err());
        // ResNeXt-50 32x4d's layer1.0: width = 64·4/64·32 = 128, conv2 with 32 groups.
        let b = bottleneck::<f64>(64, 64, 1, true, 32, 4, 1).unwrap();
        let shapes = key_lines(&b);
        assert!(shapes.contains(&"conv1.weight 128,64,1,1".to_string()));
        assert!(shapes.contains(&"conv2.weight 128,4,3,3".to_string()));
        assert!(shapes.contains(&"conv3.weight 256,128,1,1".to_string()));
        let mut b = basic_block::<f64>(4, 8, 2, true).unwrap();
        assert!(b.forward(&input(&[1, 5, 8, 8], 1)).is_err());
        assert!(b.backward(&input(&[1, 8, 4, 4], 1)).is_err());
    }

    /// Loads `param.*`, runs forward and backward, and compares the output, every gradient
    /// and the buffers after the pass with PyTorch's.
    fn check_block(file: &str, mut block: Residual<f64>) {
        let (config, t) = parity(file);
        let mut loaded = 0;
        block.visit_mut(&mut |name, slot| {
            let want = &t[&format!("param.{name}")];
            let target = match slot {
                SlotMut::Param(p) => &mut p.value,
                SlotMut::Buffer(b) => b,
            };
            assert_eq!(target.shape(), want.shape(), "{file}: {name}");
            target.assign(want);
            loaded += 1;
        });
        let expected = t.keys().filter(|k| k.starts_with("param.")).count();
        assert_eq!(loaded, expected, "{file}: state_dict size");
        let mode = match config["mode"].as_str().unwrap() {
            "train" => Mode::Train,
            _ => Mode::Eval,
        };
        block.set_mode(mode);
        assert_close(file, &block.forward(&t["input"]).unwrap(), &t["output"]);
        block.zero_grad();
        let dx = block.backward(&t["grad_output"]).unwrap();
        assert_close(&format!("{file}: grad_input"), &dx, &t["grad_input"]);
        block.visit(&mut |name, slot| match slot {
            crate::layer::Slot::Param(p) => assert_close(
                &format!("{file}: grad.{name}"),
                &p.grad,
                &t[&format!("grad.{name}")],
            ),
            crate::layer::Slot::Buffer(b) => assert_close(
                &format!("{file}: {name} after"),
                b,
                &t[&format!("param_after.{name}")],
            ),
        });
    }

    #[test]
    fn blocks_match_pytorch_parity_cases() {
        let u = |v: &serde_json::Value, k: &str| v[k].as_u64().unwrap() as usize;
        for i in 0..4 {
            let file = format!("resnet_basicblock_{i:03}");
            let (c, _) = parity(&file);
            let block = basic_block(
                u(&c, "inplanes"),
                u(&c, "planes"),
                u(&c, "stride"),
                c["downsample"].as_bool().unwrap(),
            )
            .unwrap();
            check_block(&file, block);
        }
        for i in 0..4 {
            let file = format!("resnet_bottleneck_{i:03}");
            let (c, _) = parity(&file);
            let block = bottleneck(
                u(&c, "inplanes"),
                u(&c, "planes"),
                u(&c, "stride"),
                c["downsample"].as_bool().unwrap(),
                u(&c, "groups"),
                u(&c, "base_width"),
                u(&c, "dilation"),
            )
            .unwrap();
            check_block(&file, block);
        }
    }
}

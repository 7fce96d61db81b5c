//! AlexNet (Krizhevsky, Sutskever and Hinton, 2012): the course's listing and torchvision's
//! single-GPU variant.

use crate::error::Result;
use crate::layers::{
    AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, Conv2d, Conv2dConfig, Dropout, DropoutConfig,
    Flatten, FlattenConfig, Linear, LinearConfig, LocalResponseNorm, LocalResponseNormConfig,
    MaxPool2d, MaxPool2dConfig, ReLU,
};
use crate::model::Sequential;
use crate::tensor::Float;

/// The paper's local response normalisation, `b = a / (2 + 1e-4 · Σ_{5 channels} a²)^0.75`.
///
/// `LocalResponseNorm` follows PyTorch and Caffe, which divide `alpha` by the window size `n`;
/// the paper does not. `alpha = 5e-4` under the `/n` convention is the paper's `1e-4`.
fn paper_lrn<T: Float>() -> Result<LocalResponseNorm<T>> {
    LocalResponseNorm::new(LocalResponseNormConfig::new(5).alpha(5e-4).k(2.0))
}

fn max_pool<T: Float>() -> Result<MaxPool2d<T>> {
    MaxPool2d::new(MaxPool2dConfig::new(3).stride(2))
}

fn conv<T: Float>(cfg: Conv2dConfig) -> Result<Conv2d<T>> {
    Conv2d::new(cfg)
}

/// AlexNet exactly as the course lists it (the paper's network on one GPU, no channel
/// groups), for 227x227x3 inputs:
///
/// ```text
/// [227x227x3] INPUT
/// [55x55x96]  CONV1: 96 11x11 filters at stride 4, pad 0        34,944   features.0
/// [27x27x96]  MAX POOL1: 3x3 filters at stride 2                          features.2
/// [27x27x96]  NORM1: LRN size 5, alpha 1e-4 (paper), beta 0.75, k 2       features.3
/// [27x27x256] CONV2: 256 5x5 filters at stride 1, pad 2        614,656   features.4
/// [13x13x256] MAX POOL2: 3x3 filters at stride 2                          features.6
/// [13x13x256] NORM2                                                       features.7
/// [13x13x384] CONV3: 384 3x3 filters at stride 1, pad 1        885,120   features.8
/// [13x13x384] CONV4: 384 3x3 filters at stride 1, pad 1      1,327,488   features.10
/// [13x13x256] CONV5: 256 3x3 filters at stride 1, pad 1        884,992   features.12
/// [6x6x256]   MAX POOL3: 3x3 filters at stride 2                          features.14
/// [4096]      FC6: 4096 neurons                             37,752,832   classifier.0
/// [4096]      FC7: 4096 neurons                             16,781,312   classifier.3
/// [1000]      FC8: 1000 neurons (class scores)               4,097,000   classifier.6
///                                                   total   62,378,344   (1000 classes)
/// ```
///
/// Every convolution and FC6/FC7 is followed by ReLU; FC6 and FC7 by `Dropout(0.5)` after
/// the ReLU. The model is `Sequential { features, flatten, classifier }`, so its parameters
/// are named like a flat PyTorch port: `features.0.weight` ... `classifier.6.bias`.
///
/// **LRN alpha.** The paper normalises with `k = 2, n = 5, alpha = 1e-4, beta = 0.75` and
/// does *not* divide alpha by `n`; PyTorch's `nn.LocalResponseNorm` (and Caffe) do. Both NORM
/// layers are therefore built as `LocalResponseNorm::new(LocalResponseNormConfig::new(5).alpha(5e-4).k(2.0))`, which is
/// `nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)` in PyTorch and computes exactly the
/// paper's formula (`5e-4 / 5 = 1e-4`). Ports that pass `alpha = 1e-4` to PyTorch normalise
/// five times more weakly than the paper.
///
/// Weights use PyTorch's default initialisation (the paper's `N(0, 0.01)` with unit biases
/// needs its exact schedule to train).
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::alexnet::<f32>(1000)?;
/// let summary = net.summary(&[1, 3, 227, 227])?;
/// assert!(summary.to_string().contains("[55x55x96]  CONV1: 96 11x11 filters at stride 4, pad 0"));
/// assert_eq!(summary.total_params(), 62_378_344);
/// # Ok(())
/// # }
/// ```
pub fn alexnet<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    let features = Sequential::new()
        .add(conv(Conv2dConfig::new(3, 96, 11).stride(4))?)
        .add(ReLU::new())
        .add(max_pool()?)
        .add(paper_lrn()?)
        .add(conv(Conv2dConfig::new(96, 256, 5).padding(2))?)
        .add(ReLU::new())
        .add(max_pool()?)
        .add(paper_lrn()?)
        .add(conv(Conv2dConfig::new(256, 384, 3).padding(1))?)
        .add(ReLU::new())
        .add(conv(Conv2dConfig::new(384, 384, 3).padding(1))?)
        .add(ReLU::new())
        .add(conv(Conv2dConfig::new(384, 256, 3).padding(1))?)
        .add(ReLU::new())
        .add(max_pool()?);
    let classifier = Sequential::new()
        .add(Linear::new(LinearConfig::new(256 * 6 * 6, 4096))?)
        .add(ReLU::new())
        .add(Dropout::new(DropoutConfig::new().p(0.5))?)
        .add(Linear::new(LinearConfig::new(4096, 4096))?)
        .add(ReLU::new())
        .add(Dropout::new(DropoutConfig::new().p(0.5))?)
        .add(Linear::new(LinearConfig::new(4096, num_classes))?);
    Sequential::new()
        .add_named("features", features)?
        .add_named("flatten", Flatten::new(FlattenConfig::new())?)?
        .add_named("classifier", classifier)
}

/// torchvision's `alexnet()` (the "one weird trick" single-GPU variant, Krizhevsky 2014),
/// with its exact `state_dict` names:
///
/// ```text
/// features.0    Conv 3 -> 64, 11x11, stride 4, pad 2        23,296
/// features.3    Conv 64 -> 192, 5x5, pad 2                 307,392
/// features.6    Conv 192 -> 384, 3x3, pad 1                663,936
/// features.8    Conv 384 -> 256, 3x3, pad 1                884,992
/// features.10   Conv 256 -> 256, 3x3, pad 1                590,080
///               (ReLU after each conv, MaxPool 3 stride 2 at 2, 5 and 12)
/// avgpool       AdaptiveAvgPool2d((6, 6))
/// classifier.1  Dropout(0.5) at .0, Linear 9216 -> 4096  37,752,832
/// classifier.4  Dropout(0.5) at .3, Linear 4096 -> 4096  16,781,312
/// classifier.6  Linear 4096 -> num_classes                4,097,000   total 61,100,840
/// ```
///
/// No LRN. Thanks to the adaptive pooling any input of at least 63x63 works (at 63x63 the
/// last max pool leaves 1x1, which the adaptive pool repeats to 6x6).
///
/// ```
/// # fn main() -> convnet::Result<()> {
/// use convnet::prelude::*;
/// let net = convnet::zoo::alexnet_torchvision::<f32>(1000)?;
/// assert_eq!(net.num_params(), 61_100_840);
/// assert_eq!(net.output_shape(&[1, 3, 224, 224])?, vec![1, 1000]);
/// # Ok(())
/// # }
/// ```
pub fn alexnet_torchvision<T: Float>(num_classes: usize) -> Result<Sequential<T>> {
    let features = Sequential::new()
        .add(conv(Conv2dConfig::new(3, 64, 11).stride(4).padding(2))?)
        .add(ReLU::new())
        .add(max_pool()?)
        .add(conv(Conv2dConfig::new(64, 192, 5).padding(2))?)
        .add(ReLU::new())
        .add(max_pool()?)
        .add(conv(Conv2dConfig::new(192, 384, 3).padding(1))?)
        .add(ReLU::new())
        .add(conv(Conv2dConfig::new(384, 256, 3).padding(1))?)
        .add(ReLU::new())
        .add(conv(Conv2dConfig::new(256, 256, 3).padding(1))?)
        .add(ReLU::new())
        .add(max_pool()?);
    let classifier = Sequential::new()
        .add(Dropout::new(DropoutConfig::new().p(0.5))?)
        .add(Linear::new(LinearConfig::new(256 * 6 * 6, 4096))?)
        .add(ReLU::new())
        .add(Dropout::new(DropoutConfig::new().p(0.5))?)
        .add(Linear::new(LinearConfig::new(4096, 4096))?)
        .add(ReLU::new())
        .add(Linear::new(LinearConfig::new(4096, num_classes))?);
    Sequential::new()
        .add_named("features", features)?
        .add_named(
            "avgpool",
            AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new([6, 6]))?,
        )?
        .add_named("flatten", Flatten::new(FlattenConfig::new())?)?
        .add_named("classifier", classifier)
}

/// Test helpers shared by the zoo files of this family (AlexNet, VGG, ResNet).
#[cfg(test)]
pub(super) mod testkit {
    use crate::layer::{Layer, Mode, Slot};
    use crate::loss::CrossEntropyLoss;
    use crate::optim::{Optimizer, Sgd, SgdConfig};
    use crate::rng::Rng64;
    use crate::tensor::{from_vec, Float, Tensor};

    /// Every `state_dict` entry of `model` as `name shape` (shape comma-separated, empty for
    /// 0-d buffers), in visit order: the format of `tests/fixtures/zoo/*.keys`.
    pub fn key_lines<T: Float>(model: &dyn Layer<T>) -> Vec<String> {
        let mut lines = Vec::new();
        model.visit(&mut |name, slot| {
            let shape = match slot {
                Slot::Param(p) => p.value.shape().to_vec(),
                Slot::Buffer(b) => b.shape().to_vec(),
            };
            let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            lines.push(format!("{name} {}", dims.join(",")));
        });
        lines
    }

    /// Asserts that `model`'s names and shapes equal PyTorch's `state_dict`, in order, as
    /// stored in the fixture text (generated by `gen_keys_alexnet_vgg_resnet.py`).
    pub fn assert_keys<T: Float>(model: &dyn Layer<T>, fixture: &str) {
        let want: Vec<&str> = fixture.lines().collect();
        let got = key_lines(model);
        assert_eq!(got.len(), want.len(), "number of state_dict entries");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.trim_end(), w.trim_end(), "state_dict entry {i}");
        }
    }

    /// A deterministic input in `[-1, 1)`.
    pub fn input<T: Float>(shape: &[usize], seed: u64) -> Tensor<T> {
        let mut rng = Rng64::seed(seed);
        let n = shape.iter().product();
        from_vec(
            shape,
            (0..n).map(|_| T::of(2.0 * rng.uniform() - 1.0)).collect(),
        )
    }

    /// One SGD step on a single batch in `mode` and the loss on that batch before and after.
    /// The model must compute the same function both times (no dropout in `Train` mode).
    pub fn sgd_step<T: Float>(
        model: &mut dyn Layer<T>,
        mode: Mode,
        x: &Tensor<T>,
        targets: &[usize],
        lr: f64,
    ) -> (f64, f64) {
        model.set_mode(mode);
        let loss = CrossEntropyLoss::new();
        let logits = model.forward(x).unwrap();
        let (before, grad) = loss.forward(&logits, targets).unwrap();
        model.zero_grad();
        let dx = model.backward(&grad).unwrap();
        assert_eq!(dx.shape(), x.shape());
        let mut sgd = Sgd::<T>::new(SgdConfig::new(lr)).unwrap();
        sgd.step(model).unwrap();
        let (after, _) = loss.forward(&model.forward(x).unwrap(), targets).unwrap();
        (before.as_f64(), after.as_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;
    use crate::error::Error;
    use crate::layer::{Layer, Mode};
    use crate::loss::CrossEntropyLoss;

    #[test]
    fn course_alexnet_has_the_papers_62_378_344_parameters() {
        let net = alexnet::<f32>(1000).unwrap();
        assert_eq!(net.num_params(), 62_378_344);
        assert_keys(&net, include_str!("../../tests/fixtures/zoo/alexnet.keys"));
        // FC8 scales with the classes: 4097 parameters per class.
        let net10 = alexnet::<f32>(10).unwrap();
        assert_eq!(net10.num_params(), 62_378_344 - 990 * 4097);
    }

    #[test]
    fn course_alexnet_summary_reads_like_the_course_listing() {
        let net = alexnet::<f32>(1000).unwrap();
        let summary = net.summary(&[1, 3, 227, 227]).unwrap();
        assert_eq!(summary.total_params(), 62_378_344);
        // Rows with their whitespace padding collapsed to single spaces.
        let text = summary.to_string();
        let rows: Vec<String> = text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        let expected = [
            "[227x227x3] INPUT",
            "[55x55x96] CONV1: 96 11x11 filters at stride 4, pad 0 34,944",
            "[55x55x96] ReLU",
            "[27x27x96] MAX POOL1: 3x3 filters at stride 2",
            "[27x27x96] NORM1: size 5, alpha 0.0005, beta 0.75, k 2",
            "[27x27x256] CONV2: 256 5x5 filters at stride 1, pad 2 614,656",
            "[27x27x256] ReLU",
            "[13x13x256] MAX POOL2: 3x3 filters at stride 2",
            "[13x13x256] NORM2: size 5, alpha 0.0005, beta 0.75, k 2",
            "[13x13x384] CONV3: 384 3x3 filters at stride 1, pad 1 885,120",
            "[13x13x384] ReLU",
            "[13x13x384] CONV4: 384 3x3 filters at stride 1, pad 1 1,327,488",
            "[13x13x384] ReLU",
            "[13x13x256] CONV5: 256 3x3 filters at stride 1, pad 1 884,992",
            "[13x13x256] ReLU",
            "[6x6x256] MAX POOL3: 3x3 filters at stride 2",
            "[9216] Flatten: start_dim 1, end_dim -1",
            "[4096] FC6: 4096 neurons 37,752,832",
            "[4096] ReLU",
            "[4096] Dropout: p 0.5",
            "[4096] FC7: 4096 neurons 16,781,312",
            "[4096] ReLU",
            "[4096] Dropout: p 0.5",
            "[1000] FC8: 1000 neurons 4,097,000",
            "Total params: 62,378,344",
        ];
        assert_eq!(rows, expected);
    }

    #[test]
    fn course_alexnet_takes_exactly_227x227() {
        let net = alexnet::<f32>(1000).unwrap();
        assert_eq!(net.output_shape(&[2, 3, 227, 227]).unwrap(), [2, 1000]);
        // 224x224 (the paper's typo) gives 54x54 after CONV1 and 5x5 after MAX POOL3, so FC6
        // would need 6,400 inputs: rejected by name, not a panic.
        let err = net.output_shape(&[1, 3, 224, 224]).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        assert!(err.to_string().contains("Linear(9216 -> 4096)"), "{err}");
        assert!(net.output_shape(&[1, 1, 227, 227]).is_err());
    }

    #[test]
    fn torchvision_alexnet_matches_the_state_dict() {
        let net = alexnet_torchvision::<f32>(1000).unwrap();
        assert_eq!(net.num_params(), 61_100_840);
        assert_keys(
            &net,
            include_str!("../../tests/fixtures/zoo/alexnet_torchvision.keys"),
        );
        assert_eq!(net.output_shape(&[2, 3, 224, 224]).unwrap(), [2, 1000]);
    }

    #[test]
    fn torchvision_alexnet_smallest_input_is_63() {
        let net = alexnet_torchvision::<f32>(10).unwrap();
        assert_eq!(net.output_shape(&[1, 3, 63, 63]).unwrap(), [1, 10]);
        let err = net.output_shape(&[1, 3, 62, 62]).unwrap_err();
        assert!(matches!(err, Error::Geometry { .. }), "{err}");
    }

    #[test]
    fn torchvision_alexnet_training_step_lowers_the_loss() {
        let mut net = alexnet_torchvision::<f32>(10).unwrap();
        let x = input::<f32>(&[2, 3, 64, 64], 7);
        let targets = [3, 8];
        // Train mode exercises dropout; the masks differ between passes, so only check that
        // the step runs and stays finite.
        let (a, b) = sgd_step(&mut net, Mode::Train, &x, &targets, 0.01);
        assert!(a.is_finite() && b.is_finite(), "{a} {b}");
        // With dropout off the step is plain gradient descent on one fixed function.
        let (before, after) = sgd_step(&mut net, Mode::Eval, &x, &targets, 0.01);
        assert!(after < before, "loss {before} -> {after}");
        let logits = net.forward(&x).unwrap();
        assert_eq!(logits.shape(), [2, 10]);
        assert!(CrossEntropyLoss::new().forward(&logits, &[10, 0]).is_err());
    }
}

//! Property tests: random layer configurations and input shapes, including zeros, huge sizes
//! and huge values. For every case:
//!
//! * constructors and `output_shape` return `Ok` or a typed error — they never panic;
//! * when both are `Ok` (and the tensors are small enough to run), `forward` returns exactly
//!   the predicted shape and `backward` a gradient of the input's shape.
//!
//! The case count keeps the whole file well under a minute in the debug test profile.

use convnet::init::Init;
use convnet::prelude::*;
use ndarray::IxDyn;
use proptest::prelude::*;

/// Cases per property: 512, or `PROPTEST_CASES` when set (for long local runs).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

/// Only tensors up to this many elements are materialised; larger Ok shapes are checked
/// for consistency only.
const RUN_LIMIT: usize = 20_000;

/// Sizes that are mostly small, sometimes zero and sometimes absurd.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..6,
        1 => Just(1usize << 16),
        1 => Just(1usize << 31),
        1 => Just(usize::MAX / 2),
        1 => Just(usize::MAX),
    ]
}

fn small(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![9 => 0..=max, 1 => size()]
}

/// A shape of the given rank range with mostly small dims.
fn shape(ranks: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(small(6), ranks)
}

/// Input values: zeros, ordinary, or huge.
fn fill() -> impl Strategy<Value = f64> {
    prop_oneof![Just(0.0), Just(1.0), Just(-3.5), Just(1e30), Just(-1e300)]
}

fn init() -> impl Strategy<Value = Init> {
    prop_oneof![
        6 => Just(Init::PyTorchDefault),
        1 => Just(Init::KaimingNormal),
        1 => Just(Init::XavierUniform),
        1 => prop_oneof![Just(f64::NAN), Just(-1.0), Just(0.0), Just(1e300)].prop_map(Init::Normal),
        1 => prop_oneof![Just(f64::INFINITY), Just(2.0)].prop_map(Init::Constant),
    ]
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// The core property, for any layer that was built.
fn check_layer(
    layer: &mut dyn Layer<f64>,
    input: &[usize],
    value: f64,
) -> Result<(), TestCaseError> {
    let predicted = layer.output_shape(input);
    let Ok(predicted) = predicted else {
        return Ok(()); // a typed error is fine; a panic would have failed the test
    };
    let (Some(n_in), Some(n_out)) = (numel(input), numel(&predicted)) else {
        return Err(TestCaseError::fail(format!(
            "output_shape accepted a shape whose size overflows: {input:?} -> {predicted:?}"
        )));
    };
    // Only shapes a tensor can have are materialised (ndarray also refuses an empty shape
    // whose non-zero dims overflow, such as [2^63, 0]).
    let nonzero = |s: &[usize]| {
        s.iter()
            .filter(|&&d| d != 0)
            .try_fold(1usize, |a, &d| a.checked_mul(d))
    };
    let fits = |s: &[usize]| nonzero(s).is_some_and(|n| n <= RUN_LIMIT);
    if n_in > RUN_LIMIT || n_out > RUN_LIMIT || !fits(input) || !fits(&predicted) {
        return Ok(());
    }
    let x = Tensor::<f64>::from_elem(IxDyn(input), value);
    let y = match layer.forward(&x) {
        Ok(y) => y,
        // Some inputs are only refused at run time (batch norm with one value per channel).
        Err(_) => return Ok(()),
    };
    prop_assert_eq!(
        y.shape(),
        predicted.as_slice(),
        "forward shape for input {:?}",
        input
    );
    let dy = Tensor::<f64>::from_elem(IxDyn(&predicted), 1.0);
    let dx = layer
        .backward(&dy)
        .map_err(|e| TestCaseError::fail(format!("backward: {e}")))?;
    prop_assert_eq!(dx.shape(), input, "backward shape");
    Ok(())
}

/// An NCHW shape with mostly small dims, and sometimes a rank that is wrong.
fn image_shape() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        9 => (small(3), small(4), small(9), small(9)).prop_map(|(n, c, h, w)| vec![n, c, h, w]),
        1 => shape(0..=5),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn conv2d(
        cin in small(4), cout in small(4), groups in small(3),
        kernel in (small(5), small(5)), stride in (small(3), small(3)),
        padding in (small(3), small(3)), dilation in (small(3), small(3)),
        bias in any::<bool>(), init in init(), input in image_shape(), value in fill(),
    ) {
        let cfg = Conv2dConfig::new(cin, cout, 1)
            .kernel_hw([kernel.0, kernel.1])
            .stride_hw([stride.0, stride.1])
            .padding_hw([padding.0, padding.1])
            .dilation_hw([dilation.0, dilation.1])
            .groups(groups)
            .bias(bias)
            .init(init);
        if let Ok(mut layer) = Conv2d::<f64>::new(cfg) {
            // Feed the right channel count most of the time so the forward pass runs.
            let mut input = input;
            if input.len() == 4 && input[1] <= 4 {
                input[1] = cin;
            }
            check_layer(&mut layer, &input, value)?;
        }
    }

    #[test]
    fn pooling(
        kind in 0..3u8, kernel in (small(4), small(4)), stride in (small(3), small(3)),
        padding in (small(2), small(2)), dilation in (small(3), small(3)),
        ceil in any::<bool>(), out in (small(5), small(5)),
        input in image_shape(), value in fill(),
    ) {
        let mut layer: Box<dyn Layer<f64>> = match kind {
            0 => match MaxPool2d::new(
                MaxPool2dConfig::new(1)
                    .kernel_hw([kernel.0, kernel.1])
                    .stride_hw([stride.0, stride.1])
                    .padding_hw([padding.0, padding.1])
                    .dilation_hw([dilation.0, dilation.1])
                    .ceil_mode(ceil),
            ) {
                Ok(l) => Box::new(l),
                Err(_) => return Ok(()),
            },
            1 => match AvgPool2d::new(
                AvgPool2dConfig::new(1)
                    .kernel_hw([kernel.0, kernel.1])
                    .stride_hw([stride.0, stride.1])
                    .padding_hw([padding.0, padding.1])
                    .ceil_mode(ceil),
            ) {
                Ok(l) => Box::new(l),
                Err(_) => return Ok(()),
            },
            _ => match AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new([out.0, out.1])) {
                Ok(l) => Box::new(l),
                Err(_) => return Ok(()),
            },
        };
        check_layer(layer.as_mut(), &input, value)?;
    }

    #[test]
    fn linear_and_flatten(
        fin in small(6), fout in small(6), bias in any::<bool>(), init in init(),
        batch in small(4), start in small(4), end in -6isize..6, input in shape(0..=5),
        value in fill(),
    ) {
        let cfg = LinearConfig::new(fin, fout).bias(bias).init(init);
        if let Ok(mut layer) = Linear::<f64>::new(cfg) {
            check_layer(&mut layer, &[batch, fin], value)?;
            check_layer(&mut layer, &input, value)?;
        }
        if let Ok(mut layer) = Flatten::<f64>::new(FlattenConfig::new().start_dim(start).end_dim(end)) {
            check_layer(&mut layer, &input, value)?;
        }
    }

    #[test]
    fn normalisation_and_activations(
        kind in 0..12u8, channels in small(4), size in small(4), p in 0.0f64..1.0,
        pads in (small(3), small(3), small(3), small(3)),
        slope in prop_oneof![Just(0.01), Just(-2.0), Just(f64::NAN)],
        input in image_shape(), value in fill(),
    ) {
        let mut layer: Box<dyn Layer<f64>> = match kind {
            0 => match BatchNorm2d::new(BatchNorm2dConfig::new(channels)) {
                Ok(l) => Box::new(l),
                Err(_) => return Ok(()),
            },
            1 => match LocalResponseNorm::new(LocalResponseNormConfig::new(size).k(2.0)) {
                Ok(l) => Box::new(l),
                Err(_) => return Ok(()),
            },
            2 => Box::new(ReLU::new()),
            // A NaN slope is a configuration error.
            3 => match LeakyReLU::new(LeakyReLUConfig::new().negative_slope(slope)) {
                Ok(l) => Box::new(l),
                Err(_) => return Ok(()),
            },
            4 => Box::new(Sigmoid::new()),
            5 => Box::new(Tanh::new()),
            6 => Box::new(Softmax::new()),
            7 => Box::new(LogSoftmax::new()),
            8 => match Dropout::new(DropoutConfig::new().p(p).seed(3)) {
                Ok(l) => Box::new(l),
                Err(_) => return Ok(()),
            },
            // Not covered before: Pad2d panicked on an empty image ([N, C, 0, W]).
            10 => Box::new(Pad2d::new(Pad2dConfig::new([pads.0, pads.1, pads.2, pads.3])).unwrap()),
            11 => match Bias::new(BiasConfig::new(channels)) {
                Ok(l) => Box::new(l),
                Err(_) => return Ok(()),
            },
            _ => Box::new(Flatten::new(FlattenConfig::new()).unwrap()),
        };
        let mut input = input;
        if (kind == 0 || kind == 11) && input.len() == 4 && input[1] <= 4 {
            input[1] = channels;
        }
        check_layer(layer.as_mut(), &input, value)?;
    }

    #[test]
    fn merges(dim in small(4), shapes in prop::collection::vec(shape(0..=4), 0..4), value in fill()) {
        let shapes: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        let mut merges: Vec<Box<dyn Merge<f64>>> = vec![Box::new(Concat::along(dim)), Box::new(Add::new())];
        for m in merges.iter_mut() {
            let Ok(predicted) = m.output_shape(&shapes) else { continue };
            let sizes: Option<Vec<usize>> = shapes.iter().map(|s| numel(s)).collect();
            let Some(sizes) = sizes else {
                return Err(TestCaseError::fail("accepted an overflowing input shape"));
            };
            let total = numel(&predicted).ok_or_else(|| TestCaseError::fail("overflowing output"))?;
            let nonzero = |s: &[usize]| s.iter().filter(|&&d| d != 0).try_fold(1usize, |a, &d| a.checked_mul(d));
            let fits = |s: &[usize]| nonzero(s).is_some_and(|n| n <= RUN_LIMIT);
            if sizes.iter().sum::<usize>() > RUN_LIMIT || total > RUN_LIMIT
                || !shapes.iter().all(|s| fits(s)) || !fits(&predicted)
            {
                continue;
            }
            let xs: Vec<Tensor<f64>> = shapes.iter().map(|s| Tensor::from_elem(IxDyn(s), value)).collect();
            let refs: Vec<&Tensor<f64>> = xs.iter().collect();
            let y = m.forward(&refs).map_err(|e| TestCaseError::fail(format!("forward: {e}")))?;
            prop_assert_eq!(y.shape(), predicted.as_slice());
            let dxs = m.backward(&Tensor::from_elem(IxDyn(&predicted), 1.0))
                .map_err(|e| TestCaseError::fail(format!("backward: {e}")))?;
            prop_assert_eq!(dxs.len(), xs.len());
            for (dx, x) in dxs.iter().zip(&xs) {
                prop_assert_eq!(dx.shape(), x.shape());
            }
        }
    }
}

//! The inference path (`Layer::infer`, `Merge::infer`, fusion through `Layer::epilogue` and
//! `Layer::infer_fused`) against the training path in evaluation mode.
//!
//! For every layer kind, container and zoo family: `infer` in TRAIN mode gives the numbers of
//! `forward` after `set_mode(Mode::Eval)` (batch-norm running statistics and affine parameters
//! are randomised first, so train- and eval-mode behaviour really differ), and leaves every
//! parameter and buffer untouched. Folding a batch norm into the convolution before it changes
//! the rounding, so those comparisons carry a stated tolerance; everything else must agree to
//! 1e-12 (f64) — in practice bit for bit.

use convnet::blocks::{Inception, Residual};
use convnet::gradcheck::random_tensor;
use convnet::io::state_dict;
use convnet::model::GraphBuilder;
use convnet::prelude::*;
use convnet::rng::Rng64;
use convnet::zoo;
use convnet::{Epilogue, Slot, SlotMut};
use std::sync::Arc;

/// `max |a - b| / max(1, max |b|)`, NaN-aware (NaN must meet NaN).
fn rel_err<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let scale = b
        .iter()
        .filter(|v| v.is_finite())
        .fold(1.0f64, |m, v| m.max(v.as_f64().abs()));
    a.iter().zip(b).fold(0.0, |m, (x, y)| {
        let (x, y) = (x.as_f64(), y.as_f64());
        if x.is_nan() || y.is_nan() {
            assert!(x.is_nan() && y.is_nan(), "NaN on one side only: {x} vs {y}");
            m
        } else {
            m.max((x - y).abs() / scale)
        }
    })
}

/// Every parameter and buffer by name, to check that inference changes nothing.
fn snapshot<T: Float>(layer: &dyn Layer<T>) -> Vec<(String, Tensor<T>)> {
    state_dict(layer)
}

/// Random running statistics (variance in [0.5, 1.5)) and random affine parameters for every
/// batch norm, recognised by its `running_mean` buffer.
fn randomise_batch_norms<T: Float>(layer: &mut dyn Layer<T>, seed: u64) {
    let mut bn = Vec::new();
    layer.visit(&mut |name, slot| {
        if let (Some(prefix), Slot::Buffer(_)) = (name.strip_suffix("running_mean"), slot) {
            bn.push(prefix.to_string());
        }
    });
    let mut rng = Rng64::seed(seed);
    layer.visit_mut(&mut |name, slot| {
        let Some(prefix) = bn.iter().find(|p| name.starts_with(p.as_str())) else {
            return;
        };
        let mut fill = |t: &mut Tensor<T>, lo: f64, hi: f64| {
            t.mapv_inplace(|_| T::of(lo + (hi - lo) * rng.uniform()))
        };
        match (&name[prefix.len()..], slot) {
            ("running_mean", SlotMut::Buffer(t)) => fill(t, -0.5, 0.5),
            ("running_var", SlotMut::Buffer(t)) => fill(t, 0.5, 1.5),
            ("weight", SlotMut::Param(p)) => fill(&mut p.value, 0.5, 1.5),
            ("bias", SlotMut::Param(p)) => fill(&mut p.value, -0.3, 0.3),
            _ => {}
        }
    });
}

/// Runs `infer` in training mode and in eval mode, then `forward` in eval mode, and returns
/// the error of `infer` against that forward. Asserts that `infer` changes no parameter or
/// buffer and does not depend on the mode (bit for bit).
fn infer_vs_eval_forward<T: Float>(layer: &mut dyn Layer<T>, x: &Tensor<T>) -> f64 {
    layer.set_mode(Mode::Train);
    let before = snapshot(layer);
    let y_train = layer.infer(x).unwrap();
    assert_eq!(snapshot(layer), before, "infer changed the state");
    layer.set_mode(Mode::Eval);
    let y_eval = layer.infer(x).unwrap();
    assert_eq!(rel_err(&y_train, &y_eval), 0.0, "infer depends on the mode");
    let y_ref = layer.forward(x).unwrap();
    assert_eq!(snapshot(layer), before, "eval forward changed the state");
    rel_err(&y_train, &y_ref)
}

fn conv(cfg: Conv2dConfig, seed: u64) -> Conv2d<f64> {
    Conv2d::new(cfg.seed(seed)).unwrap()
}

fn bn(c: usize) -> BatchNorm2d<f64> {
    BatchNorm2d::new(BatchNorm2dConfig::new(c)).unwrap()
}

/// A named layer and its input.
type Case = (&'static str, Box<dyn Layer<f64>>, Tensor<f64>);

/// Exactness of every single layer: its `infer` is its eval-mode `forward`.
#[test]
fn every_layer_infers_what_eval_forward_computes() {
    let img = |shape: &[usize], seed| random_tensor(shape, seed);
    let mut cases: Vec<Case> = vec![
        (
            "conv 3x3",
            Box::new(conv(Conv2dConfig::new(3, 4, 3).padding(1), 1)),
            img(&[2, 3, 6, 5], 1),
        ),
        (
            "conv groups, stride, dilation, no bias",
            Box::new(conv(
                Conv2dConfig::new(4, 6, 3)
                    .groups(2)
                    .stride(2)
                    .dilation(2)
                    .padding(2)
                    .bias(false),
                2,
            )),
            img(&[3, 4, 9, 7], 2),
        ),
        (
            "conv 1x1 batch 1",
            Box::new(conv(Conv2dConfig::new(5, 3, 1), 3)),
            img(&[1, 5, 4, 4], 3),
        ),
        (
            "linear",
            Box::new(Linear::<f64>::new(LinearConfig::new(12, 5)).unwrap()),
            img(&[3, 12], 4),
        ),
        ("relu", Box::new(ReLU::new()), img(&[2, 3, 4, 4], 5)),
        (
            "leaky relu",
            Box::new(LeakyReLU::new(LeakyReLUConfig::new().negative_slope(0.2)).unwrap()),
            img(&[7, 3], 6),
        ),
        ("sigmoid", Box::new(Sigmoid::new()), img(&[2, 9], 7)),
        ("tanh", Box::new(Tanh::new()), img(&[2, 9], 8)),
        ("softmax", Box::new(Softmax::new()), img(&[2, 4, 3, 3], 9)),
        (
            "log softmax",
            Box::new(LogSoftmax::new()),
            img(&[4, 10], 10),
        ),
        (
            "max pool",
            Box::new(
                MaxPool2d::new(MaxPool2dConfig::new(3).stride(2).padding(1).ceil_mode(true))
                    .unwrap(),
            ),
            img(&[2, 3, 9, 8], 11),
        ),
        (
            "avg pool",
            Box::new(
                AvgPool2d::new(
                    AvgPool2dConfig::new(3)
                        .stride(2)
                        .padding(1)
                        .count_include_pad(false),
                )
                .unwrap(),
            ),
            img(&[2, 3, 9, 8], 12),
        ),
        (
            "adaptive avg pool",
            Box::new(AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new([3, 2])).unwrap()),
            img(&[2, 3, 7, 5], 13),
        ),
        (
            "local response norm",
            Box::new(
                LocalResponseNorm::new(LocalResponseNormConfig::new(5).alpha(5e-4).k(2.0)).unwrap(),
            ),
            img(&[2, 7, 3, 3], 14),
        ),
        ("batch norm", Box::new(bn(3)), img(&[2, 3, 4, 5], 15)),
        (
            "batch norm without affine",
            Box::new(BatchNorm2d::new(BatchNorm2dConfig::new(3).affine(false)).unwrap()),
            img(&[2, 3, 4, 5], 16),
        ),
        (
            "batch norm without running stats (batch statistics in eval too)",
            Box::new(
                BatchNorm2d::new(BatchNorm2dConfig::new(3).track_running_stats(false)).unwrap(),
            ),
            img(&[2, 3, 4, 5], 17),
        ),
        (
            "dropout",
            Box::new(Dropout::new(DropoutConfig::new().p(0.5).seed(1)).unwrap()),
            img(&[4, 6], 18),
        ),
        (
            "flatten",
            Box::new(Flatten::new(FlattenConfig::new()).unwrap()),
            img(&[2, 3, 2, 2], 19),
        ),
    ];
    for (what, layer, x) in &mut cases {
        randomise_batch_norms(layer.as_mut(), 5);
        let err = infer_vs_eval_forward(layer.as_mut(), x);
        assert!(err <= 1e-12, "{what}: {err}");
    }
}

#[test]
fn train_mode_differs_so_the_mode_checks_are_not_trivial() {
    let x = random_tensor(&[2, 3, 4, 5], 1);
    let mut norm = bn(3);
    randomise_batch_norms(&mut norm, 2);
    let mut drop = Dropout::new(DropoutConfig::new().p(0.5).seed(3)).unwrap();
    for layer in [&mut norm as &mut dyn Layer<f64>, &mut drop] {
        layer.set_mode(Mode::Train);
        let train = layer.forward(&x).unwrap();
        assert!(
            rel_err(&layer.infer(&x).unwrap(), &train) > 0.01,
            "{}",
            layer.kind()
        );
    }
}

#[test]
fn merges_infer_what_forward_computes() {
    let (a, b) = (random_tensor(&[2, 3, 4], 1), random_tensor(&[2, 3, 4], 2));
    let c = random_tensor(&[2, 5, 4], 3);
    let mut add = Add::new();
    assert_eq!(
        add.infer(&[&a, &b]).unwrap(),
        add.forward(&[&a, &b]).unwrap()
    );
    assert_eq!(add.infer(&[&a, &b]).unwrap(), &a + &b);
    let mut cat = Concat::new();
    assert_eq!(
        cat.infer(&[&a, &c]).unwrap(),
        cat.forward(&[&a, &c]).unwrap()
    );
    assert!(Concat::<f64>::new()
        .infer(&[&a, &random_tensor(&[3, 1, 4], 4)])
        .is_err());
    assert!(Add::<f64>::new().infer(&[&a, &c]).is_err());
}

#[test]
fn infer_caches_nothing_for_backward() {
    let x = random_tensor(&[1, 2, 5, 5], 1);
    let mut c = conv(Conv2dConfig::new(2, 3, 3), 1);
    let y = c.infer(&x).unwrap();
    let err = c.backward(&y).unwrap_err();
    assert!(
        matches!(err, Error::BackwardBeforeForward { .. }),
        "{err:?}"
    );
    let mut r = ReLU::new();
    r.infer(&x).unwrap();
    assert!(r.backward(&x).is_err());
}

#[test]
fn relu_keeps_nan_in_forward_infer_and_fused_convolution() {
    let mut x = random_tensor(&[1, 2, 4, 4], 1);
    x[[0, 1, 2, 2]] = f64::NAN;
    let mut relu = ReLU::new();
    assert!(relu.forward(&x).unwrap()[[0, 1, 2, 2]].is_nan());
    assert!(relu.infer(&x).unwrap()[[0, 1, 2, 2]].is_nan());
    // A NaN pixel reaches every output of a 3x3 convolution whose window covers it.
    let c = conv(Conv2dConfig::new(2, 3, 3).padding(1), 2);
    let fused = c.infer_fused(&x, &[Epilogue::Relu]).unwrap().unwrap();
    let plain = relu.infer(&c.infer(&x).unwrap()).unwrap();
    assert!(fused[[0, 0, 1, 1]].is_nan() && fused[[0, 2, 3, 3]].is_nan());
    assert_eq!(rel_err(&fused, &plain), 0.0);
}

/// Fusion of a convolution with a batch norm and a ReLU against the three layers one by one.
#[test]
fn fused_convolution_matches_the_layers_one_by_one() {
    for (i, (cfg, shape)) in [
        (Conv2dConfig::new(3, 4, 3).padding(1), [2, 3, 6, 6]),
        (
            Conv2dConfig::new(4, 6, 1).groups(2).bias(false),
            [1, 4, 5, 3],
        ),
        (Conv2dConfig::new(2, 5, 3).stride(2), [3, 2, 7, 9]),
    ]
    .into_iter()
    .enumerate()
    {
        let c = conv(cfg, i as u64);
        let mut norm = bn(cfg.out_channels);
        randomise_batch_norms(&mut norm, 10 + i as u64);
        let x = random_tensor(&shape, 20 + i as u64);
        let affine = norm
            .epilogue()
            .expect("batch norm with running stats folds");
        let plain = ReLU::new()
            .infer(&norm.infer(&c.infer(&x).unwrap()).unwrap())
            .unwrap();
        let fused = c
            .infer_fused(&x, &[affine.clone(), Epilogue::Relu])
            .unwrap()
            .expect("a convolution fuses");
        // Folding changes only the rounding: w·((y - m)·istd) + b vs (w·istd)·y + (b - m·w·istd).
        let err = rel_err(&fused, &plain);
        assert!(err <= 1e-13, "case {i}: {err}");
        assert!(plain.iter().any(|&v| v == 0.0) && plain.iter().any(|&v| v > 0.0));
        // An affine epilogue for the wrong number of channels is declined, not misapplied.
        let wrong = Epilogue::Affine {
            scale: vec![1.0; cfg.out_channels + 1],
            shift: vec![0.0; cfg.out_channels + 1],
        };
        assert!(c.infer_fused(&x, &[wrong]).unwrap().is_none());
    }
    // The fold itself: scale = weight / sqrt(var + eps), shift = bias - mean · scale.
    let mut norm = bn(2);
    norm.visit_mut(&mut |name, slot| match (name, slot) {
        ("weight", SlotMut::Param(p)) => p.value = ndarray::arr1(&[2.0, 1.0]).into_dyn(),
        ("bias", SlotMut::Param(p)) => p.value = ndarray::arr1(&[0.5, -1.0]).into_dyn(),
        ("running_mean", SlotMut::Buffer(b)) => *b = ndarray::arr1(&[1.0, 3.0]).into_dyn(),
        ("running_var", SlotMut::Buffer(b)) => {
            *b = ndarray::arr1(&[4.0 - 1e-5, 0.25 - 1e-5]).into_dyn()
        }
        _ => {}
    });
    let Some(Epilogue::Affine { scale, shift }) = norm.epilogue() else {
        panic!("affine epilogue expected");
    };
    for (got, want) in scale
        .iter()
        .zip([1.0, 2.0])
        .chain(shift.iter().zip([-0.5, -7.0]))
    {
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }
    let no_stats = BatchNorm2d::<f64>::new(BatchNorm2dConfig::new(2).track_running_stats(false));
    assert!(no_stats.unwrap().epilogue().is_none());
    assert_eq!(ReLU::<f64>::new().epilogue(), Some(Epilogue::Relu));
    assert!(conv(Conv2dConfig::new(1, 1, 1), 0).epilogue().is_none());
}

#[test]
fn linear_fuses_relu_only() {
    let lin = Linear::<f64>::new(LinearConfig::new(6, 4)).unwrap();
    let x = random_tensor(&[3, 6], 1);
    let fused = lin.infer_fused(&x, &[Epilogue::Relu]).unwrap().unwrap();
    assert_eq!(fused, ReLU::new().infer(&lin.infer(&x).unwrap()).unwrap());
    let affine = Epilogue::Affine {
        scale: vec![1.0; 4],
        shift: vec![0.0; 4],
    };
    assert!(lin.infer_fused(&x, &[affine]).unwrap().is_none());
}

/// conv → bn → relu → pool → conv → bn → flatten → linear → relu → dropout → linear.
fn small_net() -> Sequential<f64> {
    Sequential::new()
        .add(conv(Conv2dConfig::new(2, 4, 3).padding(1), 1))
        .add(bn(4))
        .add(ReLU::new())
        .add(MaxPool2d::new(MaxPool2dConfig::new(2)).unwrap())
        .add(conv(Conv2dConfig::new(4, 3, 3).bias(false), 2))
        .add(bn(3))
        .add(Flatten::new(FlattenConfig::new()).unwrap())
        .add(Linear::new(LinearConfig::new(3 * 2 * 2, 5)).unwrap())
        .add(ReLU::new())
        .add(Dropout::new(DropoutConfig::new().p(0.5)).unwrap())
        .add(Linear::new(LinearConfig::new(5, 3)).unwrap())
}

#[test]
fn containers_infer_what_eval_forward_computes() {
    let x = random_tensor(&[2, 2, 8, 8], 1);
    let mut net = small_net();
    randomise_batch_norms(&mut net, 3);
    let err = infer_vs_eval_forward(&mut net, &x);
    assert!(err <= 1e-12, "sequential: {err}");
    assert!(Sequential::<f64>::new().infer(&x).unwrap() == x);

    let body = Sequential::new()
        .add_named("conv1", conv(Conv2dConfig::new(3, 3, 3).padding(1), 4))
        .and_then(|s| s.add_named("bn1", bn(3)))
        .and_then(|s| s.add_named("relu", ReLU::new()))
        .and_then(|s| s.add_named("conv2", conv(Conv2dConfig::new(3, 3, 3).padding(1), 5)))
        .and_then(|s| s.add_named("bn2", bn(3)))
        .unwrap();
    let shortcut = Sequential::new()
        .add(conv(Conv2dConfig::new(3, 3, 1).bias(false), 6))
        .add(bn(3));
    let mut block = Residual::new(body)
        .shortcut("downsample", shortcut)
        .and_then(|b| b.post(ReLU::new()))
        .unwrap();
    randomise_batch_norms(&mut block, 7);
    let x3 = random_tensor(&[2, 3, 5, 5], 2);
    let err = infer_vs_eval_forward(&mut block, &x3);
    assert!(err <= 1e-12, "residual: {err}");
    let mut identity = Residual::new(conv(Conv2dConfig::new(3, 3, 3).padding(1), 8));
    assert!(infer_vs_eval_forward(&mut identity, &x3) <= 1e-12);
    // A ReLU after the sum runs in place on the sum in `infer`: bit for bit eval forward's
    // numbers, negative sums zeroed; another activation goes through its own `infer`.
    let mut relu_after = Residual::new(conv(Conv2dConfig::new(3, 3, 3).padding(1), 13))
        .post(ReLU::new())
        .unwrap();
    let y = relu_after.infer(&x3).unwrap();
    relu_after.set_mode(Mode::Eval);
    assert_eq!(y, relu_after.forward(&x3).unwrap());
    assert!(y.iter().any(|&v| v == 0.0) && y.iter().all(|&v| v >= 0.0));
    let mut sigmoid_after = Residual::new(conv(Conv2dConfig::new(3, 3, 3).padding(1), 13))
        .post(Sigmoid::new())
        .unwrap();
    let y = sigmoid_after.infer(&x3).unwrap();
    sigmoid_after.set_mode(Mode::Eval);
    assert_eq!(y, sigmoid_after.forward(&x3).unwrap());
    assert!(y.iter().all(|&v| v > 0.0 && v < 1.0));
    let mismatched = Residual::new(conv(Conv2dConfig::new(3, 2, 1), 9));
    assert!(matches!(
        mismatched.infer(&x3),
        Err(Error::ShapeMismatch { .. })
    ));

    let mut inception = Inception::new()
        .branch("a", conv(Conv2dConfig::new(3, 2, 1), 10))
        .unwrap()
        .branch(
            "b",
            Sequential::new()
                .add(conv(Conv2dConfig::new(3, 4, 3).padding(1), 11))
                .add(bn(4))
                .add(ReLU::new()),
        )
        .unwrap();
    randomise_batch_norms(&mut inception, 12);
    let err = infer_vs_eval_forward(&mut inception, &x3);
    assert!(err <= 1e-12, "inception: {err}");
    assert!(Inception::<f64>::new().infer(&x3).is_err());
}

#[test]
fn graph_infers_its_outputs_and_skips_unneeded_nodes() {
    // x ─conv─ bn ─relu─┬─ conv2 ─ add ─ main
    //                   └─────────┘
    //                   └─ flatten ─ linear ─ aux    (second output)
    let build = || {
        GraphBuilder::new("x")
            .layer("conv", "x", conv(Conv2dConfig::new(2, 3, 3).padding(1), 1))
            .layer("bn", "conv", bn(3))
            .layer("relu", "bn", ReLU::new())
            .layer(
                "conv2",
                "relu",
                conv(Conv2dConfig::new(3, 3, 3).padding(1), 2),
            )
            .merge("add", &["relu", "conv2"], Add::new())
            .layer(
                "flatten",
                "relu",
                Flatten::new(FlattenConfig::new()).unwrap(),
            )
            .layer(
                "aux",
                "flatten",
                Linear::new(LinearConfig::new(3 * 4 * 4, 2)).unwrap(),
            )
            .output("add")
            .output("aux")
            .build(&[1, 2, 4, 4])
            .unwrap()
    };
    let mut g = build();
    randomise_batch_norms(&mut g, 3);
    let x = random_tensor(&[2, 2, 4, 4], 4);
    let err = infer_vs_eval_forward(&mut g, &x);
    assert!(err <= 1e-12, "graph: {err}");
    g.set_mode(Mode::Eval);
    let all = g.infer_all(&x).unwrap();
    let reference = g.forward_all(&x).unwrap();
    assert_eq!(all.len(), 2);
    for (a, b) in all.iter().zip(&reference) {
        assert!(rel_err(a, b) <= 1e-12);
    }
    // `infer` computes only the primary output: an input on which the auxiliary head fails
    // (its Linear expects 4x4 maps) still gives the main output.
    let big = random_tensor(&[1, 2, 6, 6], 5);
    assert_eq!(g.infer(&big).unwrap().shape(), &[1, 3, 6, 6]);
    assert!(g.infer_all(&big).is_err());
}

/// One zoo model: build with a fixed seed, randomise its batch norms, compare `infer` (in
/// train mode) with eval-mode `forward`.
fn zoo_case<T: Float>(name: &str, batch: usize, side: usize, tol: f64) {
    convnet::init::manual_seed(11);
    let mut model = zoo::build::<T>(name, 10).unwrap();
    randomise_batch_norms(model.as_mut(), 13);
    let c = zoo::info(name).unwrap().input[0];
    let x = random_tensor(&[batch, c, side, side], 17).mapv(T::of);
    let err = infer_vs_eval_forward(model.as_mut(), &x);
    println!("{name} {side}x{side} batch {batch}: infer vs eval forward {err:.2e}");
    assert!(err <= tol, "{name}: {err} > {tol}");
}

#[test]
fn zoo_lenets_infer_exactly() {
    zoo_case::<f64>("lenet5", 2, 32, 1e-12);
    zoo_case::<f64>("lenet5_modern", 3, 28, 1e-12);
}

/// Batch norm folded into every convolution changes the rounding (measured about 1e-15 in f64
/// and 5e-7 in f32 relative to the largest logit); the bounds leave a wide margin.
#[test]
fn zoo_resnets_infer_within_folding_rounding() {
    zoo_case::<f64>("resnet18", 2, 64, 1e-12);
    zoo_case::<f32>("resnet50", 1, 64, 1e-5);
}

#[test]
fn zoo_googlenets_infer_within_folding_rounding() {
    zoo_case::<f64>("googlenet_torchvision", 2, 64, 1e-12);
    // The paper's GoogLeNet is a Graph with auxiliary heads; `infer` is its main output.
    zoo_case::<f32>("googlenet", 1, 224, 1e-6);
}

/// AlexNet and VGG hold 60–130 M parameters, so these run in f32. Without batch norm nothing is
/// folded and infer is exact; VGG-11-BN folds eight batch norms.
#[test]
fn zoo_alexnets_and_vggs_infer() {
    zoo_case::<f32>("alexnet", 1, 227, 1e-6);
    zoo_case::<f32>("alexnet_torchvision", 2, 64, 1e-6);
    zoo_case::<f32>("vgg11_bn", 2, 32, 1e-5);
}

/// One model behind an `Arc` serves several threads at once, each getting exactly the result
/// of a lone call.
#[test]
fn one_model_serves_many_threads() {
    convnet::init::manual_seed(3);
    let mut model = zoo::resnet18::<f32>(10).unwrap();
    randomise_batch_norms(&mut model, 4);
    let model = Arc::new(model);
    let inputs: Vec<Tensor<f32>> = (0..3)
        .map(|i| random_tensor(&[2, 3, 32, 32], 100 + i).mapv(|v| v as f32))
        .collect();
    let alone: Vec<Tensor<f32>> = inputs.iter().map(|x| model.infer(x).unwrap()).collect();
    let handles: Vec<_> = (0..3)
        .map(|t| {
            let (model, inputs) = (Arc::clone(&model), inputs.clone());
            std::thread::spawn(move || {
                (0..4)
                    .map(|k| model.infer(&inputs[(t + k) % 3]).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (t, h) in handles.into_iter().enumerate() {
        for (k, y) in h.join().unwrap().into_iter().enumerate() {
            assert_eq!(y, alone[(t + k) % 3], "thread {t}, call {k}");
        }
    }
}

#[test]
fn epilogue_apply_checks_sizes_and_maps_each_channel() {
    let affine = Epilogue::Affine {
        scale: vec![2.0, -1.0],
        shift: vec![0.5, 3.0],
    };
    // [N = 2, C = 2, inner = 2]: channels alternate every two values.
    let mut y = vec![1.0, 2.0, 1.0, 2.0, -1.0, 0.0, 4.0, 5.0];
    affine.apply(&mut y, 2).unwrap();
    assert_eq!(y, [2.5, 4.5, 2.0, 1.0, -1.5, 0.5, -1.0, -2.0]);
    Epilogue::Relu.apply(&mut y, 2).unwrap();
    assert_eq!(y, [2.5, 4.5, 2.0, 1.0, 0.0, 0.5, 0.0, 0.0]);
    for (bad, inner) in [
        (affine.clone(), 3),
        (affine.clone(), 0),
        (
            Epilogue::Affine {
                scale: vec![],
                shift: vec![],
            },
            1,
        ),
        (
            Epilogue::Affine {
                scale: vec![1.0, 1.0],
                shift: vec![0.0],
            },
            1,
        ),
    ] {
        let before = y.clone();
        assert!(matches!(
            bad.apply(&mut y, inner),
            Err(Error::InvalidInput { .. })
        ));
        assert_eq!(y, before);
    }
    assert!(affine.fits(2) && !affine.fits(3) && Epilogue::<f64>::Relu.fits(7));
}

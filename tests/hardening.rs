//! Bad input through the public API, as a new user would try it: every case returns a typed
//! error (or propagates NaN as PyTorch does) instead of panicking, aborting, hanging or
//! answering wrongly. docs/ERRORS.md lists each class with the test here that proves it.

use convnet::data::{encode_idx, DataLoader, IdxArray, ImageSet, LoaderConfig};
use convnet::init::Init;
use convnet::io::{load_weights, save_weights};
use convnet::optim::{Adam, AdamConfig, Sgd, SgdConfig};
use convnet::prelude::*;
use convnet::progress::ProgressStyle;
use convnet::train::{top_k_hits, Trainer, MAX_COUNTER};
use convnet::SlotMut;
use ndarray::IxDyn;
use std::path::{Path, PathBuf};

fn tmp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-hardening-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn is_config(e: &Error) -> bool {
    matches!(e, Error::InvalidConfig { .. })
}

fn is_geometry(e: &Error) -> bool {
    matches!(e, Error::Geometry { .. })
}

// ---------------------------------------------------------------------------------------
// Class 1: size arithmetic that overflows or asks for absurd memory.

#[test]
fn class1_linear_sizes_that_overflow_or_cannot_be_allocated_are_config_errors() {
    for (i, o) in [(usize::MAX / 2, 4), (1 << 20, 1 << 20), (4, usize::MAX)] {
        let err = Linear::<f32>::new(LinearConfig::new(i, o)).unwrap_err();
        assert!(is_config(&err), "{err}");
        let msg = err.to_string();
        assert!(msg.contains(&format!("Linear({i} -> {o})")), "{msg}");
        assert!(msg.contains("limit"), "{msg}");
    }
    // A layer that fits, given a batch whose output would not, refuses the input.
    let l = Linear::<f32>::new(LinearConfig::new(1, 1 << 20)).unwrap();
    let err = l.output_shape(&[1 << 12, 1]).unwrap_err();
    assert!(is_geometry(&err), "{err}");
}

#[test]
fn class1_conv_and_pool_windows_too_large_or_wrapping_are_errors() {
    let err = Conv2d::<f32>::new(Conv2dConfig::new(1, 1, 1 << 40)).unwrap_err();
    assert!(
        is_config(&err) && err.to_string().contains("Conv2d(1 -> 1)"),
        "{err}"
    );
    // Padding usize::MAX / 2 used to wrap N + 2P and give an all-zero output of a wrong shape.
    let err = Conv2d::<f32>::new(Conv2dConfig::new(1, 1, 1).padding(usize::MAX / 2)).unwrap_err();
    assert!(is_config(&err), "{err}");
    // Padding 2^20 on a 1x1 image: a 2^21 x 2^21 output, refused instead of aborting.
    let conv = Conv2d::<f32>::new(Conv2dConfig::new(1, 1, 1).padding(1 << 20)).unwrap();
    let err = conv.output_shape(&[1, 1, 1, 1]).unwrap_err();
    assert!(
        is_geometry(&err) && err.to_string().contains("limit"),
        "{err}"
    );
    let mut conv = conv;
    let x = Tensor::<f32>::zeros(IxDyn(&[1, 1, 1, 1]));
    assert!(is_geometry(&conv.forward(&x).unwrap_err()));
    // A max-pool window of 2^63 + 1 with dilation 2 used to wrap to a window of 1.
    let err = MaxPool2d::<f32>::new(MaxPool2dConfig::new((1 << 63) + 1).dilation(2)).unwrap_err();
    assert!(is_config(&err), "{err}");
    let err = AvgPool2d::<f32>::new(AvgPool2dConfig::new(usize::MAX)).unwrap_err();
    assert!(is_config(&err), "{err}");
    // Input shapes whose sizes overflow are refused by output_shape, never multiplied.
    let pool = MaxPool2d::<f32>::new(MaxPool2dConfig::new(2)).unwrap();
    assert!(pool.output_shape(&[1, 1, usize::MAX, 3]).is_err());
    let conv = Conv2d::<f32>::new(Conv2dConfig::new(1, 1, 3)).unwrap();
    assert!(conv
        .output_shape(&[usize::MAX, 1, 1 << 20, 1 << 20])
        .is_err());
    // The im2col buffer of one image is bounded too (here 2^4 · 2^14 · 2^14 cells).
    let conv = Conv2d::<f32>::new(Conv2dConfig::new(1, 1, 4).padding(1 << 13)).unwrap();
    let err = conv.output_shape(&[1, 1, 1, 1]).unwrap_err();
    assert!(err.to_string().contains("im2col"), "{err}");
}

#[test]
fn class1_adaptive_pool_flatten_concat_and_batch_norm_sizes_are_checked() {
    let err = AdaptiveAvgPool2d::<f32>::new(AdaptiveAvgPool2dConfig::new([1 << 40, 1 << 40]))
        .unwrap_err();
    assert!(is_config(&err), "{err}");
    let pool =
        AdaptiveAvgPool2d::<f32>::new(AdaptiveAvgPool2dConfig::new([1 << 13, 1 << 13])).unwrap();
    assert!(is_geometry(&pool.output_shape(&[4, 3, 2, 2]).unwrap_err()));
    // Flatten with out-of-range dims: an error at construction or a shape error, no panic.
    assert!(Flatten::<f32>::new(FlattenConfig::new().start_dim(usize::MAX).end_dim(-1)).is_err());
    assert!(Flatten::<f32>::new(FlattenConfig::new().start_dim(1).end_dim(isize::MIN)).is_err());
    let f = Flatten::<f32>::new(FlattenConfig::new().start_dim(3).end_dim(-1)).unwrap();
    assert!(matches!(
        f.output_shape(&[2, 3]),
        Err(Error::ShapeMismatch { .. })
    ));
    let f = Flatten::<f32>::new(FlattenConfig::new()).unwrap();
    assert!(f.output_shape(&[2, usize::MAX, 2]).is_err());
    let cat = Concat::<f32>::new();
    let (a, b) = ([1usize, usize::MAX, 1, 1], [1usize, 2, 1, 1]);
    assert!(cat.output_shape(&[&a, &b]).is_err());
    let err = BatchNorm2d::<f64>::new(BatchNorm2dConfig::new(usize::MAX)).unwrap_err();
    assert!(is_config(&err), "{err}");
}

#[test]
fn class1_zoo_with_absurd_class_count_is_an_error() {
    let err = convnet::zoo::build::<f32>("lenet5", 1 << 40).err().unwrap();
    assert!(is_config(&err), "{err}");
    let err = convnet::zoo::build::<f32>("resnet18", usize::MAX)
        .err()
        .unwrap();
    assert!(is_config(&err), "{err}");
}

#[test]
fn class1_image_set_dimensions_that_overflow_are_an_error() {
    let err = ImageSet::new(vec![0; 4], vec![0; 2], usize::MAX, 3, 10).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    // rows * cols * n wraps to exactly images.len() for these values without checked math.
    let err = ImageSet::new(vec![0; 2], vec![0; 2], 1 << 63, 2, 10).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
}

// ---------------------------------------------------------------------------------------
// Class 2: one validation of Init for every layer.

#[test]
fn class2_every_layer_taking_an_init_rejects_the_same_bad_values() {
    for init in [
        Init::Normal(f64::NAN),
        Init::Normal(-1.0),
        Init::Normal(f64::INFINITY),
        Init::Constant(f64::NAN),
        Init::Constant(f64::INFINITY),
    ] {
        let conv = Conv2d::<f32>::new(Conv2dConfig::new(1, 1, 3).init(init));
        assert!(
            is_config(conv.as_ref().unwrap_err()),
            "Conv2d with {init:?}"
        );
        let lin = Linear::<f32>::new(LinearConfig::new(2, 2).init(init));
        assert!(is_config(lin.as_ref().unwrap_err()), "Linear with {init:?}");
        let lin = Linear::<f32>::new(LinearConfig::new(2, 2).bias_init(init));
        assert!(
            is_config(lin.as_ref().unwrap_err()),
            "Linear bias with {init:?}"
        );
        // Same message wording for both layers: one validation path.
        let (c, l) = (conv.unwrap_err().to_string(), lin.unwrap_err().to_string());
        assert_eq!(
            c.split(": ").last().unwrap().replace("weight", "bias"),
            l.split(": ").last().unwrap()
        );
    }
    // A bad Init is rejected even when it is not the one drawn (bias disabled).
    let lin = Linear::<f32>::new(
        LinearConfig::new(2, 2)
            .bias(false)
            .bias_init(Init::Normal(-1.0)),
    );
    assert!(lin.is_err());
}

// ---------------------------------------------------------------------------------------
// Class 3: NaN propagates as in PyTorch.

fn nan_at_0(shape: &[usize]) -> Tensor<f64> {
    let mut x = Tensor::<f64>::from_elem(IxDyn(shape), 0.5);
    x.as_slice_mut().unwrap()[0] = f64::NAN;
    x
}

#[test]
fn class3_relu_propagates_nan_forward_and_backward() {
    let mut relu = ReLU::new();
    let x = nan_at_0(&[1, 3]);
    let y = relu.forward(&x).unwrap();
    assert!(y[[0, 0]].is_nan(), "ReLU(NaN) must be NaN, as torch.relu");
    assert_eq!(y[[0, 1]], 0.5);
    // torch: threshold_backward passes the gradient where the output is not <= 0 (NaN).
    let dx = relu
        .backward(&Tensor::from_elem(IxDyn(&[1, 3]), 2.0))
        .unwrap();
    assert_eq!(dx[[0, 0]], 2.0);
}

#[test]
fn class3_leaky_relu_propagates_nan_forward_and_backward() {
    let mut l = LeakyReLU::new(LeakyReLUConfig::new().negative_slope(0.1)).unwrap();
    let y = l.forward(&nan_at_0(&[1, 2])).unwrap();
    assert!(y[[0, 0]].is_nan());
    // torch: grad * (x > 0 ? 1 : slope), and NaN > 0 is false.
    let dx = l.backward(&Tensor::from_elem(IxDyn(&[1, 2]), 2.0)).unwrap();
    assert!((dx[[0, 0]] - 0.2).abs() < 1e-15, "{}", dx[[0, 0]]);
}

#[test]
fn class3_max_pool_propagates_nan_and_routes_its_gradient() {
    let mut p = MaxPool2d::new(MaxPool2dConfig::new(2)).unwrap();
    let mut x = Tensor::<f64>::from_elem(IxDyn(&[1, 1, 2, 2]), 5.0);
    x[[0, 0, 1, 0]] = f64::NAN;
    let y = p.forward(&x).unwrap();
    assert!(y[[0, 0, 0, 0]].is_nan());
    let dx = p
        .backward(&Tensor::from_elem(IxDyn(&[1, 1, 1, 1]), 1.0))
        .unwrap();
    assert_eq!(
        dx[[0, 0, 1, 0]],
        1.0,
        "the NaN cell is the argmax, as in PyTorch"
    );
    assert_eq!(dx.sum(), 1.0);
}

#[test]
fn class3_one_nan_pixel_reaches_the_logits() {
    let mut net = Sequential::<f64>::new()
        .add(Conv2d::new(Conv2dConfig::new(1, 2, 3).padding(1).seed(1)).unwrap())
        .add(ReLU::new())
        .add(MaxPool2d::new(MaxPool2dConfig::new(2)).unwrap())
        .add(Flatten::new(FlattenConfig::new()).unwrap())
        .add(Linear::new(LinearConfig::new(2 * 2 * 2, 3).seed(2)).unwrap());
    let logits = net.forward(&nan_at_0(&[1, 1, 4, 4])).unwrap();
    assert!(logits.iter().all(|v| v.is_nan()), "{logits:?}");
}

#[test]
fn class3_softmax_log_softmax_and_cross_entropy_propagate_nan() {
    let x = nan_at_0(&[1, 3]);
    assert!(Softmax::new()
        .forward(&x)
        .unwrap()
        .iter()
        .all(|v| v.is_nan()));
    assert!(LogSoftmax::new()
        .forward(&x)
        .unwrap()
        .iter()
        .all(|v| v.is_nan()));
    let (loss, _) = CrossEntropyLoss::new().forward(&x, &[1]).unwrap();
    assert!(loss.is_nan());
    let y = Sigmoid::new().forward(&x).unwrap();
    assert!(y[[0, 0]].is_nan());
    let y = Tanh::new().forward(&x).unwrap();
    assert!(y[[0, 0]].is_nan());
}

#[test]
fn class3_avg_pool_batch_norm_and_lrn_propagate_nan() {
    let x = nan_at_0(&[1, 1, 2, 2]);
    let y = AvgPool2d::new(AvgPool2dConfig::new(2))
        .unwrap()
        .forward(&x)
        .unwrap();
    assert!(y[[0, 0, 0, 0]].is_nan());
    let y = AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new([1, 1]))
        .unwrap()
        .forward(&x)
        .unwrap();
    assert!(y[[0, 0, 0, 0]].is_nan());
    let mut bn = BatchNorm2d::new(BatchNorm2dConfig::new(1)).unwrap();
    assert!(bn.forward(&x).unwrap().iter().all(|v| v.is_nan()));
    let mut lrn = LocalResponseNorm::new(LocalResponseNormConfig::new(2)).unwrap();
    assert!(lrn.forward(&x).unwrap()[[0, 0, 0, 0]].is_nan());
}

// ---------------------------------------------------------------------------------------
// Class 4: atomic, transactional files.

fn small_net(seed: u64) -> Sequential<f64> {
    Sequential::new()
        .add(Linear::new(LinearConfig::new(3, 4).seed(seed)).unwrap())
        .add(ReLU::new())
        .add(Dropout::new(DropoutConfig::new().p(0.5).seed(seed)).unwrap())
        .add(Linear::new(LinearConfig::new(4, 2).seed(seed + 1)).unwrap())
}

#[test]
fn class4_many_threads_saving_weights_to_one_path_all_succeed() {
    let dir = tmp_dir("race");
    let path = dir.join("w.safetensors");
    let failures: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let path = &path;
                s.spawn(move || {
                    let net = small_net(t);
                    (0..25)
                        .filter(|_| save_weights(&net, path).is_err())
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(failures, 0);
    // The survivor parses and is one of the eight models, whole.
    let mut net = small_net(100);
    load_weights(&mut net, &path).unwrap();
    let w = net.layers()[0].num_params();
    assert_eq!(w, 16);
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no temporary left"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Rewrites a checkpoint with one metadata entry changed and/or tensors dropped.
fn rewrite_checkpoint(
    src: &Path,
    dst: &Path,
    meta_key: &str,
    meta_value: Option<&str>,
    drop: &str,
) {
    let bytes = std::fs::read(src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    if let Some(v) = meta_value {
        meta.insert(meta_key.to_string(), v.to_string());
    }
    let views: Vec<_> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| drop.is_empty() || !n.starts_with(drop))
        .collect();
    std::fs::write(dst, safetensors::serialize(views, Some(meta)).unwrap()).unwrap();
}

#[test]
fn class4_a_checkpoint_that_fails_to_load_changes_nothing() {
    let dir = tmp_dir("ckpt");
    let good = dir.join("good.safetensors");
    // One epoch so the optimizer has state.
    let images = ImageSet::new(vec![7; 12], vec![0, 1, 0, 1], 1, 3, 2).unwrap();
    let loader = DataLoader::new(&images, LoaderConfig::new(2)).unwrap();
    let saved_model = Sequential::new()
        .add(Flatten::new(FlattenConfig::new()).unwrap())
        .add(Linear::new(LinearConfig::new(3, 2).seed(3)).unwrap())
        .add(Dropout::new(DropoutConfig::new().p(0.5).seed(3)).unwrap());
    let mut t1 = Trainer::new(saved_model, Adam::new(AdamConfig::new(0.01)).unwrap())
        .with_progress(ProgressStyle::Off);
    t1.train_epoch(&loader).unwrap();
    t1.save_checkpoint(&good).unwrap();

    let fresh = || {
        Trainer::new(
            Sequential::new()
                .add(Flatten::new(FlattenConfig::new()).unwrap())
                .add(Linear::new(LinearConfig::new(3, 2).seed(9)).unwrap())
                .add(Dropout::new(DropoutConfig::new().p(0.5).seed(9)).unwrap()),
            Adam::new(AdamConfig::new(0.01)).unwrap(),
        )
        .with_progress(ProgressStyle::Off)
    };
    let just_above = (MAX_COUNTER + 1).to_string();
    let cases: Vec<(&str, Option<&str>, &str, &str)> = vec![
        // (metadata key, new value, tensors to drop, expected words in the error)
        ("rngs", Some(""), "", "generator"),
        ("rngs", Some("2 1 2 3\n"), "", "malformed"),
        ("epoch", Some("18446744073709551615"), "", "epoch"),
        ("step", Some("18446744073709551615"), "", "step"),
        ("step", Some(&just_above), "", "step"),
        ("base_lr", Some("NaN"), "", "base_lr"),
        (
            "optimizer",
            None,
            "optimizer.1.weight.exp_avg_sq",
            "optimizer state",
        ),
    ];
    for (key, value, drop, words) in cases {
        let bad = dir.join(format!("bad-{key}.safetensors"));
        rewrite_checkpoint(&good, &bad, key, value, drop);
        let mut t = fresh();
        let before = weights_of_seq(&t.model);
        let err = t.load_checkpoint(&bad).unwrap_err().to_string();
        assert!(err.contains(words), "{key}: {err}");
        assert!(err.contains("bad-"), "errors name the file: {err}");
        assert_eq!(
            weights_of_seq(&t.model),
            before,
            "{key}: weights changed by a failed load"
        );
        assert_eq!(t.epoch(), 0);
        assert!(
            t.optimizer().state().is_empty(),
            "{key}: optimizer state changed"
        );
    }
    // The good one loads.
    let mut t = fresh();
    t.load_checkpoint(&good).unwrap();
    assert_eq!(t.epoch(), 1);
    assert_eq!(weights_of_seq(&t.model), weights_of_seq(&t1.model));
    std::fs::remove_dir_all(&dir).ok();
}

fn weights_of_seq(m: &Sequential<f64>) -> Vec<(String, Tensor<f64>)> {
    convnet::io::state_dict(m)
}

// ---------------------------------------------------------------------------------------
// Class 5: degenerate data.

fn write_idx(path: &Path, dims: Vec<usize>, data: Vec<u8>) {
    std::fs::write(path, encode_idx(&IdxArray { dims, data })).unwrap();
}

#[test]
fn class5_zero_sized_images_are_rejected_at_load_time() {
    let dir = tmp_dir("zero");
    let (img, lab) = (dir.join("img"), dir.join("lab"));
    for (rows, cols) in [(0, 28), (28, 0), (0, 0)] {
        write_idx(&img, vec![2, rows, cols], vec![]);
        write_idx(&lab, vec![2], vec![1, 2]);
        let err = ImageSet::from_idx(&img, &lab, 10).unwrap_err().to_string();
        assert!(err.contains("hold nothing") && err.contains("img"), "{err}");
        let err = ImageSet::new(vec![], vec![1, 2], rows, cols, 10).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }));
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A dataset of zero-sized samples, as a custom `Dataset` could declare.
struct EmptySamples;

impl convnet::data::Dataset for EmptySamples {
    fn len(&self) -> usize {
        3
    }
    fn sample_shape(&self) -> Vec<usize> {
        vec![1, 0, 0]
    }
    fn num_classes(&self) -> usize {
        2
    }
    fn sample(&self, _: usize, _: &mut [f32]) -> convnet::Result<usize> {
        Ok(0)
    }
}

#[test]
fn class5_a_dataset_of_empty_samples_is_refused_by_the_loader() {
    // Used to panic in the loader ("chunk size must be non-zero") when shifting.
    let err = DataLoader::new(&EmptySamples, LoaderConfig::new(2).max_shift(2))
        .err()
        .unwrap();
    assert!(
        is_config(&err) && err.to_string().contains("hold no values"),
        "{err}"
    );
}

/// A dataset whose sample 3 cannot be read (a file gone missing, say).
struct Unreadable;

impl convnet::data::Dataset for Unreadable {
    fn len(&self) -> usize {
        5
    }
    fn sample_shape(&self) -> Vec<usize> {
        vec![1, 1, 3]
    }
    fn num_classes(&self) -> usize {
        2
    }
    fn sample(&self, index: usize, out: &mut [f32]) -> convnet::Result<usize> {
        if index == 3 {
            return Err(Error::input("Unreadable", "sample 3 is gone"));
        }
        out.fill(index as f32);
        Ok(index % 2)
    }
}

#[test]
fn class5_a_sample_past_the_end_or_unreadable_is_an_error() {
    use convnet::data::Dataset;
    let images = ImageSet::new(vec![7; 12], vec![0, 1, 0, 1], 1, 3, 2).unwrap();
    let mut out = [0f32; 3];
    assert_eq!(images.sample(3, &mut out).unwrap(), 1);
    // Past the end used to panic indexing the labels.
    for index in [4, usize::MAX] {
        let err = images.sample(index, &mut out).unwrap_err();
        assert!(
            matches!(err, Error::InvalidInput { .. }) && err.to_string().contains("past the end"),
            "{err}"
        );
    }
    // A buffer that does not hold one sample.
    let err = images.sample(0, &mut [0f32; 2]).unwrap_err();
    assert!(err.to_string().contains("holds 2 values"), "{err}");
    // A sample that cannot be read fails its batch, and the trainer stops with the error.
    let loader = DataLoader::new(&Unreadable, LoaderConfig::new(2)).unwrap();
    let batches: Vec<_> = loader.epoch::<f32>(0).collect();
    assert!(batches[0].is_ok() && batches[2].is_ok());
    let err = batches[1].as_ref().err().unwrap();
    assert!(err.to_string().contains("sample 3 is gone"), "{err}");
    let model = Sequential::<f32>::new()
        .add(Flatten::new(FlattenConfig::new()).unwrap())
        .add(Linear::new(LinearConfig::new(3, 2)).unwrap());
    let mut t = Trainer::new(model, Sgd::new(SgdConfig::new(0.1)).unwrap())
        .with_progress(ProgressStyle::Off);
    let err = t.train_epoch(&loader).unwrap_err();
    assert!(err.to_string().contains("sample 3 is gone"), "{err}");
    assert!(t.evaluate(&loader).is_err());
}

// ---------------------------------------------------------------------------------------
// Class 6: resource limits in the examples.

/// The path of a built example binary (cargo test builds the examples next to the tests).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "example {name} not built at {}: run the whole `cargo test` (which builds the \
         examples) or `cargo build --examples` first",
        path.display()
    );
    path
}

#[test]
fn class6_mnist_refuses_absurd_thread_counts_at_once() {
    let started = std::time::Instant::now();
    let out = std::process::Command::new(example("mnist"))
        .args(["--threads", "1000000", "--epochs", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--threads"), "{err}");
    assert!(
        started.elapsed().as_secs() < 10,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn class6_mnist_refuses_zero_or_absurd_replica_counts() {
    for count in ["0", "1000000", "two"] {
        let out = std::process::Command::new(example("mnist"))
            .args(["--replicas", count, "--epochs", "1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--replicas {count}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--replicas"), "--replicas {count}: {err}");
    }
}

#[test]
fn class5_mnist_example_reports_zero_sized_images() {
    let dir = tmp_dir("mnist-zero");
    for (name, dims) in [
        ("train-images-idx3-ubyte", vec![2, 0, 0]),
        ("t10k-images-idx3-ubyte", vec![2, 0, 0]),
        ("train-labels-idx1-ubyte", vec![2]),
        ("t10k-labels-idx1-ubyte", vec![2]),
    ] {
        let data = if dims.len() == 1 { vec![1, 2] } else { vec![] };
        write_idx(&dir.join(name), dims, data);
    }
    let out = std::process::Command::new(example("mnist"))
        .args(["--epochs", "1", "--data"])
        .arg(&dir)
        .arg("--out")
        .arg(dir.join("out"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("hold nothing"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// Class 7: duplicate state_dict names.

#[test]
fn class7_duplicate_child_names_are_rejected_by_add_named() {
    let err = Sequential::<f32>::new()
        .add_named("fc", Linear::new(LinearConfig::new(2, 2)).unwrap())
        .unwrap()
        .add_named("fc", Linear::new(LinearConfig::new(2, 2)).unwrap())
        .err()
        .unwrap();
    assert!(is_config(&err) && err.to_string().contains("`fc`"), "{err}");
    // Dropout holds a generator saved under its name in checkpoints.
    let seq = Sequential::<f32>::new()
        .add_named("drop", Dropout::new(DropoutConfig::new().p(0.5)).unwrap())
        .unwrap()
        .add_named("drop", Dropout::new(DropoutConfig::new().p(0.5)).unwrap());
    assert!(seq.is_err());
    // Stateless layers may share a name (torchvision's Bottleneck reuses one `relu`).
    let seq = Sequential::<f32>::new()
        .add_named("relu", ReLU::new())
        .unwrap()
        .add_named("relu", ReLU::new());
    assert!(seq.is_ok());
    // Numbers other than the child's own index would collide with a later `add`.
    let seq = Sequential::<f32>::new().add_named("1", ReLU::new());
    assert!(seq.is_err());
    assert!(Sequential::<f32>::new().add_named("0", ReLU::new()).is_ok());
    assert!(Sequential::<f32>::new()
        .add_named("a.b", ReLU::new())
        .is_err());
    assert!(Sequential::<f32>::new().add_named("", ReLU::new()).is_err());
}

#[test]
fn class7_duplicate_or_invalid_block_child_names_are_rejected_at_construction() {
    use convnet::blocks::{Inception, Residual};
    let lin = || Linear::<f32>::new(LinearConfig::new(2, 2)).unwrap();
    // Two Inception branches named alike, even stateless ones: the second is refused.
    let err = Inception::new()
        .branch("a", lin())
        .unwrap()
        .branch("a", lin())
        .err()
        .unwrap();
    assert!(is_config(&err), "{err}");
    assert!(err.to_string().contains("two branches named `a`"), "{err}");
    assert!(Inception::<f32>::new()
        .branch("p", ReLU::new())
        .unwrap()
        .branch("p", ReLU::new())
        .is_err());
    for bad in ["", "a.b"] {
        let err = Inception::new().branch(bad, lin()).err().unwrap();
        assert!(
            is_config(&err) && err.to_string().contains("no `.`"),
            "{err}"
        );
        let err = Residual::new(lin()).shortcut(bad, lin()).err().unwrap();
        assert!(
            is_config(&err) && err.to_string().contains("no `.`"),
            "{err}"
        );
    }
    // A shortcut named like a child of the body: both would write `downsample.weight`.
    let body = Sequential::new().add_named("downsample", lin()).unwrap();
    let err = Residual::new(body)
        .shortcut("downsample", lin())
        .err()
        .unwrap();
    assert!(is_config(&err), "{err}");
    assert!(err.to_string().contains("downsample.weight"), "{err}");
    // A `post` with parameters named like the body's top-level ones.
    let err = Residual::new(lin()).post(lin()).err().unwrap();
    assert!(
        is_config(&err) && err.to_string().contains("\"weight\""),
        "{err}"
    );
    // Distinct names are fine, and a stateless post never collides.
    let ok = Residual::new(Sequential::new().add_named("body", lin()).unwrap())
        .shortcut("downsample", lin())
        .and_then(|b| b.post(ReLU::new()));
    assert!(ok.is_ok());
    let ok = Inception::new()
        .branch("a", lin())
        .and_then(|b| b.branch("b", lin()));
    assert!(ok.is_ok());
}

/// A container that lists its one child twice: its `state_dict` names every key twice.
struct ListsTwice(Linear<f32>);

impl Layer<f32> for ListsTwice {
    fn kind(&self) -> &'static str {
        "ListsTwice"
    }
    fn output_shape(&self, input: &[usize]) -> convnet::Result<Vec<usize>> {
        self.0.output_shape(input)
    }
    fn forward(&mut self, input: &Tensor<f32>) -> convnet::Result<Tensor<f32>> {
        self.0.forward(input)
    }
    fn infer(&self, input: &Tensor<f32>) -> convnet::Result<Tensor<f32>> {
        self.0.infer(input)
    }
    fn backward(&mut self, grad: &Tensor<f32>) -> convnet::Result<Tensor<f32>> {
        self.0.backward(grad)
    }
    fn visit(&self, f: &mut dyn FnMut(&str, convnet::layer::Slot<'_, f32>)) {
        self.0.visit(&mut |n, s| f(&format!("a.{n}"), s));
        self.0.visit(&mut |n, s| f(&format!("a.{n}"), s));
    }
}

#[test]
fn class7_duplicate_names_are_rejected_at_save_time() {
    // A container of the user's own that names its children alike (here one that lists its
    // child twice) is caught when saving.
    let block = ListsTwice(Linear::<f32>::new(LinearConfig::new(2, 2)).unwrap());
    let dir = tmp_dir("dups");
    let path = dir.join("dup.safetensors");
    let err = save_weights(&block, &path).unwrap_err().to_string();
    assert!(
        err.contains("more than once") && err.contains("dup.safetensors"),
        "{err}"
    );
    assert!(!path.exists(), "nothing is written");
    std::fs::remove_dir_all(&dir).ok();
}

// ---------------------------------------------------------------------------------------
// Class 8: metrics that cannot fail.

#[test]
fn class8_ties_and_nan_count_as_misses() {
    let constant = Tensor::<f32>::from_elem(IxDyn(&[4, 10]), 0.3);
    assert_eq!(top_k_hits(&constant, &[0, 1, 2, 3], 1), 0);
    assert_eq!(top_k_hits(&constant, &[0, 1, 2, 3], 5), 0);
    let nan = Tensor::<f32>::from_elem(IxDyn(&[2, 10]), f32::NAN);
    assert_eq!(top_k_hits(&nan, &[0, 1], 1), 0);
    let mut one_nan = Tensor::<f32>::zeros(IxDyn(&[1, 3]));
    one_nan[[0, 0]] = 5.0;
    one_nan[[0, 2]] = f32::NAN;
    assert_eq!(top_k_hits(&one_nan, &[0], 1), 0);
    // A clear winner still counts, and top-2 counts the runner-up.
    let x = ndarray::array![[0.1f32, 0.9, 0.5]].into_dyn();
    assert_eq!(top_k_hits(&x, &[1], 1), 1);
    assert_eq!(top_k_hits(&x, &[2], 1), 0);
    assert_eq!(top_k_hits(&x, &[2], 2), 1);
    assert_eq!(top_k_hits(&x, &[7], 3), 0, "labels out of range are misses");
    // predictions follow torch.argmax: NaN wins.
    assert_eq!(convnet::train::predictions(&one_nan), vec![2]);
}

// ---------------------------------------------------------------------------------------
// The library writes nothing to stdout: progress goes to stderr or a callback.

static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn progress_can_go_to_a_callback() {
    fn count(_: &str, done: usize, total: usize, _: &str) {
        assert!(done <= total);
        CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let images = ImageSet::new(vec![7; 12], vec![0, 1, 0, 1], 1, 3, 2).unwrap();
    let loader = DataLoader::new(&images, LoaderConfig::new(1)).unwrap();
    let net = Sequential::new()
        .add(Flatten::new(FlattenConfig::new()).unwrap())
        .add(Linear::new(LinearConfig::new(3, 2).seed(1)).unwrap());
    let mut t = Trainer::<f64, _>::new(net, Sgd::new(SgdConfig::new(0.1)).unwrap())
        .with_progress(ProgressStyle::Callback(count));
    t.train_epoch(&loader).unwrap();
    assert_eq!(CALLS.load(std::sync::atomic::Ordering::SeqCst), 4);
}

// ---------------------------------------------------------------------------------------
// Class 14: panics found by the unwrap/expect/indexing pass (docs/ERRORS.md, class 14).

/// Replaces the parameter (or buffer) named `key` of `layer` by zeros of shape `shape`, as a
/// caller can through `visit_mut`; `grad` replaces the parameter's gradient instead.
fn replace(layer: &mut dyn Layer<f64>, key: &str, shape: &[usize], grad: bool) {
    layer.visit_mut(&mut |name, slot| {
        if name != key {
            return;
        }
        let fresh = Tensor::zeros(IxDyn(shape));
        match slot {
            SlotMut::Param(p) if grad => p.grad = fresh,
            SlotMut::Param(p) => p.value = fresh,
            SlotMut::Buffer(b) => *b = fresh,
        }
    });
}

fn is_shape_of(e: &Error, what: &str) -> bool {
    matches!(e, Error::ShapeMismatch { layer, .. } if layer.contains(what))
}

#[test]
fn class14_batch_norm_with_mis_shaped_parameters_is_a_shape_error() {
    // The per-channel loops read weight, bias and the running statistics at every channel:
    // one shorter than C was read past its end (a panic).
    let x = Tensor::<f64>::ones(IxDyn(&[2, 3, 2, 2]));
    for (key, grad) in [
        ("weight", false),
        ("bias", false),
        ("running_mean", false),
        ("running_var", false),
        ("weight", true),
    ] {
        let mut bn = BatchNorm2d::<f64>::new(BatchNorm2dConfig::new(3)).unwrap();
        let y = bn.forward(&x).unwrap();
        replace(&mut bn, key, &[2], grad);
        let err = bn.backward(&y).unwrap_err();
        assert!(is_shape_of(&err, key), "{key} backward: {err}");
        let err = bn.forward(&x).unwrap_err();
        assert!(is_shape_of(&err, key), "{key} forward: {err}");
        bn.set_mode(Mode::Eval);
        let err = bn.infer(&x).unwrap_err();
        assert!(is_shape_of(&err, key), "{key} infer: {err}");
        // Fused inference declines and reports the same error.
        let mut seq = Sequential::new()
            .add(Conv2d::new(Conv2dConfig::new(3, 3, 1)).unwrap())
            .add(bn);
        seq.set_mode(Mode::Eval);
        assert!(seq.infer(&x).is_err(), "{key}: fused inference");
    }
}

#[test]
fn class14_conv_gradient_of_the_wrong_shape_or_layout() {
    let x = Tensor::<f64>::ones(IxDyn(&[1, 2, 4, 4]));
    let cfg = Conv2dConfig::new(2, 3, 3).seed(4);
    // A weight gradient of another shape was handed to the kernel, whose length assert
    // panicked; now it is named.
    for (key, shape) in [("weight", vec![3, 2, 3]), ("bias", vec![2])] {
        let mut conv = Conv2d::<f64>::new(cfg).unwrap();
        let y = conv.forward(&x).unwrap();
        replace(&mut conv, key, &shape, true);
        let err = conv.backward(&y).unwrap_err();
        assert!(is_shape_of(&err, &format!("{key} gradient")), "{err}");
    }
    // A gradient of the right shape in another memory layout (a transposed copy) was an
    // `expect` failure; it is re-laid out and accumulates as a standard one does.
    let mut plain = Conv2d::<f64>::new(cfg).unwrap();
    let mut odd = Conv2d::<f64>::new(cfg).unwrap();
    let y = plain.forward(&x).unwrap();
    odd.forward(&x).unwrap();
    odd.visit_mut(&mut |name, slot| {
        if let ("weight", SlotMut::Param(p)) = (name, slot) {
            p.grad = Tensor::zeros(IxDyn(&[3, 3, 2, 3])).reversed_axes();
            assert!(!p.grad.is_standard_layout() && p.grad.shape() == [3, 2, 3, 3]);
        }
    });
    plain.backward(&y).unwrap();
    odd.backward(&y).unwrap();
    assert_eq!(plain.weight().grad, odd.weight().grad);
}

/// Identity forward; its backward sends a gradient of shape `shape`, whatever came in.
struct WrongGrad(Vec<usize>);

impl Layer<f64> for WrongGrad {
    fn kind(&self) -> &'static str {
        "WrongGrad"
    }
    fn output_shape(&self, input: &[usize]) -> convnet::Result<Vec<usize>> {
        Ok(input.to_vec())
    }
    fn forward(&mut self, input: &Tensor<f64>) -> convnet::Result<Tensor<f64>> {
        Ok(input.clone())
    }
    fn infer(&self, input: &Tensor<f64>) -> convnet::Result<Tensor<f64>> {
        Ok(input.clone())
    }
    fn backward(&mut self, _: &Tensor<f64>) -> convnet::Result<Tensor<f64>> {
        Ok(Tensor::ones(IxDyn(&self.0)))
    }
}

/// Adds its inputs forward; its backward sends one gradient only.
struct OneGrad;

impl Merge<f64> for OneGrad {
    fn kind(&self) -> &'static str {
        "OneGrad"
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> convnet::Result<Vec<usize>> {
        Ok(inputs[0].to_vec())
    }
    fn forward(&mut self, inputs: &[&Tensor<f64>]) -> convnet::Result<Tensor<f64>> {
        self.infer(inputs)
    }
    fn infer(&self, inputs: &[&Tensor<f64>]) -> convnet::Result<Tensor<f64>> {
        Ok(inputs[0] + inputs[1])
    }
    fn backward(&mut self, g: &Tensor<f64>) -> convnet::Result<Vec<Tensor<f64>>> {
        Ok(vec![g.clone()])
    }
}

#[test]
fn class14_graph_checks_the_gradients_its_nodes_send_back() {
    let x = Tensor::<f64>::ones(IxDyn(&[1, 4]));
    // x feeds `bad` and `relu`: the two gradients for x are summed. One of shape [1, 3] made
    // the sum panic; one of shape [1, 1] was broadcast into a silently wrong gradient.
    for shape in [vec![1, 3], vec![1, 1]] {
        let mut g = GraphBuilder::<f64>::new("x")
            .layer("bad", "x", WrongGrad(shape.clone()))
            .layer("relu", "x", ReLU::new())
            .merge("add", &["bad", "relu"], Add::new())
            .output("add")
            .build(&[1, 4])
            .unwrap();
        let y = g.forward(&x).unwrap();
        let err = g.backward(&y).unwrap_err();
        assert!(is_shape_of(&err, "`bad`"), "{shape:?}: {err}");
    }
    // The same in the blocks: Residual sums body and shortcut, Inception its branches.
    use convnet::blocks::{Inception, Residual};
    let mut res = Residual::new(WrongGrad(vec![1, 3]));
    let y = res.forward(&x).unwrap();
    let err = res.backward(&y).unwrap_err();
    assert!(is_shape_of(&err, "Residual"), "{err}");
    let mut inc = Inception::new()
        .branch("a", ReLU::new())
        .and_then(|b| b.branch("b", WrongGrad(vec![1, 1])))
        .unwrap();
    let x4 = Tensor::<f64>::ones(IxDyn(&[1, 2, 2, 2]));
    let y = inc.forward(&x4).unwrap();
    let err = inc.backward(&y).unwrap_err();
    assert!(is_shape_of(&err, "Inception"), "{err}");
    // A merge that sends back fewer gradients than it has inputs (they were dropped).
    let mut g = GraphBuilder::<f64>::new("x")
        .layer("relu", "x", ReLU::new())
        .merge("sum", &["x", "relu"], OneGrad)
        .output("sum")
        .build(&[1, 4])
        .unwrap();
    let y = g.forward(&x).unwrap();
    let err = g.backward(&y).unwrap_err().to_string();
    assert!(
        err.contains("returned 1 gradients for its 2 inputs"),
        "{err}"
    );
    // A forward pass that fails part-way leaves nothing for backward to mix with the last
    // pass's values.
    let mut g = GraphBuilder::<f64>::new("x")
        .layer("relu", "x", ReLU::new())
        .layer("fc", "relu", Linear::new(LinearConfig::new(4, 2)).unwrap())
        .output("fc")
        .build(&[1, 4])
        .unwrap();
    let y = g.forward(&x).unwrap();
    assert!(g.forward(&Tensor::ones(IxDyn(&[1, 5]))).is_err());
    let err = g.backward(&y).unwrap_err();
    assert!(matches!(err, Error::BackwardBeforeForward { .. }), "{err}");
}

#[test]
fn class14_gradcheck_takes_tensors_in_any_memory_layout() {
    // `check_layer` took `as_slice` of the input and gradients (an `expect` that failed on a
    // transposed input); it now reads them in row-major order whatever their layout.
    let x = ndarray::Array::from_shape_fn((3, 2), |(i, j)| i as f64 * 0.3 - j as f64)
        .into_dyn()
        .reversed_axes();
    assert!(!x.is_standard_layout());
    let report = convnet::gradcheck::check_layer(
        &mut Linear::new(LinearConfig::new(3, 2).seed(2)).unwrap(),
        &x,
        convnet::gradcheck::GradCheck::default(),
    )
    .unwrap();
    assert!(
        report.max_err < 1e-6 && report.coords == 6 + 8,
        "{report:?}"
    );
    let ys = [x.clone(), x.mapv(|v| v * 2.0)];
    let report = convnet::gradcheck::check_merge(
        &mut Add::new(),
        &ys,
        convnet::gradcheck::GradCheck::default(),
    )
    .unwrap();
    assert_eq!(report.coords, 12);
}

// ---------------------------------------------------------------------------------------
// Class 15: found by the sweep of call orders, zero sizes and huge sizes (docs/ERRORS.md).

#[test]
fn class15_padding_an_empty_image_gives_all_padding_not_a_panic() {
    // `Pad2d` cut its input into planes of H·W = 0 cells: "chunk size must be non-zero".
    let mut pad = Pad2d::<f32>::new(Pad2dConfig::new([1, 2, 0, 1]).value(3.0)).unwrap();
    for mode in [Mode::Train, Mode::Eval] {
        pad.set_mode(mode);
        let x = Tensor::<f32>::zeros(IxDyn(&[2, 2, 0, 5]));
        let y = pad.forward(&x).unwrap();
        assert_eq!(y.shape(), &[2, 2, 1, 8]);
        assert!(y.iter().all(|&v| v == 3.0));
        assert_eq!(pad.infer(&x).unwrap(), y);
        let dx = pad.backward(&Tensor::ones(IxDyn(&[2, 2, 1, 8]))).unwrap();
        assert_eq!(dx.shape(), &[2, 2, 0, 5]);
    }
}

#[test]
fn class15_an_empty_sequential_checks_its_gradient_like_any_layer() {
    // The identity handed back any gradient: before a forward, or of another shape.
    let mut id = Sequential::<f32>::new();
    let g = Tensor::<f32>::ones(IxDyn(&[2, 3]));
    let err = id.backward(&g).unwrap_err();
    assert!(matches!(err, Error::BackwardBeforeForward { .. }), "{err}");
    assert!(matches!(
        id.backward_params(&g).unwrap_err(),
        Error::BackwardBeforeForward { .. }
    ));
    id.forward(&Tensor::zeros(IxDyn(&[2, 3]))).unwrap();
    assert_eq!(id.backward(&g).unwrap(), g);
    for bad in [vec![3, 2], vec![2, 3, 1], vec![]] {
        let err = id.backward(&Tensor::ones(IxDyn(&bad))).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        assert!(err.to_string().contains("[2, 3]"), "{err}");
        assert!(id.backward_params(&Tensor::ones(IxDyn(&bad))).is_err());
        assert!(id.backward_owned(Tensor::ones(IxDyn(&bad))).is_err());
    }
}

#[test]
fn class15_loader_sizes_near_usize_max_are_errors_or_work() {
    let data = ImageSet::new(vec![7; 12], vec![0, 1, 0, 1], 1, 3, 2).unwrap();
    // `2 * max_shift + 1` overflowed (a panic in debug builds, garbage shifts in release).
    for shift in [usize::MAX, usize::MAX / 2, (1 << 28) + 1] {
        let err = DataLoader::new(&data, LoaderConfig::new(2).max_shift(shift))
            .err()
            .unwrap();
        assert!(
            is_config(&err) && err.to_string().contains("max_shift"),
            "{err}"
        );
    }
    // A batch size of usize::MAX: one batch of everything; the position of the batch after
    // it overflowed (`start + batch_size`).
    let loader = DataLoader::new(&data, LoaderConfig::new(usize::MAX)).unwrap();
    assert_eq!(loader.num_batches(), 1);
    let batches: Vec<_> = loader
        .epoch::<f32>(0)
        .collect::<convnet::Result<_>>()
        .unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].labels, [0, 1, 0, 1]);
}

/// Four samples of one value each, for a model with a huge class count.
struct OneValue;

impl convnet::data::Dataset for OneValue {
    fn len(&self) -> usize {
        4
    }
    fn sample_shape(&self) -> Vec<usize> {
        vec![1]
    }
    fn num_classes(&self) -> usize {
        2
    }
    fn sample(&self, index: usize, out: &mut [f32]) -> convnet::Result<usize> {
        out.fill(index as f32);
        Ok(index % 2)
    }
}

#[test]
fn class15_evaluating_a_model_of_very_many_classes_skips_the_confusion_matrix() {
    // 2^24 classes fit the size limit (a Linear(1 -> 2^24)), but the confusion matrix of
    // 2^48 counters did not: the process aborted allocating it.
    let model =
        Linear::<f32>::new(LinearConfig::new(1, 1 << 24).init(Init::Constant(0.0))).unwrap();
    let loader = DataLoader::new(&OneValue, LoaderConfig::new(4)).unwrap();
    let stats = convnet::train::evaluate(&model, &loader, ProgressStyle::Off).unwrap();
    assert_eq!(stats.total, 4);
    assert!(stats.confusion.is_empty());
    assert!(stats.loss.is_finite());
    // A model of a few classes still gets its matrix.
    let small = Linear::<f32>::new(LinearConfig::new(1, 3)).unwrap();
    let stats = convnet::train::evaluate(&small, &loader, ProgressStyle::Off).unwrap();
    assert_eq!(stats.confusion.len(), 3);
    assert_eq!(stats.confusion.iter().flatten().sum::<usize>(), 4);
}

#[cfg(feature = "image")]
#[test]
fn class15_transforms_to_absurd_sizes_are_errors_not_aborts() {
    use convnet::rng::Rng64;
    use convnet::vision::transforms::{CenterCrop, RandomResizedCrop, Resize};
    use convnet::vision::Image;
    let img = Image::from_rgb(4, 3, vec![9; 36]).unwrap();
    let mut rng = Rng64::seed(1);
    // Each used to allocate `width * height * 3` bytes unchecked: an overflow, or an abort.
    let errs = [
        CenterCrop::new(1 << 40).apply(&img).unwrap_err(),
        CenterCrop::rect(usize::MAX, 2).apply(&img).unwrap_err(),
        Resize::exact(1 << 40, 1 << 40).apply(&img).unwrap_err(),
        Resize::exact(usize::MAX, 1).apply(&img).unwrap_err(),
        Resize::new(1 << 40).apply(&img).unwrap_err(),
        RandomResizedCrop::new(1 << 40)
            .apply(&img, &mut rng)
            .unwrap_err(),
        img.crop(0, 0, 1 << 32, 1 << 32).unwrap_err(),
        // 2^62 x 4 x 3 bytes wraps to 0: an empty buffer passed for a huge image.
        Image::from_rgb(1 << 62, 4, Vec::new()).unwrap_err(),
    ];
    for e in errs {
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
        assert!(e.to_string().contains("limit"), "{e}");
    }
    // Sizes that fit still work, padded crops included.
    let c = CenterCrop::rect(6, 1).apply(&img).unwrap();
    assert_eq!((c.width(), c.height()), (6, 1));
}

#[test]
fn class15_a_loader_without_a_single_batch_is_refused() {
    // An empty dataset, or drop_last with fewer samples than a batch: train_epoch and
    // evaluate ran no batch and reported a loss of 0 and an accuracy of 0 as if they had.
    let empty = ImageSet::new(vec![], vec![], 2, 2, 10).unwrap();
    let err = DataLoader::new(&empty, LoaderConfig::new(4)).err().unwrap();
    assert!(
        is_config(&err) && err.to_string().contains("holds no samples"),
        "{err}"
    );
    let four = ImageSet::new(vec![1; 16], vec![0, 1, 2, 3], 2, 2, 10).unwrap();
    let err = DataLoader::new(&four, LoaderConfig::new(8).drop_last(true))
        .err()
        .unwrap();
    assert!(
        is_config(&err) && err.to_string().contains("batch size of 8 over 4 samples"),
        "{err}"
    );
    // Without drop_last, or with a batch that fits, there is a batch.
    assert_eq!(
        DataLoader::new(&four, LoaderConfig::new(8))
            .unwrap()
            .num_batches(),
        1
    );
    assert_eq!(
        DataLoader::new(&four, LoaderConfig::new(4).drop_last(true))
            .unwrap()
            .num_batches(),
        1
    );
}

#[cfg(unix)]
#[test]
fn class15_readers_refuse_devices_and_named_pipes() {
    // Reading /dev/zero (or a link to it named like a weights file) never ended: memory grew
    // until the process was killed. A named pipe without a writer waited forever.
    let dir = tmp_dir("devices");
    let link = dir.join("weights.safetensors");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let mut paths = vec![PathBuf::from("/dev/zero"), link];
    let fifo = dir.join("pipe.pth");
    let _ = std::fs::remove_file(&fifo);
    if std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success())
    {
        paths.push(fifo);
    }
    for path in &paths {
        let mut model = small_net(1);
        let mut trainer = Trainer::new(small_net(1), Sgd::new(SgdConfig::new(0.1)).unwrap())
            .with_progress(ProgressStyle::Off);
        #[cfg_attr(not(feature = "image"), allow(unused_mut))]
        let mut errs = vec![
            load_weights(&mut model, path).unwrap_err(),
            convnet::io::read_tensors::<f32>(path).unwrap_err(),
            convnet::io::read_pth::<f32>(path, None).unwrap_err(),
            convnet::onnx::load_onnx::<f32>(path).unwrap_err(),
            trainer.load_checkpoint(path).unwrap_err(),
            convnet::data::read_idx(path).unwrap_err(),
        ];
        #[cfg(feature = "image")]
        {
            use convnet::vision::{decode_file, Cifar, CifarKind};
            errs.push(decode_file(path).unwrap_err());
            errs.push(Cifar::open(CifarKind::Ten, &[path]).unwrap_err());
        }
        for e in errs {
            assert!(matches!(e, Error::File { .. }), "{}: {e}", path.display());
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

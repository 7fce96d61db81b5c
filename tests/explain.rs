//! Saliency and Grad-CAM against PyTorch: `scripts/make_explain_fixture.py` computes both with
//! autograd and module hooks (and `F.interpolate` for the upsampling) on a small CNN, on a
//! tiny ResNet with an Inception-style module (as a `Sequential` and as a `Graph`), and — an
//! ignored test, its 94 MB fixture is generated on demand — on torchvision's ResNet-18;
//! convnet's hand-written backward must give the same maps.

use convnet::blocks::Inception;
use convnet::explain::{default_layer, grad_cam, saliency};
use convnet::io::{load_state_dict, read_tensors};
use convnet::prelude::*;
use std::path::{Path, PathBuf};

fn max_abs_diff(a: &Tensor<f64>, b: &Tensor<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn saliency_and_grad_cam_match_pytorch() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/explain/small_cnn.safetensors");
    let mut tensors = read_tensors::<f64>(&path).unwrap();
    let mut take = |name: &str| {
        let i = tensors
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} in fixture"));
        tensors.swap_remove(i).1
    };
    let image = take("input");
    let class = take("class")[[0]] as usize;
    let expected: Vec<(String, Tensor<f64>)> = [
        "saliency",
        "cam4.weights",
        "cam4.coarse",
        "cam4.heat",
        "cam2.weights",
        "cam2.coarse",
        "cam2.heat",
    ]
    .iter()
    .map(|n| (n.to_string(), take(n)))
    .collect();
    let want = |name: &str| &expected.iter().find(|(n, _)| n == name).unwrap().1;

    let mut net = Sequential::<f64>::new()
        .add(Conv2d::new(Conv2dConfig::new(3, 4, 3).padding(1)).unwrap())
        .add(ReLU::new())
        .add(MaxPool2d::new(MaxPool2dConfig::new(2)).unwrap())
        .add(Conv2d::new(Conv2dConfig::new(4, 6, 3).padding(1)).unwrap())
        .add(ReLU::new())
        .add(Flatten::new(FlattenConfig::new()).unwrap())
        .add(Linear::new(LinearConfig::new(6 * 4 * 3, 5)).unwrap());
    load_state_dict(&mut net, tensors, "small_cnn.safetensors").unwrap();

    let s = saliency(&mut net, &image, class).unwrap();
    let err = max_abs_diff(&s, want("saliency"));
    assert!(err < 1e-12, "saliency differs from PyTorch by {err}");

    for at in ["4", "2"] {
        let cam = grad_cam(&mut net, at, &image, class).unwrap();
        let weights =
            Tensor::from_shape_vec(ndarray::IxDyn(&[cam.weights.len()]), cam.weights.clone())
                .unwrap();
        for (what, got) in [
            ("weights", &weights),
            ("coarse", &cam.coarse),
            ("heat", &cam.heat),
        ] {
            let err = max_abs_diff(got, want(&format!("cam{at}.{what}")));
            assert!(
                err < 1e-12,
                "Grad-CAM at {at}: {what} differs from PyTorch by {err}"
            );
        }
        assert!(cam.heat.iter().any(|&v| v > 0.0));
    }
}

/// A fixture's tensors split into the model's state dict and the rest (input, class,
/// saliency, `cam:LAYER.weights|coarse|heat`).
struct Fixture {
    state: Vec<(String, Tensor<f64>)>,
    rest: Vec<(String, Tensor<f64>)>,
}

impl Fixture {
    fn read(path: &Path) -> Fixture {
        let (rest, state) = read_tensors::<f64>(path)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .partition(|(n, _)| {
                n.starts_with("cam:") || ["input", "class", "saliency"].contains(&n.as_str())
            });
        Fixture { state, rest }
    }

    fn get(&self, name: &str) -> &Tensor<f64> {
        &self
            .rest
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} in fixture"))
            .1
    }

    fn class(&self) -> usize {
        self.get("class")[[0]] as usize
    }

    /// Saliency and Grad-CAM at each layer of `layers` against PyTorch's: the largest
    /// difference below `tol` times the largest value.
    fn check(&self, model: &mut dyn Layer<f64>, layers: &[&str], tol: f64) {
        let (image, class) = (self.get("input"), self.class());
        let s = saliency(model, image, class).unwrap();
        let want = self.get("saliency");
        let err = max_abs_diff(&s, want);
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        eprintln!("saliency: max |convnet - PyTorch| = {err:.1e} (largest value {scale:.1e})");
        assert!(
            scale > 0.0 && err < tol * scale,
            "saliency differs from PyTorch by {err}"
        );
        for at in layers {
            let cam = grad_cam(model, at, image, class).unwrap();
            let weights =
                Tensor::from_shape_vec(ndarray::IxDyn(&[cam.weights.len()]), cam.weights.clone())
                    .unwrap();
            for (what, got) in [
                ("weights", &weights),
                ("coarse", &cam.coarse),
                ("heat", &cam.heat),
            ] {
                let want = self.get(&format!("cam:{at}.{what}"));
                let err = max_abs_diff(got, want);
                let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                eprintln!(
                    "Grad-CAM at {at}, {what}: max |diff| = {err:.1e} (largest value {scale:.1e})"
                );
                assert!(
                    scale > 0.0 && err < tol * scale,
                    "Grad-CAM at {at}: {what} differs from PyTorch by {err} (largest value {scale})"
                );
            }
            assert!(cam.heat.iter().any(|&v| v > 0.0), "{at}: an all-zero map");
        }
    }
}

const TINY_LAYERS: [&str; 5] = [
    "mix",
    "layer1",
    "layer1.0.bn2",
    "layer1.0.downsample",
    "mix.branch2.2",
];

/// The layers of scripts/make_explain_fixture.py's tiny ResNet, by name.
fn tiny_layers() -> Vec<(&'static str, Box<dyn Layer<f64>>)> {
    let mix = Inception::new()
        .branch("branch1", Conv2d::new(Conv2dConfig::new(12, 4, 1)).unwrap())
        .unwrap()
        .branch(
            "branch2",
            Sequential::new()
                .add(Conv2d::new(Conv2dConfig::new(12, 4, 1)).unwrap())
                .add(ReLU::new())
                .add(Conv2d::new(Conv2dConfig::new(4, 6, 3).padding(1)).unwrap()),
        )
        .unwrap();
    let block = convnet::zoo::basic_block::<f64>(8, 12, 2, true).unwrap();
    vec![
        (
            "conv1",
            Box::new(Conv2d::new(Conv2dConfig::new(3, 8, 3).padding(1).bias(false)).unwrap()),
        ),
        (
            "bn1",
            Box::new(BatchNorm2d::new(BatchNorm2dConfig::new(8)).unwrap()),
        ),
        ("relu", Box::new(ReLU::new())),
        ("layer1", Box::new(Sequential::new().add(block))),
        ("mix", Box::new(mix)),
        (
            "avgpool",
            Box::new(AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new([1, 1])).unwrap()),
        ),
        (
            "flatten",
            Box::new(Flatten::new(FlattenConfig::new()).unwrap()),
        ),
        (
            "fc",
            Box::new(Linear::new(LinearConfig::new(10, 5)).unwrap()),
        ),
    ]
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/explain")
        .join(name)
}

#[test]
fn grad_cam_inside_blocks_matches_pytorch_hooks_in_a_sequential_and_a_graph() {
    let fx = Fixture::read(&fixture("tiny_resnet.safetensors"));

    let mut seq = tiny_layers()
        .into_iter()
        .fold(Sequential::new(), |net, (name, layer)| {
            net.add_named(name, layer).unwrap()
        });
    load_state_dict(&mut seq, fx.state.clone(), "tiny_resnet.safetensors").unwrap();
    assert_eq!(default_layer(&mut seq, fx.get("input")).unwrap(), "mix");
    fx.check(&mut seq, &TINY_LAYERS, 1e-10);

    let mut builder = GraphBuilder::<f64>::new("input");
    let mut from = "input";
    for (name, layer) in tiny_layers() {
        builder = builder.boxed_layer(name, from, layer);
        from = name;
    }
    let mut graph = builder.output("fc").build(&[1, 3, 12, 10]).unwrap();
    load_state_dict(&mut graph, fx.state.clone(), "tiny_resnet.safetensors").unwrap();
    assert_eq!(default_layer(&mut graph, fx.get("input")).unwrap(), "mix");
    fx.check(&mut graph, &TINY_LAYERS, 1e-10);
}

/// torchvision's ResNet-18 with random weights, in float64. The fixture is 94 MB, so it is not
/// in the repository; write it first:
///
/// ```text
/// /root/torchenv/bin/python scripts/make_explain_fixture.py --only tiny --resnet18 target/explain-fixtures
/// cargo test --release --test explain -- --ignored
/// ```
///
/// (`CONVNET_RESNET18_EXPLAIN` may name the file instead.)
#[test]
#[ignore = "needs target/explain-fixtures/resnet18_explain.safetensors (scripts/make_explain_fixture.py --resnet18)"]
fn resnet18_grad_cam_and_saliency_match_pytorch() {
    let path = std::env::var_os("CONVNET_RESNET18_EXPLAIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/explain-fixtures/resnet18_explain.safetensors")
        });
    assert!(
        path.is_file(),
        "{} is missing: run scripts/make_explain_fixture.py --resnet18 {}",
        path.display(),
        path.parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    );
    let fx = Fixture::read(&path);
    let mut net = convnet::zoo::resnet18::<f64>(1000).unwrap();
    load_state_dict(&mut net, fx.state.clone(), "resnet18_explain.safetensors").unwrap();
    assert_eq!(default_layer(&mut net, fx.get("input")).unwrap(), "layer4");
    fx.check(
        &mut net,
        &["layer4", "layer3.1.conv2", "layer2.0.downsample"],
        1e-9,
    );
}

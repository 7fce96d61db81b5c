//! Saliency and Grad-CAM against PyTorch: `scripts/make_explain_fixture.py` computes both with
//! autograd (and `F.interpolate` for the upsampling) on a small CNN; convnet's hand-written
//! backward must give the same maps.

use convnet::explain::{grad_cam, saliency};
use convnet::io::{load_state_dict, read_tensors};
use convnet::prelude::*;
use std::path::Path;

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

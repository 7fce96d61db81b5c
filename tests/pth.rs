//! PyTorch checkpoints written by real `torch.save` (`scripts/make_pth_fixtures.py`, fixtures in
//! tests/fixtures/pth/) load into the library's models and give PyTorch's outputs; damaged and
//! malicious files are typed errors.

use convnet::io::{
    load_pth_weights, load_state_dict, load_weights, load_weights_from_bytes, read_pth,
    read_tensors, state_dict, PthError, PthFile,
};
use convnet::prelude::*;
use convnet::zoo::{basic_block, lenet5_modern};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pth")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("convnet-pth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A tensor of the expected-outputs file, in `T` (the file holds float32 and float64 copies).
fn expected<T: Float>(name: &str) -> Tensor<T> {
    read_tensors::<T>(&fixture("expected.safetensors"))
        .unwrap()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in expected.safetensors"))
        .1
}

/// max |ours - torch| / max |torch| must not exceed `tol`.
fn assert_close<T: Float>(ours: &Tensor<T>, torch: &Tensor<T>, tol: f64, what: &str) {
    assert_eq!(ours.shape(), torch.shape(), "{what}");
    let scale = torch.iter().fold(0.0f64, |m, x| m.max(x.as_f64().abs()));
    let err = ours
        .iter()
        .zip(torch.iter())
        .fold(0.0f64, |m, (a, b)| m.max((a.as_f64() - b.as_f64()).abs()));
    assert!(scale > 0.1, "{what}: a degenerate reference");
    assert!(
        err / scale <= tol,
        "{what}: relative error {:.3e} > {tol:.0e}",
        err / scale
    );
}

/// The tiny ResNet of the fixture script: torchvision's names and BasicBlocks.
fn resnet_tiny<T: Float>() -> Sequential<T> {
    Sequential::new()
        .add_named(
            "conv1",
            Conv2d::new(Conv2dConfig::new(3, 4, 3).padding(1).bias(false)).unwrap(),
        )
        .unwrap()
        .add_named("bn1", BatchNorm2d::new(BatchNorm2dConfig::new(4)).unwrap())
        .unwrap()
        .add_named("relu", ReLU::new())
        .unwrap()
        .add_named(
            "layer1",
            Sequential::new().add(basic_block(4, 4, 1, false).unwrap()),
        )
        .unwrap()
        .add_named(
            "layer2",
            Sequential::new().add(basic_block(4, 8, 2, true).unwrap()),
        )
        .unwrap()
        .add_named(
            "avgpool",
            AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new([1, 1])).unwrap(),
        )
        .unwrap()
        .add_named("flatten", Flatten::new(FlattenConfig::new()).unwrap())
        .unwrap()
        .add_named("fc", Linear::new(LinearConfig::new(8, 10)).unwrap())
        .unwrap()
}

fn output<T: Float>(model: &mut dyn Layer<T>, input: &str) -> Tensor<T> {
    model.set_mode(Mode::Eval);
    model.forward(&expected::<T>(input)).unwrap()
}

fn loaded_resnet<T: Float>(file: &str) -> Sequential<T> {
    let mut model = resnet_tiny::<T>();
    load_weights(&mut model, &fixture(file)).unwrap();
    model
}

#[test]
fn half_precision_lenet_gives_pytorchs_outputs() {
    let mut m32 = lenet5_modern::<f32>(10).unwrap();
    load_weights(&mut m32, &fixture("lenet5_mnist_f16.pth")).unwrap();
    let y = output(&mut m32, "lenet.input");
    assert_close(&y, &expected("lenet_f16.out32"), 1e-5, "LeNet-5 f16 -> f32");

    let mut m64 = lenet5_modern::<f64>(10).unwrap();
    load_weights(&mut m64, &fixture("lenet5_mnist_f16.pth")).unwrap();
    let y = output(&mut m64, "lenet.input");
    assert_close(
        &y,
        &expected("lenet_f16.out64"),
        1e-12,
        "LeNet-5 f16 -> f64",
    );

    // Widening float16 is exact, so the f32 and f64 models hold the same numbers.
    for ((n32, a), (n64, b)) in state_dict(&m32).into_iter().zip(state_dict(&m64)) {
        assert_eq!(n32, n64);
        assert!(
            a.iter().zip(b.iter()).all(|(x, y)| *x as f64 == *y),
            "{n32}"
        );
    }
}

#[test]
fn strided_resnet_checkpoint_gives_pytorchs_outputs() {
    let mut m32 = loaded_resnet::<f32>("resnet_tiny.pth");
    let y = output(&mut m32, "resnet.input");
    assert_close(&y, &expected("resnet.out32"), 1e-5, "ResNet f32");
    let mut m64 = loaded_resnet::<f64>("resnet_tiny.pth");
    let y = output(&mut m64, "resnet.input");
    assert_close(
        &y,
        &expected("resnet.out64"),
        1e-12,
        "ResNet f32 weights, f64 model",
    );

    // The strided tensors, read element by element: fc.weight was saved transposed
    // (strides (1, 10)), conv1.weight at offset 37 of a storage padded with +-99, and
    // bn1.weight/bn1.bias share one storage.
    let pth = read_pth::<f32>(&fixture("resnet_tiny.pth"), None).unwrap();
    let st = read_tensors::<f32>(&fixture("resnet_tiny.safetensors")).unwrap();
    assert_eq!(
        pth, st,
        "every tensor equals its contiguous safetensors copy"
    );
    let conv1 = &pth.iter().find(|(n, _)| n == "conv1.weight").unwrap().1;
    assert!(
        conv1.iter().all(|v| v.abs() < 50.0),
        "no padding value leaked in"
    );
}

#[test]
fn pth_and_safetensors_load_to_identical_models() {
    for other in ["resnet_tiny.safetensors", "resnet_tiny_deflated.pth"] {
        assert_eq!(
            state_dict(&loaded_resnet::<f32>("resnet_tiny.pth")),
            state_dict(&loaded_resnet::<f32>(other)),
            "{other}"
        );
        assert_eq!(
            state_dict(&loaded_resnet::<f64>("resnet_tiny.pth")),
            state_dict(&loaded_resnet::<f64>(other)),
            "{other}"
        );
    }
    // The counter is an int64 tensor in the file: two training steps.
    let m = loaded_resnet::<f32>("resnet_tiny.pth");
    let counter = state_dict(&m)
        .into_iter()
        .find(|(n, _)| n == "bn1.num_batches_tracked")
        .unwrap()
        .1;
    assert_eq!(counter.shape(), &[] as &[usize]);
    assert_eq!(counter[[]], 2.0);
}

#[test]
fn bfloat16_pth_and_float16_safetensors_give_pytorchs_outputs() {
    for (file, reference) in [
        ("resnet_tiny_bf16.pth", "resnet_bf16"),
        ("resnet_tiny_f16.safetensors", "resnet_f16"),
    ] {
        let mut m32 = loaded_resnet::<f32>(file);
        let y = output(&mut m32, "resnet.input");
        assert_close(&y, &expected(&format!("{reference}.out32")), 1e-5, file);
        let mut m64 = loaded_resnet::<f64>(file);
        let y = output(&mut m64, "resnet.input");
        assert_close(&y, &expected(&format!("{reference}.out64")), 1e-12, file);
        // Rounding the weights to 16 bits moved the outputs: the references differ.
        let full = expected::<f64>("resnet.out64");
        let diff = (&full - &y).mapv(f64::abs).fold(0.0f64, |m, &x| m.max(x));
        assert!(
            diff > 1e-6,
            "{file}: the 16-bit weights had no effect ({diff:e})"
        );
    }
}

#[test]
fn nested_checkpoints_pick_their_state_dict() {
    let path = fixture("checkpoint_nested.pth");
    let file = PthFile::open(&path).unwrap();
    assert_eq!(file.tensor_dicts(), ["model"]);
    assert_eq!(file.number("epoch"), Some(3.0));
    assert_eq!(file.number("note"), None);
    assert_eq!(file.number("optimizer/param_groups"), None);

    let reference = state_dict(&loaded_resnet::<f32>("resnet_tiny.pth"));
    let mut auto = resnet_tiny::<f32>();
    load_weights(&mut auto, &path).unwrap();
    assert_eq!(state_dict(&auto), reference);
    let mut by_key = resnet_tiny::<f32>();
    load_pth_weights(&mut by_key, &path, Some("model")).unwrap();
    assert_eq!(state_dict(&by_key), reference);

    let pth_err = |key| match load_pth_weights(&mut resnet_tiny::<f32>(), &path, Some(key)) {
        Err(Error::Pth { path: p, source }) => {
            assert!(p.ends_with("checkpoint_nested.pth"), "{p:?}");
            source
        }
        other => panic!("{key}: {other:?}"),
    };
    match pth_err("modle") {
        PthError::StateDict(msg) => {
            assert!(msg.contains("no key `modle`"), "{msg}");
            assert!(
                msg.contains("`model`, `optimizer`, `epoch`, `note`"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    match pth_err("optimizer") {
        PthError::Tensor { name, message } => {
            assert_eq!(name, "state");
            assert!(message.contains("not a tensor"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(pth_err("epoch"), PthError::StateDict(m) if m.contains("is an int")));
}

#[test]
fn a_checkpoint_without_num_batches_tracked_loads_and_keeps_the_models_count() {
    let mut tensors = read_pth::<f64>(&fixture("resnet_tiny.pth"), None).unwrap();
    let before = tensors.len();
    tensors.retain(|(n, _)| !n.ends_with("num_batches_tracked"));
    assert_eq!(before - tensors.len(), 6, "six batch norms");
    let mut model = resnet_tiny::<f64>();
    // The model's own count: one training step.
    model
        .forward(&convnet::gradcheck::random_tensor(&[2, 3, 8, 8], 1))
        .unwrap();
    load_state_dict(&mut model, tensors.clone(), "old.pth").unwrap();
    for (name, t) in state_dict(&model) {
        if name.ends_with("num_batches_tracked") {
            assert_eq!(t[[]], 1.0, "{name}");
        } else {
            let file = &tensors.iter().find(|(n, _)| *n == name).unwrap().1;
            assert_eq!(&t, file, "{name}");
        }
    }
    let y = output(&mut model, "resnet.input");
    assert_close(
        &y,
        &expected("resnet.out64"),
        1e-12,
        "ResNet without counters",
    );

    // Any other missing key is still an error.
    tensors.retain(|(n, _)| n != "fc.bias");
    match load_state_dict(&mut resnet_tiny::<f64>(), tensors, "old.pth") {
        Err(Error::StateDict { missing, .. }) => assert_eq!(missing, ["fc.bias"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malicious_pickles_are_refused_and_never_run() {
    for (file, module, name, witness) in [
        (
            "evil_system.pth",
            "posix",
            "system",
            "/tmp/convnet_pth_evil_system",
        ),
        (
            "evil_eval.pth",
            "builtins",
            "eval",
            "/tmp/convnet_pth_evil_eval",
        ),
    ] {
        let mut model = lenet5_modern::<f32>(10).unwrap();
        let err = load_weights(&mut model, &fixture(file)).unwrap_err();
        let msg = err.to_string();
        match err {
            Error::Pth {
                path,
                source: PthError::ForbiddenGlobal { module: m, name: n },
            } => {
                assert!(path.ends_with(file), "{path:?}");
                assert_eq!((m.as_str(), n.as_str()), (module, name));
            }
            other => panic!("{file}: {other:?}"),
        }
        assert!(msg.contains(&format!("{module}.{name}")), "{msg}");
        assert!(
            !Path::new(witness).exists(),
            "{witness} exists: the payload ran"
        );
    }
}

#[test]
fn legacy_format_asks_for_a_resave() {
    let err = load_weights(
        &mut lenet5_modern::<f32>(10).unwrap(),
        &fixture("legacy.pth"),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            Error::Pth {
                source: PthError::LegacyFormat,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("legacy.pth") && msg.contains("torch.save"),
        "{msg}"
    );
}

#[test]
fn torchscript_archives_ask_for_a_state_dict() {
    match load_weights(
        &mut Sequential::<f32>::new().add(Linear::new(LinearConfig::new(2, 2)).unwrap()),
        &fixture("torchscript.pt"),
    ) {
        Err(Error::Pth {
            source: PthError::Unsupported(msg),
            ..
        }) => assert!(
            msg.contains("TorchScript") && msg.contains("state_dict()"),
            "{msg}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn damaged_files_are_typed_errors_naming_the_file() {
    let good = std::fs::read(fixture("resnet_tiny.pth")).unwrap();
    let zip_error = |bytes: &[u8], name: &str| {
        let path = tmp(name);
        std::fs::write(&path, bytes).unwrap();
        let err = load_weights(&mut resnet_tiny::<f32>(), &path).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
        match err {
            Error::Pth {
                source: PthError::Zip(msg),
                ..
            } => msg,
            other => panic!("{name}: {other:?}"),
        }
    };
    // A zip signature followed by garbage.
    let mut garbage = b"PK\x03\x04".to_vec();
    garbage.extend((0..500u32).map(|i| (i * 7 + 3) as u8));
    zip_error(&garbage, "garbage.pth");
    // Truncated: the end of the archive (its directory) is gone.
    for cut in [10, good.len() / 2, good.len() - 1] {
        zip_error(&good[..cut], "truncated.pth");
    }
    // One flipped bit inside a storage: the CRC check notices.
    let flipped = {
        let mut b = good.clone();
        let at = b.windows(8).position(|w| w == b"data/0FB").map(|p| p + 64);
        let at = at.unwrap_or(good.len() / 3);
        b[at] ^= 0x10;
        b
    };
    let msg = zip_error(&flipped, "flipped.pth");
    assert!(msg.contains("CRC-32"), "{msg}");
    // Not a zip at all but named .pth: a pth error, not a safetensors one.
    let msg = zip_error(b"just some text, not weights", "text.pth");
    assert!(msg.contains("zip signature"), "{msg}");
}

#[test]
fn wrong_shapes_and_models_are_state_dict_errors() {
    let path = fixture("resnet_tiny.pth");
    let mut narrow = Sequential::<f32>::new()
        .add_named(
            "conv1",
            Conv2d::new(Conv2dConfig::new(3, 4, 3).padding(1).bias(false)).unwrap(),
        )
        .unwrap()
        .add_named("fc", Linear::new(LinearConfig::new(8, 5)).unwrap())
        .unwrap();
    let before = state_dict(&narrow);
    match load_weights(&mut narrow, &path) {
        Err(Error::StateDict {
            path: p,
            missing,
            unexpected,
            mismatched,
        }) => {
            assert!(p.ends_with("resnet_tiny.pth"));
            assert!(missing.is_empty());
            assert!(unexpected.contains(&"layer2.0.downsample.0.weight".to_string()));
            assert_eq!(
                mismatched,
                [
                    ("fc.weight".to_string(), vec![5, 8], vec![10, 8]),
                    ("fc.bias".to_string(), vec![5], vec![10]),
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(state_dict(&narrow), before, "a failed load changes nothing");
}

#[test]
fn format_is_decided_by_content_not_extension() {
    let reference = state_dict(&loaded_resnet::<f32>("resnet_tiny.pth"));
    let renamed_pth = tmp("actually_a_pth.safetensors");
    std::fs::copy(fixture("resnet_tiny.pth"), &renamed_pth).unwrap();
    let renamed_st = tmp("actually_safetensors.pth");
    std::fs::copy(fixture("resnet_tiny.safetensors"), &renamed_st).unwrap();
    for path in [&renamed_pth, &renamed_st] {
        let mut m = resnet_tiny::<f32>();
        load_weights(&mut m, path).unwrap();
        assert_eq!(state_dict(&m), reference, "{}", path.display());
    }
    let bytes = std::fs::read(fixture("resnet_tiny_deflated.pth")).unwrap();
    let mut m = resnet_tiny::<f32>();
    load_weights_from_bytes(&mut m, &bytes, "in memory").unwrap();
    assert_eq!(state_dict(&m), reference);
}

//! ONNX import: models exported by `torch.onnx.export` (scripts/make_onnx_fixtures.py) against
//! PyTorch's outputs and gradients, and malformed files against typed errors.

use convnet::io::read_tensors;
use convnet::onnx::{
    load_onnx, load_onnx_bytes, load_onnx_bytes_with, load_onnx_with, OnnxError, OnnxOptions,
};
use convnet::optim::{Optimizer, Sgd, SgdConfig};
use convnet::prelude::*;
use convnet::SlotMut;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

fn expected<T: Float>() -> HashMap<String, Tensor<T>> {
    read_tensors::<T>(&fixtures().join("expected.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

/// max |a - b| / max |b|: the error relative to the tensor's scale.
fn rel_err<T: Float>(a: &Tensor<T>, b: &Tensor<T>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.as_f64().abs()));
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x.as_f64() - y.as_f64()).abs()));
    diff / scale.max(1e-30)
}

#[test]
fn lenet5_matches_pytorch() {
    let model = load_onnx::<f32>(&fixtures().join("lenet5.onnx")).unwrap();
    assert!(model.dynamic_batch());
    assert_eq!(model.input_shape, vec![None, Some(1), Some(28), Some(28)]);
    let summary = model
        .graph
        .summary(&model.input_shape_for(1).unwrap())
        .unwrap();
    assert_eq!(summary.total_params(), 61_706);
    let e = expected::<f32>();
    let y = model.graph.infer(&e["lenet5.input"]).unwrap();
    let err = rel_err(&y, &e["lenet5.output"]);
    eprintln!("lenet5: relative error {err:.2e}");
    assert!(err < 1e-4, "relative error {err}");
    // PyTorch's names survive: the weights are a torchvision-style state_dict.
    let mut names = Vec::new();
    model.graph.visit(&mut |n, _| names.push(n.to_string()));
    assert!(names.contains(&"0.weight".to_string()), "{names:?}");
    assert!(names.contains(&"11.bias".to_string()), "{names:?}");
}

#[test]
fn allops_matches_pytorch_at_any_batch_size() {
    let e = expected::<f32>();
    let model = load_onnx::<f32>(&fixtures().join("allops.onnx")).unwrap();
    let x = &e["allops.input"];
    let want = &e["allops.output"];
    let y = model.graph.infer(x).unwrap();
    let err = rel_err(&y, want);
    eprintln!("allops: relative error {err:.2e}");
    assert!(err < 1e-4, "relative error {err}");
    // The batch axis is symbolic: one image alone gives its row.
    let x1 = x.slice(ndarray::s![1..2, .., .., ..]).to_owned().into_dyn();
    let y1 = model.graph.infer(&x1).unwrap();
    let want1 = want.slice(ndarray::s![1..2, ..]).to_owned().into_dyn();
    assert!(rel_err(&y1, &want1) < 1e-4);
    // forward in evaluation mode is the same computation.
    let mut model = model;
    model.graph.set_mode(Mode::Eval);
    assert!(rel_err(&model.graph.forward(x).unwrap(), want) < 1e-4);
    // Every listed operator became a layer.
    let rows = model.graph.summary(&[2, 3, 15, 15]).unwrap().rows;
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
    for k in [
        "Conv2d",
        "ReLU",
        "LocalResponseNorm",
        "LeakyReLU",
        "Sigmoid",
        "Add",
        "Tanh",
        "MaxPool2d",
        "AvgPool2d",
        "Concat",
        "BatchNorm2d",
        "AdaptiveAvgPool2d",
        "Flatten",
        "Dropout",
        "Linear",
        "Softmax",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
}

#[test]
fn handmade_model_with_external_data_matches_the_onnx_reference() {
    let e = expected::<f64>();
    let model = load_onnx::<f64>(&fixtures().join("handmade.onnx")).unwrap();
    let y = model.graph.infer(&e["handmade.input"]).unwrap();
    let err = rel_err(&y, &e["handmade.output"]);
    eprintln!("handmade: relative error {err:.2e}");
    assert!(err < 1e-5, "relative error {err}");
}

/// Gradients of loss = Σ output · r (evaluation mode) against PyTorch autograd, for the input
/// and for every weight; MatMul's constant `w2` [in, out] is the Linear weight transposed and
/// the added `b2` its bias.
#[test]
fn allops_gradients_match_pytorch() {
    let e = expected::<f64>();
    let mut model = load_onnx::<f64>(&fixtures().join("allops.onnx")).unwrap();
    model.graph.set_mode(Mode::Eval);
    model.graph.forward(&e["allops.input"]).unwrap();
    model.graph.zero_grad();
    let dx = model.graph.backward(&e["allops.r"]).unwrap();
    let err = rel_err(&dx, &e["allops.grad_input"]);
    eprintln!("allops input gradient: relative error {err:.2e}");
    assert!(err < 1e-4, "input gradient: relative error {err}");

    let mut grads: HashMap<String, Tensor<f64>> = HashMap::new();
    model.graph.visit(&mut |name, slot| {
        if let convnet::Slot::Param(p) = slot {
            grads.insert(name.to_string(), p.grad.clone());
        }
    });
    let mut checked = 0;
    for (key, want) in &e {
        let Some(torch_name) = key.strip_prefix("allops.grad.") else {
            continue;
        };
        let (ours, got) = match torch_name {
            // The MatMul node keeps its ONNX name (its weight is not called `*.weight`).
            "w2" => ("/MatMul.weight", grads["/MatMul.weight"].t().to_owned()),
            "b2" => ("/MatMul.bias", grads["/MatMul.bias"].clone()),
            n => (n, grads.get(n).unwrap_or_else(|| panic!("no {n}")).clone()),
        };
        let err = rel_err(&got, want);
        eprintln!("gradient of {ours}: relative error {err:.2e}");
        assert!(err < 1e-4, "{ours}: relative error {err}");
        checked += 1;
    }
    assert_eq!(checked, grads.len(), "every parameter compared");
}

#[test]
fn the_imported_graph_trains() {
    let e = expected::<f64>();
    let mut model = load_onnx::<f64>(&fixtures().join("allops.onnx")).unwrap();
    model.graph.set_mode(Mode::Eval);
    let (x, r) = (&e["allops.input"], &e["allops.r"]);
    let loss = |g: &mut Graph<f64>| (g.forward(x).unwrap() * r).sum();
    let before = loss(&mut model.graph);
    model.graph.zero_grad();
    model.graph.backward(r).unwrap();
    let mut sgd = Sgd::new(SgdConfig::new(0.05)).unwrap();
    sgd.step(&mut model.graph).unwrap();
    let after = loss(&mut model.graph);
    eprintln!("loss {before} -> {after} after one SGD step");
    assert!(after < before - 1e-6, "loss {before} -> {after}");
    // Training mode runs too (batch statistics, active dropout) and back-propagates.
    model.graph.set_mode(Mode::Train);
    let y = model.graph.forward(x).unwrap();
    assert!(model
        .graph
        .backward(&y)
        .unwrap()
        .iter()
        .all(|v| v.is_finite()));
}

// ---- malformed files: a small protobuf writer builds them ----

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn int_field(out: &mut Vec<u8>, field: u32, v: i64) {
    key(out, field, 0);
    varint(out, v as u64);
}

fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn value_info(name: &str, dims: &[i64]) -> Vec<u8> {
    let mut shape = Vec::new();
    for &d in dims {
        let mut dim = Vec::new();
        if d < 0 {
            bytes_field(&mut dim, 2, b"N");
        } else {
            int_field(&mut dim, 1, d);
        }
        bytes_field(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    int_field(&mut tensor, 1, 1);
    bytes_field(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    bytes_field(&mut ty, 1, &tensor);
    let mut vi = Vec::new();
    bytes_field(&mut vi, 1, name.as_bytes());
    bytes_field(&mut vi, 2, &ty);
    vi
}

fn node(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attrs: &[Vec<u8>]) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        bytes_field(&mut n, 1, i.as_bytes());
    }
    for o in outputs {
        bytes_field(&mut n, 2, o.as_bytes());
    }
    bytes_field(&mut n, 3, name.as_bytes());
    bytes_field(&mut n, 4, op.as_bytes());
    for a in attrs {
        bytes_field(&mut n, 5, a);
    }
    n
}

fn ints_attr(name: &str, values: &[i64]) -> Vec<u8> {
    let mut a = Vec::new();
    bytes_field(&mut a, 1, name.as_bytes());
    for &v in values {
        int_field(&mut a, 8, v);
    }
    int_field(&mut a, 20, 7);
    a
}

/// A float tensor, inline (`raw`) or external (`location`, `offset`, `length`).
fn tensor(name: &str, dims: &[i64], raw: Option<&[f32]>, external: &[(&str, &str)]) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        int_field(&mut t, 1, d);
    }
    int_field(&mut t, 2, 1);
    bytes_field(&mut t, 8, name.as_bytes());
    if let Some(values) = raw {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes_field(&mut t, 9, &bytes);
    }
    for (k, v) in external {
        let mut entry = Vec::new();
        bytes_field(&mut entry, 1, k.as_bytes());
        bytes_field(&mut entry, 2, v.as_bytes());
        bytes_field(&mut t, 13, &entry);
    }
    if !external.is_empty() {
        int_field(&mut t, 14, 1);
    }
    t
}

fn model(nodes: &[Vec<u8>], inits: &[Vec<u8>], input_dims: &[i64]) -> Vec<u8> {
    let mut g = Vec::new();
    for n in nodes {
        bytes_field(&mut g, 1, n);
    }
    bytes_field(&mut g, 2, b"test");
    for t in inits {
        bytes_field(&mut g, 5, t);
    }
    bytes_field(&mut g, 11, &value_info("x", input_dims));
    bytes_field(&mut g, 12, &value_info("y", &[]));
    let mut opset = Vec::new();
    int_field(&mut opset, 2, 13);
    let mut m = Vec::new();
    int_field(&mut m, 1, 8);
    bytes_field(&mut m, 8, &opset);
    bytes_field(&mut m, 7, &g);
    m
}

/// conv (2 -> 1 channels, 3x3, `pads`) then ReLU, weights inline.
fn conv_model(pads: &[i64]) -> Vec<u8> {
    let w: Vec<f32> = (0..18).map(|i| i as f32 * 0.1 - 0.9).collect();
    model(
        &[
            node("Conv", "c", &["x", "w"], &["h"], &[ints_attr("pads", pads)]),
            node("Relu", "r", &["h"], &["y"], &[]),
        ],
        &[tensor("w", &[1, 2, 3, 3], Some(&w), &[])],
        &[-1, 2, 5, 5],
    )
}

fn onnx_error(bytes: &[u8], dir: Option<&Path>) -> OnnxError {
    match load_onnx_bytes::<f32>(bytes, dir, "test.onnx") {
        Err(Error::Onnx { path, source }) => {
            assert_eq!(path, std::path::Path::new("test.onnx"));
            source
        }
        Err(other) => panic!("not an ONNX error: {other}"),
        Ok(_) => panic!("accepted"),
    }
}

#[test]
fn the_writer_builds_a_model_that_loads() {
    // The malformed variants below differ from this one in one place each.
    let m = load_onnx_bytes::<f32>(&conv_model(&[1, 1, 1, 1]), None, "ok").unwrap();
    let x = Tensor::<f32>::from_elem(ndarray::IxDyn(&[3, 2, 5, 5]), 1.0);
    assert_eq!(m.graph.infer(&x).unwrap().shape(), &[3, 1, 5, 5]);
}

#[test]
fn truncated_files_are_errors() {
    let bytes = std::fs::read(fixtures().join("lenet5.onnx")).unwrap();
    for cut in [1, 2, 10, 100, 1000, bytes.len() / 2, bytes.len() - 1] {
        let err = onnx_error(&bytes[..cut], None);
        assert!(
            matches!(
                err,
                OnnxError::Truncated { .. } | OnnxError::Malformed(_) | OnnxError::WireType { .. }
            ),
            "cut at {cut}: {err}"
        );
    }
    // Every prefix of the small model fails cleanly (never a panic).
    let small = conv_model(&[1, 1, 1, 1]);
    for cut in 0..small.len() {
        assert!(load_onnx_bytes::<f32>(&small[..cut], None, "cut").is_err());
    }
}

#[test]
fn wrong_wire_types_are_errors() {
    // ModelProto.graph (field 7) as a varint instead of a message.
    let mut m = Vec::new();
    int_field(&mut m, 1, 8);
    int_field(&mut m, 7, 5);
    let err = onnx_error(&m, None);
    assert!(
        matches!(
            err,
            OnnxError::WireType {
                message: "ModelProto",
                field: 7,
                ..
            }
        ),
        "{err}"
    );
    // An attribute's ints (field 8) as a 32-bit value.
    let mut attr = Vec::new();
    bytes_field(&mut attr, 1, b"pads");
    key(&mut attr, 8, 5);
    attr.extend_from_slice(&[0, 0, 0, 0]);
    let bad = model(&[node("Relu", "r", &["x"], &["y"], &[attr])], &[], &[-1, 2]);
    let err = onnx_error(&bad, None);
    assert!(
        matches!(
            err,
            OnnxError::WireType {
                message: "AttributeProto",
                field: 8,
                ..
            }
        ),
        "{err}"
    );
    // Random bytes.
    assert!(load_onnx_bytes::<f32>(b"not an onnx model at all", None, "x").is_err());
}

/// Mutated copies of the exported models (bit flips, overwritten bytes, cut ranges) load or
/// fail with an error; none panics. Deterministic: a fixed xorshift sequence.
#[test]
fn mutated_models_never_panic() {
    let originals = [
        std::fs::read(fixtures().join("allops.onnx")).unwrap(),
        conv_model(&[1, 1, 1, 1]),
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut loaded, mut refused) = (0, 0);
    for round in 0..1500 {
        let mut bytes = originals[round % 2].clone();
        let n = bytes.len() as u64;
        for _ in 0..1 + next() % 4 {
            let at = (next() % n) as usize % bytes.len().max(1);
            match next() % 3 {
                0 => bytes[at] ^= 1 << (next() % 8),
                1 => bytes[at] = next() as u8,
                _ => {
                    let end = (at + 1 + (next() % 16) as usize).min(bytes.len());
                    bytes.drain(at..end);
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        match load_onnx_bytes::<f32>(&bytes, None, "mutated") {
            Ok(_) => loaded += 1,
            Err(_) => refused += 1,
        }
    }
    eprintln!("mutated models: {loaded} loaded, {refused} refused");
    assert!(refused > 0);
}

#[test]
fn unknown_operators_are_named_with_their_node() {
    let m = model(
        &[node("Resize", "upsample_1", &["x"], &["y"], &[])],
        &[],
        &[-1, 2, 5, 5],
    );
    let err = onnx_error(&m, None);
    let text = err.to_string();
    assert!(
        matches!(err, OnnxError::UnsupportedOperator { ref op_type, ref node, .. }
            if op_type == "Resize" && node == "upsample_1"),
        "{text}"
    );
    assert!(
        text.contains("Resize") && text.contains("upsample_1"),
        "{text}"
    );
}

#[test]
fn a_missing_initializer_is_named() {
    let m = model(
        &[node("Conv", "conv", &["x", "conv.weight"], &["y"], &[])],
        &[],
        &[-1, 2, 5, 5],
    );
    let err = onnx_error(&m, None);
    assert!(
        matches!(err, OnnxError::MissingValue { ref value, ref node, .. }
            if value == "conv.weight" && node == "conv"),
        "{err}"
    );
}

#[test]
fn asymmetric_conv_padding_is_a_zero_border_on_one_side() {
    // pads [h_begin, w_begin, h_end, w_end] = [0, 0, 1, 1]: the same as a zero row below and
    // a zero column to the right, then an unpadded convolution.
    let m = load_onnx_bytes::<f64>(&conv_model(&[0, 0, 1, 1]), None, "asym").unwrap();
    let x = Tensor::<f64>::from_shape_fn(ndarray::IxDyn(&[1, 2, 5, 5]), |i| {
        (i[1] * 25 + i[2] * 5 + i[3]) as f64 * 0.07 - 1.3
    });
    let y = m.graph.infer(&x).unwrap();
    assert_eq!(y.shape(), &[1, 1, 4, 4]);
    let w = |c: usize, i: usize, j: usize| (c * 9 + i * 3 + j) as f64 * 0.1 - 0.9;
    let xp = |c: usize, i: usize, j: usize| if i < 5 && j < 5 { x[[0, c, i, j]] } else { 0.0 };
    for (oi, oj) in [(0, 0), (3, 3), (2, 3), (3, 0)] {
        let mut s = 0.0;
        for c in 0..2 {
            for i in 0..3 {
                for j in 0..3 {
                    s += w(c, i, j) * xp(c, oi + i, oj + j);
                }
            }
        }
        assert!(
            (y[[0, 0, oi, oj]] - s.max(0.0)).abs() < 1e-5,
            "({oi}, {oj})"
        );
    }
}

#[test]
fn bad_data_sizes_are_errors() {
    // 17 values for a [1, 2, 3, 3] weight.
    let w = vec![0.5f32; 17];
    let m = model(
        &[node("Conv", "c", &["x", "w"], &["y"], &[])],
        &[tensor("w", &[1, 2, 3, 3], Some(&w), &[])],
        &[-1, 2, 5, 5],
    );
    assert!(matches!(onnx_error(&m, None), OnnxError::Tensor { .. }));
    // Dims whose product overflows the element limit.
    let m = model(
        &[node("Conv", "c", &["x", "w"], &["y"], &[])],
        &[tensor("w", &[1 << 20, 1 << 20, 3, 3], Some(&w), &[])],
        &[-1, 2, 5, 5],
    );
    assert!(matches!(onnx_error(&m, None), OnnxError::Tensor { .. }));
}

#[test]
fn external_data_is_checked_against_the_file() {
    let dir = std::env::temp_dir().join(format!("convnet_onnx_ext_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let w: Vec<u8> = (0..18)
        .flat_map(|i| (i as f32 * 0.1).to_le_bytes())
        .collect();
    std::fs::write(dir.join("w.bin"), &w).unwrap();
    let with = |external: &[(&str, &str)]| {
        model(
            &[node("Conv", "c", &["x", "w"], &["y"], &[])],
            &[tensor("w", &[1, 2, 3, 3], None, external)],
            &[-1, 2, 5, 5],
        )
    };
    // In range: loads, and the weight is the file's.
    let ok = with(&[("location", "w.bin"), ("offset", "0"), ("length", "72")]);
    let m = load_onnx_bytes::<f32>(&ok, Some(&dir), "ok").unwrap();
    let mut weight = None;
    m.graph.visit(&mut |n, s| {
        if let (true, convnet::Slot::Param(p)) = (n.ends_with("weight"), s) {
            weight = Some(p.value.clone());
        }
    });
    assert!((weight.unwrap()[[0, 1, 0, 0]] - 0.9).abs() < 1e-6);
    let cases: [&[(&str, &str)]; 5] = [
        &[("location", "w.bin"), ("offset", "8"), ("length", "72")], // past the end
        &[("location", "w.bin"), ("offset", "0"), ("length", "40")], // wrong length
        &[("location", "missing.bin")],
        &[("location", "../w.bin")],
        &[("location", "w.bin"), ("offset", "-3")],
    ];
    for external in cases {
        let err = onnx_error(&with(external), Some(&dir));
        assert!(
            matches!(err, OnnxError::ExternalData { .. }),
            "{external:?}: {err}"
        );
    }
    // From memory there is no folder to read from.
    assert!(matches!(
        onnx_error(&ok, None),
        OnnxError::ExternalData { .. }
    ));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn reshape_that_is_not_a_flatten_is_an_error() {
    let mut shape = Vec::new();
    int_field(&mut shape, 1, 2);
    int_field(&mut shape, 2, 7);
    bytes_field(&mut shape, 8, b"shape");
    let raw: Vec<u8> = [0i64, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    bytes_field(&mut shape, 9, &raw);
    let m = model(
        &[node("Reshape", "reshape", &["x", "shape"], &["y"], &[])],
        &[shape],
        &[-1, 4, 3],
    );
    let err = onnx_error(&m, None);
    assert!(err.to_string().contains("not supported"), "{err}");
    // [N, 4, 3] -> [N, 3, 4] keeps the size but is no merge of neighbouring dims.
    let mut shape = Vec::new();
    int_field(&mut shape, 1, 3);
    int_field(&mut shape, 2, 7);
    bytes_field(&mut shape, 8, b"shape");
    let raw: Vec<u8> = [0i64, 3, 4].iter().flat_map(|v| v.to_le_bytes()).collect();
    bytes_field(&mut shape, 9, &raw);
    let m = model(
        &[node("Reshape", "reshape", &["x", "shape"], &["y"], &[])],
        &[shape],
        &[-1, 4, 3],
    );
    let err = onnx_error(&m, None);
    assert!(err.to_string().contains("neighbouring dims"), "{err}");
}

/// Exported by PyTorch with symbolic batch, height and width (a Pad node built by shape
/// arithmetic, `padding="same"` with an even kernel, broadcasting Add and Sub, Concat along
/// the width, a 4-D Softmax); imported at one size, run at two.
#[test]
fn interop_model_matches_pytorch_at_two_image_sizes() {
    let e = expected::<f64>();
    let path = fixtures().join("interop.onnx");
    // Without a size for the symbolic height and width the importer says what it needs.
    let err = load_onnx::<f32>(&path).unwrap_err().to_string();
    assert!(err.contains("symbolic size at axis 2"), "{err}");
    let options = OnnxOptions::new().input_shape(&[2, 3, 9, 11]);
    let model = load_onnx_with::<f64>(&path, &options).unwrap();
    assert_eq!(model.input_shape, vec![None, Some(3), None, None]);
    assert_eq!(model.input_shape_for(4).unwrap(), vec![4, 3, 9, 11]);
    for key in ["", "_b"] {
        let x = &e[&format!("interop.input{key}")];
        let y = model.graph.infer(x).unwrap();
        let err = rel_err(&y, &e[&format!("interop.output{key}")]);
        eprintln!("interop{key} {:?}: relative error {err:.2e}", x.shape());
        assert!(err < 1e-4, "relative error {err}");
    }
    let rows = model.graph.summary(&[1, 3, 9, 11]).unwrap().rows;
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
    for k in ["Pad2d", "Bias", "Concat", "Softmax", "LogSoftmax"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    // A wrong size for a fixed axis is refused.
    let bad = OnnxOptions::new().input_shape(&[1, 4, 9, 11]);
    assert!(load_onnx_with::<f32>(&path, &bad).is_err());
}

/// The same net through PyTorch's dynamo exporter (the default since torch 2.9): opset 20,
/// uneven Conv pads, ReduceMean for the global average pooling, weights in an external file.
#[test]
fn dynamo_export_matches_pytorch() {
    let e = expected::<f64>();
    let options = OnnxOptions::new().input_shape(&[1, 3, 9, 11]);
    let model = load_onnx_with::<f64>(&fixtures().join("interop_dynamo.onnx"), &options).unwrap();
    assert_eq!(model.opset, 20);
    for key in ["", "_b"] {
        let y = model
            .graph
            .infer(&e[&format!("interop.input{key}")])
            .unwrap();
        let err = rel_err(&y, &e[&format!("interop.output{key}")]);
        eprintln!("interop_dynamo{key}: relative error {err:.2e}");
        assert!(err < 1e-4, "relative error {err}");
    }
}

/// Built with onnx.helper, checked against onnxruntime: SAME_LOWER/SAME_UPPER with odd total
/// padding, uneven explicit pads on max and average pooling (both count_include_pad values),
/// ceil_mode with uneven pads, a Pad node, Slice/Mul/Div shape arithmetic into a merging Reshape.
#[test]
fn asymmetric_padding_matches_onnxruntime() {
    let e = expected::<f64>();
    let model = load_onnx::<f64>(&fixtures().join("padded.onnx")).unwrap();
    let y = model.graph.infer(&e["padded.input"]).unwrap();
    let err = rel_err(&y, &e["padded.output"]);
    eprintln!("padded: relative error {err:.2e}");
    assert!(err < 1e-5, "relative error {err}");
    // Gradients flow through the padding layers (finite, right shape).
    let mut g = model.graph;
    g.set_mode(Mode::Eval);
    let out = g.forward(&e["padded.input"]).unwrap();
    let dx = g.backward(&out).unwrap();
    assert_eq!(dx.shape(), e["padded.input"].shape());
    assert!(dx.iter().all(|v| v.is_finite()));
}

fn float_attr(name: &str, v: f32) -> Vec<u8> {
    let mut a = Vec::new();
    bytes_field(&mut a, 1, name.as_bytes());
    key(&mut a, 2, 5);
    a.extend_from_slice(&v.to_le_bytes());
    int_field(&mut a, 20, 1);
    a
}

fn int_attr(name: &str, v: i64) -> Vec<u8> {
    let mut a = Vec::new();
    bytes_field(&mut a, 1, name.as_bytes());
    int_field(&mut a, 3, v);
    int_field(&mut a, 20, 2);
    a
}

fn float_init(name: &str, dims: &[i64], values: &[f32]) -> Vec<u8> {
    tensor(name, dims, Some(values), &[])
}

#[test]
fn attributes_of_the_wrong_type_are_errors() {
    // `group` given as a float, `ceil_mode` as a list, `axis` as 7 for a Flatten.
    let w: Vec<f32> = vec![0.1; 18];
    let cases = [
        model(
            &[node(
                "Conv",
                "c",
                &["x", "w"],
                &["y"],
                &[float_attr("group", 1.0)],
            )],
            &[tensor("w", &[1, 2, 3, 3], Some(&w), &[])],
            &[-1, 2, 5, 5],
        ),
        model(
            &[node(
                "MaxPool",
                "p",
                &["x"],
                &["y"],
                &[ints_attr("kernel_shape", &[2, 2]), int_attr("ceil_mode", 3)],
            )],
            &[],
            &[-1, 2, 5, 5],
        ),
        model(
            &[node("Flatten", "f", &["x"], &["y"], &[int_attr("axis", 7)])],
            &[],
            &[-1, 2, 5, 5],
        ),
    ];
    for (i, m) in cases.iter().enumerate() {
        let err = onnx_error(m, None);
        assert!(matches!(err, OnnxError::Node { .. }), "case {i}: {err}");
    }
}

#[test]
fn missing_inputs_and_cycles_are_named() {
    // `b` reads `a2`, which only a later node defines; the later node reads `b`: a cycle in a
    // list that ONNX requires to be in topological order.
    let m = model(
        &[
            node("Relu", "first", &["a2"], &["b"], &[]),
            node("Relu", "second", &["b"], &["a2"], &[]),
            node("Relu", "out", &["b"], &["y"], &[]),
        ],
        &[],
        &[-1, 2, 5, 5],
    );
    let err = onnx_error(&m, None);
    assert!(
        matches!(err, OnnxError::MissingValue { ref value, ref node, .. }
            if value == "a2" && node == "first"),
        "{err}"
    );
    // A node reading an activation nobody computes.
    let m = model(
        &[node("Add", "sum", &["x", "ghost"], &["y"], &[])],
        &[],
        &[-1, 2, 5, 5],
    );
    assert!(matches!(
        onnx_error(&m, None),
        OnnxError::MissingValue { ref value, .. } if value == "ghost"
    ));
    // The graph's output computed by nothing.
    let m = model(&[node("Relu", "r", &["x"], &["z"], &[])], &[], &[-1, 2]);
    assert!(matches!(onnx_error(&m, None), OnnxError::Malformed(_)));
}

#[test]
fn what_convnet_cannot_express_is_a_clear_error() {
    let c = |dims: &[i64], n: usize| float_init("c", dims, &vec![0.5; n]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // A constant that varies along the width: not one value per channel.
        (
            model(
                &[node("Add", "add", &["x", "c"], &["y"], &[])],
                &[c(&[1, 1, 1, 5], 5)],
                &[-1, 2, 5, 5],
            ),
            "per channel",
        ),
        // Softmax over the last axis of an image (opset 13).
        (
            model(
                &[node(
                    "Softmax",
                    "sm",
                    &["x"],
                    &["y"],
                    &[int_attr("axis", -1)],
                )],
                &[],
                &[-1, 2, 5, 5],
            ),
            "over dim 1",
        ),
        // Concat along the batch.
        (
            model(
                &[node(
                    "Concat",
                    "cat",
                    &["x", "x"],
                    &["y"],
                    &[int_attr("axis", 0)],
                )],
                &[],
                &[-1, 2, 5, 5],
            ),
            "batch axis",
        ),
        // Flatten that merges the batch with the channels.
        (
            model(
                &[node("Flatten", "f", &["x"], &["y"], &[int_attr("axis", 2)])],
                &[],
                &[-1, 2, 5, 5],
            ),
            "merge the batch",
        ),
        // Uneven pads that need floor mode on one axis and ceil mode on the other when padding
        // is not counted (onnxruntime gives a 4x4 output; no convnet pooling does).
        (
            model(
                &[node(
                    "AveragePool",
                    "avg",
                    &["x"],
                    &["y"],
                    &[
                        ints_attr("kernel_shape", &[3, 3]),
                        ints_attr("strides", &[2, 2]),
                        ints_attr("pads", &[0, 1, 1, 0]),
                    ],
                )],
                &[],
                &[-1, 2, 8, 8],
            ),
            "cannot give ONNX's [4, 4] output",
        ),
        // Reflection padding.
        (
            model(
                &[node(
                    "Pad",
                    "pad",
                    &["x", "p"],
                    &["y"],
                    &[{
                        let mut a = Vec::new();
                        bytes_field(&mut a, 1, b"mode");
                        bytes_field(&mut a, 4, b"reflect");
                        int_field(&mut a, 20, 3);
                        a
                    }],
                )],
                &[{
                    let mut t = Vec::new();
                    int_field(&mut t, 1, 8);
                    int_field(&mut t, 2, 7);
                    bytes_field(&mut t, 8, b"p");
                    let raw: Vec<u8> = [0i64, 0, 1, 1, 0, 0, 1, 1]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect();
                    bytes_field(&mut t, 9, &raw);
                    t
                }],
                &[-1, 2, 5, 5],
            ),
            "mode `reflect`",
        ),
        // Multiplying an activation (no layer for it).
        (
            model(
                &[node("Mul", "mul", &["x", "c"], &["y"], &[])],
                &[c(&[1], 1)],
                &[-1, 2, 5, 5],
            ),
            "computed value",
        ),
        // Two computed values of different shapes.
        (
            model(
                &[
                    node("Flatten", "f", &["x"], &["flat"], &[]),
                    node("Add", "add", &["x", "flat"], &["y"], &[]),
                ],
                &[],
                &[-1, 2, 5, 5],
            ),
            "broadcasting",
        ),
    ];
    for (m, want) in &cases {
        let err = onnx_error(m, None);
        let text = err.to_string();
        assert!(text.contains(want), "expected `{want}` in: {text}");
    }
    // A constant per channel and a scalar are fine.
    for init in [c(&[1, 2, 1, 1], 2), c(&[2, 1, 1], 2), c(&[], 1)] {
        let m = model(
            &[node("Add", "add", &["x", "c"], &["y"], &[])],
            &[init],
            &[-1, 2, 5, 5],
        );
        let model = load_onnx_bytes::<f32>(&m, None, "bias").unwrap();
        let y = model
            .graph
            .infer(&Tensor::zeros(ndarray::IxDyn(&[1, 2, 5, 5])))
            .unwrap();
        assert!(y.iter().all(|&v| v == 0.5));
    }
    // Symbolic spatial axes need a size; with one they import.
    let m = model(
        &[node("Relu", "r", &["x"], &["y"], &[])],
        &[],
        &[-1, 2, -1, -1],
    );
    assert!(onnx_error(&m, None).to_string().contains("symbolic size"));
    let opts = OnnxOptions::new().input_shape(&[1, 2, 7, 6]);
    let model = load_onnx_bytes_with::<f32>(&m, None, "sym", &opts).unwrap();
    assert_eq!(model.input_shape_for(3).unwrap(), vec![3, 2, 7, 6]);
}

#[test]
fn weights_can_be_replaced_through_the_visitor() {
    // Imported layers are ordinary layers: their parameters are reachable by name.
    let mut m = load_onnx::<f32>(&fixtures().join("lenet5.onnx")).unwrap();
    let mut n = 0;
    m.graph.visit_mut(&mut |_, slot| {
        if let SlotMut::Param(p) = slot {
            p.value.fill(0.0);
            n += 1;
        }
    });
    assert_eq!(n, 10);
    let y = m
        .graph
        .infer(&Tensor::from_elem(ndarray::IxDyn(&[2, 1, 28, 28]), 1.0))
        .unwrap();
    assert!(y.iter().all(|&v| v == 0.0));
}

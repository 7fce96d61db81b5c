//! Test-only helpers shared by the unit tests of every layer, loss, optimizer and zoo block:
//! the PyTorch parity cases in `tests/parity/` (format: `tests/parity/README.md`) and the
//! f32-against-f64 comparison.

use crate::layer::Layer;
use crate::tensor::Tensor;
use std::collections::HashMap;
use std::path::PathBuf;

/// Runs `forward(x)` then `backward(grad(output shape))` through an f64 layer and its f32
/// twin, and asserts that every output and input-gradient element agrees:
/// `|a64 - a32| <= tol · (1 + |a64|)`.
pub(crate) fn assert_f32_matches_f64(
    l64: &mut dyn Layer<f64>,
    l32: &mut dyn Layer<f32>,
    x: &Tensor<f64>,
    grad: impl Fn(&[usize]) -> Tensor<f64>,
    tol: f64,
) {
    let y64 = l64.forward(x).unwrap();
    let y32 = l32.forward(&x.mapv(|v| v as f32)).unwrap();
    let g = grad(y64.shape());
    let dx64 = l64.backward(&g).unwrap();
    let dx32 = l32.backward(&g.mapv(|v| v as f32)).unwrap();
    assert_eq!((y64.shape(), dx64.shape()), (y32.shape(), dx32.shape()));
    for (a, b) in y64.iter().chain(&dx64).zip(y32.iter().chain(&dx32)) {
        assert!((a - *b as f64).abs() <= tol * (1.0 + a.abs()), "{a} vs {b}");
    }
    // The parameter gradients too, by name.
    let mut g64: Vec<(String, Vec<f64>)> = Vec::new();
    l64.visit(&mut |name, slot| {
        if let crate::layer::Slot::Param(p) = slot {
            g64.push((name.to_string(), p.grad.iter().copied().collect()));
        }
    });
    let mut g32: Vec<(String, Vec<f64>)> = Vec::new();
    l32.visit(&mut |name, slot| {
        if let crate::layer::Slot::Param(p) = slot {
            g32.push((name.to_string(), p.grad.iter().map(|&v| v as f64).collect()));
        }
    });
    let names = |g: &[(String, Vec<f64>)]| g.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&g64), names(&g32), "parameter names");
    for ((name, a), (_, b)) in g64.iter().zip(&g32) {
        assert_eq!(a.len(), b.len(), "{name}");
        for (a, b) in a.iter().zip(b) {
            assert!(
                (a - b).abs() <= tol * (1.0 + a.abs()),
                "{name}.grad: {a} vs {b}"
            );
        }
    }
}

/// The directory of the parity cases, `CARGO_MANIFEST_DIR/tests/parity`.
fn parity_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/parity")
}

/// Reads the parity case `file` (`"conv2d_000"` or `"conv2d_000.safetensors"`): its `config`
/// metadata JSON and every tensor, decoded by [`crate::io::decode_tensors`] as `f64`.
pub(crate) fn parity(file: &str) -> (serde_json::Value, HashMap<String, Tensor<f64>>) {
    let name = if file.ends_with(".safetensors") {
        file.to_string()
    } else {
        format!("{file}.safetensors")
    };
    let path = parity_dir().join(name);
    let shown = path.display().to_string();
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{shown}: {e}"));
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .unwrap_or_else(|e| panic!("{shown}: bad header: {e}"));
    let config = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("config"))
        .unwrap_or_else(|| panic!("{shown}: no `config` metadata"));
    let config = serde_json::from_str(config)
        .unwrap_or_else(|e| panic!("{shown}: `config` is not JSON: {e}"));
    let tensors = crate::io::decode_tensors::<f64>(&bytes, &shown)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .collect();
    (config, tensors)
}

/// The names of every `tests/parity/<prefix>*.safetensors` file, sorted.
pub(crate) fn parity_files(prefix: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(parity_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with(prefix) && f.ends_with(".safetensors"))
        .collect();
    files.sort();
    files
}

/// Asserts the parity tolerance: equal shapes, only finite values and
/// `max|got - want| <= 1e-9 · (1 + max|want|)`.
pub(crate) fn assert_close(what: &str, got: &Tensor<f64>, want: &Tensor<f64>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{what}: non-finite value"
    );
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| nan_aware_diff(*a, *b))
        .fold(0.0f64, f64::max);
    assert!(
        err <= 1e-9 * (1.0 + scale),
        "{what}: max |got - ref| = {err:e} (scale {scale:e})"
    );
}

/// `|a - b|`, with two NaNs equal and one NaN infinitely far from anything (so a NaN where a
/// number is expected fails instead of vanishing in a `max`).
pub(crate) fn nan_aware_diff(a: f64, b: f64) -> f64 {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => 0.0,
        (false, false) if a == b => 0.0,
        (false, false) => (a - b).abs(),
        _ => f64::INFINITY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::from_vec;

    #[test]
    fn parity_reads_a_case_with_or_without_the_extension() {
        let (cfg, t) = parity("flatten_000");
        assert_eq!(cfg["layer"], "flatten");
        let (cfg2, t2) = parity("flatten_000.safetensors");
        assert_eq!(cfg, cfg2);
        let mut keys: Vec<_> = t.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["grad_input", "grad_output", "input", "output"]);
        for (k, v) in &t {
            assert_eq!(v, &t2[k]);
        }
        let files = parity_files("flatten_");
        assert_eq!(
            files,
            ["flatten_000.safetensors", "flatten_001.safetensors"]
        );
    }

    #[test]
    fn assert_close_uses_the_parity_tolerance() {
        let want = from_vec(&[2], vec![1.0, -3.0]);
        // Allowed error: 1e-9 · (1 + 3) = 4e-9.
        assert_close("inside", &from_vec(&[2], vec![1.0 + 3.9e-9, -3.0]), &want);
        for got in [
            from_vec(&[2], vec![1.0 + 4.1e-9, -3.0]),
            from_vec(&[2], vec![f64::NAN, -3.0]),
            from_vec(&[1, 2], vec![1.0, -3.0]),
        ] {
            let r = std::panic::catch_unwind(|| assert_close("bad", &got, &want));
            assert!(r.is_err(), "{got:?} passed");
        }
    }
}

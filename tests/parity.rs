//! Runs the PyTorch parity runner (the same code as `cargo run --example parity`) over the
//! public cases copied into `tests/parity/`.

#[path = "../examples/parity/runner.rs"]
#[allow(dead_code)]
mod runner;

use runner::Outcome;
use std::path::{Path, PathBuf};

fn parity_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parity")
}

#[test]
fn every_public_case_passes() {
    let results = runner::run_dir(&parity_dir()).unwrap();
    assert_eq!(
        results.len(),
        85,
        "expected the 80 public cases and the 5 optimizer cases of scripts/torch_parity_optim.py"
    );
    let composites = results
        .iter()
        .filter(|(f, _)| f.starts_with("resnet_") || f.starts_with("inception_"))
        .count();
    assert_eq!(
        composites, 12,
        "expected 12 composite (ResNet block / Inception) cases"
    );
    let failures: Vec<String> = results
        .iter()
        .filter(|(_, outcome)| !outcome.passed())
        .map(|(file, outcome)| runner::report_line(file, outcome))
        .collect();
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
}

/// Rewrites one f64 element of tensor `name` in a copy of a case file.
fn tamper(src: &Path, dst: &Path, name: &str, delta: f64) {
    let mut bytes = std::fs::read(src).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let begin = header[name]["data_offsets"][0].as_u64().unwrap() as usize + 8 + n;
    let old = f64::from_le_bytes(bytes[begin..begin + 8].try_into().unwrap());
    bytes[begin..begin + 8].copy_from_slice(&(old + delta).to_le_bytes());
    std::fs::write(dst, bytes).unwrap();
}

#[test]
fn a_wrong_reference_value_is_caught() {
    let dir = std::env::temp_dir().join(format!("convnet-parity-tamper-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = parity_dir();
    // A perturbation far above the tolerance in an expected tensor must fail the case...
    tamper(
        &src.join("conv2d_000.safetensors"),
        &dir.join("conv2d_000.safetensors"),
        "grad_weight",
        1e-6,
    );
    assert!(matches!(
        runner::run_case(&dir.join("conv2d_000.safetensors")),
        Outcome::Fail { ref tensor, .. } if tensor == "grad_weight"
    ));
    // ...and a perturbed input changes what the library computes, so the outputs no longer match.
    tamper(
        &src.join("linear_000.safetensors"),
        &dir.join("linear_000.safetensors"),
        "input",
        1e-3,
    );
    assert!(!runner::run_case(&dir.join("linear_000.safetensors")).passed());
    // The untouched originals pass.
    assert!(runner::run_case(&src.join("conv2d_000.safetensors")).passed());
    std::fs::remove_dir_all(&dir).ok();
}

/// Copies a case file keeping only the tensors `keep` accepts, and optionally adding one.
fn rewrite_case(src: &Path, dst: &Path, keep: &dyn Fn(&str) -> bool, extra: Option<&str>) {
    use safetensors::tensor::TensorView;
    let bytes = std::fs::read(src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let extra_data = 1.5f64.to_le_bytes();
    let mut views: Vec<(String, TensorView<'_>)> =
        st.tensors().into_iter().filter(|(n, _)| keep(n)).collect();
    if let Some(name) = extra {
        views.push((
            name.to_string(),
            TensorView::new(safetensors::Dtype::F64, vec![1], &extra_data).unwrap(),
        ));
    }
    let out = safetensors::serialize(views, meta.metadata().clone()).unwrap();
    std::fs::write(dst, out).unwrap();
}

#[test]
fn a_case_without_expected_tensors_or_with_unknown_names_fails() {
    let dir = std::env::temp_dir().join(format!("convnet-parity-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = parity_dir().join("linear_000.safetensors");
    // Only the inputs: nothing to compare, which used to PASS.
    let only_inputs = dir.join("only_inputs.safetensors");
    rewrite_case(
        &src,
        &only_inputs,
        &|n| matches!(n, "input" | "weight" | "bias" | "grad_output"),
        None,
    );
    match runner::run_case(&only_inputs) {
        Outcome::Fail { why, .. } => assert!(why.contains("no expected tensor"), "{why}"),
        other => panic!("a case with nothing to compare must fail, got {other:?}"),
    }
    // An unknown name (a typo of an expected tensor) used to be taken as an unused input.
    let unknown = dir.join("unknown.safetensors");
    rewrite_case(&src, &unknown, &|_| true, Some("outptu"));
    match runner::run_case(&unknown) {
        Outcome::Fail { tensor, why, .. } => {
            assert_eq!(tensor, "outptu");
            assert!(why.contains("unknown tensor name"), "{why}");
        }
        other => panic!("an unknown tensor name must fail the case, got {other:?}"),
    }
    // The untouched file still passes.
    assert!(runner::run_case(&src).passed());
    std::fs::remove_dir_all(&dir).ok();
}

/// The folder of the shared public cases the project was given (`../shared/parity` beside the
/// checkout, or `CONVNET_SHARED_PARITY`), when it exists on this machine.
fn shared_parity_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("CONVNET_SHARED_PARITY") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/parity"),
    };
    dir.join("index.json").exists().then_some(dir)
}

#[test]
fn the_index_lists_every_case_on_disk_and_the_runner_runs_each() {
    let dir = parity_dir();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let listed: Vec<String> = index["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["file"].as_str().unwrap().to_string())
        .collect();
    let mut run: Vec<String> = runner::run_dir(&dir)
        .unwrap()
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    let mut sorted = listed.clone();
    sorted.sort();
    run.sort();
    assert_eq!(run, sorted, "the runner must run exactly the indexed cases");
    for opt in ["sgd_002", "sgd_003", "sgd_004", "adam_001", "adam_002"] {
        assert!(listed.contains(&format!("{opt}.safetensors")), "{opt}");
    }

    // A folder whose index and files disagree is an error, not a shorter run.
    let tmp = std::env::temp_dir().join(format!("convnet-parity-index-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(dir.join("index.json"), tmp.join("index.json")).unwrap();
    for file in &listed {
        std::fs::copy(dir.join(file), tmp.join(file)).unwrap();
    }
    assert!(runner::run_dir(&tmp).is_ok());
    std::fs::remove_file(tmp.join("sgd_003.safetensors")).unwrap();
    let err = runner::run_dir(&tmp).unwrap_err();
    assert!(err.contains("sgd_003.safetensors"), "{err}");
    std::fs::copy(
        dir.join("sgd_003.safetensors"),
        tmp.join("sgd_003.safetensors"),
    )
    .unwrap();
    std::fs::copy(
        dir.join("relu_000.safetensors"),
        tmp.join("relu_999.safetensors"),
    )
    .unwrap();
    let err = runner::run_dir(&tmp).unwrap_err();
    assert!(err.contains("relu_999.safetensors"), "{err}");
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn every_case_in_the_shared_parity_folder_is_run_and_passes() {
    let Some(shared) = shared_parity_dir() else {
        eprintln!("no ../shared/parity on this machine (set CONVNET_SHARED_PARITY): skipped");
        return;
    };
    let shared_cases = runner::case_files(&shared).unwrap();
    assert!(!shared_cases.is_empty());
    // Each shared case is in tests/parity, byte for byte, so `every_public_case_passes` runs it.
    let ours: Vec<String> = runner::run_dir(&parity_dir())
        .unwrap()
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    let mut not_run = Vec::new();
    for case in &shared_cases {
        let same = std::fs::read(parity_dir().join(case)).ok()
            == Some(std::fs::read(shared.join(case)).unwrap());
        if !same || !ours.contains(case) {
            not_run.push(case.clone());
        }
    }
    assert!(
        not_run.is_empty(),
        "shared cases missing from (or different in) tests/parity: {not_run:?}"
    );
    // And the shared folder itself, run as it stands, passes (its index matches its files).
    let results = runner::run_dir(&shared).unwrap();
    assert_eq!(results.len(), shared_cases.len());
    let failures: Vec<String> = results
        .iter()
        .filter(|(_, o)| !o.passed())
        .map(|(f, o)| runner::report_line(f, o))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Copies a batch-norm case with `config.momentum` set to null (PyTorch's cumulative average)
/// and the running statistics after the pass replaced by `after(name, stored)`.
fn with_null_momentum(src: &Path, dst: &Path, after: &dyn Fn(&str, Vec<f64>) -> Vec<f64>) {
    use safetensors::tensor::TensorView;
    let bytes = std::fs::read(src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = meta.metadata().clone().unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
    config["momentum"] = serde_json::Value::Null;
    meta.insert("config".into(), config.to_string());
    let values = |name: &str| -> Vec<f64> {
        let view = st.tensor(name).unwrap();
        view.data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    };
    let replaced: Vec<(String, Vec<u8>, Vec<usize>)> = ["running_mean_after", "running_var_after"]
        .iter()
        .map(|&name| {
            let data = after(name, values(name));
            let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (
                name.to_string(),
                bytes,
                st.tensor(name).unwrap().shape().to_vec(),
            )
        })
        .collect();
    let mut views: Vec<(String, TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| !n.ends_with("_after"))
        .collect();
    for (name, data, shape) in &replaced {
        views.push((
            name.clone(),
            TensorView::new(safetensors::Dtype::F64, shape.clone(), data).unwrap(),
        ));
    }
    let out = safetensors::serialize(views, Some(meta)).unwrap();
    std::fs::write(dst, out).unwrap();
}

#[test]
fn batch_norm_momentum_null_is_the_cumulative_average() {
    let dir = std::env::temp_dir().join(format!("convnet-parity-bn-null-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = parity_dir().join("batch_norm2d_000.safetensors");
    // PyTorch's momentum=None weighs the new batch by 1/num_batches_tracked after the
    // increment: 1 for a fresh counter, so the running stats become the batch's mean and its
    // unbiased variance, computed here directly from the input [N, C, H, W].
    let bytes = std::fs::read(&src).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let input = st.tensor("input").unwrap();
    let [n, c, h, w] = <[usize; 4]>::try_from(input.shape()).unwrap();
    let x: Vec<f64> = input
        .data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let channel = |ch: usize| -> Vec<f64> {
        (0..n)
            .flat_map(|i| x[(i * c + ch) * h * w..][..h * w].to_vec())
            .collect()
    };
    let m = (n * h * w) as f64;
    let mean: Vec<f64> = (0..c)
        .map(|ch| channel(ch).iter().sum::<f64>() / m)
        .collect();
    let var: Vec<f64> = (0..c)
        .map(|ch| {
            channel(ch)
                .iter()
                .map(|v| (v - mean[ch]).powi(2))
                .sum::<f64>()
                / (m - 1.0)
        })
        .collect();
    let cumulative = dir.join("batch_norm2d_000.safetensors");
    with_null_momentum(&src, &cumulative, &|name, _| match name {
        "running_mean_after" => mean.clone(),
        _ => var.clone(),
    });
    assert!(
        runner::run_case(&cumulative).passed(),
        "{:?}",
        runner::run_case(&cumulative)
    );
    // The stored stats of momentum 0.1 must not match a null momentum.
    let stale = dir.join("batch_norm2d_001.safetensors");
    with_null_momentum(&src, &stale, &|_, stored| stored);
    assert!(matches!(
        runner::run_case(&stale),
        Outcome::Fail { ref tensor, .. } if tensor.starts_with("running_")
    ));
    std::fs::remove_dir_all(&dir).ok();
}

/// Options outside the shared format's fixed values, in cases of the same format made by
/// `scripts/torch_parity_random.py --extras`: optimizers with `amsgrad` and `maximize` (seed
/// 41, `--per-layer 4 --only sgd adam adamw`) and ResNet / Inception blocks whose batch norms
/// have other eps and momentum, `null` among them (six small cases of seeds 64-69,
/// `--per-layer 2`, renumbered). Each must pass, and the folder must hold every kind.
#[test]
fn amsgrad_maximize_and_block_norms_match_pytorch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity_extras");
    let results = runner::run_dir(&dir).unwrap();
    let failures: Vec<String> = results
        .iter()
        .filter(|(_, outcome)| !outcome.passed())
        .map(|(file, outcome)| runner::report_line(file, outcome))
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let mut flags = (0, 0, 0, 0, 0);
    for (file, _) in &results {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let config: serde_json::Value =
            serde_json::from_str(&meta.metadata().as_ref().unwrap()["config"]).unwrap();
        let on = |key: &str| config[key].as_bool() == Some(true);
        let amsgrad_state = meta.tensors().keys().any(|k| k.ends_with("max_exp_avg_sq"));
        flags.0 += usize::from(on("amsgrad") && amsgrad_state);
        flags.1 += usize::from(on("maximize") && file.starts_with("adam"));
        flags.2 += usize::from(on("maximize") && file.starts_with("sgd"));
        let momentum = &config["bn_momentum"];
        flags.3 += usize::from(momentum.is_null() && config["mode"] == "train");
        flags.4 += usize::from(momentum.as_f64().is_some_and(|m| m != 0.1));
    }
    assert!(
        flags.0 > 0 && flags.1 > 0 && flags.2 > 0 && flags.3 > 0 && flags.4 > 0,
        "cases with AMSGrad (and its state), Adam maximizing, SGD maximizing, a training block \
         with cumulative batch norm, a block with another momentum: {flags:?}"
    );
}

//! The PyTorch parity runner: rebuilds each case's layer, loss or optimizer from its `config`
//! metadata, loads the stored inputs and parameters, recomputes every stored output and
//! gradient with convnet, and compares.
//!
//! A case's tensors are split in two by name before anything runs: *inputs* (what PyTorch was
//! given: `input`, `weight`, `grad_output`, `param.*`, `grad_1`, ...) and *expected* tensors
//! (what PyTorch produced: `output`, `grad_*`, `*_after`, `param_step_*`, ...). The builder only
//! ever sees [`Case::input`], which refuses expected names, so no expected tensor can leak
//! into a computation.

use convnet::layer::{Layer, Merge, Mode, Slot, SlotMut};
use convnet::layers::*;
use convnet::loss::{CrossEntropyLoss, MseLoss};
use convnet::optim::{Adam, AdamConfig, AdamW, AdamWConfig, Optimizer, Sgd, SgdConfig};
use convnet::zoo;
use convnet::{Param, Tensor};
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Tolerance from the parity README: `max|got - ref| <= 1e-9 * (1 + max|ref|)`.
pub const RTOL: f64 = 1e-9;

/// How one case ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Every expected tensor matched; the largest normalised error.
    Pass { max_err: f64 },
    /// A tensor did not match (or was missing / mis-shaped / non-finite).
    Fail {
        tensor: String,
        max_err: f64,
        why: String,
    },
    /// The case names something convnet cannot build yet (counts as a failure).
    Unsupported { reason: String },
}

impl Outcome {
    /// True only for [`Outcome::Pass`].
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Pass { .. })
    }
}

/// One parity file: its config and its tensors, split into inputs and expected results.
pub struct Case {
    /// `config.layer`.
    pub layer: String,
    /// The parsed `config` JSON.
    pub config: Value,
    /// `train` / `eval` where given.
    pub mode: Option<String>,
    inputs: BTreeMap<String, Tensor<f64>>,
    expected: BTreeMap<String, Tensor<f64>>,
    /// The inputs the builder has read; any other stored input is an unknown name.
    used: RefCell<BTreeSet<String>>,
}

/// True for tensor names that hold PyTorch's results rather than its inputs.
fn is_expected(name: &str) -> bool {
    name == "output"
        || (name.starts_with("grad") && name != "grad_output" && !is_optimizer_grad(name))
        || name.ends_with("_after")
        || name.starts_with("param_after.")
        || name.starts_with("param_step_")
        || name.starts_with("state_step_")
}

/// `grad_1`, `grad_2`, ... are the gradients an optimizer case feeds in.
fn is_optimizer_grad(name: &str) -> bool {
    name.strip_prefix("grad_")
        .is_some_and(|k| k.chars().all(|c| c.is_ascii_digit()))
}

impl Case {
    /// Reads and splits a case file.
    pub fn load(path: &Path) -> Result<Case, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("read: {e}"))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| format!("safetensors: {e}"))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| format!("header: {e}"))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let config: Value = serde_json::from_str(meta.get("config").ok_or("no config metadata")?)
            .map_err(|e| format!("config: {e}"))?;
        let layer = config["layer"]
            .as_str()
            .ok_or("config.layer missing")?
            .to_string();
        let mode = meta
            .get("mode")
            .cloned()
            .or_else(|| config["mode"].as_str().map(String::from));
        let mut inputs = BTreeMap::new();
        let mut expected = BTreeMap::new();
        for (name, view) in st.tensors() {
            if view.dtype() != Dtype::F64 {
                return Err(format!("{name}: dtype {:?}, expected F64", view.dtype()));
            }
            let data: Vec<f64> = view
                .data()
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
                .collect();
            let t = Tensor::from_shape_vec(ndarray::IxDyn(view.shape()), data)
                .map_err(|e| format!("{name}: {e}"))?;
            if is_expected(&name) {
                expected.insert(name, t);
            } else {
                inputs.insert(name, t);
            }
        }
        Ok(Case {
            layer,
            config,
            mode,
            inputs,
            expected,
            used: RefCell::new(BTreeSet::new()),
        })
    }

    /// Stored tensors that are neither expected results nor read by the builder: names the
    /// runner does not know (a typo, or a field of a newer case format). A case with any of
    /// them fails rather than silently ignoring part of its data.
    pub fn unknown_inputs(&self) -> Vec<String> {
        let used = self.used.borrow();
        self.inputs
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect()
    }

    /// An input tensor (never an expected one).
    pub fn input(&self, name: &str) -> Result<Tensor<f64>, String> {
        if is_expected(name) {
            return Err(format!(
                "runner bug: asked for expected tensor {name} as an input"
            ));
        }
        self.used.borrow_mut().insert(name.to_string());
        self.inputs
            .get(name)
            .cloned()
            .ok_or_else(|| format!("missing input tensor {name}"))
    }

    fn usize(&self, key: &str) -> Result<usize, String> {
        self.config[key]
            .as_u64()
            .map(|v| v as usize)
            .ok_or_else(|| format!("config.{key} missing"))
    }

    fn f64(&self, key: &str) -> Result<f64, String> {
        self.config[key]
            .as_f64()
            .ok_or_else(|| format!("config.{key} missing"))
    }

    fn bool(&self, key: &str) -> Result<bool, String> {
        self.config[key]
            .as_bool()
            .ok_or_else(|| format!("config.{key} missing"))
    }

    fn pair(&self, key: &str) -> Result<[usize; 2], String> {
        match self.config[key]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_u64()).collect::<Vec<_>>())
        {
            Some(v) if v.len() == 2 && v.iter().all(Option::is_some) => {
                Ok([v[0].unwrap() as usize, v[1].unwrap() as usize])
            }
            _ => Err(format!("config.{key} is not a [h, w] pair")),
        }
    }
}

/// Collects computed tensors and compares them with the expected ones at the end.
struct Results {
    got: BTreeMap<String, Tensor<f64>>,
}

impl Results {
    fn new() -> Self {
        Results {
            got: BTreeMap::new(),
        }
    }

    fn put(&mut self, name: impl Into<String>, t: Tensor<f64>) {
        self.got.insert(name.into(), t);
    }

    /// Every expected tensor must have been computed, with the same shape, finite, within tolerance.
    fn compare(&self, case: &Case) -> Outcome {
        if case.expected.is_empty() {
            return Outcome::Fail {
                tensor: "-".into(),
                max_err: f64::INFINITY,
                why: "the case stores no expected tensor: nothing to compare".into(),
            };
        }
        let unknown = case.unknown_inputs();
        if !unknown.is_empty() {
            return Outcome::Fail {
                tensor: unknown.join(", "),
                max_err: f64::INFINITY,
                why: "unknown tensor name(s): neither an input the runner reads nor an expected result".into(),
            };
        }
        let mut worst = 0.0f64;
        for (name, want) in &case.expected {
            let Some(got) = self.got.get(name) else {
                return Outcome::Fail {
                    tensor: name.clone(),
                    max_err: f64::INFINITY,
                    why: "not computed".into(),
                };
            };
            if got.shape() != want.shape() {
                return Outcome::Fail {
                    tensor: name.clone(),
                    max_err: f64::INFINITY,
                    why: format!("shape {:?} != {:?}", got.shape(), want.shape()),
                };
            }
            if got.iter().any(|x| !x.is_finite()) {
                return Outcome::Fail {
                    tensor: name.clone(),
                    max_err: f64::INFINITY,
                    why: "non-finite value".into(),
                };
            }
            let scale = 1.0 + want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            // A NaN in the reference must not vanish in the max: it fails the case.
            let diff = got
                .iter()
                .zip(want.iter())
                .map(|(a, b)| {
                    if b.is_finite() {
                        (a - b).abs()
                    } else {
                        f64::INFINITY
                    }
                })
                .fold(0.0f64, f64::max);
            let err = diff / scale;
            if err > RTOL {
                return Outcome::Fail {
                    tensor: name.clone(),
                    max_err: err,
                    why: "exceeds tolerance".into(),
                };
            }
            worst = worst.max(err);
        }
        Outcome::Pass { max_err: worst }
    }
}

/// Copies the case's stored parameters and buffers into a layer, by `state_dict` name
/// (`prefix` + name). Every slot of the layer must be provided, with the right shape.
fn load_params(layer: &mut dyn Layer<f64>, case: &Case, prefix: &str) -> Result<(), String> {
    let mut err = None;
    layer.visit_mut(&mut |name, slot| {
        if err.is_some() {
            return;
        }
        let key = format!("{prefix}{name}");
        let target = match slot {
            SlotMut::Param(p) => &mut p.value,
            SlotMut::Buffer(b) => b,
        };
        // The single-layer batch-norm cases do not store the counter: it starts at 0 there,
        // as it does in a freshly built layer.
        if name == "num_batches_tracked" && !case.inputs.contains_key(&key) {
            return;
        }
        match case.input(&key) {
            Ok(t) if t.shape() == target.shape() => *target = t,
            Ok(t) => {
                err = Some(format!(
                    "{key}: stored shape {:?}, layer has {:?}",
                    t.shape(),
                    target.shape()
                ))
            }
            Err(e) => err = Some(e),
        }
    });
    err.map_or(Ok(()), Err)
}

/// Runs forward then backward(grad_output) and records output, grad_input, every parameter
/// gradient (as `<grad_prefix><name>`) and every buffer after the pass (as `<after>(name)`).
fn run_layer(
    layer: &mut dyn Layer<f64>,
    case: &Case,
    res: &mut Results,
    grad_name: &dyn Fn(&str) -> String,
    buffer_after_name: &dyn Fn(&str) -> String,
) -> Result<(), String> {
    let x = case.input("input")?;
    let y = layer.forward(&x).map_err(|e| e.to_string())?;
    layer.zero_grad();
    let dx = layer
        .backward(&case.input("grad_output")?)
        .map_err(|e| e.to_string())?;
    res.put("output", y);
    res.put("grad_input", dx);
    layer.visit(&mut |name, slot| match slot {
        Slot::Param(p) => res.put(grad_name(name), p.grad.clone()),
        Slot::Buffer(b) => res.put(buffer_after_name(name), b.clone()),
    });
    Ok(())
}

fn set_mode(layer: &mut dyn Layer<f64>, case: &Case) -> Result<(), String> {
    match case.mode.as_deref() {
        None | Some("train") => layer.set_mode(Mode::Train),
        Some("eval") => layer.set_mode(Mode::Eval),
        Some(m) => return Err(format!("unknown mode {m}")),
    }
    Ok(())
}

fn msg<V>(r: convnet::Result<V>) -> Result<V, String> {
    r.map_err(|e| e.to_string())
}

fn as_failure<V>(r: convnet::Result<V>) -> Result<V, Outcome> {
    r.map_err(|e| Outcome::Fail {
        tensor: "-".into(),
        max_err: f64::INFINITY,
        why: e.to_string(),
    })
}

/// Builds the single layer a simple case describes, or `None` for non-layer cases.
fn build_layer(case: &Case) -> Result<Option<Box<dyn Layer<f64>>>, String> {
    let layer: Box<dyn Layer<f64>> = match case.layer.as_str() {
        "conv2d" => {
            if case.config["padding_mode"].as_str().unwrap_or("zeros") != "zeros" {
                return Err("padding_mode other than zeros".into());
            }
            let k = case.pair("kernel_size")?;
            let cfg = Conv2dConfig::new(
                case.usize("in_channels")?,
                case.usize("out_channels")?,
                k[0],
            )
            .kernel_hw(k)
            .stride_hw(case.pair("stride")?)
            .padding_hw(case.pair("padding")?)
            .dilation_hw(case.pair("dilation")?)
            .groups(case.usize("groups")?)
            .bias(case.bool("bias")?);
            Box::new(msg(Conv2d::new(cfg))?)
        }
        "max_pool2d" => {
            let k = case.pair("kernel_size")?;
            let cfg = MaxPool2dConfig::new(k[0])
                .kernel_hw(k)
                .stride_hw(case.pair("stride")?)
                .padding_hw(case.pair("padding")?)
                .dilation_hw(case.pair("dilation")?)
                .ceil_mode(case.bool("ceil_mode")?);
            Box::new(msg(MaxPool2d::new(cfg))?)
        }
        "avg_pool2d" => {
            let k = case.pair("kernel_size")?;
            let divisor = case.config["divisor_override"].as_u64().map(|d| d as usize);
            let cfg = AvgPool2dConfig::new(k[0])
                .kernel_hw(k)
                .stride_hw(case.pair("stride")?)
                .padding_hw(case.pair("padding")?)
                .ceil_mode(case.bool("ceil_mode")?)
                .count_include_pad(case.bool("count_include_pad")?)
                .divisor_override(divisor);
            Box::new(msg(AvgPool2d::new(cfg))?)
        }
        "adaptive_avg_pool2d" => Box::new(msg(AdaptiveAvgPool2d::new(
            AdaptiveAvgPool2dConfig::new(case.pair("output_size")?),
        ))?),
        "linear" => {
            let cfg = LinearConfig::new(case.usize("in_features")?, case.usize("out_features")?)
                .bias(case.bool("bias")?);
            Box::new(msg(Linear::new(cfg))?)
        }
        "relu" => Box::new(ReLU::new()),
        "sigmoid" => Box::new(Sigmoid::new()),
        "tanh" => Box::new(Tanh::new()),
        "leaky_relu" => Box::new(msg(LeakyReLU::new(
            LeakyReLUConfig::new().negative_slope(case.f64("negative_slope")?),
        ))?),
        "softmax" | "log_softmax" => {
            if case.usize("dim")? != 1 {
                return Err("softmax over a dim other than 1".into());
            }
            if case.layer == "softmax" {
                Box::new(Softmax::new())
            } else {
                Box::new(LogSoftmax::new())
            }
        }
        "local_response_norm" => Box::new(msg(LocalResponseNorm::new(
            LocalResponseNormConfig::new(case.usize("size")?)
                .alpha(case.f64("alpha")?)
                .beta(case.f64("beta")?)
                .k(case.f64("k")?),
        ))?),
        "batch_norm2d" => {
            // `momentum: null` is PyTorch's cumulative average.
            let cumulative = case.config["momentum"].is_null();
            let mut cfg = BatchNorm2dConfig::new(case.usize("num_features")?)
                .eps(case.f64("eps")?)
                .cumulative_average(cumulative)
                .affine(case.bool("affine")?)
                .track_running_stats(case.bool("track_running_stats")?);
            if !cumulative {
                cfg = cfg.momentum(case.f64("momentum")?);
            }
            Box::new(msg(BatchNorm2d::new(cfg))?)
        }
        "flatten" => {
            let end = case.config["end_dim"]
                .as_i64()
                .ok_or("config.end_dim missing")?;
            Box::new(msg(Flatten::new(
                FlattenConfig::new()
                    .start_dim(case.usize("start_dim")?)
                    .end_dim(end as isize),
            ))?)
        }
        _ => return Ok(None),
    };
    Ok(Some(layer))
}

/// Builds the composite block (ResNet block or Inception module) a case describes, or `None`.
fn build_block(case: &Case) -> Result<Option<Box<dyn Layer<f64>>>, String> {
    // The blocks' batch norms, as the case configures them (`bn_momentum: null` is PyTorch's
    // cumulative average).
    let norm = || -> Result<BatchNorm2dConfig, String> {
        let norm = BatchNorm2dConfig::new(0).eps(case.f64("bn_eps")?);
        Ok(match case.config["bn_momentum"].is_null() {
            true => norm.cumulative_average(true),
            false => norm.momentum(case.f64("bn_momentum")?),
        })
    };
    let block: Box<dyn Layer<f64>> = match case.layer.as_str() {
        "resnet_basicblock" => Box::new(msg(zoo::basic_block_with_norm(
            case.usize("inplanes")?,
            case.usize("planes")?,
            case.usize("stride")?,
            case.bool("downsample")?,
            &norm()?,
        ))?),
        "resnet_bottleneck" => Box::new(msg(zoo::bottleneck_with_norm(
            (
                case.usize("inplanes")?,
                case.usize("planes")?,
                case.usize("stride")?,
                case.bool("downsample")?,
            ),
            case.usize("groups")?,
            case.usize("base_width")?,
            case.usize("dilation")?,
            &norm()?,
        ))?),
        "inception_torchvision" | "inception_v1_paper" => {
            let c = |k: &str| case.usize(k);
            let args = (
                c("in_channels")?,
                c("ch1x1")?,
                c("ch3x3red")?,
                c("ch3x3")?,
                c("ch5x5red")?,
                c("ch5x5")?,
                c("pool_proj")?,
            );
            if case.layer == "inception_torchvision" {
                let channels = [args.0, args.1, args.2, args.3, args.4, args.5, args.6];
                Box::new(msg(zoo::inception_torchvision_with_norm(
                    channels,
                    &norm()?,
                ))?)
            } else {
                Box::new(msg(zoo::inception_v1_paper(
                    args.0, args.1, args.2, args.3, args.4, args.5, args.6,
                ))?)
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(block))
}

/// Runs a two-input merge case (`concat`, `residual_add`).
fn run_merge(merge: &mut dyn Merge<f64>, case: &Case, res: &mut Results) -> Result<(), String> {
    let (a, b) = (case.input("input")?, case.input("input2")?);
    let y = merge.forward(&[&a, &b]).map_err(|e| e.to_string())?;
    let mut grads = merge
        .backward(&case.input("grad_output")?)
        .map_err(|e| e.to_string())?
        .into_iter();
    res.put("output", y);
    res.put("grad_input", grads.next().ok_or("no gradient for input")?);
    res.put("grad_input2", grads.next().ok_or("no gradient for input2")?);
    Ok(())
}

/// Applies the stored gradients `grad_1..` to `param_initial`, recording the parameter and
/// the optimizer state after every step.
fn run_optimizer(
    opt: &mut dyn Optimizer<f64>,
    case: &Case,
    res: &mut Results,
) -> Result<(), String> {
    let steps = case.usize("steps")?;
    let mut param = Param::new(case.input("param_initial")?);
    for k in 1..=steps {
        param.grad = case.input(&format!("grad_{k}"))?;
        opt.update("param", &mut param).map_err(|e| e.to_string())?;
        res.put(format!("param_step_{k}"), param.value.clone());
        opt.visit_state(&mut |name, t| {
            if let Some(field) = name.strip_prefix("param.") {
                res.put(format!("state_step_{k}.{field}"), t.clone());
            }
        });
    }
    Ok(())
}

fn betas(case: &Case) -> Result<(f64, f64), String> {
    match case.config["betas"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
    {
        Some(v) if v.len() == 2 => Ok((v[0], v[1])),
        _ => Err("config.betas is not a pair".into()),
    }
}

/// An optimizer's boolean option: `false` when the config leaves it out (PyTorch's default).
fn flag(case: &Case, key: &str) -> bool {
    case.config[key].as_bool().unwrap_or(false)
}

fn compute(case: &Case) -> Result<Results, Outcome> {
    let fail = |why: String| Outcome::Fail {
        tensor: "-".into(),
        max_err: f64::INFINITY,
        why,
    };
    let mut res = Results::new();
    match build_layer(case) {
        Err(why) => return Err(fail(why)),
        Ok(Some(mut layer)) => {
            set_mode(layer.as_mut(), case).map_err(fail)?;
            load_params(layer.as_mut(), case, "").map_err(fail)?;
            run_layer(
                layer.as_mut(),
                case,
                &mut res,
                &|n| format!("grad_{n}"),
                &|n| format!("{n}_after"),
            )
            .map_err(fail)?;
            return Ok(res);
        }
        Ok(None) => {}
    }
    match build_block(case) {
        Err(why) => return Err(fail(why)),
        Ok(Some(mut block)) => {
            set_mode(block.as_mut(), case).map_err(fail)?;
            load_params(block.as_mut(), case, "param.").map_err(fail)?;
            run_layer(
                block.as_mut(),
                case,
                &mut res,
                &|n| format!("grad.{n}"),
                &|n| format!("param_after.{n}"),
            )
            .map_err(fail)?;
            return Ok(res);
        }
        Ok(None) => {}
    }
    match case.layer.as_str() {
        "concat" => run_merge(&mut Concat::new(), case, &mut res).map_err(fail)?,
        "residual_add" => run_merge(&mut Add::new(), case, &mut res).map_err(fail)?,
        "cross_entropy" => {
            let eps = case.f64("label_smoothing").map_err(fail)?;
            let target: Vec<usize> = case
                .input("target")
                .map_err(fail)?
                .iter()
                .map(|&t| t as usize)
                .collect();
            let (loss, grad) = as_failure(
                as_failure(CrossEntropyLoss::with_label_smoothing(eps))?
                    .forward(&case.input("input").map_err(fail)?, &target),
            )?;
            let g = case.input("grad_output").map_err(fail)?.sum();
            res.put("output", ndarray::arr0(loss).into_dyn());
            res.put("grad_input", grad * g);
        }
        "mse_loss" => {
            let (loss, grad) = as_failure(MseLoss::new().forward(
                &case.input("input").map_err(fail)?,
                &case.input("target").map_err(fail)?,
            ))?;
            let g = case.input("grad_output").map_err(fail)?.sum();
            res.put("output", ndarray::arr0(loss).into_dyn());
            res.put("grad_input", grad * g);
        }
        "sgd" => {
            let cfg = SgdConfig::new(case.f64("lr").map_err(fail)?)
                .momentum(case.f64("momentum").map_err(fail)?)
                .dampening(case.f64("dampening").map_err(fail)?)
                .nesterov(case.bool("nesterov").map_err(fail)?)
                .weight_decay(case.f64("weight_decay").map_err(fail)?)
                .maximize(flag(case, "maximize"));
            run_optimizer(&mut as_failure(Sgd::new(cfg))?, case, &mut res).map_err(fail)?;
        }
        "adam" | "adamw" => {
            let (b1, b2) = betas(case).map_err(fail)?;
            let (lr, eps, wd) = (
                case.f64("lr").map_err(fail)?,
                case.f64("eps").map_err(fail)?,
                case.f64("weight_decay").map_err(fail)?,
            );
            let (amsgrad, maximize) = (flag(case, "amsgrad"), flag(case, "maximize"));
            if case.layer == "adam" {
                let cfg = AdamConfig::new(lr).betas(b1, b2).eps(eps).weight_decay(wd);
                let cfg = cfg.amsgrad(amsgrad).maximize(maximize);
                run_optimizer(&mut as_failure(Adam::new(cfg))?, case, &mut res).map_err(fail)?;
            } else {
                let cfg = AdamWConfig::new(lr).betas(b1, b2).eps(eps).weight_decay(wd);
                let cfg = cfg.amsgrad(amsgrad).maximize(maximize);
                run_optimizer(&mut as_failure(AdamW::new(cfg))?, case, &mut res).map_err(fail)?;
            }
        }
        other => {
            return Err(Outcome::Unsupported {
                reason: format!("no builder for layer `{other}`"),
            })
        }
    }
    Ok(res)
}

/// Runs one case file.
pub fn run_case(path: &Path) -> Outcome {
    let case = match Case::load(path) {
        Ok(c) => c,
        Err(why) => {
            return Outcome::Fail {
                tensor: "-".into(),
                max_err: f64::INFINITY,
                why,
            }
        }
    };
    match compute(&case) {
        Ok(res) => res.compare(&case),
        Err(outcome) => outcome,
    }
}

/// The `*.safetensors` case files in `dir`, by file name, in name order.
pub fn case_files(dir: &Path) -> Result<Vec<String>, String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if path.extension().is_some_and(|x| x == "safetensors") {
            if let Some(name) = path.file_name() {
                files.push(name.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Checks `dir/index.json`, when there is one, against the case files in `dir`: every case the
/// index lists must be on disk with the listed size, and every case on disk must be listed.
/// A case lost from the folder (or a file the index does not know) is an error, so a run
/// cannot quietly cover fewer cases than the index promises.
pub fn check_index(dir: &Path) -> Result<(), String> {
    let path = dir.join("index.json");
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let index: Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let cases = index["cases"]
        .as_array()
        .ok_or_else(|| format!("{}: no `cases` list", path.display()))?;
    let mut listed = BTreeMap::new();
    for case in cases {
        let file = case["file"]
            .as_str()
            .ok_or_else(|| format!("{}: a case without a `file`", path.display()))?;
        if listed
            .insert(file.to_string(), case["bytes"].as_u64())
            .is_some()
        {
            return Err(format!("{}: `{file}` is listed twice", path.display()));
        }
    }
    if index["num_cases"].as_u64() != Some(listed.len() as u64) {
        return Err(format!(
            "{}: `num_cases` is {} but {} cases are listed",
            path.display(),
            index["num_cases"],
            listed.len()
        ));
    }
    let on_disk: BTreeSet<String> = case_files(dir)?.into_iter().collect();
    let missing: Vec<&String> = listed.keys().filter(|f| !on_disk.contains(*f)).collect();
    let unlisted: Vec<&String> = on_disk
        .iter()
        .filter(|f| !listed.contains_key(*f))
        .collect();
    if !missing.is_empty() || !unlisted.is_empty() {
        return Err(format!(
            "{}: listed but not on disk: {missing:?}; on disk but not listed: {unlisted:?}",
            path.display()
        ));
    }
    for (file, bytes) in &listed {
        let len = std::fs::metadata(dir.join(file))
            .map_err(|e| format!("{file}: {e}"))?
            .len();
        if *bytes != Some(len) {
            return Err(format!(
                "{}: `{file}` is {len} bytes, the index says {bytes:?}",
                path.display()
            ));
        }
    }
    Ok(())
}

/// Runs every `*.safetensors` case in `dir`, in name order, after checking the folder's
/// `index.json` (if any) lists exactly those cases ([`check_index`]).
pub fn run_dir(dir: &Path) -> Result<Vec<(String, Outcome)>, String> {
    check_index(dir)?;
    Ok(case_files(dir)?
        .into_iter()
        .map(|file| {
            let outcome = run_case(&dir.join(&file));
            (file, outcome)
        })
        .collect())
}

/// The one-line report of a case, as the runner prints it.
pub fn report_line(file: &str, outcome: &Outcome) -> String {
    match outcome {
        Outcome::Pass { max_err } => format!("PASS {file} max_err={max_err:.3e}"),
        Outcome::Fail {
            tensor,
            max_err,
            why,
        } => format!("FAIL {file} {tensor} max_err={max_err:.3e} ({why})"),
        Outcome::Unsupported { reason } => format!("UNSUPPORTED {file} {reason}"),
    }
}

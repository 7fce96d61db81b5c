//! From decoded protobuf to a [`Graph`]: one pass over the nodes in file order (ONNX requires
//! topological order), keeping for every value either the graph node that computes it (with
//! its shape for the build batch) or, for constants, its data.
//!
//! Invariant that makes symbolic batches work: every activation's dim 0 is the batch. Each
//! mapped layer keeps it (Flatten only from axis 1, Concat and Softmax never over dim 0), so
//! `Shape` of an activation can report [`Int::Batch`] at index 0.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::proto::{self, Attribute, Model, Node};
use super::tensor::{self, is_float_type, is_int_type, Const, Data, Int};
use super::{OnnxError, OnnxModel, OnnxOptions};
use crate::layer::{Layer, Merge, SlotMut};
use crate::layers::{
    AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, Add, AvgPool2d, AvgPool2dConfig, BatchNorm2d,
    BatchNorm2dConfig, Bias, Concat, Conv2d, Conv2dConfig, Dropout, DropoutConfig, Flatten,
    FlattenConfig, LeakyReLU, LeakyReLUConfig, Linear, LocalResponseNorm, LocalResponseNormConfig,
    LogSoftmax, MaxPool2d, MaxPool2dConfig, Pad2d, Pad2dConfig, ReLU, Sigmoid, Softmax, Tanh,
};
use crate::model::GraphBuilder;
use crate::tensor::{Float, Tensor};
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Padding `[h, w]` before and after the input, as ONNX gives it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pads {
    begin: [usize; 2],
    end: [usize; 2],
}

impl Pads {
    fn symmetric(&self) -> Option<[usize; 2]> {
        (self.begin == self.end).then_some(self.begin)
    }

    /// What both sides share: the padding a convolution layer can take itself.
    fn inner(&self) -> [usize; 2] {
        let ([hb, wb], [he, we]) = (self.begin, self.end);
        [hb.min(he), wb.min(we)]
    }

    /// The rest beyond `inner`, as a [`Pad2dConfig`] `[left, right, top, bottom]`.
    fn outer(&self, inner: [usize; 2]) -> [usize; 4] {
        let ([hb, wb], [he, we], [ih, iw]) = (self.begin, self.end, inner);
        [
            wb.saturating_sub(iw),
            we.saturating_sub(iw),
            hb.saturating_sub(ih),
            he.saturating_sub(ih),
        ]
    }
}

/// A pooling node's window and the output size ONNX gives it.
struct PoolWindow {
    hw: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    pads: Pads,
    ceil: bool,
    out: [usize; 2],
    /// `d·(k - 1) + 1` per axis.
    span: [usize; 2],
}

impl PoolWindow {
    /// Whether a pooling layer takes padding `p` itself (PyTorch's limit: half the kernel).
    fn fits_layer(&self, p: [usize; 2]) -> bool {
        p[0] <= self.kernel[0] / 2 && p[1] <= self.kernel[1] / 2
    }

    /// An explicit border `[left, right, top, bottom]`: ONNX's begin padding, and an end
    /// padding just long enough for the last window, so that floor mode gives `out` windows.
    fn explicit_pads(&self) -> [usize; 4] {
        let end = |n: usize, begin: usize, out: usize, s: usize, span: usize| {
            (out.saturating_sub(1) * s + span).saturating_sub(n + begin)
        };
        let ([h, w], [hb, wb], [oh, ow]) = (self.hw, self.pads.begin, self.out);
        let ([sh, sw], [kh, kw]) = (self.stride, self.span);
        [wb, end(w, wb, ow, sw, kw), hb, end(h, hb, oh, sh, kh)]
    }
}

/// What a value name stands for while importing.
#[derive(Clone, Debug)]
enum Val {
    /// Computed by graph node `node`; `shape` is its shape for the build batch.
    Act { node: String, shape: Vec<usize> },
    /// Known now.
    Const(Const),
}

enum Op<T: Float> {
    Layer(Box<dyn Layer<T>>),
    /// Elementwise sum of same-shape inputs.
    Add,
    /// Concatenation along a dim (never 0).
    Concat(usize),
    /// Kept open until the end so that a following `Add` of a constant can become its bias.
    Linear(Box<LinearParts<T>>),
}

/// The weight `[out, in]` and bias of a Linear layer still being assembled.
struct LinearParts<T: Float> {
    weight: Tensor<T>,
    bias: Option<Tensor<T>>,
}

struct Pending<T: Float> {
    name: String,
    inputs: Vec<String>,
    op: Op<T>,
}

struct Importer<'a, T: Float> {
    dir: Option<&'a Path>,
    opset: i64,
    batch_symbolic: bool,
    values: HashMap<String, Val>,
    uses: HashMap<String, usize>,
    pending: Vec<Pending<T>>,
    taken: HashSet<String>,
}

/// The node being mapped, for error messages and attribute lookup.
struct Ctx<'n> {
    node: &'n Node,
    name: String,
}

impl Ctx<'_> {
    fn err(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            op_type: self.node.op_type.clone(),
            node: self.name.clone(),
            message: message.into(),
        }
    }

    fn layer_err(&self, source: crate::Error) -> OnnxError {
        OnnxError::Layer {
            op_type: self.node.op_type.clone(),
            node: self.name.clone(),
            source: Box::new(source),
        }
    }

    fn input_name(&self, i: usize) -> &str {
        self.node.inputs.get(i).map_or("", String::as_str)
    }

    fn attr(&self, name: &str) -> Option<&Attribute> {
        self.node.attributes.iter().find(|a| a.name == name)
    }

    fn int(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) => {
                a.i.ok_or_else(|| self.err(format!("attribute `{name}` is not an integer")))
            }
        }
    }

    /// A 0/1 flag attribute; any other value is an error.
    fn flag(&self, name: &str) -> Result<bool, OnnxError> {
        match self.int(name, 0)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.err(format!("attribute `{name}` must be 0 or 1, got {v}"))),
        }
    }

    fn float(&self, name: &str, default: f64) -> Result<f64, OnnxError> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) => {
                a.f.map(f64::from)
                    .ok_or_else(|| self.err(format!("attribute `{name}` is not a float")))
            }
        }
    }

    fn ints(&self, name: &str) -> Option<&[i64]> {
        self.attr(name).map(|a| a.ints.as_slice())
    }

    fn string(&self, name: &str) -> Result<Option<String>, OnnxError> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => match &a.s {
                Some(s) => Ok(Some(String::from_utf8_lossy(s).into_owned())),
                None => Err(self.err(format!("attribute `{name}` is not a string"))),
            },
        }
    }

    /// A `[h, w]` pair from a 2-element attribute, or `default`; values must be >= `min`.
    fn pair(&self, name: &str, default: usize, min: i64) -> Result<[usize; 2], OnnxError> {
        match self.ints(name) {
            None => Ok([default; 2]),
            Some(&[h, w]) if h >= min && w >= min => Ok([h as usize, w as usize]),
            Some(v) => Err(self.err(format!(
                "`{name}` must be two values >= {min} (2-D), got {v:?}"
            ))),
        }
    }
}

pub(crate) fn import<T: Float>(
    bytes: &[u8],
    dir: Option<&Path>,
    options: &OnnxOptions,
) -> Result<OnnxModel<T>, OnnxError> {
    let model = Model::decode(bytes)?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| OnnxError::Malformed("the model has no graph".into()))?;
    let opset = model
        .opsets
        .iter()
        .find(|(d, _)| d.is_empty() || d == "ai.onnx")
        .map(|&(_, v)| v)
        .unwrap_or(if model.ir_version < 3 { 1 } else { 0 });
    if opset < 1 {
        return Err(OnnxError::Malformed(
            "the model imports no version of the default operator set".into(),
        ));
    }

    let mut values = HashMap::new();
    for init in &graph.initializers {
        let c = tensor::decode(init, dir)?;
        if values.insert(init.name.clone(), Val::Const(c)).is_some() {
            return Err(OnnxError::Malformed(format!(
                "initializer `{}` is defined twice",
                init.name
            )));
        }
    }
    // Older IR versions list initializers among the inputs too; the real input is the rest.
    let real_inputs: Vec<&proto::ValueInfo> = graph
        .inputs
        .iter()
        .filter(|i| !values.contains_key(&i.name))
        .collect();
    let input = match real_inputs.as_slice() {
        [one] => *one,
        [] => return Err(OnnxError::Malformed("the graph has no input".into())),
        many => {
            return Err(OnnxError::Unsupported(format!(
                "graphs with {} inputs ({}); convnet models take one",
                many.len(),
                many.iter()
                    .map(|i| i.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    if input.elem_type != 0 && !is_float_type(input.elem_type) {
        return Err(OnnxError::Unsupported(format!(
            "input `{}` has element type {}; convnet models take floating-point images",
            input.name, input.elem_type
        )));
    }
    let declared = input.shape.as_ref().ok_or_else(|| {
        OnnxError::Unsupported(format!("input `{}` declares no shape", input.name))
    })?;
    let given = options.input_shape.as_deref();
    if let Some(g) = given.filter(|g| g.len() != declared.len()) {
        return Err(OnnxError::Unsupported(format!(
            "input `{}` has rank {}, the size given has {} dims ({g:?})",
            input.name,
            declared.len(),
            g.len()
        )));
    }
    let mut input_shape = Vec::with_capacity(declared.len());
    let mut build_shape = Vec::with_capacity(declared.len());
    for (axis, d) in declared.iter().enumerate() {
        let wanted = given.and_then(|g| g.get(axis)).copied();
        match (axis, d) {
            (_, Some(v)) if *v > 0 => {
                let v = *v as usize;
                if let Some(w) = wanted.filter(|&w| w != v && axis > 0) {
                    return Err(OnnxError::Unsupported(format!(
                        "input `{}` has size {v} at axis {axis}, not the {w} given",
                        input.name
                    )));
                }
                input_shape.push(Some(v));
                build_shape.push(v);
            }
            (0, None) => {
                input_shape.push(None);
                build_shape.push(wanted.unwrap_or(1).max(1));
            }
            (_, None) => match wanted {
                Some(w) if w > 0 => {
                    input_shape.push(None);
                    build_shape.push(w);
                }
                _ => {
                    return Err(OnnxError::Unsupported(format!(
                        "input `{}` has a symbolic size at axis {axis}; give the size to import \
                         it at (OnnxOptions::input_shape; the onnx example's `summary --shape`, \
                         while `run` takes it from the input)",
                        input.name
                    )))
                }
            },
            (_, Some(v)) => {
                return Err(OnnxError::Unsupported(format!(
                    "input `{}` has size {v} at axis {axis}",
                    input.name
                )))
            }
        }
    }
    if input_shape.len() < 2 {
        return Err(OnnxError::Unsupported(format!(
            "input `{}` has rank {}; convnet models take [N, ...] batches",
            input.name,
            input_shape.len()
        )));
    }
    let batch_symbolic = input_shape.first().is_some_and(Option::is_none);
    crate::tensor::checked_numel("ONNX input", &build_shape)
        .map_err(|e| OnnxError::Unsupported(format!("input `{}`: {e}", input.name)))?;

    let mut uses: HashMap<String, usize> = HashMap::new();
    for node in &graph.nodes {
        for i in node.inputs.iter().filter(|i| !i.is_empty()) {
            *uses.entry(i.clone()).or_default() += 1;
        }
    }
    for o in &graph.outputs {
        *uses.entry(o.name.clone()).or_default() += 1;
    }

    values.insert(
        input.name.clone(),
        Val::Act {
            node: input.name.clone(),
            shape: build_shape.clone(),
        },
    );
    let mut imp = Importer::<T> {
        dir,
        opset,
        batch_symbolic,
        values,
        uses,
        pending: Vec::new(),
        taken: HashSet::from([input.name.clone()]),
    };
    for (index, node) in graph.nodes.iter().enumerate() {
        imp.node(index, node)?;
    }

    let output = graph
        .outputs
        .first()
        .ok_or_else(|| OnnxError::Malformed("the graph has no output".into()))?;
    let out_node = match imp.values.get(&output.name) {
        Some(Val::Act { node, .. }) if *node != input.name => node.clone(),
        Some(Val::Act { .. }) => {
            return Err(OnnxError::Unsupported(
                "the graph's output is its input unchanged".into(),
            ))
        }
        Some(Val::Const(_)) => {
            return Err(OnnxError::Unsupported(format!(
                "the graph's output `{}` is a constant",
                output.name
            )))
        }
        None => {
            return Err(OnnxError::Malformed(format!(
                "the graph's output `{}` is not computed by any node",
                output.name
            )))
        }
    };

    let mut builder = GraphBuilder::<T>::new(&input.name);
    for p in imp.pending {
        let from: Vec<&str> = p.inputs.iter().map(String::as_str).collect();
        let first = from.first().copied().unwrap_or_default();
        builder = match p.op {
            Op::Layer(l) => builder.boxed_layer(&p.name, first, l),
            Op::Add => builder.merge(&p.name, &from, Add::new()),
            Op::Concat(dim) => builder.merge(&p.name, &from, Concat::along(dim)),
            Op::Linear(parts) => {
                let layer = Linear::from_weights(parts.weight, parts.bias).map_err(|e| {
                    OnnxError::Layer {
                        op_type: "Gemm/MatMul".into(),
                        node: p.name.clone(),
                        source: Box::new(e),
                    }
                })?;
                builder.layer(&p.name, first, layer)
            }
        };
    }
    let graph_model = builder
        .output(&out_node)
        .build(&build_shape)
        .map_err(|e| OnnxError::Malformed(format!("the imported graph does not check: {e}")))?;
    Ok(OnnxModel {
        graph: graph_model,
        input_name: input.name.clone(),
        input_shape,
        build_shape,
        output_name: output.name.clone(),
        opset,
    })
}

impl<T: Float> Importer<'_, T> {
    fn value(&self, ctx: &Ctx, i: usize) -> Result<&Val, OnnxError> {
        let name = ctx
            .node
            .inputs
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ctx.err(format!("input {i} is missing")))?;
        self.values
            .get(name)
            .ok_or_else(|| OnnxError::MissingValue {
                op_type: ctx.node.op_type.clone(),
                node: ctx.name.clone(),
                value: name.clone(),
            })
    }

    fn optional(&self, ctx: &Ctx, i: usize) -> Result<Option<&Val>, OnnxError> {
        match ctx.node.inputs.get(i) {
            Some(n) if !n.is_empty() => self.value(ctx, i).map(Some),
            _ => Ok(None),
        }
    }

    /// Input `i` as an activation: `(graph node, shape)`.
    fn act(&self, ctx: &Ctx, i: usize) -> Result<(String, Vec<usize>), OnnxError> {
        match self.value(ctx, i)? {
            Val::Act { node, shape } => Ok((node.clone(), shape.clone())),
            Val::Const(_) => Err(ctx.err(format!(
                "input {i} (`{}`) is a constant; convnet layers take a computed value here",
                ctx.input_name(i)
            ))),
        }
    }

    /// Input `i` as a constant.
    fn constant(&self, ctx: &Ctx, i: usize) -> Result<Const, OnnxError> {
        match self.value(ctx, i)? {
            Val::Const(c) => Ok(c.clone()),
            Val::Act { .. } => Err(ctx.err(format!(
                "input {i} (`{}`) must be a constant (an initializer or a folded value)",
                ctx.input_name(i)
            ))),
        }
    }

    fn weight(&self, ctx: &Ctx, i: usize, what: &str) -> Result<Tensor<T>, OnnxError> {
        self.constant(ctx, i)?.to_tensor().ok_or_else(|| {
            ctx.err(format!(
                "{what} (input {i}) must be a floating-point tensor"
            ))
        })
    }

    fn define(&mut self, ctx: &Ctx, output: usize, v: Val) -> Result<(), OnnxError> {
        let Some(name) = ctx.node.outputs.get(output).filter(|n| !n.is_empty()) else {
            return Err(ctx.err(format!("output {output} is missing")));
        };
        if self.values.insert(name.clone(), v).is_some() {
            return Err(OnnxError::Malformed(format!(
                "value `{name}` is defined twice (again by node `{}`)",
                ctx.name
            )));
        }
        Ok(())
    }

    /// Refuses extra outputs that something reads (MaxPool's indices, Dropout's mask...).
    fn single_output(&self, ctx: &Ctx) -> Result<(), OnnxError> {
        for (i, o) in ctx.node.outputs.iter().enumerate().skip(1) {
            if !o.is_empty() && self.uses.get(o).copied().unwrap_or(0) > 0 {
                return Err(ctx.err(format!(
                    "output {i} (`{o}`) is used, but only the first output is supported"
                )));
            }
        }
        Ok(())
    }

    /// A unique graph-node name: the PyTorch module path of the node's weight when there is
    /// one (`conv1.weight` → `conv1`), else the ONNX node name, else `<op>_<index>`.
    fn node_name(&mut self, node: &Node, index: usize) -> String {
        let from_weight = node.inputs.get(1).and_then(|w| {
            w.strip_suffix(".weight")
                .filter(|p| !p.is_empty() && matches!(self.values.get(w), Some(Val::Const(_))))
        });
        let base = match (from_weight, node.name.is_empty()) {
            (Some(p), _) => p.to_string(),
            (None, false) => node.name.clone(),
            (None, true) => format!("{}_{index}", node.op_type),
        };
        let mut name = base.clone();
        let mut k = 2;
        while !self.taken.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    }

    fn push_layer(
        &mut self,
        ctx: &Ctx,
        from: String,
        in_shape: &[usize],
        layer: Box<dyn Layer<T>>,
    ) -> Result<(), OnnxError> {
        let shape = layer.output_shape(in_shape).map_err(|e| ctx.layer_err(e))?;
        self.single_output(ctx)?;
        self.pending.push(Pending {
            name: ctx.name.clone(),
            inputs: vec![from],
            op: Op::Layer(layer),
        });
        self.define(
            ctx,
            0,
            Val::Act {
                node: ctx.name.clone(),
                shape,
            },
        )
    }

    fn node(&mut self, index: usize, node: &Node) -> Result<(), OnnxError> {
        let label = if node.name.is_empty() {
            format!("#{index}")
        } else {
            node.name.clone()
        };
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(OnnxError::UnsupportedOperator {
                op_type: node.op_type.clone(),
                domain: node.domain.clone(),
                node: label,
            });
        }
        // Errors before naming use the file's label; graph nodes get a unique name.
        let probe = Ctx {
            node,
            name: label.clone(),
        };
        for (i, name) in node.inputs.iter().enumerate() {
            if !name.is_empty() {
                self.value(&probe, i)?;
            }
        }
        if node.outputs.is_empty() {
            return Err(probe.err("the node has no outputs"));
        }
        let ctx = if creates_layer(&node.op_type) {
            Ctx {
                node,
                name: self.node_name(node, index),
            }
        } else {
            probe
        };
        match node.op_type.as_str() {
            "Conv" => self.conv(&ctx),
            "Relu" => self.activation(&ctx, Box::new(ReLU::new())),
            "Sigmoid" => self.activation(&ctx, Box::new(Sigmoid::new())),
            "Tanh" => self.activation(&ctx, Box::new(Tanh::new())),
            "LeakyRelu" => {
                let alpha = ctx.float("alpha", 0.01)?;
                self.activation(
                    &ctx,
                    Box::new(
                        LeakyReLU::new(LeakyReLUConfig::new().negative_slope(alpha))
                            .map_err(|e| ctx.layer_err(e))?,
                    ),
                )
            }
            "MaxPool" => self.max_pool(&ctx),
            "AveragePool" => self.avg_pool(&ctx),
            "GlobalAveragePool" => {
                let (from, shape) = self.act(&ctx, 0)?;
                if shape.len() != 4 {
                    return Err(ctx.err(format!("input must be [N, C, H, W], got {shape:?}")));
                }
                let layer = AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new([1, 1]))
                    .map_err(|e| ctx.layer_err(e))?;
                self.push_layer(&ctx, from, &shape, Box::new(layer))
            }
            "LRN" => self.lrn(&ctx),
            "BatchNormalization" => self.batch_norm(&ctx),
            "Gemm" => self.gemm(&ctx),
            "MatMul" => self.matmul(&ctx),
            "Add" | "Sub" => self.add(&ctx),
            "Mul" | "Div" => self.arithmetic(&ctx),
            "Pad" => self.pad(&ctx),
            "ReduceMean" => self.reduce_mean(&ctx),
            "Slice" => self.slice(&ctx),
            "Transpose" => self.transpose(&ctx),
            "ConstantOfShape" => self.constant_of_shape(&ctx),
            "Concat" => self.concat(&ctx),
            "Flatten" => self.flatten(&ctx),
            "Reshape" => self.reshape(&ctx),
            "Dropout" => self.dropout(&ctx),
            "Softmax" | "LogSoftmax" => self.softmax(&ctx),
            "Identity" => {
                let v = self.value(&ctx, 0)?.clone();
                self.define(&ctx, 0, v)
            }
            "Cast" => self.cast(&ctx),
            "Constant" => self.constant_node(&ctx),
            "Shape" => self.shape(&ctx),
            "Gather" => self.gather(&ctx),
            "Unsqueeze" | "Squeeze" => self.squeeze(&ctx),
            _ => Err(OnnxError::UnsupportedOperator {
                op_type: node.op_type.clone(),
                domain: node.domain.clone(),
                node: label,
            }),
        }
    }

    fn activation(&mut self, ctx: &Ctx, layer: Box<dyn Layer<T>>) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        self.push_layer(ctx, from, &shape, layer)
    }

    /// `[h, w]` padding before and after from `pads` or `auto_pad`, for an `[h, w]` input.
    fn padding(
        &self,
        ctx: &Ctx,
        hw: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<Pads, OnnxError> {
        let auto = ctx.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        let same = |n: usize, k: usize, s: usize, d: usize| {
            // Output ceil(n / s); total padding so the last window ends at the edge.
            let out = n.div_ceil(s.max(1));
            // Saturating: absurd attributes reach the layer's own size checks.
            let span = d.saturating_mul(k.saturating_sub(1)).saturating_add(1);
            let total = out
                .saturating_sub(1)
                .saturating_mul(s)
                .saturating_add(span)
                .saturating_sub(n);
            let small = total / 2;
            if auto == "SAME_UPPER" {
                (small, total - small)
            } else {
                (total - small, small)
            }
        };
        match auto.as_str() {
            "NOTSET" => match ctx.ints("pads") {
                None => Ok(Pads::default()),
                Some(&[hb, wb, he, we]) if hb >= 0 && wb >= 0 && he >= 0 && we >= 0 => Ok(Pads {
                    begin: [hb as usize, wb as usize],
                    end: [he as usize, we as usize],
                }),
                Some(p) => Err(ctx.err(format!(
                    "`pads` must be four values >= 0 ([h_begin, w_begin, h_end, w_end]), got {p:?}"
                ))),
            },
            "VALID" => Ok(Pads::default()),
            "SAME_UPPER" | "SAME_LOWER" => {
                let [h, w] = hw;
                let (hb, he) = same(h, kernel[0], stride[0], dilation[0]);
                let (wb, we) = same(w, kernel[1], stride[1], dilation[1]);
                Ok(Pads {
                    begin: [hb, wb],
                    end: [he, we],
                })
            }
            other => Err(ctx.err(format!("unknown auto_pad `{other}`"))),
        }
    }

    /// Inserts a [`Pad2d`] in front of the node's layer: `(graph node, shape)` of its output.
    fn push_pad(
        &mut self,
        ctx: &Ctx,
        from: String,
        shape: &[usize],
        padding: [usize; 4],
        value: f64,
    ) -> Result<(String, Vec<usize>), OnnxError> {
        let layer = Pad2d::<T>::new(Pad2dConfig::new(padding).value(value))
            .map_err(|e| ctx.layer_err(e))?;
        let out = layer.output_shape(shape).map_err(|e| ctx.layer_err(e))?;
        let name = self.fresh_name(&format!("{}_pad", ctx.name));
        self.pending.push(Pending {
            name: name.clone(),
            inputs: vec![from],
            op: Op::Layer(Box::new(layer)),
        });
        Ok((name, out))
    }

    fn conv(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        let weight = self.weight(ctx, 1, "the weight")?;
        let &[out, in_per_group, kh, kw] = weight.shape() else {
            return Err(ctx.err(format!(
                "only 2-D convolutions are supported; the weight has shape {:?}",
                weight.shape()
            )));
        };
        if let Some(k) = ctx.ints("kernel_shape") {
            if k != [kh as i64, kw as i64] {
                return Err(ctx.err(format!(
                    "kernel_shape {k:?} disagrees with the weight's [{kh}, {kw}]"
                )));
            }
        }
        let &[_, c, h, w] = shape.as_slice() else {
            return Err(ctx.err(format!("input must be [N, C, H, W], got {shape:?}")));
        };
        let group = ctx.int("group", 1)?;
        if group < 1 || group as usize > c {
            return Err(ctx.err(format!("group {group} must be in 1..={c}")));
        }
        let group = group as usize;
        if in_per_group.checked_mul(group) != Some(c) {
            return Err(ctx.err(format!(
                "the weight takes {in_per_group} channels per group x {group} groups, the input has {c}"
            )));
        }
        let stride = ctx.pair("strides", 1, 1)?;
        let dilation = ctx.pair("dilations", 1, 1)?;
        let pads = self.padding(ctx, [h, w], [kh, kw], stride, dilation)?;
        let bias = match self.optional(ctx, 2)? {
            Some(_) => Some(self.weight(ctx, 2, "the bias")?),
            None => None,
        };
        let cfg = Conv2dConfig::new(c, out, kh)
            .kernel_hw([kh, kw])
            .stride_hw(stride)
            .padding_hw(pads.inner())
            .dilation_hw(dilation)
            .groups(group)
            .bias(bias.is_some());
        let layer = Conv2d::from_weights(cfg, weight, bias).map_err(|e| ctx.layer_err(e))?;
        // The convolution pads both sides by the smaller amount; a zero Pad2d adds the rest.
        let (from, shape) = match pads.outer(pads.inner()) {
            [0, 0, 0, 0] => (from, shape),
            extra => self.push_pad(ctx, from, &shape, extra, 0.0)?,
        };
        self.push_layer(ctx, from, &shape, Box::new(layer))
    }

    /// Kernel, stride, padding, dilation and output `[oh, ow]` (by ONNX's rule) of a pooling
    /// node on a `[N, C, H, W]` input.
    fn pool_window(&self, ctx: &Ctx, shape: &[usize]) -> Result<PoolWindow, OnnxError> {
        let &[_, _, h, w] = shape else {
            return Err(ctx.err(format!(
                "only 2-D pooling of [N, C, H, W] inputs is supported, got {shape:?}"
            )));
        };
        let kernel = match ctx.ints("kernel_shape") {
            Some(_) => ctx.pair("kernel_shape", 1, 1)?,
            None => return Err(ctx.err("the attribute `kernel_shape` is missing")),
        };
        let stride = ctx.pair("strides", 1, 1)?; // ONNX's default stride is 1, not the kernel
        let dilation = ctx.pair("dilations", 1, 1)?;
        let pads = self.padding(ctx, [h, w], kernel, stride, dilation)?;
        let ceil = ctx.flag("ceil_mode")?;
        // (n, k, s, d, begin, end) -> (output count, window span)
        let axis = |n: usize, k: usize, s: usize, d: usize, begin: usize, end: usize| {
            let span = d.checked_mul(k - 1)?.checked_add(1)?;
            let total = n.checked_add(begin)?.checked_add(end)?;
            let room = total.checked_sub(span)?;
            let mut out = if ceil { room.div_ceil(s) } else { room / s } + 1;
            // As PyTorch: in ceil mode a last window starting in the end padding is dropped.
            if ceil && (out - 1).checked_mul(s)? >= n + begin {
                out -= 1;
            }
            Some((out, span))
        };
        let ([kh, kw], [shh, sww], [dh, dw]) = (kernel, stride, dilation);
        let ([hb, wb], [he, we]) = (pads.begin, pads.end);
        let (Some((oh, sh)), Some((ow, sw))) =
            (axis(h, kh, shh, dh, hb, he), axis(w, kw, sww, dw, wb, we))
        else {
            return Err(ctx.err(format!(
                "no {kernel:?} window (dilation {dilation:?}) fits the {h}x{w} input with \
                 padding {:?} + {:?}",
                pads.begin, pads.end
            )));
        };
        Ok(PoolWindow {
            hw: [h, w],
            kernel,
            stride,
            dilation,
            pads,
            ceil,
            out: [oh, ow],
            span: [sh, sw],
        })
    }

    /// Pushes `layer` if it gives ONNX's output size; `Ok(false)` (and nothing pushed) if not.
    fn push_pool(
        &mut self,
        ctx: &Ctx,
        from: &str,
        shape: &[usize],
        win: &PoolWindow,
        layer: Box<dyn Layer<T>>,
    ) -> Result<bool, OnnxError> {
        let got = layer.output_shape(shape).map_err(|e| ctx.layer_err(e))?;
        if got.get(2..) != Some(&win.out[..]) {
            return Ok(false);
        }
        self.push_layer(ctx, from.to_string(), shape, layer)?;
        Ok(true)
    }

    fn mismatch(ctx: &Ctx, win: &PoolWindow, why: &str) -> OnnxError {
        ctx.err(format!(
            "padding {:?} before and {:?} after with ceil_mode {} ({why}) is not supported: \
             convnet's pooling cannot give ONNX's {:?} output",
            win.pads.begin, win.pads.end, win.ceil as u8, win.out
        ))
    }

    /// Pushes the first pooling layer, padded `p` with ceil mode `ceil` for each `(p, ceil)`
    /// of `tries` that fits the layer, that gives ONNX's output size; `Ok(false)` if none does.
    fn push_first_pool(
        &mut self,
        ctx: &Ctx,
        (from, shape): (&str, &[usize]),
        win: &PoolWindow,
        tries: &[([usize; 2], bool)],
        make: impl Fn([usize; 2], bool) -> crate::Result<Box<dyn Layer<T>>>,
    ) -> Result<bool, OnnxError> {
        for &(p, ceil) in tries.iter().filter(|(p, _)| win.fits_layer(*p)) {
            let layer = make(p, ceil).map_err(|e| ctx.layer_err(e))?;
            if self.push_pool(ctx, from, shape, win, layer)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Pushes an explicit border of `fill` (ONNX's padding, its end sized so that floor mode
    /// gives ONNX's output count) and the unpadded pooling `layer` after it.
    fn push_padded_pool(
        &mut self,
        ctx: &Ctx,
        (from, shape): (String, Vec<usize>),
        win: &PoolWindow,
        fill: f64,
        layer: crate::Result<Box<dyn Layer<T>>>,
        why: &str,
    ) -> Result<(), OnnxError> {
        let (padded, padded_shape) = self.push_pad(ctx, from, &shape, win.explicit_pads(), fill)?;
        let layer = layer.map_err(|e| ctx.layer_err(e))?;
        if self.push_pool(ctx, &padded, &padded_shape, win, layer)? {
            Ok(())
        } else {
            Err(Self::mismatch(ctx, win, why))
        }
    }

    fn max_pool(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        let win = self.pool_window(ctx, &shape)?;
        let cfg = MaxPool2dConfig::new(1)
            .kernel_hw(win.kernel)
            .stride_hw(win.stride)
            .dilation_hw(win.dilation);
        let make = |p: [usize; 2], ceil: bool| -> crate::Result<Box<dyn Layer<T>>> {
            Ok(Box::new(MaxPool2d::new(cfg.padding_hw(p).ceil_mode(ceil))?))
        };
        let tries: Vec<_> = win
            .pads
            .symmetric()
            .map(|p| (p, win.ceil))
            .into_iter()
            .collect();
        if self.push_first_pool(ctx, (&from, &shape), &win, &tries, make)? {
            return Ok(());
        }
        // Padding read as -inf is the same as an explicit -inf border.
        let layer = make([0, 0], false);
        self.push_padded_pool(
            ctx,
            (from, shape),
            &win,
            f64::NEG_INFINITY,
            layer,
            "max pooling",
        )
    }

    fn avg_pool(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        let win = self.pool_window(ctx, &shape)?;
        if win.dilation != [1, 1] {
            return Err(ctx.err(format!(
                "dilated average pooling ({:?}) is not supported",
                win.dilation
            )));
        }
        let include = ctx.flag("count_include_pad")?;
        let cfg = AvgPool2dConfig::new(1)
            .kernel_hw(win.kernel)
            .stride_hw(win.stride)
            .count_include_pad(include);
        let make = |p: [usize; 2], ceil: bool| -> crate::Result<Box<dyn Layer<T>>> {
            Ok(Box::new(AvgPool2d::new(cfg.padding_hw(p).ceil_mode(ceil))?))
        };
        let mut tries: Vec<_> = win
            .pads
            .symmetric()
            .map(|p| (p, win.ceil))
            .into_iter()
            .collect();
        if !include {
            // Padding never counts: only where the windows start (the begin padding) and how
            // many there are matter. Pad by `begin` on both sides; floor or ceil mode gives the
            // count.
            tries.extend([false, true].map(|ceil| (win.pads.begin, ceil)));
        }
        if self.push_first_pool(ctx, (&from, &shape), &win, &tries, make)? {
            return Ok(());
        }
        // Padding counts: an explicit zero border, if no window reaches past ONNX's padding
        // (beyond it ONNX would not count the cells).
        let [_, r, _, b] = win.explicit_pads();
        if !include || r > win.pads.end[1] || b > win.pads.end[0] {
            let why = format!("count_include_pad {}", include as u8);
            return Err(Self::mismatch(ctx, &win, &why));
        }
        let layer = make([0, 0], false);
        self.push_padded_pool(ctx, (from, shape), &win, 0.0, layer, "count_include_pad 1")
    }

    fn lrn(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        let size = ctx.int("size", 0)?;
        // ONNX sums channels [c - ⌊(n-1)/2⌋, c + ⌈(n-1)/2⌉], PyTorch [c - ⌊n/2⌋, c + ⌊(n-1)/2⌋]:
        // the same window for odd n only.
        if size < 1 || size % 2 == 0 {
            return Err(ctx.err(format!(
                "size {size}: only odd window sizes are supported (for even sizes ONNX's window \
                 is one channel later than PyTorch's)"
            )));
        }
        let layer = LocalResponseNorm::new(
            LocalResponseNormConfig::new(size as usize)
                .alpha(ctx.float("alpha", 1e-4)?)
                .beta(ctx.float("beta", 0.75)?)
                .k(ctx.float("bias", 1.0)?),
        )
        .map_err(|e| ctx.layer_err(e))?;
        self.push_layer(ctx, from, &shape, Box::new(layer))
    }

    fn batch_norm(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        if ctx.int("training_mode", 0)? != 0 {
            return Err(
                ctx.err("training_mode = 1 (batch statistics in inference) is not supported")
            );
        }
        let c = *shape
            .get(1)
            .ok_or_else(|| ctx.err("input has no channel axis"))?;
        let per_channel = |i: usize, what: &str| -> Result<Tensor<T>, OnnxError> {
            let t = self.weight(ctx, i, what)?;
            if t.shape() != [c] {
                return Err(ctx.err(format!(
                    "{what} has shape {:?}, expected [{c}] (one value per channel)",
                    t.shape()
                )));
            }
            Ok(t)
        };
        let scale = per_channel(1, "scale")?;
        let shift = per_channel(2, "B")?;
        let mean = per_channel(3, "input_mean")?;
        let var = per_channel(4, "input_var")?;
        let eps = ctx.float("epsilon", 1e-5)?;
        // ONNX: running = momentum·running + (1 - momentum)·batch; PyTorch's momentum is the
        // weight of the batch.
        let momentum = 1.0 - ctx.float("momentum", 0.9)?;
        let cfg = BatchNorm2dConfig::new(c)
            .eps(eps)
            .momentum(momentum.clamp(0.0, 1.0));
        let mut layer = BatchNorm2d::<T>::new(cfg).map_err(|e| ctx.layer_err(e))?;
        layer.visit_mut(&mut |name, slot| {
            let value = match name {
                "weight" => &scale,
                "bias" => &shift,
                "running_mean" => &mean,
                "running_var" => &var,
                _ => return,
            };
            match slot {
                SlotMut::Param(p) => p.value.assign(value),
                SlotMut::Buffer(b) => b.assign(value),
            }
        });
        self.push_layer(ctx, from, &shape, Box::new(layer))
    }

    fn push_linear(
        &mut self,
        ctx: &Ctx,
        from: String,
        shape: &[usize],
        weight: Tensor<T>,
        bias: Option<Tensor<T>>,
    ) -> Result<(), OnnxError> {
        let &[n, k] = shape else {
            return Err(ctx.err(format!(
                "the activation must be 2-D [N, features], got {shape:?}"
            )));
        };
        let &[out, inp] = weight.shape() else {
            return Err(ctx.err(format!("the weight must be 2-D, got {:?}", weight.shape())));
        };
        if inp != k {
            return Err(ctx.err(format!(
                "the weight takes {inp} features, the input has {k}"
            )));
        }
        self.single_output(ctx)?;
        self.pending.push(Pending {
            name: ctx.name.clone(),
            inputs: vec![from],
            op: Op::Linear(Box::new(LinearParts { weight, bias })),
        });
        self.define(
            ctx,
            0,
            Val::Act {
                node: ctx.name.clone(),
                shape: vec![n, out],
            },
        )
    }

    fn gemm(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        if ctx.flag("transA")? {
            return Err(ctx.err("transA = 1 (a transposed batch) is not supported"));
        }
        let b = self.weight(ctx, 1, "B")?;
        if b.ndim() != 2 {
            return Err(ctx.err(format!("B must be 2-D, got {:?}", b.shape())));
        }
        let alpha = T::of(ctx.float("alpha", 1.0)?);
        let beta = T::of(ctx.float("beta", 1.0)?);
        // Linear computes x·Wᵀ: W = alpha·B when transB, alpha·Bᵀ otherwise.
        let b = if ctx.flag("transB")? {
            b
        } else {
            b.reversed_axes().as_standard_layout().into_owned()
        };
        let weight = b.mapv(|v| v * alpha);
        let out = weight.shape().first().copied().unwrap_or(0);
        let bias = match self.optional(ctx, 2)? {
            None => None,
            Some(_) => {
                let c = self.weight(ctx, 2, "C")?;
                let flat: Vec<T> = c.iter().map(|&v| v * beta).collect();
                let shape_ok = matches!(c.shape(), [] | [1] | [1, 1])
                    || c.shape() == [out]
                    || c.shape() == [1, out];
                if !shape_ok {
                    return Err(ctx.err(format!(
                        "C has shape {:?}; a bias broadcast over the batch ([{out}], [1, {out}] \
                         or a scalar) is supported",
                        c.shape()
                    )));
                }
                let values = match flat.as_slice() {
                    &[v] => vec![v; out],
                    _ => flat,
                };
                Some(
                    Tensor::from_shape_vec(ndarray::IxDyn(&[out]), values)
                        .map_err(|e| ctx.err(format!("C: {e}")))?,
                )
            }
        };
        self.push_linear(ctx, from, &shape, weight, bias)
    }

    fn matmul(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        let b = self.weight(ctx, 1, "the second factor")?;
        if b.ndim() != 2 {
            return Err(ctx.err(format!(
                "the constant factor must be 2-D [in, out], got {:?}",
                b.shape()
            )));
        }
        let weight = b.reversed_axes().as_standard_layout().into_owned();
        self.push_linear(ctx, from, &shape, weight, None)
    }

    /// `Add` and `Sub`: of two same-shape computed values, of a computed value and a constant
    /// (a Linear bias or a [`Bias`] layer), of two constants (folded).
    fn add(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let op = ctx.node.op_type.as_str();
        if ctx.node.inputs.len() != 2 {
            return Err(ctx.err(format!("{op} takes two inputs")));
        }
        let (a, b) = (self.value(ctx, 0)?.clone(), self.value(ctx, 1)?.clone());
        match (a, b) {
            (
                Val::Act {
                    node: na,
                    shape: sa,
                },
                Val::Act {
                    node: nb,
                    shape: sb,
                },
            ) => {
                if op != "Add" {
                    return Err(
                        ctx.err("subtracting one computed value from another is not supported")
                    );
                }
                if sa != sb {
                    return Err(ctx.err(format!(
                        "broadcasting Add of two computed values ({sa:?} + {sb:?}) is not \
                         supported; both inputs must have the same shape"
                    )));
                }
                let name = self.fresh_name(&ctx.name);
                self.pending.push(Pending {
                    name: name.clone(),
                    inputs: vec![na, nb],
                    op: Op::Add,
                });
                self.define(
                    ctx,
                    0,
                    Val::Act {
                        node: name,
                        shape: sa,
                    },
                )
            }
            (Val::Act { node, shape }, Val::Const(c)) => {
                let c = if op == "Sub" { c.negated() } else { c };
                self.add_constant(ctx, node, shape, c)
            }
            (Val::Const(c), Val::Act { node, shape }) if op == "Add" => {
                self.add_constant(ctx, node, shape, c)
            }
            (Val::Const(_), Val::Act { .. }) => {
                Err(ctx.err("subtracting a computed value from a constant is not supported"))
            }
            (Val::Const(_), Val::Const(_)) => self.arithmetic(ctx),
        }
    }

    /// A constant added to a computed value: the bias of the Linear layer that computes it
    /// (`Add(MatMul(x, W), b)`), or else a [`Bias`] layer for a scalar or per-channel constant.
    fn add_constant(
        &mut self,
        ctx: &Ctx,
        node: String,
        shape: Vec<usize>,
        c: Const,
    ) -> Result<(), OnnxError> {
        let values = c
            .floats()
            .ok_or_else(|| ctx.err("the constant added must be floating-point"))?;
        let producer_value = ctx
            .node
            .inputs
            .iter()
            .find(|i| matches!(self.values.get(*i), Some(Val::Act { .. })))
            .cloned()
            .unwrap_or_default();
        let single_use = self.uses.get(&producer_value).copied().unwrap_or(0) == 1;
        let out = shape.last().copied().unwrap_or(0);
        let bias_ok = shape.len() == 2 && (c.dims == [out] || c.dims == [1, out]);
        let target = self.pending.iter_mut().find(|p| p.name == node);
        if let Some(Pending {
            op: Op::Linear(parts),
            ..
        }) = target
        {
            if parts.bias.is_none() && single_use && bias_ok {
                parts.bias = Some(
                    Tensor::from_shape_vec(
                        ndarray::IxDyn(&[out]),
                        values.into_iter().map(T::of).collect(),
                    )
                    .map_err(|e| ctx.err(format!("the bias: {e}")))?,
                );
                return self.define(ctx, 0, Val::Act { node, shape });
            }
        }
        let offsets = channel_offsets(&c.dims, &shape, &values).ok_or_else(|| {
            ctx.err(format!(
                "adding a constant of shape {:?} to a value of shape {shape:?} is not supported: \
                 only a scalar, one value per channel (dim 1: [C] for [N, C], [C, 1, 1] or \
                 [1, C, 1, 1] for [N, C, H, W]) or the bias of a MatMul/Gemm",
                c.dims
            ))
        })?;
        let n = offsets.len();
        let b = Tensor::from_shape_vec(
            ndarray::IxDyn(&[n]),
            offsets.into_iter().map(T::of).collect(),
        )
        .map_err(|e| ctx.err(format!("the constant: {e}")))?;
        let layer = Bias::from_weights(b).map_err(|e| ctx.layer_err(e))?;
        let name = self.fresh_name(&ctx.name);
        let ctx = Ctx {
            node: ctx.node,
            name,
        };
        self.push_layer(&ctx, node, &shape, Box::new(layer))
    }

    /// `Add`, `Sub`, `Mul`, `Div` of two constants (shape arithmetic), element by element with
    /// a one-element side broadcast.
    fn arithmetic(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let op = ctx.node.op_type.clone();
        let (a, b) = match (self.value(ctx, 0)?, self.value(ctx, 1)?) {
            (Val::Const(a), Val::Const(b)) => (a.clone(), b.clone()),
            _ => {
                return Err(ctx.err(format!(
                    "{op} of a computed value is not supported (only of constants, while \
                     folding shape arithmetic)"
                )))
            }
        };
        let (n, dims) = if a.len() >= b.len() {
            (a.len(), a.dims.clone())
        } else {
            (b.len(), b.dims.clone())
        };
        if !(a.len() == b.len() || a.len() == 1 || b.len() == 1) {
            return Err(ctx.err(format!(
                "{op} of constants of shapes {:?} and {:?}: only equal sizes or a scalar are \
                 folded",
                a.dims, b.dims
            )));
        }
        let at = |len: usize, i: usize| if len == 1 { 0 } else { i };
        let data = match (&a.data, &b.data) {
            (Data::Int(x), Data::Int(y)) => Data::Int(
                (0..n)
                    .map(|i| {
                        let (p, q) = (x.get(at(x.len(), i))?, y.get(at(y.len(), i))?);
                        int_op(&op, *p, *q)
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        ctx.err(format!(
                            "{op} of {} and {}: overflow, division by zero or the symbolic \
                             batch size in arithmetic that cannot keep it",
                            show_ints(x),
                            show_ints(y)
                        ))
                    })?,
            ),
            _ => {
                let (Some(x), Some(y)) = (a.floats(), b.floats()) else {
                    return Err(ctx.err("the symbolic batch size cannot be used as a float"));
                };
                Data::Float(
                    (0..n)
                        .map(|i| {
                            let (p, q) = (x.get(at(x.len(), i))?, y.get(at(y.len(), i))?);
                            Some(match op.as_str() {
                                "Add" => p + q,
                                "Sub" => p - q,
                                "Mul" => p * q,
                                _ => p / q,
                            })
                        })
                        .collect::<Option<_>>()
                        .ok_or_else(|| ctx.err("operands out of range"))?,
                )
            }
        };
        self.define(ctx, 0, Val::Const(Const { dims, data }))
    }

    /// A unique graph-node name from `base` (merges and layers named after the ONNX node).
    fn fresh_name(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 2;
        while !self.taken.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    }

    fn axis(&self, ctx: &Ctx, default: i64, rank: usize) -> Result<usize, OnnxError> {
        let a = ctx.int("axis", default)?;
        let r = rank as i64;
        if a < -r || a >= r.max(1) {
            return Err(ctx.err(format!("axis {a} is out of range for rank {rank}")));
        }
        Ok(if a < 0 { (a + r) as usize } else { a as usize })
    }

    fn concat(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let vals: Vec<Val> = (0..ctx.node.inputs.len())
            .map(|i| self.value(ctx, i).cloned())
            .collect::<Result<_, _>>()?;
        if vals.is_empty() {
            return Err(ctx.err("Concat needs at least one input"));
        }
        let consts: Vec<&Const> = vals
            .iter()
            .filter_map(|v| match v {
                Val::Const(c) => Some(c),
                Val::Act { .. } => None,
            })
            .collect();
        if consts.len() == vals.len() {
            if consts.iter().any(|c| c.dims.len() != 1) {
                return Err(ctx.err("only 1-D constants are concatenated while importing"));
            }
            self.axis(ctx, 0, 1)?;
            let ints: Option<Vec<Int>> = consts
                .iter()
                .map(|c| c.int_values())
                .collect::<Option<Vec<&[Int]>>>()
                .map(|parts| parts.concat());
            let folded = match ints {
                Some(v) => Const::ints(vec![v.len()], v),
                None => {
                    let mut v = Vec::new();
                    for c in &consts {
                        v.extend(
                            c.floats()
                                .ok_or_else(|| ctx.err("mixes the batch size with floats"))?,
                        );
                    }
                    Const {
                        dims: vec![v.len()],
                        data: Data::Float(v),
                    }
                }
            };
            return self.define(ctx, 0, Val::Const(folded));
        }
        let mut inputs = Vec::new();
        let mut shapes = Vec::new();
        for (i, v) in vals.into_iter().enumerate() {
            match v {
                Val::Act { node, shape } => {
                    inputs.push(node);
                    shapes.push(shape);
                }
                Val::Const(_) => {
                    return Err(ctx.err(format!(
                        "input {i} is a constant; concatenating constants with computed values is \
                         not supported"
                    )))
                }
            }
        }
        let rank = shapes.first().map_or(0, Vec::len);
        let axis = self.axis(ctx, 1, rank)?;
        if axis == 0 {
            return Err(ctx.err(
                "concatenation along the batch axis (0) is not supported; convnet layers keep \
                 dim 0 as the batch",
            ));
        }
        let merge = Concat::<T>::along(axis);
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let shape = merge.output_shape(&refs).map_err(|e| ctx.layer_err(e))?;
        let name = self.fresh_name(&ctx.name);
        self.pending.push(Pending {
            name: name.clone(),
            inputs,
            op: Op::Concat(axis),
        });
        self.define(ctx, 0, Val::Act { node: name, shape })
    }

    /// Pushes a [`Flatten`] of dims `start..=end` under a fresh name.
    fn push_flatten(
        &mut self,
        ctx: &Ctx,
        from: String,
        shape: &[usize],
        start: usize,
        end: usize,
    ) -> Result<(), OnnxError> {
        let layer = Flatten::new(FlattenConfig::new().start_dim(start).end_dim(end as isize))
            .map_err(|e| ctx.layer_err(e))?;
        let name = self.fresh_name(&ctx.name);
        let ctx = Ctx {
            node: ctx.node,
            name,
        };
        self.push_layer(&ctx, from, shape, Box::new(layer))
    }

    fn flatten(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        let rank = shape.len();
        let r = rank as i64;
        let a = ctx.int("axis", 1)?;
        if a < -r || a > r {
            return Err(ctx.err(format!("axis {a} is out of range for rank {rank}")));
        }
        let axis = if a < 0 { a + r } else { a } as usize;
        // ONNX gives [Π dims before axis, Π dims from axis]: the batch stays dim 0 only when
        // the dims between it and `axis` are all 1.
        let between = shape.get(1..axis.max(1)).unwrap_or_default();
        if axis == 0 || between.iter().any(|&d| d != 1) {
            return Err(ctx.err(format!(
                "Flatten with axis {a} of a {shape:?} value would merge the batch axis with \
                 others; only [N, everything else] is supported"
            )));
        }
        self.push_flatten(ctx, from, &shape, 1, rank.saturating_sub(1))
    }

    /// The dims after the batch that a Reshape of an activation of `shape` to `target` gives,
    /// or `None` when the batch would not stay dim 0 or the sizes disagree.
    fn reshape_dims(
        &self,
        target: &[Int],
        shape: &[usize],
        allow_zero: bool,
    ) -> Option<Vec<usize>> {
        let (&t0, rest_t) = target.split_first()?;
        let (&n, rest) = shape.split_first()?;
        let numel: usize = rest.iter().product();
        let mut dims = Vec::with_capacity(rest_t.len());
        let mut infer = None;
        for (i, t) in rest_t.iter().enumerate() {
            match *t {
                Int::Known(0) if !allow_zero => dims.push(*rest.get(i)?),
                Int::Known(-1) if infer.is_none() => {
                    infer = Some(i);
                    dims.push(1);
                }
                Int::Known(k) if k >= 0 => dims.push(usize::try_from(k).ok()?),
                _ => return None,
            }
        }
        let known: usize = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        match t0 {
            Int::Batch => {}
            Int::Known(0) if !allow_zero => {}
            Int::Known(-1) if infer.is_none() => return (known == numel).then_some(dims),
            Int::Known(k) if !self.batch_symbolic && k == n as i64 => {}
            _ => return None,
        }
        match infer {
            Some(i) => {
                if known == 0 || numel % known != 0 {
                    return None;
                }
                *dims.get_mut(i)? = numel / known;
            }
            None if known != numel => return None,
            None => {}
        }
        Some(dims)
    }

    fn reshape(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let target = self.constant(ctx, 1)?;
        let target = target
            .int_values()
            .ok_or_else(|| ctx.err("the target shape must be integers"))?
            .to_vec();
        let allow_zero = ctx.flag("allowzero")?;
        match self.value(ctx, 0)?.clone() {
            Val::Const(c) => {
                // Reshaping a constant: only the dims change.
                let dims = resolve_shape(&target, &c.dims, c.len(), allow_zero)
                    .ok_or_else(|| ctx.err(format!("cannot reshape {:?} to {target:?}", c.dims)))?;
                self.define(ctx, 0, Val::Const(Const { dims, data: c.data }))
            }
            Val::Act { node, shape } => {
                let sym: Vec<Int> = shape
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| {
                        if i == 0 && self.batch_symbolic {
                            Int::Batch
                        } else {
                            Int::Known(d as i64)
                        }
                    })
                    .collect();
                let unsupported = |why: &str| {
                    ctx.err(format!(
                        "reshaping {} to {} is not supported: {why}",
                        show_ints(&sym),
                        show_ints(&target)
                    ))
                };
                let dims = self
                    .reshape_dims(&target, &shape, allow_zero)
                    .ok_or_else(|| {
                        unsupported("the batch must stay dim 0 and the sizes must agree")
                    })?;
                let rest = shape.get(1..).unwrap_or_default();
                if dims == rest {
                    return self.define(ctx, 0, Val::Act { node, shape });
                }
                // A flatten of one run of neighbouring dims (any run giving these dims moves
                // the same row-major data).
                let run = (0..rest.len()).find_map(|s| {
                    (s..rest.len()).find_map(|e| {
                        let merged: usize = rest.get(s..=e)?.iter().product();
                        let mut cand = rest.get(..s)?.to_vec();
                        cand.push(merged);
                        cand.extend_from_slice(rest.get(e + 1..)?);
                        (cand == dims).then_some((s + 1, e + 1))
                    })
                });
                let (start, end) = run.ok_or_else(|| {
                    unsupported("only merging neighbouring dims after the batch (a flatten) is")
                })?;
                self.push_flatten(ctx, node, &shape, start, end)
            }
        }
    }

    fn dropout(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        let ratio = if self.opset < 12 {
            ctx.float("ratio", 0.5)?
        } else {
            match self.optional(ctx, 1)? {
                None => 0.5,
                Some(_) => {
                    let c = self.constant(ctx, 1)?;
                    match c.floats().as_deref() {
                        Some(&[r]) => r,
                        _ => return Err(ctx.err("the ratio must be a constant scalar")),
                    }
                }
            }
        };
        let layer = Dropout::new(DropoutConfig::new().p(ratio)).map_err(|e| ctx.layer_err(e))?;
        let name = self.fresh_name(&ctx.name);
        let ctx = Ctx {
            node: ctx.node,
            name,
        };
        self.push_layer(&ctx, from, &shape, Box::new(layer))
    }

    fn softmax(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        let default = if self.opset < 13 { 1 } else { -1 };
        let axis = self.axis(ctx, default, shape.len())?;
        // Before opset 13 the input is seen as 2-D [Π dims before axis, Π dims from axis]: the
        // same as a softmax over dim 1 when the dims after dim 1 are all 1.
        let trailing_ones = shape.get(2..).unwrap_or_default().iter().all(|&d| d == 1);
        let over_dim1 = axis == 1 && (self.opset >= 13 || trailing_ones);
        if !over_dim1 {
            return Err(ctx.err(format!(
                "a softmax over axis {axis} of a {shape:?} value (opset {}) is not supported; \
                 convnet's Softmax and LogSoftmax are over dim 1",
                self.opset
            )));
        }
        let layer: Box<dyn Layer<T>> = if ctx.node.op_type == "Softmax" {
            Box::new(Softmax::new())
        } else {
            Box::new(LogSoftmax::new())
        };
        let name = self.fresh_name(&ctx.name);
        let ctx = Ctx {
            node: ctx.node,
            name,
        };
        self.push_layer(&ctx, from, &shape, layer)
    }

    /// `ReduceMean` over H and W of an image (how the dynamo exporter writes
    /// `adaptive_avg_pool2d(x, 1)`): [`AdaptiveAvgPool2d`] `[1, 1]`, then a [`Flatten`] when
    /// the reduced axes are dropped.
    fn reduce_mean(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        let rank = shape.len();
        let axes: Vec<i64> = if self.opset < 18 {
            ctx.ints("axes").map(<[i64]>::to_vec).unwrap_or_default()
        } else {
            match self.optional(ctx, 1)? {
                None => Vec::new(),
                Some(_) => self.known_ints(ctx, 1, "axes")?,
            }
        };
        let mut axes: Vec<i64> = axes
            .iter()
            .map(|&a| if a < 0 { a + rank as i64 } else { a })
            .collect();
        axes.sort_unstable();
        axes.dedup();
        if rank != 4 || axes != [2, 3] {
            return Err(ctx.err(format!(
                "a mean over axes {axes:?} of a {shape:?} value is not supported (only over H \
                 and W of [N, C, H, W], a global average pooling)"
            )));
        }
        let keep = ctx.int("keepdims", 1)? != 0;
        let layer = AdaptiveAvgPool2d::<T>::new(AdaptiveAvgPool2dConfig::new([1, 1]))
            .map_err(|e| ctx.layer_err(e))?;
        let name = self.fresh_name(&ctx.name);
        let pooled = Ctx {
            node: ctx.node,
            name,
        };
        if keep {
            return self.push_layer(&pooled, from, &shape, Box::new(layer));
        }
        let out = layer.output_shape(&shape).map_err(|e| ctx.layer_err(e))?;
        self.pending.push(Pending {
            name: pooled.name.clone(),
            inputs: vec![from],
            op: Op::Layer(Box::new(layer)),
        });
        self.push_flatten(ctx, pooled.name, &out, 1, 3)
    }

    /// Constant padding of the last two dims: a [`Pad2d`].
    fn pad(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        let mode = ctx.string("mode")?.unwrap_or_else(|| "constant".into());
        if mode != "constant" {
            return Err(ctx.err(format!(
                "mode `{mode}` is not supported (only constant padding)"
            )));
        }
        let rank = shape.len();
        let known = |c: Const, what: &str| -> Result<Vec<i64>, OnnxError> {
            c.int_values()
                .ok_or_else(|| ctx.err(format!("{what} must be integers")))?
                .iter()
                .map(|i| match i {
                    Int::Known(k) => Ok(*k),
                    Int::Batch => Err(ctx.err(format!("{what} cannot hold the batch size"))),
                })
                .collect()
        };
        let (pads, value) = if self.opset < 11 {
            let pads = ctx
                .ints("pads")
                .or_else(|| ctx.ints("paddings"))
                .ok_or_else(|| ctx.err("the attribute `pads` is missing"))?
                .to_vec();
            (pads, ctx.float("value", 0.0)?)
        } else {
            let pads = known(self.constant(ctx, 1)?, "pads")?;
            let value = match self.optional(ctx, 2)? {
                None => 0.0,
                Some(_) => match self.constant(ctx, 2)?.floats().as_deref() {
                    Some(&[v]) => v,
                    Some(&[]) => 0.0,
                    _ => return Err(ctx.err("constant_value must be a scalar")),
                },
            };
            (pads, value)
        };
        let axes: Vec<usize> = match self.optional(ctx, 3)? {
            None => (0..rank).collect(),
            Some(_) => known(self.constant(ctx, 3)?, "axes")?
                .into_iter()
                .map(|a| {
                    let r = rank as i64;
                    if (-r..r).contains(&a) {
                        Ok((if a < 0 { a + r } else { a }) as usize)
                    } else {
                        Err(ctx.err(format!("axis {a} is out of range for rank {rank}")))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        if pads.len() != 2 * axes.len() {
            return Err(ctx.err(format!(
                "{} pads for {} axes (begin values, then end values)",
                pads.len(),
                axes.len()
            )));
        }
        let (begins, ends) = pads.split_at(axes.len());
        let mut border = [0usize; 4]; // left, right, top, bottom
        for ((&axis, &b), &e) in axes.iter().zip(begins).zip(ends) {
            if b == 0 && e == 0 {
                continue;
            }
            if b < 0 || e < 0 {
                return Err(ctx.err(format!(
                    "negative padding (cropping) of axis {axis} is not supported"
                )));
            }
            let (b, e) = (b as usize, e as usize);
            match (rank.checked_sub(axis), border.as_mut_slice()) {
                (Some(1), [l, r, _, _]) => (*l, *r) = (b, e),
                (Some(2), [_, _, t, bo]) if axis >= 2 => (*t, *bo) = (b, e),
                _ => {
                    return Err(ctx.err(format!(
                        "padding axis {axis} of a {shape:?} value is not supported (only the \
                         last two axes, never the batch)"
                    )))
                }
            }
        }
        if rank < 3 {
            return Err(ctx.err(format!(
                "padding a {shape:?} value is not supported (only [N, C, ..., H, W])"
            )));
        }
        let layer =
            Pad2d::new(Pad2dConfig::new(border).value(value)).map_err(|e| ctx.layer_err(e))?;
        let name = self.fresh_name(&ctx.name);
        let ctx = Ctx {
            node: ctx.node,
            name,
        };
        self.push_layer(&ctx, from, &shape, Box::new(layer))
    }

    fn cast(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let to = ctx.int("to", 0)?;
        match self.value(ctx, 0)?.clone() {
            Val::Act { node, shape } if is_float_type(to) => {
                self.define(ctx, 0, Val::Act { node, shape })
            }
            Val::Act { .. } => Err(ctx.err(format!(
                "casting a computed value to type {to} is not supported (only to floats)"
            ))),
            Val::Const(c) => {
                let data = if is_float_type(to) {
                    Data::Float(c.floats().ok_or_else(|| {
                        ctx.err("the symbolic batch size cannot be cast to a float")
                    })?)
                } else if is_int_type(to) {
                    match c.data {
                        Data::Int(v) => Data::Int(v),
                        Data::Float(v) => {
                            Data::Int(v.iter().map(|&x| Int::Known(x.trunc() as i64)).collect())
                        }
                    }
                } else {
                    return Err(ctx.err(format!("casting to type {to} is not supported")));
                };
                self.define(ctx, 0, Val::Const(Const { dims: c.dims, data }))
            }
        }
    }

    fn constant_node(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let a = ctx
            .node
            .attributes
            .first()
            .ok_or_else(|| ctx.err("a Constant needs a value attribute"))?;
        let c = match a.name.as_str() {
            "value" => {
                let t =
                    a.t.as_ref()
                        .ok_or_else(|| ctx.err("`value` is not a tensor"))?;
                tensor::decode(t, self.dir)?
            }
            "value_float" => Const {
                dims: vec![],
                data: Data::Float(vec![
                    a.f.ok_or_else(|| ctx.err("`value_float` is empty"))? as f64
                ]),
            },
            "value_floats" => Const {
                dims: vec![a.floats.len()],
                data: Data::Float(a.floats.iter().map(|&x| x as f64).collect()),
            },
            "value_int" => Const::ints(
                vec![],
                vec![Int::Known(
                    a.i.ok_or_else(|| ctx.err("`value_int` is empty"))?,
                )],
            ),
            "value_ints" => Const::ints(
                vec![a.ints.len()],
                a.ints.iter().map(|&x| Int::Known(x)).collect(),
            ),
            other => return Err(ctx.err(format!("constant attribute `{other}` is not supported"))),
        };
        self.define(ctx, 0, Val::Const(c))
    }

    fn shape(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let dims: Vec<Int> = match self.value(ctx, 0)? {
            Val::Act { shape, .. } => shape
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    if i == 0 && self.batch_symbolic {
                        Int::Batch
                    } else {
                        Int::Known(d as i64)
                    }
                })
                .collect(),
            Val::Const(c) => c.dims.iter().map(|&d| Int::Known(d as i64)).collect(),
        };
        let r = dims.len() as i64;
        let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let start = clamp(ctx.int("start", 0)?);
        let end = clamp(ctx.int("end", r)?);
        let dims = dims.get(start..end.max(start)).unwrap_or_default().to_vec();
        self.define(ctx, 0, Val::Const(Const::ints(vec![dims.len()], dims)))
    }

    fn gather(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let data = self.constant(ctx, 0)?;
        let indices = self.constant(ctx, 1)?;
        let (&[n], 0) = (data.dims.as_slice(), ctx.int("axis", 0)?) else {
            return Err(
                ctx.err("only gathering from a 1-D constant (shape arithmetic) is supported")
            );
        };
        let n = n as i64;
        let idx: Vec<usize> = indices
            .int_values()
            .ok_or_else(|| ctx.err("indices must be integers"))?
            .iter()
            .map(|i| match i {
                Int::Known(k) if (-n..n).contains(k) => {
                    Ok((if *k < 0 { k + n } else { *k }) as usize)
                }
                _ => Err(ctx.err(format!("index {i:?} is out of range for {n} values"))),
            })
            .collect::<Result<_, _>>()?;
        let data_out = match &data.data {
            Data::Int(v) => Data::Int(idx.iter().filter_map(|&i| v.get(i).copied()).collect()),
            Data::Float(v) => Data::Float(idx.iter().filter_map(|&i| v.get(i).copied()).collect()),
        };
        if data_out_len(&data_out) != idx.len() {
            return Err(ctx.err("the constant has fewer values than its dims say"));
        }
        self.define(
            ctx,
            0,
            Val::Const(Const {
                dims: indices.dims.clone(),
                data: data_out,
            }),
        )
    }

    fn squeeze(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let c = match self.value(ctx, 0)? {
            Val::Const(c) => c.clone(),
            Val::Act { .. } => {
                return Err(ctx.err("only constants (shape arithmetic) can be (un)squeezed"))
            }
        };
        let axes: Option<Vec<i64>> = if self.opset < 13 {
            ctx.ints("axes").map(<[i64]>::to_vec)
        } else {
            match self.optional(ctx, 1)? {
                None => None,
                Some(_) => Some(
                    self.constant(ctx, 1)?
                        .int_values()
                        .ok_or_else(|| ctx.err("axes must be integers"))?
                        .iter()
                        .map(|i| match i {
                            Int::Known(k) => Ok(*k),
                            Int::Batch => Err(ctx.err("axes cannot be the batch size")),
                        })
                        .collect::<Result<_, _>>()?,
                ),
            }
        };
        let unsqueeze = ctx.node.op_type == "Unsqueeze";
        let rank = c.dims.len() as i64
            + if unsqueeze {
                axes.as_ref().map_or(0, |a| a.len() as i64)
            } else {
                0
            };
        let norm = |a: i64| -> Result<usize, OnnxError> {
            if a < -rank || a >= rank {
                return Err(ctx.err(format!("axis {a} is out of range for rank {rank}")));
            }
            Ok((if a < 0 { a + rank } else { a }) as usize)
        };
        let dims = if unsqueeze {
            let axes = axes.ok_or_else(|| ctx.err("Unsqueeze needs axes"))?;
            let mut set: Vec<usize> = axes.iter().map(|&a| norm(a)).collect::<Result<_, _>>()?;
            set.sort_unstable();
            set.dedup();
            let mut dims = c.dims.clone();
            for a in set {
                if a > dims.len() {
                    return Err(ctx.err(format!("axis {a} is out of range")));
                }
                dims.insert(a, 1);
            }
            dims
        } else {
            let set: Vec<usize> = match axes {
                Some(a) => a.iter().map(|&a| norm(a)).collect::<Result<_, _>>()?,
                None => (c.dims.iter().enumerate())
                    .filter(|&(_, &d)| d == 1)
                    .map(|(i, _)| i)
                    .collect(),
            };
            if set.iter().any(|&a| c.dims.get(a) != Some(&1)) {
                return Err(ctx.err(format!("cannot squeeze {:?} at {set:?}", c.dims)));
            }
            c.dims
                .iter()
                .enumerate()
                .filter(|(i, _)| !set.contains(i))
                .map(|(_, &d)| d)
                .collect()
        };
        self.define(ctx, 0, Val::Const(Const { dims, data: c.data }))
    }

    /// Integer values of constant input `i` (no symbolic batch).
    fn known_ints(&self, ctx: &Ctx, i: usize, what: &str) -> Result<Vec<i64>, OnnxError> {
        self.constant(ctx, i)?
            .int_values()
            .ok_or_else(|| ctx.err(format!("{what} must be integers")))?
            .iter()
            .map(|v| match v {
                Int::Known(k) => Ok(*k),
                Int::Batch => Err(ctx.err(format!("{what} cannot hold the symbolic batch size"))),
            })
            .collect()
    }

    /// `Slice` of a constant (shape arithmetic: `x.shape[2:]`, the reversed pads of `F.pad`).
    fn slice(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let c = self.constant(ctx, 0)?;
        let rank = c.dims.len();
        let list = |i: usize, name: &str| -> Result<Option<Vec<i64>>, OnnxError> {
            if self.opset < 10 {
                return Ok(ctx.ints(name).map(<[i64]>::to_vec));
            }
            match self.optional(ctx, i)? {
                None => Ok(None),
                Some(_) => self.known_ints(ctx, i, name).map(Some),
            }
        };
        let starts = list(1, "starts")?.ok_or_else(|| ctx.err("`starts` is missing"))?;
        let ends = list(2, "ends")?.ok_or_else(|| ctx.err("`ends` is missing"))?;
        let axes = list(3, "axes")?.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = list(4, "steps")?.unwrap_or_else(|| vec![1; starts.len()]);
        if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(ctx.err("starts, ends, axes and steps differ in length"));
        }
        // Per axis, the source indices kept.
        let mut picks: Vec<Vec<usize>> = c.dims.iter().map(|&d| (0..d).collect()).collect();
        for (((&s, &e), &a), &step) in starts.iter().zip(&ends).zip(&axes).zip(&steps) {
            let r = rank as i64;
            let axis = if a < 0 { a + r } else { a };
            let n = usize::try_from(axis)
                .ok()
                .and_then(|x| c.dims.get(x).copied())
                .ok_or_else(|| ctx.err(format!("axis {a} is out of range for rank {rank}")))?
                as i64;
            if step == 0 {
                return Err(ctx.err("a step of 0"));
            }
            // ONNX: negative indices count from the end; starts and ends are clamped to [0, n]
            // for positive steps and to [-1, n - 1] for negative ones.
            let norm = |v: i64, lo: i64, hi: i64| {
                (if v < 0 { v.saturating_add(n) } else { v }).clamp(lo, hi)
            };
            let mut kept = Vec::new();
            if step > 0 {
                let (mut i, e) = (norm(s, 0, n), norm(e, 0, n));
                while i < e {
                    kept.push(i as usize);
                    i = i.saturating_add(step);
                }
            } else {
                let (mut i, e) = (norm(s, -1, n - 1), norm(e, -1, n - 1));
                while i > e {
                    kept.push(i as usize);
                    i = i.saturating_add(step);
                }
            }
            if let Some(p) = picks.get_mut(axis as usize) {
                *p = kept;
            }
        }
        let out_dims: Vec<usize> = picks.iter().map(Vec::len).collect();
        let strides = row_major_strides(&c.dims);
        let folded = remap(&c, &out_dims, |idx| {
            idx.iter()
                .zip(&picks)
                .zip(&strides)
                .map(|((&i, p), &s)| p.get(i).copied().unwrap_or(0) * s)
                .sum()
        })
        .ok_or_else(|| ctx.err("the constant has fewer values than its dims say"))?;
        self.define(ctx, 0, Val::Const(folded))
    }

    /// `Transpose` of a constant.
    fn transpose(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let c = match self.value(ctx, 0)? {
            Val::Const(c) => c.clone(),
            Val::Act { .. } => {
                return Err(ctx.err(
                    "transposing a computed value is not supported (only constants are folded)",
                ))
            }
        };
        let rank = c.dims.len();
        let perm: Vec<usize> = match ctx.ints("perm") {
            None => (0..rank).rev().collect(),
            Some(p) => p
                .iter()
                .map(|&a| usize::try_from(a).ok().filter(|&a| a < rank))
                .collect::<Option<_>>()
                .ok_or_else(|| ctx.err(format!("perm {p:?} is not a permutation of 0..{rank}")))?,
        };
        let mut seen = perm.clone();
        seen.sort_unstable();
        if seen != (0..rank).collect::<Vec<_>>() {
            return Err(ctx.err(format!("perm {perm:?} is not a permutation of 0..{rank}")));
        }
        let strides = row_major_strides(&c.dims);
        let out_dims: Vec<usize> = perm
            .iter()
            .filter_map(|&a| c.dims.get(a).copied())
            .collect();
        let src_strides: Vec<usize> = perm
            .iter()
            .filter_map(|&a| strides.get(a).copied())
            .collect();
        let folded = remap(&c, &out_dims, |idx| {
            idx.iter().zip(&src_strides).map(|(&i, &s)| i * s).sum()
        })
        .ok_or_else(|| ctx.err("the constant has fewer values than its dims say"))?;
        self.define(ctx, 0, Val::Const(folded))
    }

    /// `ConstantOfShape`: a constant filled with one value.
    fn constant_of_shape(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let dims: Vec<usize> = self
            .known_ints(ctx, 0, "the shape")?
            .into_iter()
            .map(|d| usize::try_from(d).map_err(|_| ctx.err(format!("dim {d} is negative"))))
            .collect::<Result<_, _>>()?;
        let n = crate::tensor::checked_numel("ConstantOfShape", &dims)
            .map_err(|e| ctx.err(e.to_string()))?;
        let value = match ctx.attr("value").and_then(|a| a.t.as_ref()) {
            None => Const {
                dims: vec![1],
                data: Data::Float(vec![0.0]),
            },
            Some(t) => tensor::decode(t, self.dir)?,
        };
        let data = match &value.data {
            Data::Float(v) if v.len() == 1 => Data::Float(v.repeat(n)),
            Data::Int(v) if v.len() == 1 => Data::Int(v.repeat(n)),
            _ => return Err(ctx.err("`value` must hold one element")),
        };
        self.define(ctx, 0, Val::Const(Const { dims, data }))
    }
}

/// Row-major strides of `dims`.
fn row_major_strides(dims: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; dims.len()];
    let mut acc = 1usize;
    for (s, &d) in strides.iter_mut().zip(dims).rev() {
        *s = acc;
        acc = acc.saturating_mul(d);
    }
    strides
}

/// A constant of `out_dims` whose element at each multi-index is `c`'s element at flat index
/// `src(index)`; `None` when an index falls outside `c`'s data.
fn remap(c: &Const, out_dims: &[usize], src: impl Fn(&[usize]) -> usize) -> Option<Const> {
    let n: usize = out_dims.iter().product();
    let mut idx = vec![0usize; out_dims.len()];
    let mut flat = Vec::with_capacity(n);
    for _ in 0..n {
        flat.push(src(&idx));
        for (i, &d) in idx.iter_mut().zip(out_dims).rev() {
            *i += 1;
            if *i < d {
                break;
            }
            *i = 0;
        }
    }
    let data = match &c.data {
        Data::Int(v) => Data::Int(
            flat.iter()
                .map(|&i| v.get(i).copied())
                .collect::<Option<_>>()?,
        ),
        Data::Float(v) => Data::Float(
            flat.iter()
                .map(|&i| v.get(i).copied())
                .collect::<Option<_>>()?,
        ),
    };
    Some(Const {
        dims: out_dims.to_vec(),
        data,
    })
}

fn data_out_len(d: &Data) -> usize {
    match d {
        Data::Int(v) => v.len(),
        Data::Float(v) => v.len(),
    }
}

/// `p op q` on shape integers; the symbolic batch survives only where it stays itself
/// (`N·1`, `N/1`, `N±0`). `None` on overflow, division by zero or an unknown result.
fn int_op(op: &str, p: Int, q: Int) -> Option<Int> {
    use Int::{Batch, Known};
    match (op, p, q) {
        ("Add", Known(x), Known(y)) => x.checked_add(y).map(Known),
        ("Sub", Known(x), Known(y)) => x.checked_sub(y).map(Known),
        ("Mul", Known(x), Known(y)) => x.checked_mul(y).map(Known),
        // ONNX integer division truncates toward zero, as Rust's.
        ("Div", Known(x), Known(y)) => x.checked_div(y).map(Known),
        ("Mul", Batch, Known(1)) | ("Mul", Known(1), Batch) | ("Div", Batch, Known(1)) => {
            Some(Batch)
        }
        ("Add" | "Sub", Batch, Known(0)) | ("Add", Known(0), Batch) => Some(Batch),
        _ => None,
    }
}

/// The per-channel offsets of a constant with `dims` added to a value of `shape` (numpy
/// broadcasting, right-aligned): `Some` when the constant varies at most along dim 1 and has
/// no dim where the value has none.
fn channel_offsets(dims: &[usize], shape: &[usize], values: &[f64]) -> Option<Vec<f64>> {
    let channels = *shape.get(1)?;
    let lead = shape.len().checked_sub(dims.len())?;
    let mut per_channel = false;
    for (k, &d) in dims.iter().enumerate() {
        match (lead + k, d) {
            (_, 1) => {}
            (1, c) if c == channels => per_channel = true,
            _ => return None,
        }
    }
    if per_channel {
        (values.len() == channels).then(|| values.to_vec())
    } else {
        Some(vec![*values.first()?; channels])
    }
}

/// Operators whose graph node is named from their weight (see [`Importer::node_name`]).
fn creates_layer(op: &str) -> bool {
    matches!(
        op,
        "Conv"
            | "Relu"
            | "Sigmoid"
            | "Tanh"
            | "LeakyRelu"
            | "MaxPool"
            | "AveragePool"
            | "GlobalAveragePool"
            | "LRN"
            | "BatchNormalization"
            | "Gemm"
            | "MatMul"
    )
}

fn show_ints(v: &[Int]) -> String {
    let parts: Vec<String> = v
        .iter()
        .map(|i| match i {
            Int::Known(k) => k.to_string(),
            Int::Batch => "N".to_string(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The dims of a constant reshaped to `target` (`0` copies a dim unless `allow_zero`, one
/// `-1` is inferred), or `None` when impossible.
fn resolve_shape(
    target: &[Int],
    dims: &[usize],
    numel: usize,
    allow_zero: bool,
) -> Option<Vec<usize>> {
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, t) in target.iter().enumerate() {
        match *t {
            Int::Known(-1) if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            Int::Known(0) if !allow_zero => out.push(*dims.get(i)?),
            Int::Known(k) if k >= 0 => out.push(usize::try_from(k).ok()?),
            _ => return None,
        }
    }
    let known: usize = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if let Some(i) = infer {
        if known == 0 || numel % known != 0 {
            return None;
        }
        *out.get_mut(i)? = numel / known;
    } else if known != numel {
        return None;
    }
    Some(out)
}

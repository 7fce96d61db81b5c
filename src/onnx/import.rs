//! From decoded protobuf to a [`Graph`]: one pass over the nodes in file order (ONNX requires
//! topological order), keeping for every value either the graph node that computes it (with
//! its shape for the build batch) or, for constants, its data.
//!
//! Invariant that makes symbolic batches work: every activation's dim 0 is the batch. Each
//! mapped layer keeps it (Flatten only from axis 1, Concat and Softmax only over dim 1), so
//! `Shape` of an activation can report [`Int::Batch`] at index 0.

use super::proto::{self, Attribute, Model, Node};
use super::tensor::{self, is_float_type, is_int_type, Const, Data, Int};
use super::{OnnxError, OnnxModel};
use crate::layer::{Layer, Merge, SlotMut};
use crate::layers::{
    AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, Add, AvgPool2d, AvgPool2dConfig, BatchNorm2d,
    BatchNorm2dConfig, Concat, Conv2d, Conv2dConfig, Dropout, DropoutConfig, Flatten,
    FlattenConfig, LeakyReLU, LeakyReLUConfig, Linear, LocalResponseNorm, LocalResponseNormConfig,
    LogSoftmax, MaxPool2d, MaxPool2dConfig, ReLU, Sigmoid, Softmax, Tanh,
};
use crate::model::GraphBuilder;
use crate::tensor::{Float, Tensor};
use std::collections::{HashMap, HashSet};
use std::path::Path;

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
    /// Concatenation along dim 1.
    Concat,
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
    let mut input_shape = Vec::with_capacity(declared.len());
    for (axis, d) in declared.iter().enumerate() {
        match (axis, d) {
            (0, None) => input_shape.push(None),
            (_, Some(v)) if *v > 0 => input_shape.push(Some(*v as usize)),
            _ => {
                return Err(OnnxError::Unsupported(format!(
                    "input `{}` has {} at axis {axis}; only the batch axis (0) may be symbolic",
                    input.name,
                    d.map_or("a symbolic size".to_string(), |v| format!("size {v}"))
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
    let batch_symbolic = input_shape[0].is_none();
    let build_shape: Vec<usize> = input_shape.iter().map(|d| d.unwrap_or(1)).collect();
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
        builder = match p.op {
            Op::Layer(l) => builder.boxed_layer(&p.name, from[0], l),
            Op::Add => builder.merge(&p.name, &from, Add::new()),
            Op::Concat => builder.merge(&p.name, &from, Concat::along(1)),
            Op::Linear(parts) => {
                let layer = Linear::from_weights(parts.weight, parts.bias).map_err(|e| {
                    OnnxError::Layer {
                        op_type: "Gemm/MatMul".into(),
                        node: p.name.clone(),
                        source: Box::new(e),
                    }
                })?;
                builder.layer(&p.name, from[0], layer)
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
                ctx.node.inputs[i]
            ))),
        }
    }

    /// Input `i` as a constant.
    fn constant(&self, ctx: &Ctx, i: usize) -> Result<Const, OnnxError> {
        match self.value(ctx, i)? {
            Val::Const(c) => Ok(c.clone()),
            Val::Act { .. } => Err(ctx.err(format!(
                "input {i} (`{}`) must be a constant (an initializer or a folded value)",
                ctx.node.inputs[i]
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
        let from_weight = node
            .inputs
            .get(1)
            .and_then(|w| w.strip_suffix(".weight"))
            .filter(|p| {
                !p.is_empty() && matches!(self.values.get(&node.inputs[1]), Some(Val::Const(_)))
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
        for i in 0..node.inputs.len() {
            if !node.inputs[i].is_empty() {
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
            "Add" => self.add(&ctx),
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

    /// Symmetric `[ph, pw]` padding from `pads` or `auto_pad`, for an `[h, w]` input.
    fn padding(
        &self,
        ctx: &Ctx,
        hw: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<[usize; 2], OnnxError> {
        let auto = ctx.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        let (begin, end): ([usize; 2], [usize; 2]) = match auto.as_str() {
            "NOTSET" => match ctx.ints("pads") {
                None => ([0, 0], [0, 0]),
                Some(&[hb, wb, he, we]) if hb >= 0 && wb >= 0 && he >= 0 && we >= 0 => {
                    ([hb as usize, wb as usize], [he as usize, we as usize])
                }
                Some(p) => {
                    return Err(ctx.err(format!(
                    "`pads` must be four values >= 0 ([h_begin, w_begin, h_end, w_end]), got {p:?}"
                )))
                }
            },
            "VALID" => ([0, 0], [0, 0]),
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut begin = [0; 2];
                let mut end = [0; 2];
                for a in 0..2 {
                    // Output ceil(n / s); total padding so the last window ends at the edge.
                    let out = hw[a].div_ceil(stride[a]);
                    // Saturating: absurd attributes reach the layer's own size checks.
                    let span = dilation[a].saturating_mul(kernel[a] - 1).saturating_add(1);
                    let total = (out.max(1) - 1)
                        .saturating_mul(stride[a])
                        .saturating_add(span)
                        .saturating_sub(hw[a]);
                    let small = total / 2;
                    (begin[a], end[a]) = if auto == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                }
                (begin, end)
            }
            other => return Err(ctx.err(format!("unknown auto_pad `{other}`"))),
        };
        if begin != end {
            return Err(ctx.err(format!(
                "asymmetric padding (begin {begin:?}, end {end:?}) is not supported; \
                 convnet layers pad both sides of an axis equally"
            )));
        }
        Ok(begin)
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
        let padding = self.padding(ctx, [h, w], [kh, kw], stride, dilation)?;
        let bias = match self.optional(ctx, 2)? {
            Some(_) => Some(self.weight(ctx, 2, "the bias")?),
            None => None,
        };
        let cfg = Conv2dConfig::new(c, out, kh)
            .kernel_hw([kh, kw])
            .stride_hw(stride)
            .padding_hw(padding)
            .dilation_hw(dilation)
            .groups(group)
            .bias(bias.is_some());
        let layer = Conv2d::from_weights(cfg, weight, bias).map_err(|e| ctx.layer_err(e))?;
        self.push_layer(ctx, from, &shape, Box::new(layer))
    }

    /// Kernel, stride, padding and dilation of a pooling node on a `[N, C, H, W]` input.
    #[allow(clippy::type_complexity)]
    fn pool_window(
        &self,
        ctx: &Ctx,
        shape: &[usize],
    ) -> Result<([usize; 2], [usize; 2], [usize; 2], [usize; 2]), OnnxError> {
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
        let padding = self.padding(ctx, [h, w], kernel, stride, dilation)?;
        Ok((kernel, stride, padding, dilation))
    }

    fn max_pool(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        let (kernel, stride, padding, dilation) = self.pool_window(ctx, &shape)?;
        let cfg = MaxPool2dConfig::new(1)
            .kernel_hw(kernel)
            .stride_hw(stride)
            .padding_hw(padding)
            .dilation_hw(dilation)
            .ceil_mode(ctx.int("ceil_mode", 0)? != 0);
        let layer = MaxPool2d::new(cfg).map_err(|e| ctx.layer_err(e))?;
        self.push_layer(ctx, from, &shape, Box::new(layer))
    }

    fn avg_pool(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        let (kernel, stride, padding, dilation) = self.pool_window(ctx, &shape)?;
        if dilation != [1, 1] {
            return Err(ctx.err(format!(
                "dilated average pooling ({dilation:?}) is not supported"
            )));
        }
        let cfg = AvgPool2dConfig::new(1)
            .kernel_hw(kernel)
            .stride_hw(stride)
            .padding_hw(padding)
            .ceil_mode(ctx.int("ceil_mode", 0)? != 0)
            .count_include_pad(ctx.int("count_include_pad", 0)? != 0);
        let layer = AvgPool2d::new(cfg).map_err(|e| ctx.layer_err(e))?;
        self.push_layer(ctx, from, &shape, Box::new(layer))
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
        let mut tensors = Vec::with_capacity(4);
        for (i, what) in [(1, "scale"), (2, "B"), (3, "input_mean"), (4, "input_var")] {
            let t = self.weight(ctx, i, what)?;
            if t.shape() != [c] {
                return Err(ctx.err(format!(
                    "{what} has shape {:?}, expected [{c}] (one value per channel)",
                    t.shape()
                )));
            }
            tensors.push(t);
        }
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
                "weight" => &tensors[0],
                "bias" => &tensors[1],
                "running_mean" => &tensors[2],
                "running_var" => &tensors[3],
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
        if ctx.int("transA", 0)? != 0 {
            return Err(ctx.err("transA = 1 (a transposed batch) is not supported"));
        }
        let b = self.weight(ctx, 1, "B")?;
        if b.ndim() != 2 {
            return Err(ctx.err(format!("B must be 2-D, got {:?}", b.shape())));
        }
        let alpha = T::of(ctx.float("alpha", 1.0)?);
        let beta = T::of(ctx.float("beta", 1.0)?);
        // Linear computes x·Wᵀ: W = alpha·B when transB, alpha·Bᵀ otherwise.
        let b = if ctx.int("transB", 0)? != 0 {
            b
        } else {
            b.reversed_axes().as_standard_layout().into_owned()
        };
        let weight = b.mapv(|v| v * alpha);
        let out = weight.shape()[0];
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
                let values = if flat.len() == 1 {
                    vec![flat[0]; out]
                } else {
                    flat
                };
                Some(Tensor::from_shape_vec(ndarray::IxDyn(&[out]), values).expect("[out]"))
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

    fn add(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        if ctx.node.inputs.len() != 2 {
            return Err(ctx.err("Add takes two inputs"));
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
                if sa != sb {
                    return Err(ctx.err(format!(
                        "broadcasting Add ({sa:?} + {sb:?}) is not supported; both inputs must \
                         have the same shape"
                    )));
                }
                let name = self.fresh_name(ctx);
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
            (Val::Act { node, shape }, Val::Const(c))
            | (Val::Const(c), Val::Act { node, shape }) => self.add_bias(ctx, node, shape, c),
            (Val::Const(_), Val::Const(_)) => {
                Err(ctx.err("Add of two constants is not folded; only shape arithmetic is"))
            }
        }
    }

    /// `Add(MatMul(x, W), b)`: the constant becomes the bias of the Linear layer.
    fn add_bias(
        &mut self,
        ctx: &Ctx,
        node: String,
        shape: Vec<usize>,
        c: Const,
    ) -> Result<(), OnnxError> {
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
        match target {
            Some(Pending {
                op: Op::Linear(parts),
                ..
            }) if parts.bias.is_none() && single_use && bias_ok => {
                let values = c
                    .floats()
                    .ok_or_else(|| ctx.err("the bias must be a floating-point constant"))?;
                parts.bias = Some(
                    Tensor::from_shape_vec(
                        ndarray::IxDyn(&[out]),
                        values.into_iter().map(T::of).collect(),
                    )
                    .expect("[out] values"),
                );
                self.define(ctx, 0, Val::Act { node, shape })
            }
            _ => Err(ctx.err(format!(
                "adding a constant of shape {:?} is supported only as the bias ([{out}]) of a \
                 MatMul or Gemm without one whose output nothing else reads",
                c.dims
            ))),
        }
    }

    /// A unique name for a node created without [`Importer::node_name`] (merges).
    fn fresh_name(&mut self, ctx: &Ctx) -> String {
        let base = ctx.name.clone();
        let mut name = base.clone();
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
        if vals.iter().all(|v| matches!(v, Val::Const(_))) {
            let consts: Vec<&Const> = vals
                .iter()
                .map(|v| match v {
                    Val::Const(c) => c,
                    Val::Act { .. } => unreachable!("all constants"),
                })
                .collect();
            if consts.iter().any(|c| c.dims.len() != 1) {
                return Err(ctx.err("only 1-D constants are concatenated while importing"));
            }
            self.axis(ctx, 0, 1)?;
            let folded = if consts.iter().all(|c| c.int_values().is_some()) {
                let v: Vec<Int> = consts
                    .iter()
                    .flat_map(|c| c.int_values().expect("ints").to_vec())
                    .collect();
                Const::ints(vec![v.len()], v)
            } else {
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
        let axis = self.axis(ctx, 1, shapes[0].len())?;
        if axis != 1 {
            return Err(ctx.err(format!(
                "concatenation along axis {axis} is not supported (only along dim 1)"
            )));
        }
        let merge = Concat::<T>::along(1);
        let refs: Vec<&[usize]> = shapes.iter().map(Vec::as_slice).collect();
        let shape = merge.output_shape(&refs).map_err(|e| ctx.layer_err(e))?;
        let name = self.fresh_name(ctx);
        self.pending.push(Pending {
            name: name.clone(),
            inputs,
            op: Op::Concat,
        });
        self.define(ctx, 0, Val::Act { node: name, shape })
    }

    fn flatten(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let (from, shape) = self.act(ctx, 0)?;
        let axis = self.axis(ctx, 1, shape.len())?;
        if axis != 1 {
            return Err(ctx.err(format!(
                "Flatten with axis {axis} is not supported (only axis 1: [N, everything else])"
            )));
        }
        let name = self.fresh_name(ctx);
        let ctx = Ctx {
            node: ctx.node,
            name,
        };
        self.push_layer(
            &ctx,
            from,
            &shape,
            Box::new(Flatten::new(FlattenConfig::new()).map_err(|e| ctx.layer_err(e))?),
        )
    }

    fn reshape(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let target = self.constant(ctx, 1)?;
        let target = target
            .int_values()
            .ok_or_else(|| ctx.err("the target shape must be integers"))?
            .to_vec();
        let allow_zero = ctx.int("allowzero", 0)? != 0;
        match self.value(ctx, 0)?.clone() {
            Val::Const(c) => {
                // Reshaping a constant: only the dims change.
                let dims = resolve_shape(&target, &c.dims, c.len(), allow_zero)
                    .ok_or_else(|| ctx.err(format!("cannot reshape {:?} to {target:?}", c.dims)))?;
                self.define(ctx, 0, Val::Const(Const { dims, data: c.data }))
            }
            Val::Act { node, shape } => {
                let rest: usize = shape[1..].iter().product();
                let sym: Vec<Int> = std::iter::once(if self.batch_symbolic {
                    Int::Batch
                } else {
                    Int::Known(shape[0] as i64)
                })
                .chain(shape[1..].iter().map(|&d| Int::Known(d as i64)))
                .collect();
                let first_ok = |t: &Int| match t {
                    Int::Batch => true,
                    Int::Known(0) => !allow_zero,
                    Int::Known(k) => !self.batch_symbolic && *k == shape[0] as i64,
                };
                let is_identity = target.len() == sym.len()
                    && target.iter().zip(&sym).enumerate().all(|(i, (t, s))| {
                        t == s || (i == 0 && first_ok(t)) || (*t == Int::Known(0) && !allow_zero)
                    });
                let is_flatten = target.len() == 2
                    && match (target[0], target[1]) {
                        (t0, Int::Known(-1)) => first_ok(&t0),
                        (t0, Int::Known(k)) => {
                            k == rest as i64 && (first_ok(&t0) || t0 == Int::Known(-1))
                        }
                        _ => false,
                    };
                if is_identity && !is_flatten {
                    return self.define(ctx, 0, Val::Act { node, shape });
                }
                if !is_flatten {
                    return Err(ctx.err(format!(
                        "reshaping {} to {} is not supported; only a flatten to [N, {rest}] is",
                        show_ints(&sym),
                        show_ints(&target)
                    )));
                }
                let name = self.fresh_name(ctx);
                let ctx = Ctx {
                    node: ctx.node,
                    name,
                };
                self.push_layer(
                    &ctx,
                    node,
                    &shape,
                    Box::new(Flatten::new(FlattenConfig::new()).map_err(|e| ctx.layer_err(e))?),
                )
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
        let name = self.fresh_name(ctx);
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
        // same as a softmax over dim 1 only when dim 1 is the last dim.
        let over_dim1 = axis == 1 && (self.opset >= 13 || shape.len() == 2);
        if !over_dim1 {
            return Err(ctx.err(format!(
                "a softmax over axis {axis} of a rank-{} input (opset {}) is not supported; \
                 convnet's is over dim 1",
                shape.len(),
                self.opset
            )));
        }
        let layer: Box<dyn Layer<T>> = if ctx.node.op_type == "Softmax" {
            Box::new(Softmax::new())
        } else {
            Box::new(LogSoftmax::new())
        };
        let name = self.fresh_name(ctx);
        let ctx = Ctx {
            node: ctx.node,
            name,
        };
        self.push_layer(&ctx, from, &shape, layer)
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
        let dims = dims[start..end.max(start)].to_vec();
        self.define(ctx, 0, Val::Const(Const::ints(vec![dims.len()], dims)))
    }

    fn gather(&mut self, ctx: &Ctx) -> Result<(), OnnxError> {
        let data = self.constant(ctx, 0)?;
        let indices = self.constant(ctx, 1)?;
        if data.dims.len() != 1 || ctx.int("axis", 0)? != 0 {
            return Err(
                ctx.err("only gathering from a 1-D constant (shape arithmetic) is supported")
            );
        }
        let n = data.dims[0] as i64;
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
            Data::Int(v) => Data::Int(idx.iter().map(|&i| v[i]).collect()),
            Data::Float(v) => Data::Float(idx.iter().map(|&i| v[i]).collect()),
        };
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
                None => (0..c.dims.len()).filter(|&i| c.dims[i] == 1).collect(),
            };
            if set.iter().any(|&a| c.dims[a] != 1) {
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
        out[i] = numel / known;
    } else if known != numel {
        return None;
    }
    Some(out)
}

//! Graph models: layers wired as a directed acyclic graph (branches, concat, add, several
//! outputs).
//!
//! ```text
//! forward:  nodes in topological order; node v = op_v(outputs of its inputs)
//! backward: nodes in reverse order; dL/d(input u) = Σ over every node v fed by u of the
//!           gradient v's op sends back to u (fan-out sums gradients)
//! ```

use crate::error::{Error, Result};
use crate::layer::{Layer, Merge, Mode, Slot, SlotMut};
use crate::layers::accumulate;
use crate::model::SummaryRow;
use crate::rng::Rng64;
use crate::tensor::{Float, Tensor};
use std::collections::HashMap;

enum Op<T: Float> {
    Input,
    Layer(Box<dyn Layer<T>>),
    Merge(Box<dyn Merge<T>>),
}

struct Node<T: Float> {
    name: String,
    op: Op<T>,
    inputs: Vec<usize>,
}

/// What a backward sweep hands back: dL/dinput (`None` when no gradient reached the input,
/// or when the sweep stopped there) and the gradient captured at a node, if asked for.
type SweepGrads<T> = (Option<Tensor<T>>, Option<Tensor<T>>);

/// Collects named nodes in any order; [`GraphBuilder::build`] checks and orders them.
///
/// ```
/// use convnet::prelude::*;
/// use convnet::model::GraphBuilder;
/// // x ──conv──relu──┬──────────────┐
/// //                 └──conv2──relu2─┴─add──▶ out     (a residual connection)
/// let graph = GraphBuilder::<f64>::new("x")
///     .layer("conv", "x", Conv2d::new(Conv2dConfig::new(3, 4, 3).padding(1)).unwrap())
///     .layer("relu", "conv", ReLU::new())
///     .layer("conv2", "relu", Conv2d::new(Conv2dConfig::new(4, 4, 3).padding(1)).unwrap())
///     .layer("relu2", "conv2", ReLU::new())
///     .merge("add", &["relu", "relu2"], Add::new())
///     .output("add")
///     .build(&[1, 3, 8, 8])
///     .unwrap();
/// assert_eq!(graph.output_shape(&[2, 3, 8, 8]).unwrap(), vec![2, 4, 8, 8]);
/// ```
pub struct GraphBuilder<T: Float> {
    input: String,
    pending: Vec<(String, Op<T>, Vec<String>)>,
    outputs: Vec<String>,
    keep_values: bool,
}

impl<T: Float> GraphBuilder<T> {
    /// A graph whose single input node is called `input`.
    pub fn new(input: &str) -> Self {
        GraphBuilder {
            input: input.to_string(),
            pending: Vec::new(),
            outputs: Vec::new(),
            keep_values: true,
        }
    }

    /// Whether the graph keeps every node's value after a training forward pass, readable
    /// through [`Graph::node_output`] (`true`, the default). With `false` a value read by one
    /// layer alone is handed to it by value ([`Layer::forward_owned`]: a convolution keeps it
    /// without a copy, a ReLU works in place), and every value is dropped once its last
    /// reader has run, so a pass holds no more than its layers' caches. The numbers are the
    /// same either way; see [`Graph::set_keep_values`].
    pub fn keep_values(mut self, keep: bool) -> Self {
        self.keep_values = keep;
        self
    }

    /// Adds node `name` = `layer(from)`.
    pub fn layer(mut self, name: &str, from: &str, layer: impl Layer<T> + 'static) -> Self {
        self.pending.push((
            name.to_string(),
            Op::Layer(Box::new(layer)),
            vec![from.to_string()],
        ));
        self
    }

    /// Adds node `name` = `layer(from)` for a boxed layer.
    pub fn boxed_layer(mut self, name: &str, from: &str, layer: Box<dyn Layer<T>>) -> Self {
        self.pending
            .push((name.to_string(), Op::Layer(layer), vec![from.to_string()]));
        self
    }

    /// Adds node `name` = `merge(from[0], from[1], ...)`.
    pub fn merge(mut self, name: &str, from: &[&str], merge: impl Merge<T> + 'static) -> Self {
        self.pending.push((
            name.to_string(),
            Op::Merge(Box::new(merge)),
            from.iter().map(|s| s.to_string()).collect(),
        ));
        self
    }

    /// Marks a node as an output. The first output is the primary one ([`Layer::forward`]);
    /// [`Graph::forward_all`] returns all of them in this order.
    pub fn output(mut self, name: &str) -> Self {
        self.outputs.push(name.to_string());
        self
    }

    /// Checks the graph and fixes its evaluation order: every node name is unique, every
    /// referenced node exists, there is no cycle, and shapes agree for an input of shape
    /// `input_shape`. Each error names the node at fault.
    // Indexing: node ids are `0..n`, handed out here (`index`); `inputs_of`, `consumers`,
    // `pending_inputs`, `position` and `slots` all have one entry per id.
    #[allow(clippy::indexing_slicing)]
    pub fn build(self, input_shape: &[usize]) -> Result<Graph<T>> {
        let err = |message: String| Error::config("Graph", message);
        let mut index: HashMap<String, usize> = HashMap::new();
        index.insert(self.input.clone(), 0);
        for (i, (name, _, _)) in self.pending.iter().enumerate() {
            if index.insert(name.clone(), i + 1).is_some() {
                return Err(err(format!("node `{name}` is defined twice")));
            }
        }
        let mut inputs_of: Vec<Vec<usize>> = vec![Vec::new()];
        for (name, op, from) in &self.pending {
            if from.is_empty() {
                return Err(err(format!("node `{name}` has no inputs")));
            }
            if matches!(op, Op::Layer(_)) && from.len() != 1 {
                return Err(err(format!(
                    "node `{name}` is a layer and takes one input, got {}",
                    from.len()
                )));
            }
            let ids = from
                .iter()
                .map(|f| {
                    index
                        .get(f)
                        .copied()
                        .ok_or_else(|| err(format!("node `{name}` reads unknown node `{f}`")))
                })
                .collect::<Result<Vec<_>>>()?;
            inputs_of.push(ids);
        }
        if self.outputs.is_empty() {
            return Err(err("no output node marked".into()));
        }
        let outputs = self
            .outputs
            .iter()
            .map(|o| {
                index
                    .get(o)
                    .copied()
                    .ok_or_else(|| err(format!("output `{o}` is not a node")))
            })
            .collect::<Result<Vec<_>>>()?;

        // Kahn's algorithm; whatever cannot be ordered lies on a cycle.
        let n = inputs_of.len();
        let mut pending_inputs: Vec<usize> = inputs_of.iter().map(Vec::len).collect();
        let mut consumers = vec![Vec::new(); n];
        for (v, ins) in inputs_of.iter().enumerate() {
            for &u in ins {
                consumers[u].push(v);
            }
        }
        let mut order = Vec::with_capacity(n);
        let mut ready: Vec<usize> = (0..n).filter(|&v| pending_inputs[v] == 0).collect();
        while let Some(u) = ready.pop() {
            order.push(u);
            for &v in &consumers[u] {
                pending_inputs[v] -= 1;
                if pending_inputs[v] == 0 {
                    ready.push(v);
                }
            }
        }
        if order.len() < n {
            let stuck = (1..n)
                .find(|&v| pending_inputs[v] > 0)
                .map_or("?", |v| self.pending[v - 1].0.as_str());
            return Err(err(format!("node `{stuck}` is part of a cycle")));
        }
        // Renumber nodes in topological order so forward is a single sweep.
        let mut position = vec![0; n];
        for (p, &v) in order.iter().enumerate() {
            position[v] = p;
        }
        let mut slots: Vec<Option<Node<T>>> = (0..n).map(|_| None).collect();
        slots[position[0]] = Some(Node {
            name: self.input,
            op: Op::Input,
            inputs: Vec::new(),
        });
        for (i, (name, op, _)) in self.pending.into_iter().enumerate() {
            let inputs = inputs_of[i + 1].iter().map(|&u| position[u]).collect();
            slots[position[i + 1]] = Some(Node { name, op, inputs });
        }
        // `position` is a permutation of `0..n`, so every slot is filled.
        let nodes = slots
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| err("a node was not placed in the evaluation order".into()))?;
        let outputs: Vec<usize> = outputs.iter().map(|&o| position[o]).collect();
        let mut readers = vec![0; n];
        for node in &nodes {
            for &u in &node.inputs {
                readers[u] += 1;
            }
        }
        let mut is_output = vec![false; n];
        for &o in &outputs {
            is_output[o] = true;
        }
        let graph = Graph {
            nodes,
            outputs,
            readers,
            is_output,
            keep_values: self.keep_values,
            values: Vec::new(),
            shapes: Vec::new(),
        };
        graph.shapes(input_shape)?;
        Ok(graph)
    }
}

/// A model whose layers form a directed acyclic graph. Build it with [`GraphBuilder`].
///
/// As a [`Layer`] it maps its input to its first output; [`Graph::forward_all`] and
/// [`Graph::backward_all`] handle several outputs (e.g. auxiliary classifiers). Parameters are
/// named `<node>.<param>`.
///
/// A trunk with two heads, trained on both, as GoogLeNet trains its auxiliary classifiers:
///
/// ```
/// use convnet::model::GraphBuilder;
/// use convnet::prelude::*;
/// # fn main() -> convnet::Result<()> {
/// let mut net = GraphBuilder::<f32>::new("x")
///     .layer("conv", "x", Conv2d::new(Conv2dConfig::new(1, 4, 3).padding(1))?)
///     .layer("relu", "conv", ReLU::new())
///     .layer("flat", "relu", Flatten::new(FlattenConfig::new())?)
///     .layer("main", "flat", Linear::new(LinearConfig::new(4 * 8 * 8, 10))?)
///     .layer("aux", "flat", Linear::new(LinearConfig::new(4 * 8 * 8, 10))?)
///     .output("main")
///     .output("aux")
///     .build(&[1, 1, 8, 8])?;
/// assert_eq!(net.output_names(), ["main", "aux"]);
///
/// let x = Tensor::<f32>::ones(ndarray::IxDyn(&[2, 1, 8, 8]));
/// let outs = net.forward_all(&x)?;
/// let loss = CrossEntropyLoss::new();
/// let (_, d_main) = loss.forward(&outs[0], &[1, 2])?;
/// let (_, d_aux) = loss.forward(&outs[1], &[1, 2])?;
/// // loss = main + 0.3 aux: `relu` feeds both heads, so its gradient is the sum of theirs.
/// let dx = net.backward_all(&[Some(&d_main), Some(&(d_aux * 0.3))])?;
/// assert_eq!(dx.shape(), x.shape());
/// assert!(net.node_output("relu").is_some()); // inner values stay readable
/// # Ok(())
/// # }
/// ```
// Invariants, set up by `GraphBuilder::build` and never changed: `nodes` is in topological
// order, node 0 is the input, every `inputs` entry of node `v` is a node before `v`, a layer
// node has exactly one input, and `outputs` is non-empty and names nodes. The methods below
// index by node id under these invariants (each `allow(clippy::indexing_slicing)` refers here).
pub struct Graph<T: Float> {
    nodes: Vec<Node<T>>,
    outputs: Vec<usize>,
    /// How many input slots of other nodes read each node (a merge reading `a` twice counts
    /// twice).
    readers: Vec<usize>,
    /// Whether each node is an output.
    is_output: Vec<bool>,
    /// Keep every value after forward (see [`GraphBuilder::keep_values`]).
    keep_values: bool,
    /// The values of the last forward: all of them when `keep_values`, else none (each was
    /// dropped after its last reader, the outputs handed back).
    values: Vec<Option<Tensor<T>>>,
    /// The shape of every node's value in the last forward (empty before one, or after a
    /// forward that failed).
    shapes: Vec<Vec<usize>>,
}

impl<T: Float> Graph<T> {
    /// Every node's output shape for an input of shape `input`; errors name the node.
    // Indexing: node inputs come before the node (the invariants above `Graph`).
    #[allow(clippy::indexing_slicing)]
    fn shapes(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
        let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            let shape = match &node.op {
                Op::Input => Ok(input.to_vec()),
                Op::Layer(l) => l.output_shape(&shapes[node.inputs[0]]),
                Op::Merge(m) => {
                    let ins: Vec<&[usize]> =
                        node.inputs.iter().map(|&u| shapes[u].as_slice()).collect();
                    m.output_shape(&ins)
                }
            }
            .map_err(|e| Error::config("Graph", format!("node `{}`: {e}", node.name)))?;
            shapes.push(shape);
        }
        Ok(shapes)
    }

    /// Names of the output nodes, primary first.
    // Indexing: outputs name nodes (the invariants above `Graph`).
    #[allow(clippy::indexing_slicing)]
    pub fn output_names(&self) -> Vec<&str> {
        self.outputs
            .iter()
            .map(|&o| self.nodes[o].name.as_str())
            .collect()
    }

    /// Runs the graph and returns every output, in the order they were marked.
    ///
    /// A forward pass that fails part-way leaves no values behind: `backward` then reports
    /// [`Error::BackwardBeforeForward`] instead of mixing this pass's caches with the last.
    pub fn forward_all(&mut self, input: &Tensor<T>) -> Result<Vec<Tensor<T>>> {
        self.forward_values(input.clone())
    }

    /// Whether every node's value is kept after forward (see [`GraphBuilder::keep_values`]).
    pub fn keeps_values(&self) -> bool {
        self.keep_values
    }

    /// Keeps every node's value after forward (`true`), or hands each value read by a single
    /// layer to it by value and drops every value after its last reader (`false`: less memory
    /// and fewer copies; [`Graph::node_output`] then finds none of them). Takes effect at the
    /// next forward pass.
    pub fn set_keep_values(&mut self, keep: bool) {
        self.keep_values = keep;
    }

    /// The forward sweep, with the input by value (see [`Graph::set_keep_values`] for what is
    /// kept).
    // Indexing: node inputs come before the node and outputs name nodes (the invariants
    // above `Graph`), and `readers`, `is_output`, `left` and `values` have one entry per node.
    #[allow(clippy::indexing_slicing)]
    fn forward_values(&mut self, input: Tensor<T>) -> Result<Vec<Tensor<T>>> {
        self.values.clear();
        self.shapes.clear();
        let keep = self.keep_values;
        let consumed = || Error::input("Graph", "a node's value was used up before its readers");
        let mut left = self.readers.clone();
        let mut values: Vec<Option<Tensor<T>>> = Vec::with_capacity(self.nodes.len());
        let mut shapes: Vec<Vec<usize>> = Vec::with_capacity(self.nodes.len());
        let mut input = Some(input);
        for node in self.nodes.iter_mut() {
            let out = match &mut node.op {
                Op::Input => input.take().ok_or_else(consumed)?,
                Op::Layer(l) => {
                    let u = node.inputs[0];
                    if !keep && left[u] == 1 && !self.is_output[u] {
                        l.forward_owned(values[u].take().ok_or_else(consumed)?)?
                    } else {
                        l.forward(values[u].as_ref().ok_or_else(consumed)?)?
                    }
                }
                Op::Merge(m) => {
                    let ins = node
                        .inputs
                        .iter()
                        .map(|&u| values[u].as_ref().ok_or_else(consumed))
                        .collect::<Result<Vec<&Tensor<T>>>>()?;
                    m.forward(&ins)?
                }
            };
            shapes.push(out.shape().to_vec());
            values.push(Some(out));
            for &u in &node.inputs {
                left[u] -= 1;
                if !keep && left[u] == 0 && !self.is_output[u] {
                    values[u] = None;
                }
            }
        }
        let mut outs = Vec::with_capacity(self.outputs.len());
        for (i, &o) in self.outputs.iter().enumerate() {
            // Without kept values, an output is handed over at its last mention.
            let again = self.outputs[i + 1..].contains(&o);
            let value = match keep || again {
                true => values[o].clone(),
                false => values[o].take(),
            };
            outs.push(value.ok_or_else(consumed)?);
        }
        // Shapes are kept for backward's shape checks and for outputs given no gradient.
        self.values = values;
        self.shapes = shapes;
        Ok(outs)
    }

    /// Every output in inference ([`Layer::infer`] of each node), in the order they were marked.
    pub fn infer_all(&self, input: &Tensor<T>) -> Result<Vec<Tensor<T>>> {
        self.infer_nodes(input, &self.outputs)
    }

    /// Evaluates only the nodes that `wanted` depend on, dropping each intermediate value
    /// after its last reader, and returns the `wanted` values in order.
    // Indexing: `wanted` holds output ids and node inputs come before the node (the
    // invariants above `Graph`); `readers`, `needed` and `values` have one entry per node.
    #[allow(clippy::indexing_slicing)]
    fn infer_nodes(&self, input: &Tensor<T>, wanted: &[usize]) -> Result<Vec<Tensor<T>>> {
        let n = self.nodes.len();
        // Nodes are in topological order, so one backward sweep finds every ancestor and
        // counts how many needed nodes (or requested outputs) read each value.
        let mut readers = vec![0usize; n];
        let mut needed = vec![false; n];
        for &o in wanted {
            needed[o] = true;
            readers[o] += 1;
        }
        for v in (0..n).rev() {
            if !needed[v] {
                continue;
            }
            for &u in &self.nodes[v].inputs {
                needed[u] = true;
                readers[u] += 1;
            }
        }
        let mut values: Vec<Option<Tensor<T>>> = (0..n).map(|_| None).collect();
        for v in (0..n).filter(|&v| needed[v]) {
            let node = &self.nodes[v];
            // A needed node's inputs were evaluated before it and are kept until their last
            // reader, so `None` only stands for the input node's value.
            let value = |u: usize| values[u].as_ref().unwrap_or(input);
            let out = match &node.op {
                Op::Input => None,
                Op::Layer(l) => Some(l.infer(value(node.inputs[0]))?),
                Op::Merge(m) => {
                    let ins: Vec<&Tensor<T>> = node.inputs.iter().map(|&u| value(u)).collect();
                    Some(m.infer(&ins)?)
                }
            };
            for &u in &node.inputs {
                readers[u] -= 1;
                if readers[u] == 0 {
                    values[u] = None;
                }
            }
            values[v] = out;
        }
        let mut outs = Vec::with_capacity(wanted.len());
        for &o in wanted {
            readers[o] -= 1;
            let kept = match readers[o] {
                0 => values[o].take(),
                _ => values[o].clone(),
            };
            // Only the input node has no kept value.
            outs.push(kept.unwrap_or_else(|| input.clone()));
        }
        Ok(outs)
    }

    /// Back-propagates one gradient per output (`None` for an output that does not reach the
    /// loss) and returns dL/dinput. Where a node feeds several others, their gradients sum.
    pub fn backward_all(&mut self, grad_outputs: &[Option<&Tensor<T>>]) -> Result<Tensor<T>> {
        let grads = grad_outputs.iter().map(|g| g.cloned()).collect();
        let (dx, _) = self.backward_capture(grads, None, false)?;
        self.input_gradient(dx)
    }

    /// dL/dinput as the sweep left it: zeros when no gradient reached the input.
    fn input_gradient(&self, dx: Option<Tensor<T>>) -> Result<Tensor<T>> {
        match (dx, self.shapes.first()) {
            (Some(dx), _) => Ok(dx),
            (None, Some(shape)) => Ok(Tensor::zeros(ndarray::IxDyn(shape))),
            (None, None) => Err(Error::no_cache("Graph")),
        }
    }

    /// The names of every node, input first, in evaluation order.
    pub fn node_names(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.name.as_str()).collect()
    }

    /// The value node `name` took in the last [`Graph::forward_all`] (or `forward`), or `None`
    /// for an unknown name or before any forward pass, or for an inner node of a graph that
    /// does not keep its values ([`Graph::set_keep_values`]).
    pub fn node_output(&self, name: &str) -> Option<&Tensor<T>> {
        let i = self.nodes.iter().position(|n| n.name == name)?;
        self.values.get(i)?.as_ref()
    }

    /// [`Graph::backward_all`] that also returns dL/d(node `name`'s output): the gradient that
    /// arrives at an inner node, summed over everything it feeds (zeros if it reaches no
    /// output). An unknown name is an [`Error::InvalidInput`].
    pub fn backward_all_at(
        &mut self,
        grad_outputs: &[Option<&Tensor<T>>],
        name: &str,
    ) -> Result<(Tensor<T>, Tensor<T>)> {
        let Some(i) = self.nodes.iter().position(|n| n.name == name) else {
            return Err(Error::input(
                "Graph::backward_all_at",
                format!(
                    "no node named `{name}` (nodes: {})",
                    self.node_names().join(", ")
                ),
            ));
        };
        let grads = grad_outputs.iter().map(|g| g.cloned()).collect();
        let (dx, captured) = self.backward_capture(grads, Some(i), false)?;
        let dx = self.input_gradient(dx)?;
        let g = match captured {
            Some(g) => g,
            None => match self.shapes.get(i) {
                Some(shape) => Tensor::zeros(ndarray::IxDyn(shape)),
                None => return Err(Error::no_cache("Graph")),
            },
        };
        Ok((dx, g))
    }

    /// The backward sweep; with `capture = Some(v)`, also hands back the complete gradient of
    /// node `v` (complete when the reverse sweep reaches it: every reader comes later in
    /// topological order, so has already sent its share).
    ///
    /// A gradient a node sends back must have the shape of the value it goes to, and a merge
    /// must send one per input: a layer of the caller's own that breaks this is an error
    /// naming the node, not a panic in the sum.
    ///
    /// With `params_only` the gradient stops at the input: a node fed only by the graph's
    /// input takes its parameter gradients (`backward_params`) and sends nothing, and the
    /// returned dL/dinput is `None`.
    // Indexing: `values` (a completed forward) and `grads` have one entry per node; node
    // inputs and outputs are node ids (the invariants above `Graph`).
    #[allow(clippy::indexing_slicing)]
    fn backward_capture(
        &mut self,
        grad_outputs: Vec<Option<Tensor<T>>>,
        capture: Option<usize>,
        params_only: bool,
    ) -> Result<SweepGrads<T>> {
        if self.shapes.is_empty() {
            return Err(Error::no_cache("Graph"));
        }
        if grad_outputs.len() != self.outputs.len() {
            return Err(Error::input(
                "Graph::backward_all",
                format!(
                    "{} gradients for {} outputs",
                    grad_outputs.len(),
                    self.outputs.len()
                ),
            ));
        }
        let mut grads: Vec<Option<Tensor<T>>> = (0..self.nodes.len()).map(|_| None).collect();
        for (&o, g) in self.outputs.iter().zip(grad_outputs) {
            if let Some(g) = g {
                let want = &self.shapes[o];
                if g.shape() != want.as_slice() {
                    return Err(Error::shape(
                        format!("Graph output `{}` (backward)", self.nodes[o].name),
                        format!("{want:?}"),
                        g.shape(),
                    ));
                }
                match &mut grads[o] {
                    // An output marked twice: its gradients sum.
                    Some(acc) => accumulate(acc, &g),
                    slot => *slot = Some(g),
                }
            }
        }
        let mut captured = None;
        for v in (1..self.nodes.len()).rev() {
            let Some(g) = grads[v].take() else { continue };
            if capture == Some(v) {
                captured = Some(g.clone());
            }
            if params_only && self.nodes[v].inputs.iter().all(|&u| u == 0) {
                // Only the input below: a merge has no parameters, a layer skips dL/dinput.
                if let Op::Layer(l) = &mut self.nodes[v].op {
                    l.backward_params(&g)?;
                }
                continue;
            }
            let sent: Vec<Tensor<T>> = match &mut self.nodes[v].op {
                Op::Input => Vec::new(),
                Op::Layer(l) => vec![l.backward_owned(g)?],
                Op::Merge(m) => m.backward_owned(g)?,
            };
            let node = &self.nodes[v];
            if sent.len() != node.inputs.len() {
                return Err(Error::input(
                    "Graph::backward_all",
                    format!(
                        "node `{}` returned {} gradients for its {} inputs",
                        node.name,
                        sent.len(),
                        node.inputs.len()
                    ),
                ));
            }
            for (&u, gi) in node.inputs.iter().zip(sent) {
                let want = self.shapes[u].as_slice();
                if gi.shape() != want {
                    return Err(Error::shape(
                        format!(
                            "Graph node `{}` (the gradient it sends to `{}`)",
                            node.name, self.nodes[u].name
                        ),
                        format!("{want:?}, the shape of `{}`", self.nodes[u].name),
                        gi.shape(),
                    ));
                }
                match &mut grads[u] {
                    Some(acc) => accumulate(acc, &gi),
                    slot => *slot = Some(gi),
                }
            }
        }
        if capture == Some(0) {
            captured = grads[0].clone();
        }
        Ok((grads[0].take(), captured))
    }
}

impl<T: Float> Layer<T> for Graph<T> {
    fn kind(&self) -> &'static str {
        "Graph"
    }

    fn describe(&self) -> String {
        format!("{} nodes", self.nodes.len() - 1)
    }

    // Indexing: outputs are non-empty and name nodes (the invariants above `Graph`).
    #[allow(clippy::indexing_slicing)]
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.shapes(input)?.swap_remove(self.outputs[0]))
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        Ok(self.forward_all(input)?.swap_remove(0))
    }

    /// As `forward`, with the input by value: a graph that does not keep its values hands it
    /// on to a single reading layer without a copy.
    fn forward_owned(&mut self, input: Tensor<T>) -> Result<Tensor<T>> {
        Ok(self.forward_values(input)?.swap_remove(0))
    }

    /// The first output, evaluating only the nodes it depends on (so the auxiliary heads of
    /// a GoogLeNet do not run).
    // Indexing: outputs are non-empty (the invariants above `Graph`), so one output comes
    // back.
    #[allow(clippy::indexing_slicing)]
    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let mut outs = self.infer_nodes(input, &self.outputs[..1])?;
        Ok(outs.swap_remove(0))
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        self.backward_owned(grad_output.clone())
    }

    /// The gradient of the first output, handed on by value to the node that made it.
    fn backward_owned(&mut self, grad_output: Tensor<T>) -> Result<Tensor<T>> {
        let mut grad = Some(grad_output);
        let grads = (0..self.outputs.len()).map(|_| grad.take()).collect();
        let (dx, _) = self.backward_capture(grads, None, false)?;
        self.input_gradient(dx)
    }

    /// Parameter gradients of the first output's gradient, without dL/dinput: the nodes fed
    /// by the input skip their data gradient (see [`Layer::backward_params`]).
    fn backward_params(&mut self, grad_output: &Tensor<T>) -> Result<()> {
        let mut grad = Some(grad_output.clone());
        let grads = (0..self.outputs.len()).map(|_| grad.take()).collect();
        self.backward_capture(grads, None, true)?;
        Ok(())
    }

    fn set_mode(&mut self, mode: Mode) {
        for node in &mut self.nodes {
            if let Op::Layer(l) = &mut node.op {
                l.set_mode(mode);
            }
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        for node in &self.nodes {
            if let Op::Layer(l) = &node.op {
                l.visit(&mut |name, slot| f(&format!("{}.{name}", node.name), slot));
            }
        }
    }

    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {
        for node in &mut self.nodes {
            let prefix = &node.name;
            if let Op::Layer(l) = &mut node.op {
                l.visit_mut(&mut |name, slot| f(&format!("{prefix}.{name}"), slot));
            }
        }
    }

    fn visit_rngs_mut(&mut self, f: &mut dyn FnMut(&str, &mut Rng64)) {
        for node in &mut self.nodes {
            let prefix = &node.name;
            if let Op::Layer(l) = &mut node.op {
                l.visit_rngs_mut(&mut |name, rng| f(&format!("{prefix}.{name}"), rng));
            }
        }
    }

    /// The layer nodes, by node name, in evaluation order (merge nodes are not layers).
    fn children(&self) -> Vec<(&str, &dyn Layer<T>)> {
        self.nodes
            .iter()
            .filter_map(|node| match &node.op {
                Op::Layer(l) => Some((node.name.as_str(), l.as_ref() as &dyn Layer<T>)),
                _ => None,
            })
            .collect()
    }

    fn child_mut(&mut self, name: &str) -> Option<&mut Box<dyn Layer<T>>> {
        self.nodes.iter_mut().find_map(|node| match &mut node.op {
            Op::Layer(l) if node.name == name => Some(l),
            _ => None,
        })
    }

    // Indexing: node inputs and outputs are node ids (the invariants above `Graph`).
    #[allow(clippy::indexing_slicing)]
    fn summary_rows(&self, input: &[usize], rows: &mut Vec<SummaryRow>) -> Result<Vec<usize>> {
        let shapes = self.shapes(input)?;
        for (node, shape) in self.nodes.iter().zip(&shapes) {
            match &node.op {
                Op::Input => {}
                Op::Layer(l) => {
                    l.summary_rows(&shapes[node.inputs[0]], rows)?;
                }
                Op::Merge(m) => rows.push(SummaryRow {
                    kind: m.kind(),
                    description: node
                        .inputs
                        .iter()
                        .map(|&u| self.nodes[u].name.as_str())
                        .collect::<Vec<_>>()
                        .join(" + "),
                    output_shape: shape.clone(),
                    params: 0,
                }),
            }
        }
        Ok(shapes[self.outputs[0]].clone())
    }
}

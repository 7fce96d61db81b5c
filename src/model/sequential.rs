use crate::error::{Error, Result};
use crate::layer::{Epilogue, Layer, Mode, Slot, SlotMut};
use crate::model::SummaryRow;
use crate::rng::Rng64;
use crate::tensor::{Float, Tensor};

/// A chain of layers applied one after another, like PyTorch's `nn.Sequential`.
///
/// Children are named by their position, so the parameters of the layer at index 3 are
/// `3.weight` and `3.bias`, exactly as PyTorch names them. A `Sequential` is itself a
/// [`Layer`], so chains nest (`features.0.weight`).
///
/// ```
/// use convnet::prelude::*;
/// let mut net = Sequential::<f32>::new()
///     .add(Conv2d::new(Conv2dConfig::new(1, 6, 5).padding(2)).unwrap())
///     .add(ReLU::new())
///     .add(MaxPool2d::new(MaxPool2dConfig::new(2)).unwrap())
///     .add(Flatten::new(FlattenConfig::new()).unwrap())
///     .add(Linear::new(LinearConfig::new(6 * 14 * 14, 10)).unwrap());
/// assert_eq!(net.output_shape(&[8, 1, 28, 28]).unwrap(), vec![8, 10]);
/// let x = Tensor::<f32>::zeros(ndarray::IxDyn(&[8, 1, 28, 28]));
/// let logits = net.forward(&x).unwrap();
/// assert_eq!(logits.shape(), &[8, 10]);
/// ```
pub struct Sequential<T: Float> {
    layers: Vec<Box<dyn Layer<T>>>,
    names: Vec<String>,
    /// With no layers (the identity): the shape of the last `forward`'s input, which
    /// `backward` checks its gradient against as every layer does.
    identity_shape: Option<Vec<usize>>,
}

impl<T: Float> Default for Sequential<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Sequential<T> {
    /// An empty chain (the identity).
    pub fn new() -> Self {
        Sequential {
            layers: Vec::new(),
            names: Vec::new(),
            identity_shape: None,
        }
    }

    /// Appends a layer, builder style.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Layer<T> + 'static) -> Self {
        self.push(Box::new(layer));
        self
    }

    /// Appends a layer under an explicit name instead of its index, as a PyTorch module
    /// attribute would be named (`conv` and `bn` give `conv.weight`, `bn.running_mean`).
    ///
    /// Fails with [`Error::InvalidConfig`] for a name already taken by another child when
    /// either of the two holds parameters, buffers or a random generator (their `state_dict`
    /// or checkpoint keys would collide), an empty name, a name containing `.` (as PyTorch
    /// refuses), or a number other than the child's own index (numbers are the names
    /// [`Sequential::add`] gives, so a later child would collide with it). Stateless layers
    /// may share a name, as torchvision's ResNet blocks reuse one `relu`.
    pub fn add_named(mut self, name: &str, layer: impl Layer<T> + 'static) -> Result<Self> {
        let mut layer = layer;
        let index = self.layers.len();
        let fail = |why: String| Err(Error::config("Sequential::add_named", why));
        if name.is_empty() || name.contains('.') {
            return fail(format!(
                "child name `{name}` must be non-empty and contain no `.`"
            ));
        }
        let taken = self.names.iter().position(|n| n == name);
        if let Some(i) = taken {
            let other_has_state = self
                .layers
                .get_mut(i)
                .is_some_and(|other| has_state(other.as_mut()));
            if has_state(&mut layer) || other_has_state {
                return fail(format!(
                    "two children named `{name}`: their state_dict keys would collide"
                ));
            }
        }
        if name.parse::<usize>().is_ok() && name != index.to_string() {
            return fail(format!(
                "child {index} cannot be named `{name}`: numbers name children by their index"
            ));
        }
        self.layers.push(Box::new(layer));
        self.names.push(name.to_string());
        Ok(self)
    }

    /// Appends a boxed layer, named by its index.
    pub fn push(&mut self, layer: Box<dyn Layer<T>>) {
        self.names.push(self.layers.len().to_string());
        self.layers.push(layer);
    }

    /// The name of each child (its index unless given with [`Sequential::add_named`]).
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True for an empty chain.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The layers in order.
    pub fn layers(&self) -> &[Box<dyn Layer<T>>] {
        &self.layers
    }

    /// The layers in order, mutably.
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer<T>>] {
        &mut self.layers
    }

    /// With no layers: the gradient must have the shape of the last `forward`'s input (and
    /// there must have been one), as for any layer; an identity used to hand any gradient
    /// back unchecked, before any forward or of another shape.
    fn check_identity_grad(&self, grad_output: &Tensor<T>) -> Result<()> {
        let shape = self
            .identity_shape
            .as_ref()
            .ok_or_else(|| Error::no_cache("Sequential"))?;
        if grad_output.shape() != shape.as_slice() {
            return Err(Error::shape(
                "Sequential (empty: the identity) gradient",
                format!("{shape:?}, the shape of the last forward's input"),
                grad_output.shape(),
            ));
        }
        Ok(())
    }
}

/// True if the layer has any `state_dict` entry or random generator.
fn has_state<T: Float>(layer: &mut dyn Layer<T>) -> bool {
    let mut any = false;
    layer.visit(&mut |_, _| any = true);
    layer.visit_rngs_mut(&mut |_, _| any = true);
    any
}

impl<T: Float> Layer<T> for Sequential<T> {
    fn kind(&self) -> &'static str {
        "Sequential"
    }

    fn describe(&self) -> String {
        format!("{} layers", self.layers.len())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let mut shape = input.to_vec();
        for layer in &self.layers {
            shape = layer.output_shape(&shape)?;
        }
        Ok(shape)
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let mut layers = self.layers.iter_mut();
        let Some(first) = layers.next() else {
            self.identity_shape = Some(input.shape().to_vec());
            return Ok(input.clone());
        };
        let mut x = first.forward(input)?;
        for layer in layers {
            x = layer.forward_owned(x)?;
        }
        Ok(x)
    }

    /// Like `forward`; the first layer gets the input by value too.
    fn forward_owned(&mut self, input: Tensor<T>) -> Result<Tensor<T>> {
        if self.layers.is_empty() {
            self.identity_shape = Some(input.shape().to_vec());
        }
        let mut x = input;
        for layer in &mut self.layers {
            x = layer.forward_owned(x)?;
        }
        Ok(x)
    }

    /// Runs [`infer_chain`]: each layer absorbs the per-channel epilogues of the layers right
    /// after it when it can (Conv2d → BatchNorm2d → ReLU becomes one pass).
    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        infer_chain(&self.layers, input)
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let mut layers = self.layers.iter_mut().rev();
        let Some(last) = layers.next() else {
            self.check_identity_grad(grad_output)?;
            return Ok(grad_output.clone());
        };
        let mut g = last.backward(grad_output)?;
        for layer in layers {
            g = layer.backward_owned(g)?;
        }
        Ok(g)
    }

    /// Like `backward`; the last layer gets the gradient by value too.
    fn backward_owned(&mut self, grad_output: Tensor<T>) -> Result<Tensor<T>> {
        if self.layers.is_empty() {
            self.check_identity_grad(&grad_output)?;
        }
        let mut g = grad_output;
        for layer in self.layers.iter_mut().rev() {
            g = layer.backward_owned(g)?;
        }
        Ok(g)
    }

    /// Like `backward`, but the first layer is told that no input gradient is wanted.
    fn backward_params(&mut self, grad_output: &Tensor<T>) -> Result<()> {
        let Some((first, rest)) = self.layers.split_first_mut() else {
            return self.check_identity_grad(grad_output);
        };
        let mut layers = rest.iter_mut().rev();
        let Some(last) = layers.next() else {
            return first.backward_params(grad_output);
        };
        let mut g = last.backward(grad_output)?;
        for layer in layers {
            g = layer.backward_owned(g)?;
        }
        first.backward_params(&g)
    }

    fn summary_rows(&self, input: &[usize], rows: &mut Vec<SummaryRow>) -> Result<Vec<usize>> {
        let mut shape = input.to_vec();
        for layer in &self.layers {
            shape = layer.summary_rows(&shape, rows)?;
        }
        Ok(shape)
    }

    fn set_mode(&mut self, mode: Mode) {
        for layer in &mut self.layers {
            layer.set_mode(mode);
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        for (child, layer) in self.names.iter().zip(&self.layers) {
            layer.visit(&mut |name, slot| f(&format!("{child}.{name}"), slot));
        }
    }

    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {
        for (child, layer) in self.names.iter().zip(&mut self.layers) {
            layer.visit_mut(&mut |name, slot| f(&format!("{child}.{name}"), slot));
        }
    }

    fn visit_rngs_mut(&mut self, f: &mut dyn FnMut(&str, &mut Rng64)) {
        for (child, layer) in self.names.iter().zip(&mut self.layers) {
            layer.visit_rngs_mut(&mut |name, rng| f(&format!("{child}.{name}"), rng));
        }
    }

    fn children(&self) -> Vec<(&str, &dyn Layer<T>)> {
        self.names
            .iter()
            .zip(&self.layers)
            .map(|(n, l)| (n.as_str(), l.as_ref() as &dyn Layer<T>))
            .collect()
    }

    /// The first child named `name`; failing that, the child at index `name` (so the two
    /// `relu` children of a ResNet block are `relu` and `5`).
    fn child_mut(&mut self, name: &str) -> Option<&mut Box<dyn Layer<T>>> {
        let i = self
            .names
            .iter()
            .position(|n| n == name)
            .or_else(|| name.parse::<usize>().ok())?;
        self.layers.get_mut(i)
    }
}

/// Inference through a chain of layers with fusion: at layer `i`, the [`Layer::epilogue`]s of
/// the consecutive layers after it are offered to `layers[i].infer_fused`; if it accepts,
/// those layers are skipped, otherwise `layers[i].infer` runs alone. Greedy, so
/// Conv2d → BatchNorm2d → ReLU runs as one convolution whose output loop applies the folded
/// batch norm and the ReLU. An empty chain is the identity.
pub fn infer_chain<T: Float>(layers: &[Box<dyn Layer<T>>], input: &Tensor<T>) -> Result<Tensor<T>> {
    let mut x: Option<Tensor<T>> = None;
    let mut rest = layers;
    while let Some((layer, after)) = rest.split_first() {
        let current = x.as_ref().unwrap_or(input);
        let epilogues: Vec<Epilogue<T>> = after.iter().map_while(|l| l.epilogue()).collect();
        let fused = match epilogues.is_empty() {
            true => None,
            false => layer.infer_fused(current, &epilogues)?,
        };
        let (y, absorbed) = match fused {
            Some(y) => (y, epilogues.len()),
            None => (layer.infer(current)?, 0),
        };
        x = Some(y);
        rest = after.get(absorbed..).unwrap_or_default();
    }
    Ok(x.unwrap_or_else(|| input.clone()))
}

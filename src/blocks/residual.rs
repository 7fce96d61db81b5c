use crate::error::{Error, Result};
use crate::layer::{Epilogue, Layer, Mode, Slot, SlotMut};
use crate::layers::accumulate;
use crate::model::SummaryRow;
use crate::rng::Rng64;
use crate::tensor::{slice_mut, Float, Tensor};
use std::collections::BTreeSet;

/// A residual block (He et al. 2015): `y = post(body(x) + shortcut(x))`.
///
/// ```text
/// forward:  s = body(x) + shortcut(x)          (shortcut = identity or a projection)
///           y = post(s)                        (ReLU in ResNet, or nothing)
/// backward: ds = post'(dy)
///           dx = body'(ds) + shortcut'(ds)     (the gradient flows down both paths)
/// ```
///
/// The body's parameters keep their own names (`conv1.weight`, `bn1.running_mean`, as in
/// torchvision's `BasicBlock`); the shortcut's are prefixed with its name (`downsample.0.weight`).
///
/// With a body that doubles its input, `y = 2x + x = 3x`, and the gradient that comes back is
/// the body's 2 plus the shortcut's 1:
///
/// ```
/// use convnet::blocks::Residual;
/// use convnet::prelude::*;
/// use ndarray::IxDyn;
/// # fn main() -> convnet::Result<()> {
/// let double = Conv2d::from_weights(
///     Conv2dConfig::new(1, 1, 1).bias(false),
///     Tensor::from_elem(IxDyn(&[1, 1, 1, 1]), 2.0f64),
///     None,
/// )?;
/// let mut block = Residual::new(double);
/// let x = Tensor::from_shape_vec(IxDyn(&[1, 1, 2, 2]), vec![1.0, -2.0, 3.0, 0.5])?;
/// let y = block.forward(&x)?;
/// assert_eq!(y, &x * 3.0);
/// let dx = block.backward(&Tensor::ones(y.raw_dim()))?;
/// assert!(dx.iter().all(|&g| g == 3.0));
///
/// // ResNet's own block: relu(bn2(conv2(relu(bn1(conv1(x))))) + x).
/// let basic = convnet::zoo::basic_block::<f32>(64, 64, 1, false)?;
/// assert_eq!(basic.output_shape(&[1, 64, 56, 56])?, vec![1, 64, 56, 56]);
/// assert_eq!(basic.num_params(), 2 * (64 * 64 * 9) + 2 * (2 * 64));
/// # Ok(())
/// # }
/// ```
pub struct Residual<T: Float> {
    body: Box<dyn Layer<T>>,
    shortcut: Option<(String, Box<dyn Layer<T>>)>,
    post: Option<Box<dyn Layer<T>>>,
}

impl<T: Float> Residual<T> {
    /// `y = body(x) + x`.
    pub fn new(body: impl Layer<T> + 'static) -> Self {
        Residual {
            body: Box::new(body),
            shortcut: None,
            post: None,
        }
    }

    /// Replaces the identity shortcut with a projection (e.g. 1x1 conv + BN), whose
    /// parameters are named `<name>.<param>`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `name` is empty or contains a `.`, or if a `state_dict`
    /// key of the shortcut would also be a key of the body or of `post` (a body child
    /// named like the shortcut).
    pub fn shortcut(mut self, name: &str, shortcut: impl Layer<T> + 'static) -> Result<Self> {
        super::check_child_name("Residual::shortcut", name)?;
        let mut shortcut: Box<dyn Layer<T>> = Box::new(shortcut);
        let keys = super::state_keys(shortcut.as_mut(), Some(name));
        super::check_disjoint("Residual::shortcut", &self.unprefixed_keys(), &keys)?;
        self.shortcut = Some((name.to_string(), shortcut));
        Ok(self)
    }

    /// Applies `post` (typically ReLU) after the sum. Its parameters, if any, keep their own
    /// names, as the body's do.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if a `state_dict` key of `post` is also one of the body's or
    /// the shortcut's.
    pub fn post(mut self, post: impl Layer<T> + 'static) -> Result<Self> {
        let mut post: Box<dyn Layer<T>> = Box::new(post);
        let keys = super::state_keys(post.as_mut(), None);
        let mut others = super::state_keys(self.body.as_mut(), None);
        if let Some((name, s)) = &mut self.shortcut {
            others.extend(super::state_keys(s.as_mut(), Some(name)));
        }
        super::check_disjoint("Residual::post", &others, &keys)?;
        self.post = Some(post);
        Ok(self)
    }

    /// The keys of the parts named without a prefix: the body and `post`.
    fn unprefixed_keys(&mut self) -> BTreeSet<String> {
        let mut keys = super::state_keys(self.body.as_mut(), None);
        if let Some(p) = &mut self.post {
            keys.extend(super::state_keys(p.as_mut(), None));
        }
        keys
    }

    fn check_sum(body: &[usize], short: &[usize]) -> Result<()> {
        if body == short {
            Ok(())
        } else {
            Err(Error::shape(
                "Residual (body + shortcut)",
                format!("the shortcut to produce the body's shape {body:?}"),
                short,
            ))
        }
    }
}

impl<T: Float> Layer<T> for Residual<T> {
    fn kind(&self) -> &'static str {
        "Residual"
    }

    fn describe(&self) -> String {
        match &self.shortcut {
            Some(_) => "body + projection shortcut".into(),
            None => "body + identity".into(),
        }
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let body = self.body.output_shape(input)?;
        let short = match &self.shortcut {
            Some((_, s)) => s.output_shape(input)?,
            None => input.to_vec(),
        };
        Self::check_sum(&body, &short)?;
        match &self.post {
            Some(p) => p.output_shape(&body),
            None => Ok(body),
        }
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        self.forward_owned(input.clone())
    }

    /// `post(body(x) + shortcut(x))`; the shortcut (or the sum, for an identity) takes `x`.
    fn forward_owned(&mut self, input: Tensor<T>) -> Result<Tensor<T>> {
        let mut sum = self.body.forward(&input)?;
        match &mut self.shortcut {
            Some((_, s)) => {
                let short = s.forward_owned(input)?;
                Self::check_sum(sum.shape(), short.shape())?;
                accumulate(&mut sum, &short);
            }
            None => {
                Self::check_sum(sum.shape(), input.shape())?;
                accumulate(&mut sum, &input);
            }
        }
        match &mut self.post {
            Some(p) => p.forward_owned(sum),
            None => Ok(sum),
        }
    }

    /// `post(body(x) + shortcut(x))` with every part in inference; a `Sequential` body (or
    /// shortcut) fuses its own Conv2d → BatchNorm2d → ReLU runs.
    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let mut sum = self.body.infer(input)?;
        match &self.shortcut {
            Some((_, s)) => {
                let short = s.infer(input)?;
                Self::check_sum(sum.shape(), short.shape())?;
                accumulate(&mut sum, &short);
            }
            None => {
                Self::check_sum(sum.shape(), input.shape())?;
                accumulate(&mut sum, input);
            }
        }
        match &self.post {
            // A ReLU after the sum works in place on the sum, which nothing else holds (its
            // `infer` would copy it first); the same operation, so the same numbers.
            Some(p) if sum.is_standard_layout() && matches!(p.epilogue(), Some(Epilogue::Relu)) => {
                Epilogue::Relu.apply(slice_mut(&mut sum)?, 1)?;
                Ok(sum)
            }
            Some(p) => p.infer(&sum),
            None => Ok(sum),
        }
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        self.backward_owned(grad_output.clone())
    }

    fn backward_owned(&mut self, grad_output: Tensor<T>) -> Result<Tensor<T>> {
        let grad_sum = match &mut self.post {
            Some(p) => p.backward_owned(grad_output)?,
            None => grad_output,
        };
        let (grad_input, short) = match &mut self.shortcut {
            Some((_, s)) => {
                let short = s.backward(&grad_sum)?;
                (self.body.backward_owned(grad_sum)?, short)
            }
            None => (self.body.backward(&grad_sum)?, grad_sum),
        };
        // Both reach the same input: a layer of the caller's own that returns a gradient of
        // another shape is named here (the sum would panic or broadcast).
        if short.shape() != grad_input.shape() {
            return Err(Error::shape(
                "Residual (backward: the shortcut's gradient)",
                format!("{:?}, the shape of the body's gradient", grad_input.shape()),
                short.shape(),
            ));
        }
        let mut grad_input = grad_input;
        accumulate(&mut grad_input, &short);
        Ok(grad_input)
    }

    /// Lists the body's layers one by one (so convolutions are numbered by depth, as in the
    /// paper's "34 layers"), then one row for the addition that carries the shortcut's
    /// parameters, then the activation after it.
    fn summary_rows(&self, input: &[usize], rows: &mut Vec<SummaryRow>) -> Result<Vec<usize>> {
        let body = self.body.summary_rows(input, rows)?;
        let (description, params) = match &self.shortcut {
            Some((name, s)) => {
                let out = s.output_shape(input)?;
                Self::check_sum(&body, &out)?;
                (format!("add projection shortcut `{name}`"), s.num_params())
            }
            None => {
                Self::check_sum(&body, input)?;
                ("add identity shortcut".to_string(), 0)
            }
        };
        rows.push(SummaryRow {
            kind: "Residual",
            description,
            output_shape: body.clone(),
            params,
        });
        match &self.post {
            Some(p) => p.summary_rows(&body, rows),
            None => Ok(body),
        }
    }

    fn set_mode(&mut self, mode: Mode) {
        self.body.set_mode(mode);
        if let Some((_, s)) = &mut self.shortcut {
            s.set_mode(mode);
        }
        if let Some(p) = &mut self.post {
            p.set_mode(mode);
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        self.body.visit(f);
        if let Some((prefix, s)) = &self.shortcut {
            s.visit(&mut |name, slot| f(&format!("{prefix}.{name}"), slot));
        }
        if let Some(p) = &self.post {
            p.visit(f);
        }
    }

    fn visit_rngs_mut(&mut self, f: &mut dyn FnMut(&str, &mut Rng64)) {
        self.body.visit_rngs_mut(f);
        if let Some((prefix, s)) = &mut self.shortcut {
            s.visit_rngs_mut(&mut |name, rng| f(&format!("{prefix}.{name}"), rng));
        }
    }

    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {
        self.body.visit_mut(f);
        if let Some((prefix, s)) = &mut self.shortcut {
            s.visit_mut(&mut |name, slot| f(&format!("{prefix}.{name}"), slot));
        }
        if let Some(p) = &mut self.post {
            p.visit_mut(f);
        }
    }

    /// The body's children under their own names, as its parameters are named (or the body
    /// itself as `body` when it has none), then the shortcut under its name and `post`.
    fn children(&self) -> Vec<(&str, &dyn Layer<T>)> {
        let mut children = self.body.children();
        if children.is_empty() {
            children.push(("body", self.body.as_ref()));
        }
        if let Some((name, s)) = &self.shortcut {
            children.push((name.as_str(), s.as_ref()));
        }
        if let Some(p) = &self.post {
            children.push(("post", p.as_ref()));
        }
        children
    }

    fn child_mut(&mut self, name: &str) -> Option<&mut Box<dyn Layer<T>>> {
        if self.body.children().is_empty() {
            if name == "body" {
                return Some(&mut self.body);
            }
        } else if let Some(child) = self.body.child_mut(name) {
            return Some(child);
        }
        match (&mut self.shortcut, &mut self.post) {
            (Some((n, s)), _) if n == name => Some(s),
            (_, Some(p)) if name == "post" => Some(p),
            _ => None,
        }
    }
}

use crate::error::{Error, Result};
use crate::layer::{Layer, Merge, Mode, Slot, SlotMut};
use crate::layers::Concat;
use crate::rng::Rng64;
use crate::tensor::{Float, Tensor};

/// An Inception module (Szegedy et al. 2014): parallel branches over the same input,
/// concatenated along channels.
///
/// ```text
/// forward:  y = concat_c(b_1(x), b_2(x), ..., b_k(x))
/// backward: dy is split along channels into dy_1..dy_k;  dx = Σ_i b_i'(dy_i)
/// ```
///
/// Each branch's parameters are prefixed with the branch name (`branch2.1.conv.weight`).
///
/// A module with a 1x1 convolution (4 maps) and a 3x3 max pool (the input's 2 maps) stacks
/// them into 6 maps of the same size:
///
/// ```
/// use convnet::blocks::Inception;
/// use convnet::prelude::*;
/// # fn main() -> convnet::Result<()> {
/// let mut module = Inception::<f32>::new()
///     .branch("branch1", Conv2d::new(Conv2dConfig::new(2, 4, 1))?)?
///     .branch("branch4", MaxPool2d::new(MaxPool2dConfig::new(3).stride(1).padding(1))?)?;
/// let x = Tensor::<f32>::ones(ndarray::IxDyn(&[1, 2, 8, 8]));
/// let y = module.forward(&x)?;
/// assert_eq!(y.shape(), &[1, 6, 8, 8]);
/// // Channels 4 and 5 are the pool branch: the max of ones is one.
/// assert!(y.slice(ndarray::s![0, 4.., .., ..]).iter().all(|&v| v == 1.0));
/// let names: Vec<String> = convnet::io::state_dict(&module).into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["branch1.weight", "branch1.bias"]);
///
/// // GoogLeNet's module 3a: 192 maps in, 64 + 128 + 32 + 32 = 256 out.
/// let m3a = convnet::zoo::inception_v1_paper::<f32>(192, 64, 96, 128, 16, 32, 32)?;
/// assert_eq!(m3a.output_shape(&[1, 192, 28, 28])?, vec![1, 256, 28, 28]);
/// # Ok(())
/// # }
/// ```
pub struct Inception<T: Float> {
    branches: Vec<(String, Box<dyn Layer<T>>)>,
    /// The channel join (block copies; it caches the branch shapes for backward).
    join: Concat<T>,
}

impl<T: Float> Default for Inception<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Inception<T> {
    /// Checks the branch outputs agree and concatenates them (training forward).
    fn join_branches(&mut self, outs: Vec<Tensor<T>>) -> Result<Tensor<T>> {
        Self::check_outputs(&outs)?;
        let refs: Vec<&Tensor<T>> = outs.iter().collect();
        self.join.forward(&refs)
    }

    /// A module with no branches yet.
    pub fn new() -> Self {
        Inception {
            branches: Vec::new(),
            join: Concat::new(),
        }
    }

    /// Adds a branch named `name` (its parameters become `<name>.<param>`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `name` is empty, contains a `.`, or names an earlier
    /// branch (their `state_dict` keys would collide, and a branch could not be found by name).
    pub fn branch(mut self, name: &str, layer: impl Layer<T> + 'static) -> Result<Self> {
        super::check_child_name("Inception::branch", name)?;
        if self.branches.iter().any(|(n, _)| n == name) {
            return Err(Error::config(
                "Inception::branch",
                format!("two branches named `{name}`: their state_dict keys would collide"),
            ));
        }
        self.branches.push((name.to_string(), Box::new(layer)));
        Ok(self)
    }

    fn branch_shapes(&self, input: &[usize]) -> Result<Vec<Vec<usize>>> {
        if self.branches.is_empty() {
            return Err(Error::config("Inception", "no branches"));
        }
        self.branches
            .iter()
            .map(|(_, b)| b.output_shape(input))
            .collect()
    }

    /// Checks that the branch outputs fit together (errors name the branch).
    fn check_outputs(outs: &[Tensor<T>]) -> Result<()> {
        if outs.is_empty() {
            return Err(Error::config("Inception", "no branches"));
        }
        let shapes: Vec<Vec<usize>> = outs.iter().map(|o| o.shape().to_vec()).collect();
        Self::concat_shape(&shapes).map(|_| ())
    }

    fn concat_shape(shapes: &[Vec<usize>]) -> Result<Vec<usize>> {
        let Some(first) = shapes.first() else {
            return Err(Error::config("Inception", "no branches"));
        };
        let [n, _, rest @ ..] = first.as_slice() else {
            return Err(Error::shape(
                "Inception",
                "branch outputs [N, C, ...]",
                first,
            ));
        };
        let mut channels = 0usize;
        for (i, s) in shapes.iter().enumerate() {
            match s.as_slice() {
                [sn, c, srest @ ..] if sn == n && srest == rest => {
                    channels = channels.checked_add(*c).ok_or_else(|| {
                        Error::shape("Inception", "branch channels that add up", s)
                    })?;
                }
                _ => {
                    return Err(Error::shape(
                        format!("Inception branch {}", i + 1),
                        format!("[{n}, C, {rest:?}] like branch 1"),
                        s,
                    ))
                }
            }
        }
        let mut out = vec![*n, channels];
        out.extend_from_slice(rest);
        Ok(out)
    }
}

impl<T: Float> Layer<T> for Inception<T> {
    fn kind(&self) -> &'static str {
        "Inception"
    }

    fn describe(&self) -> String {
        format!("{} branches", self.branches.len())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Self::concat_shape(&self.branch_shapes(input)?)
    }

    /// Every branch reads the input (no copy of it here: a branch that keeps it copies it).
    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let outs = self
            .branches
            .iter_mut()
            .map(|(_, b)| b.forward(input))
            .collect::<Result<Vec<_>>>()?;
        self.join_branches(outs)
    }

    /// Every branch but the last reads the input; the last one takes it.
    fn forward_owned(&mut self, input: Tensor<T>) -> Result<Tensor<T>> {
        let mut outs = Vec::with_capacity(self.branches.len());
        if let Some(((_, last), rest)) = self.branches.split_last_mut() {
            for (_, b) in rest {
                outs.push(b.forward(&input)?);
            }
            outs.push(last.forward_owned(input)?);
        }
        self.join_branches(outs)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let outs = self
            .branches
            .iter()
            .map(|(_, b)| b.infer(input))
            .collect::<Result<Vec<_>>>()?;
        Self::check_outputs(&outs)?;
        let refs: Vec<&Tensor<T>> = outs.iter().collect();
        self.join.infer(&refs)
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let shapes = self
            .join
            .cached_shapes()
            .ok_or_else(|| Error::no_cache("Inception"))?;
        // The join cached `[N, C, ...]` shapes (`concat_shape` checked them in forward).
        let total: usize = shapes.iter().filter_map(|s| s.get(1)).sum();
        if grad_output.shape().get(1) != Some(&total) {
            return Err(Error::shape(
                "Inception (backward)",
                format!("[N, {total}, ...]"),
                grad_output.shape(),
            ));
        }
        let parts = self.join.backward(grad_output)?;
        let mut grad_input: Option<Tensor<T>> = None;
        for ((_, branch), part) in self.branches.iter_mut().zip(parts) {
            let g = branch.backward_owned(part)?;
            match &mut grad_input {
                // Every branch reads the same input; a gradient of another shape (from a layer
                // of the caller's own) would panic or broadcast in the sum.
                Some(acc) if acc.shape() != g.shape() => {
                    return Err(Error::shape(
                        "Inception (backward: a branch's gradient)",
                        format!(
                            "{:?}, the shape of the first branch's gradient",
                            acc.shape()
                        ),
                        g.shape(),
                    ))
                }
                Some(acc) => *acc += &g,
                None => grad_input = Some(g),
            }
        }
        grad_input.ok_or_else(|| Error::no_cache("Inception"))
    }

    fn set_mode(&mut self, mode: Mode) {
        for (_, b) in &mut self.branches {
            b.set_mode(mode);
        }
    }

    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        for (prefix, b) in &self.branches {
            b.visit(&mut |name, slot| f(&format!("{prefix}.{name}"), slot));
        }
    }

    fn visit_rngs_mut(&mut self, f: &mut dyn FnMut(&str, &mut Rng64)) {
        for (prefix, b) in &mut self.branches {
            b.visit_rngs_mut(&mut |name, rng| f(&format!("{prefix}.{name}"), rng));
        }
    }

    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {
        for (prefix, b) in &mut self.branches {
            b.visit_mut(&mut |name, slot| f(&format!("{prefix}.{name}"), slot));
        }
    }

    fn children(&self) -> Vec<(&str, &dyn Layer<T>)> {
        self.branches
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_ref() as &dyn Layer<T>))
            .collect()
    }

    fn child_mut(&mut self, name: &str) -> Option<&mut Box<dyn Layer<T>>> {
        self.branches
            .iter_mut()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b)
    }
}

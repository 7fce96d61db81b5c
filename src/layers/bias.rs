use super::{expect_numel, expect_shape};
use crate::error::{Error, Result};
use crate::layer::{Epilogue, Layer, Param, Slot, SlotMut};
use crate::tensor::{contiguous, from_vec, Float, Tensor};

/// A learned offset per channel (dim 1), added to every other position: `x + b.view(1, C, 1, 1)`
/// for images, `x + b` for `[N, C]` features.
///
/// ```text
/// forward:  y[n, c, ..] = x[n, c, ..] + b[c]
/// backward: dx = dy,   db[c] += Σ_{n, ..} dy[n, c, ..]
/// ```
///
/// The ONNX importer maps an `Add` of a per-channel or scalar constant to this layer (a
/// scalar becomes the same value in every channel).
#[derive(Clone, Debug)]
pub struct Bias<T: Float> {
    bias: Param<T>,
    input_shape: Option<Vec<usize>>,
}

/// How to build a [`Bias`]: the number of channels (the offsets start at zero).
///
/// ```
/// use convnet::layers::BiasConfig;
/// assert_eq!(BiasConfig::new(16).channels, 16);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BiasConfig {
    /// Number of channels `C` (dim 1 of the input).
    pub channels: usize,
}

impl BiasConfig {
    /// Offsets for `channels` channels.
    pub fn new(channels: usize) -> Self {
        BiasConfig { channels }
    }
}

impl<T: Float> Bias<T> {
    /// Zero offsets, or [`Error::InvalidConfig`] for zero channels.
    pub fn new(cfg: BiasConfig) -> Result<Self> {
        if cfg.channels == 0 {
            return Err(Error::config("Bias", "needs at least one channel"));
        }
        let zeros = crate::tensor::try_zeros("Bias", &[cfg.channels])?;
        Self::from_weights(zeros)
    }

    /// Offsets given as a `[C]` tensor, or [`Error::InvalidConfig`] for another shape.
    pub fn from_weights(bias: Tensor<T>) -> Result<Self> {
        if bias.ndim() != 1 || bias.is_empty() {
            return Err(Error::config(
                "Bias",
                format!(
                    "the offsets must be a non-empty [C] tensor, got {:?}",
                    bias.shape()
                ),
            ));
        }
        Ok(Bias {
            bias: Param::new(bias.as_standard_layout().into_owned()),
            input_shape: None,
        })
    }

    /// The number of channels.
    pub fn channels(&self) -> usize {
        self.bias.len()
    }

    /// `(outer, C, inner)`: the input seen as `[outer, C, inner]`.
    fn blocks(&self, input: &[usize]) -> Result<(usize, usize, usize)> {
        expect_numel("Bias", input)?;
        let c = self.channels();
        match input {
            [n, ch, rest @ ..] if *ch == c => Ok((*n, c, rest.iter().product())),
            _ => Err(Error::shape("Bias", format!("[N, {c}, ..]"), input)),
        }
    }
}

impl<T: Float> Layer<T> for Bias<T> {
    fn kind(&self) -> &'static str {
        "Bias"
    }

    fn describe(&self) -> String {
        format!("{} channels", self.channels())
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.blocks(input)?;
        Ok(input.to_vec())
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let y = self.infer(input)?;
        self.input_shape = Some(input.shape().to_vec());
        Ok(y)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let (_, _, inner) = self.blocks(input.shape())?;
        let mut y = contiguous(input).into_owned();
        let b = self.bias.value.iter().copied().collect::<Vec<T>>();
        if inner > 0 {
            for (run, &v) in y.chunks_exact_mut(inner).zip(b.iter().cycle()) {
                run.iter_mut().for_each(|x| *x += v);
            }
        }
        Ok(from_vec(input.shape(), y))
    }

    fn epilogue(&self) -> Option<Epilogue<T>> {
        Some(Epilogue::Affine {
            scale: vec![T::one(); self.channels()],
            shift: self.bias.value.iter().copied().collect(),
        })
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let shape = self
            .input_shape
            .as_ref()
            .ok_or_else(|| Error::no_cache("Bias"))?;
        expect_shape("Bias", shape, grad_output.shape())?;
        let (_, c, inner) = self.blocks(shape)?;
        let dy = contiguous(grad_output);
        let mut db = vec![T::zero(); c];
        if inner > 0 && c > 0 {
            for block in dy.chunks_exact(c * inner) {
                for (run, d) in block.chunks_exact(inner).zip(db.iter_mut()) {
                    *d += run.iter().copied().sum::<T>();
                }
            }
        }
        for (g, d) in self.bias.grad.iter_mut().zip(db) {
            *g += d;
        }
        Ok(grad_output.to_owned())
    }

    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        f("bias", Slot::Param(&self.bias));
    }

    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {
        f("bias", SlotMut::Param(&mut self.bias));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};

    #[test]
    fn adds_one_offset_per_channel() {
        let b = Bias::from_weights(from_vec(&[2], vec![10.0f64, -1.0])).unwrap();
        let x = from_vec(&[1, 2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let y = b.infer(&x).unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            [11.0, 12.0, 2.0, 3.0]
        );
        let y2 = b.infer(&from_vec(&[1, 2], vec![1.0, 1.0])).unwrap();
        assert_eq!(y2.iter().copied().collect::<Vec<_>>(), [11.0, 0.0]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (seed, shape) in [vec![2, 3, 4, 5], vec![3, 4]].iter().enumerate() {
            let b = random_tensor(&[shape[1]], 10 + seed as u64);
            let mut layer = Bias::from_weights(b).unwrap();
            let x = random_tensor(shape, seed as u64);
            check_layer(&mut layer, &x, GradCheck::default()).unwrap();
        }
    }

    #[test]
    fn the_epilogue_is_the_same_map() {
        let b = Bias::from_weights(random_tensor(&[3], 1)).unwrap();
        let x = random_tensor(&[2, 3, 2, 2], 2);
        let mut fused: Vec<f64> = x.iter().copied().collect();
        b.epilogue().unwrap().apply(&mut fused, 4).unwrap();
        let y = b.infer(&x).unwrap();
        assert!(y.iter().zip(&fused).all(|(a, b)| (a - b).abs() < 1e-12));
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(Bias::<f32>::new(BiasConfig::new(0)).is_err());
        assert!(Bias::<f32>::from_weights(Tensor::zeros(ndarray::IxDyn(&[2, 2]))).is_err());
        let b = Bias::<f32>::new(BiasConfig::new(3)).unwrap();
        assert!(b.output_shape(&[2, 4, 5]).is_err());
        assert!(b.output_shape(&[3]).is_err());
        let mut b = b;
        assert!(b.backward(&Tensor::zeros(ndarray::IxDyn(&[1, 3]))).is_err());
    }
}

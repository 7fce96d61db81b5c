use super::{expect_numel, expect_shape};
use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::tensor::{contiguous, from_vec, Float, Tensor};
use std::marker::PhantomData;

/// Flattens the dims `start..=end` into one, like `nn.Flatten(start_dim, end_dim)`; by
/// default `[N, C, H, W] -> [N, C·H·W]`, the bridge from convolutions to `Linear`.
///
/// ```text
/// forward:  y = reshape(x, [d0, .., d(start-1), Π d(start..=end), d(end+1), ..])
/// backward: dx = reshape(dy, shape of x)
/// ```
///
/// Row-major order is kept, so the element order matches PyTorch's `view`.
#[derive(Clone, Debug)]
pub struct Flatten<T: Float> {
    start: usize,
    end: isize,
    input_shape: Option<Vec<usize>>,
    _t: PhantomData<T>,
}

/// How to build a [`Flatten`]: the first and last dim to merge, PyTorch's defaults
/// `start_dim = 1`, `end_dim = -1` (a negative `end_dim` counts from the last dim).
///
/// ```
/// use convnet::layers::FlattenConfig;
/// let cfg = FlattenConfig::new().start_dim(0).end_dim(-2);
/// assert_eq!((cfg.start_dim, cfg.end_dim), (0, -2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlattenConfig {
    /// First dim to merge (default 1, keeping the batch dim).
    pub start_dim: usize,
    /// Last dim to merge; negative counts from the end (default -1, the last dim).
    pub end_dim: isize,
}

impl Default for FlattenConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl FlattenConfig {
    /// Everything after the batch dim: `start_dim = 1`, `end_dim = -1`.
    pub fn new() -> Self {
        FlattenConfig {
            start_dim: 1,
            end_dim: -1,
        }
    }

    /// Sets the first dim to merge.
    pub fn start_dim(mut self, start_dim: usize) -> Self {
        self.start_dim = start_dim;
        self
    }

    /// Sets the last dim to merge (negative counts from the end).
    pub fn end_dim(mut self, end_dim: isize) -> Self {
        self.end_dim = end_dim;
        self
    }
}

impl<T: Float> Flatten<T> {
    /// Flattens dims `start_dim..=end_dim`, or [`Error::InvalidConfig`] when both are
    /// non-negative and `start_dim > end_dim`, or either lies outside `-65..=64`.
    pub fn new(cfg: FlattenConfig) -> Result<Self> {
        let FlattenConfig {
            start_dim: start,
            end_dim: end,
        } = cfg;
        // No tensor has more than 64 dims in practice (ndarray's IxDyn has no limit, PyTorch
        // stops at 64); larger values can only be mistakes and would wrap as isize.
        if start > 64 || !(-65..=64).contains(&end) {
            let msg = format!("start_dim {start} and end_dim {end} must lie in -65..=64");
            return Err(Error::config("Flatten", msg));
        }
        if end >= 0 && start as isize > end {
            let msg = format!("start_dim {start} comes after end_dim {end}");
            return Err(Error::config("Flatten", msg));
        }
        Ok(Flatten {
            start,
            end,
            input_shape: None,
            _t: PhantomData,
        })
    }

    /// The resolved `[start, end]` dims for an input of this rank, or why it does not fit.
    fn dims(&self, shape: &[usize]) -> Result<(usize, usize)> {
        let rank = shape.len() as isize;
        let end = if self.end < 0 {
            rank + self.end
        } else {
            self.end
        };
        if (self.start as isize) < rank && end < rank && end >= self.start as isize {
            Ok((self.start, end as usize))
        } else {
            let expected = format!(
                "a tensor whose dims {}..={} exist (start_dim..=end_dim)",
                self.start, self.end
            );
            Err(Error::shape("Flatten", expected, shape))
        }
    }
}

impl<T: Float> Layer<T> for Flatten<T> {
    fn kind(&self) -> &'static str {
        "Flatten"
    }

    fn describe(&self) -> String {
        format!("start_dim {}, end_dim {}", self.start, self.end)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let (start, end) = self.dims(input)?;
        expect_numel("Flatten", input)?;
        // `dims` checked `start <= end < rank`.
        let mut out: Vec<usize> = input.iter().take(start).copied().collect();
        out.push(input.iter().take(end + 1).skip(start).product());
        out.extend(input.iter().skip(end + 1));
        Ok(out)
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let y = self.infer(input)?;
        self.input_shape = Some(input.shape().to_vec());
        Ok(y)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let out = self.output_shape(input.shape())?;
        Ok(from_vec(&out, contiguous(input).into_owned()))
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let shape = self
            .input_shape
            .as_ref()
            .ok_or_else(|| Error::no_cache("Flatten"))?;
        expect_shape("Flatten", &self.output_shape(shape)?, grad_output.shape())?;
        Ok(from_vec(shape, contiguous(grad_output).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};
    use crate::testutil::{assert_close, parity};

    #[test]
    fn shapes_follow_pytorch() {
        let f = Flatten::<f64>::new(FlattenConfig::new()).unwrap();
        assert_eq!(f.output_shape(&[2, 3, 4, 5]).unwrap(), vec![2, 60]);
        assert_eq!(f.output_shape(&[4, 8, 1, 1]).unwrap(), vec![4, 8]);
        assert_eq!(f.output_shape(&[7, 3]).unwrap(), vec![7, 3]);
        let f = Flatten::<f64>::new(FlattenConfig::new().start_dim(1).end_dim(2)).unwrap();
        assert_eq!(f.output_shape(&[2, 3, 4, 5]).unwrap(), vec![2, 12, 5]);
        let f = Flatten::<f64>::new(FlattenConfig::new().start_dim(0).end_dim(-1)).unwrap();
        assert_eq!(f.output_shape(&[2, 3, 4]).unwrap(), vec![24]);
        let f = Flatten::<f64>::new(FlattenConfig::new().start_dim(2).end_dim(-2)).unwrap();
        assert_eq!(f.output_shape(&[2, 3, 4, 5]).unwrap(), vec![2, 3, 4, 5]);
        assert!(f.output_shape(&[2, 3]).is_err());
        assert_eq!(
            Flatten::<f32>::new(FlattenConfig::new())
                .unwrap()
                .describe(),
            "start_dim 1, end_dim -1"
        );
    }

    #[test]
    fn keeps_row_major_order_and_round_trips() {
        let x = random_tensor(&[2, 3, 2, 2], 0);
        let mut f = Flatten::new(FlattenConfig::new()).unwrap();
        let y = f.forward(&x).unwrap();
        assert_eq!(y.shape(), &[2, 12]);
        assert_eq!(y[[1, 5]], x[[1, 1, 0, 1]]);
        let dx = f.backward(&y).unwrap();
        assert_eq!(dx, x);
        // Non-standard layout input is read in logical order.
        let t = x.clone().permuted_axes(vec![0, 1, 3, 2]);
        let y = f.forward(&t).unwrap();
        assert_eq!(y[[0, 1]], x[[0, 0, 1, 0]]);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (seed, (start, end, shape)) in [
            (1, -1, vec![2, 3, 4, 4]),
            (0, 1, vec![1, 5, 2]),
            (2, 3, vec![2, 1, 3, 2]),
        ]
        .into_iter()
        .enumerate()
        {
            let mut f = Flatten::new(FlattenConfig::new().start_dim(start).end_dim(end)).unwrap();
            check_layer(
                &mut f,
                &random_tensor(&shape, seed as u64),
                GradCheck::default(),
            )
            .unwrap();
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        let x = random_tensor(&[2, 3, 2, 2], 1);
        let y64 = Flatten::<f64>::new(FlattenConfig::new())
            .unwrap()
            .forward(&x)
            .unwrap();
        let y32 = Flatten::<f32>::new(FlattenConfig::new())
            .unwrap()
            .forward(&x.mapv(|v| v as f32))
            .unwrap();
        assert!(y64.iter().zip(&y32).all(|(a, b)| *b == *a as f32));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            Flatten::<f64>::new(FlattenConfig::new().start_dim(3).end_dim(1)),
            Err(Error::InvalidConfig { .. })
        ));
        let mut f = Flatten::<f64>::new(FlattenConfig::new()).unwrap();
        assert!(matches!(
            f.backward(&random_tensor(&[2, 3], 0)),
            Err(Error::BackwardBeforeForward { .. })
        ));
        let err = f.forward(&random_tensor(&[5], 0)).unwrap_err();
        assert!(err.to_string().contains("Flatten"), "{err}");
        f.forward(&random_tensor(&[2, 3, 2], 0)).unwrap();
        assert!(matches!(
            f.backward(&random_tensor(&[2, 3, 2], 0)),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(
            Flatten::<f64>::new(FlattenConfig::new().start_dim(4).end_dim(-1))
                .unwrap()
                .output_shape(&[2, 3, 4])
                .is_err()
        );
    }

    #[test]
    fn matches_pytorch() {
        for file in ["flatten_000", "flatten_001"] {
            let (cfg, t) = parity(file);
            let (start, end) = (
                cfg["start_dim"].as_u64().unwrap(),
                cfg["end_dim"].as_i64().unwrap(),
            );
            let mut f = Flatten::new(
                FlattenConfig::new()
                    .start_dim(start as usize)
                    .end_dim(end as isize),
            )
            .unwrap();
            assert_close(file, &f.forward(&t["input"]).unwrap(), &t["output"]);
            assert_close(
                file,
                &f.backward(&t["grad_output"]).unwrap(),
                &t["grad_input"],
            );
        }
    }
}

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

impl<T: Float> Default for Flatten<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Flatten<T> {
    /// Flattens everything after the batch dim (`start_dim = 1`, `end_dim = -1`).
    pub fn new() -> Self {
        Flatten {
            start: 1,
            end: -1,
            input_shape: None,
            _t: PhantomData,
        }
    }

    /// Flattens dims `start..=end`; a negative `end` counts from the last dim (`-1`).
    /// Fails when both are non-negative and `start > end`.
    pub fn with_dims(start: usize, end: isize) -> Result<Self> {
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
        let mut out = input[..start].to_vec();
        out.push(input[start..=end].iter().product());
        out.extend_from_slice(&input[end + 1..]);
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
        let f = Flatten::<f64>::new();
        assert_eq!(f.output_shape(&[2, 3, 4, 5]).unwrap(), vec![2, 60]);
        assert_eq!(f.output_shape(&[4, 8, 1, 1]).unwrap(), vec![4, 8]);
        assert_eq!(f.output_shape(&[7, 3]).unwrap(), vec![7, 3]);
        let f = Flatten::<f64>::with_dims(1, 2).unwrap();
        assert_eq!(f.output_shape(&[2, 3, 4, 5]).unwrap(), vec![2, 12, 5]);
        let f = Flatten::<f64>::with_dims(0, -1).unwrap();
        assert_eq!(f.output_shape(&[2, 3, 4]).unwrap(), vec![24]);
        let f = Flatten::<f64>::with_dims(2, -2).unwrap();
        assert_eq!(f.output_shape(&[2, 3, 4, 5]).unwrap(), vec![2, 3, 4, 5]);
        assert!(f.output_shape(&[2, 3]).is_err());
        assert_eq!(Flatten::<f32>::new().describe(), "start_dim 1, end_dim -1");
    }

    #[test]
    fn keeps_row_major_order_and_round_trips() {
        let x = random_tensor(&[2, 3, 2, 2], 0);
        let mut f = Flatten::new();
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
            let mut f = Flatten::with_dims(start, end).unwrap();
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
        let y64 = Flatten::<f64>::new().forward(&x).unwrap();
        let y32 = Flatten::<f32>::new()
            .forward(&x.mapv(|v| v as f32))
            .unwrap();
        assert!(y64.iter().zip(&y32).all(|(a, b)| *b == *a as f32));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            Flatten::<f64>::with_dims(3, 1),
            Err(Error::InvalidConfig { .. })
        ));
        let mut f = Flatten::<f64>::new();
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
        assert!(Flatten::<f64>::with_dims(4, -1)
            .unwrap()
            .output_shape(&[2, 3, 4])
            .is_err());
    }

    #[test]
    fn matches_pytorch() {
        for file in ["flatten_000", "flatten_001"] {
            let (cfg, t) = parity(file);
            let (start, end) = (
                cfg["start_dim"].as_u64().unwrap(),
                cfg["end_dim"].as_i64().unwrap(),
            );
            let mut f = Flatten::with_dims(start as usize, end as isize).unwrap();
            assert_close(file, &f.forward(&t["input"]).unwrap(), &t["output"]);
            assert_close(
                file,
                &f.backward(&t["grad_output"]).unwrap(),
                &t["grad_input"],
            );
        }
    }
}

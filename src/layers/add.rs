use crate::error::{Error, Result};
use crate::kernels::elementwise;
use crate::layer::Merge;
use crate::tensor::{Float, Tensor};
use std::marker::PhantomData;

/// Elementwise sum of one or more same-shape tensors: the residual connection
/// `y = F(x) + x` of ResNet.
///
/// ```text
/// forward:  y = x_0 + x_1 + ... + x_(k-1)
/// backward: dx_i = dy        for every input i
/// ```
#[derive(Clone, Debug)]
pub struct Add<T: Float> {
    /// Shape and number of inputs of the last forward.
    cache: Option<(Vec<usize>, usize)>,
    _t: PhantomData<T>,
}

impl<T: Float> Default for Add<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Add<T> {
    /// An elementwise sum.
    pub fn new() -> Self {
        Add {
            cache: None,
            _t: PhantomData,
        }
    }
}

impl<T: Float> Merge<T> for Add<T> {
    fn kind(&self) -> &'static str {
        "Add"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let first = inputs
            .first()
            .ok_or_else(|| Error::input("Add", "needs at least one input"))?;
        for (i, shape) in inputs.iter().enumerate().skip(1) {
            if shape != first {
                let expected = format!("{first:?} (the shape of input 0)");
                return Err(Error::shape(format!("Add (input {i})"), expected, shape));
            }
        }
        super::expect_numel("Add", first)?;
        Ok(first.to_vec())
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Result<Tensor<T>> {
        let y = self.infer(inputs)?;
        self.cache = Some((y.shape().to_vec(), inputs.len()));
        Ok(y)
    }

    fn infer(&self, inputs: &[&Tensor<T>]) -> Result<Tensor<T>> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        self.output_shape(&shapes)?;
        // `output_shape` checked that there is an input and that all shapes agree.
        let Some((first, rest)) = inputs.split_first() else {
            return Err(Error::input("Add", "needs at least one input"));
        };
        let mut y = first.as_standard_layout().into_owned();
        for x in rest {
            accumulate(&mut y, x);
        }
        Ok(y)
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Vec<Tensor<T>>> {
        let (shape, count) = self.cache.as_ref().ok_or_else(|| Error::no_cache("Add"))?;
        super::expect_shape("Add", shape, grad_output.shape())?;
        Ok(vec![grad_output.to_owned(); *count])
    }

    /// Hands the gradient itself to the last input and copies it for the others.
    fn backward_owned(&mut self, grad_output: Tensor<T>) -> Result<Vec<Tensor<T>>> {
        let (shape, count) = self.cache.as_ref().ok_or_else(|| Error::no_cache("Add"))?;
        super::expect_shape("Add", shape, grad_output.shape())?;
        let mut grads = vec![grad_output.clone(); count.saturating_sub(1)];
        grads.push(grad_output);
        Ok(grads)
    }
}

/// `sum += x` for two tensors of one shape (the caller checks it): one vectorised pass,
/// parallel when large, when both are row-major; ndarray's `+=` otherwise. The residual sums
/// of [`Add`], `Residual` and a graph's fan-out gradients go through here.
pub(crate) fn accumulate<T: Float>(sum: &mut Tensor<T>, x: &Tensor<T>) {
    if sum.shape() == x.shape() {
        if let (Some(s), Some(x)) = (sum.as_slice_mut(), x.as_slice()) {
            elementwise::add_assign(s, x);
            return;
        }
    }
    *sum += x;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_merge, random_tensor, GradCheck};
    use crate::testutil::{assert_close, parity};

    #[test]
    fn gradient_matches_finite_differences() {
        for (k, shape) in [(2, vec![2, 3, 4, 4]), (1, vec![5]), (3, vec![1, 2, 3, 1])] {
            let xs: Vec<_> = (0..k).map(|i| random_tensor(&shape, i as u64)).collect();
            check_merge(&mut Add::new(), &xs, GradCheck::default()).unwrap();
        }
    }

    #[test]
    fn sums_and_f32_agrees() {
        let (a, b, c) = (
            random_tensor(&[2, 3], 0),
            random_tensor(&[2, 3], 1),
            random_tensor(&[2, 3], 2),
        );
        let y = Add::new().forward(&[&a, &b, &c]).unwrap();
        assert!(y
            .iter()
            .zip(a.iter().zip(&b).zip(&c))
            .all(|(y, ((a, b), c))| *y == a + b + c));
        let f = |t: &Tensor<f64>| t.mapv(|v| v as f32);
        let y32 = Add::new().forward(&[&f(&a), &f(&b), &f(&c)]).unwrap();
        assert!(y
            .iter()
            .zip(&y32)
            .all(|(p, q)| (p - *q as f64).abs() < 1e-6));
    }

    #[test]
    fn owned_backward_and_strided_inputs_agree() {
        let (a, b) = (random_tensor(&[2, 3, 4], 0), random_tensor(&[2, 3, 4], 1));
        let mut add = Add::new();
        // A transposed view as the first input: the sum is still element by element.
        let at = a.t().to_owned();
        let bt = b.t().as_standard_layout().into_owned();
        let y = add.forward(&[&at, &bt]).unwrap();
        assert_eq!(y, &a.t() + &b.t());
        let g = random_tensor(y.shape(), 2);
        let by_ref = add.backward(&g).unwrap();
        assert_eq!(add.backward_owned(g.clone()).unwrap(), by_ref);
        assert_eq!(by_ref, vec![g.clone(), g]);
        // Large enough to run in parallel chunks: still the plain sum.
        let (a, b) = (
            random_tensor(&[3, 70_000], 3),
            random_tensor(&[3, 70_000], 4),
        );
        let mut s = a.clone();
        accumulate(&mut s, &b);
        assert_eq!(s, &a + &b);
    }

    #[test]
    fn errors() {
        let mut add = Add::<f64>::new();
        assert!(matches!(
            add.backward(&random_tensor(&[2], 0)),
            Err(Error::BackwardBeforeForward { .. })
        ));
        assert!(matches!(add.forward(&[]), Err(Error::InvalidInput { .. })));
        let (a, b) = (random_tensor(&[2, 3], 0), random_tensor(&[2, 4], 1));
        let err = add.forward(&[&a, &a, &b]).unwrap_err();
        assert!(err.to_string().contains("Add (input 2)"), "{err}");
        add.forward(&[&a, &a]).unwrap();
        assert!(matches!(add.backward(&b), Err(Error::ShapeMismatch { .. })));
    }

    #[test]
    fn matches_pytorch() {
        let (_, t) = parity("residual_add_000");
        let mut add = Add::new();
        assert_close(
            "output",
            &add.forward(&[&t["input"], &t["input2"]]).unwrap(),
            &t["output"],
        );
        let grads = add.backward(&t["grad_output"]).unwrap();
        assert_close("grad_input", &grads[0], &t["grad_input"]);
        assert_close("grad_input2", &grads[1], &t["grad_input2"]);
    }
}

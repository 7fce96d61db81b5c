use crate::error::{Error, Result};
use crate::layer::Merge;
use crate::tensor::{contiguous, from_vec, Float, Tensor};
use std::marker::PhantomData;

/// Concatenation of one or more tensors along a dim (channels, dim 1, by default): the merge
/// at the end of an Inception module, `torch.cat(xs, dim)`.
///
/// ```text
/// forward:  y = [x_0 | x_1 | ... | x_(k-1)]       stacked along `dim`; all other dims equal
/// backward: dx_i = the slice of dy that x_i filled
/// ```
///
/// In row-major order each input contributes, for every index of the dims before `dim`, one
/// contiguous block of `shape[dim] · Π shape[dim+1..]` elements; forward interleaves these
/// blocks and backward cuts them apart again.
#[derive(Clone, Debug)]
pub struct Concat<T: Float> {
    dim: usize,
    /// Input shapes of the last forward.
    shapes: Option<Vec<Vec<usize>>>,
    _t: PhantomData<T>,
}

impl<T: Float> Default for Concat<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> Concat<T> {
    /// Concatenation along channels (dim 1).
    pub fn new() -> Self {
        Self::along(1)
    }

    /// Concatenation along `dim`.
    pub fn along(dim: usize) -> Self {
        Concat {
            dim,
            shapes: None,
            _t: PhantomData,
        }
    }

    /// The dim joined along.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The input shapes of the last `forward` (what `backward` splits the gradient into).
    pub(crate) fn cached_shapes(&self) -> Option<&[Vec<usize>]> {
        self.shapes.as_deref()
    }

    /// Elements before `dim` (outer) and each input's block length.
    fn blocks(&self, shapes: &[Vec<usize>]) -> (usize, Vec<usize>) {
        let outer = shapes
            .first()
            .map_or(1, |s| s.iter().take(self.dim).product());
        (
            outer,
            shapes
                .iter()
                .map(|s| s.iter().skip(self.dim).product())
                .collect(),
        )
    }
}

impl<T: Float> Merge<T> for Concat<T> {
    fn kind(&self) -> &'static str {
        "Concat"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let first = inputs
            .first()
            .ok_or_else(|| Error::input("Concat", "needs at least one input"))?;
        let d = self.dim;
        if first.len() <= d {
            let expected = format!("a tensor with more than {d} dims (joining along dim {d})");
            return Err(Error::shape("Concat (input 0)", expected, first));
        }
        // `first` has a dim `d` (checked above), and so has every input that fits.
        let mut joined = 0usize;
        for (i, shape) in inputs.iter().enumerate() {
            let fits = shape.len() == first.len()
                && (shape.iter().zip(first.iter()).enumerate()).all(|(a, (s, f))| a == d || s == f);
            if !fits {
                let want: Vec<String> = first
                    .iter()
                    .enumerate()
                    .map(|(a, n)| match a == d {
                        true => "*".to_string(),
                        false => n.to_string(),
                    })
                    .collect();
                let expected = format!(
                    "[{}] (input 0's shape except along dim {d})",
                    want.join(", ")
                );
                return Err(Error::shape(format!("Concat (input {i})"), expected, shape));
            }
            joined = joined.saturating_add(shape.get(d).copied().unwrap_or(0));
        }
        let out = first
            .iter()
            .enumerate()
            .map(|(a, &n)| if a == d { joined } else { n })
            .collect();
        super::check_output("Concat", out)
    }

    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Result<Tensor<T>> {
        let y = self.infer(inputs)?;
        self.shapes = Some(inputs.iter().map(|t| t.shape().to_vec()).collect());
        Ok(y)
    }

    fn infer(&self, inputs: &[&Tensor<T>]) -> Result<Tensor<T>> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|t| t.shape()).collect();
        let out_shape = self.output_shape(&shapes)?;
        let shapes: Vec<Vec<usize>> = shapes.iter().map(|s| s.to_vec()).collect();
        let (outer, block) = self.blocks(&shapes);
        let xs: Vec<_> = inputs.iter().map(|t| contiguous(t)).collect();
        let mut y = Vec::with_capacity(out_shape.iter().product());
        // Each input is `outer` blocks of its own length `b`, taken in turn.
        let mut rows: Vec<_> = xs
            .iter()
            .zip(&block)
            .map(|(x, &b)| x.chunks(b.max(1)))
            .collect();
        for _ in 0..outer {
            for row in rows.iter_mut() {
                y.extend_from_slice(row.next().unwrap_or_default());
            }
        }
        Ok(from_vec(&out_shape, y))
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Vec<Tensor<T>>> {
        let shapes = self
            .shapes
            .as_ref()
            .ok_or_else(|| Error::no_cache("Concat"))?;
        let refs: Vec<&[usize]> = shapes.iter().map(|s| s.as_slice()).collect();
        super::expect_shape("Concat", &self.output_shape(&refs)?, grad_output.shape())?;
        let (outer, block) = self.blocks(shapes);
        let dy = contiguous(grad_output);
        let mut dxs: Vec<Vec<T>> = block
            .iter()
            .map(|b| Vec::with_capacity(outer * b))
            .collect();
        // The gradient has the output's shape (checked above): `outer` runs of every block.
        let mut rest: &[T] = &dy;
        for _ in 0..outer {
            for (dx, &b) in dxs.iter_mut().zip(&block) {
                let (run, after) = rest.split_at_checked(b).unwrap_or((rest, &[]));
                dx.extend_from_slice(run);
                rest = after;
            }
        }
        Ok(dxs
            .into_iter()
            .zip(shapes)
            .map(|(dx, s)| from_vec(s, dx))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_merge, random_tensor, GradCheck};
    use crate::testutil::{assert_close, parity};
    use ndarray::{concatenate, Axis};

    #[test]
    fn gradient_matches_finite_differences() {
        let cases = [
            (1, vec![vec![2, 3, 4, 4], vec![2, 5, 4, 4]]),
            (1, vec![vec![1, 2, 3, 3]]),
            (
                1,
                vec![
                    vec![1, 1, 2, 3],
                    vec![1, 4, 2, 3],
                    vec![1, 2, 2, 3],
                    vec![1, 1, 2, 3],
                ],
            ),
            (0, vec![vec![2, 3], vec![1, 3]]),
            (3, vec![vec![2, 1, 2, 1], vec![2, 1, 2, 3]]),
        ];
        for (dim, shapes) in cases {
            let xs: Vec<_> = shapes
                .iter()
                .enumerate()
                .map(|(i, s)| random_tensor(s, i as u64))
                .collect();
            check_merge(&mut Concat::along(dim), &xs, GradCheck::default()).unwrap();
        }
    }

    #[test]
    fn agrees_with_ndarray_concatenate() {
        let (a, b, c) = (
            random_tensor(&[2, 1, 3, 2], 0),
            random_tensor(&[2, 4, 3, 2], 1),
            random_tensor(&[2, 2, 3, 2], 2),
        );
        let y = Concat::new().forward(&[&a, &b, &c]).unwrap();
        assert_eq!(
            y,
            concatenate(Axis(1), &[a.view(), b.view(), c.view()]).unwrap()
        );
        let (p, q) = (random_tensor(&[2, 3, 1], 3), random_tensor(&[2, 3, 4], 4));
        let y = Concat::along(2).forward(&[&p, &q]).unwrap();
        assert_eq!(y, concatenate(Axis(2), &[p.view(), q.view()]).unwrap());
        let y32 = Concat::along(2)
            .forward(&[&p.mapv(|v| v as f32), &q.mapv(|v| v as f32)])
            .unwrap();
        assert!(y.iter().zip(&y32).all(|(a, b)| *b == *a as f32));
    }

    #[test]
    fn errors() {
        let mut cat = Concat::<f64>::new();
        assert!(matches!(
            cat.backward(&random_tensor(&[2], 0)),
            Err(Error::BackwardBeforeForward { .. })
        ));
        assert!(matches!(cat.forward(&[]), Err(Error::InvalidInput { .. })));
        let (a, b) = (
            random_tensor(&[2, 3, 4, 4], 0),
            random_tensor(&[2, 3, 4, 5], 1),
        );
        let err = cat.forward(&[&a, &a, &b]).unwrap_err();
        assert!(err.to_string().contains("Concat (input 2)"), "{err}");
        assert!(err.to_string().contains("[2, *, 4, 4]"), "{err}");
        let err = cat
            .forward(&[&a, &random_tensor(&[2, 3, 4], 0)])
            .unwrap_err();
        assert!(err.to_string().contains("Concat (input 1)"), "{err}");
        assert!(cat.forward(&[&random_tensor(&[3], 0)]).is_err());
        cat.forward(&[&a, &a]).unwrap();
        assert!(matches!(cat.backward(&a), Err(Error::ShapeMismatch { .. })));
    }

    #[test]
    fn matches_pytorch() {
        for file in ["concat_000", "concat_001"] {
            let (cfg, t) = parity(file);
            let mut cat = Concat::along(cfg["dim"].as_u64().unwrap() as usize);
            assert_close(
                file,
                &cat.forward(&[&t["input"], &t["input2"]]).unwrap(),
                &t["output"],
            );
            let grads = cat.backward(&t["grad_output"]).unwrap();
            assert_close(file, &grads[0], &t["grad_input"]);
            assert_close(file, &grads[1], &t["grad_input2"]);
        }
    }
}

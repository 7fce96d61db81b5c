use super::{check_output, expect_nchw, expect_numel, expect_shape, MaxPool2dConfig};
use crate::error::{Error, Result};
use crate::kernels::pool::{max_pool_backward, max_pool_forward, PoolPlan, NO_TAP};
use crate::layer::Layer;
use crate::tensor::{contiguous, from_vec, Float, Tensor};
use std::marker::PhantomData;

/// 2-D max pooling with PyTorch semantics (`nn.MaxPool2d`).
///
/// ```text
/// forward:  y[n,c,i,j] = max_{a<kh, b<kw} xp[n, c, i·sh + a·dh, j·sw + b·dw]
///           (xp = x padded with -inf by P; the first maximum in row-major window order wins)
/// backward: dx[n,c,h,w] = Σ_{(i,j) : argmax(i,j) = (h,w)} dy[n,c,i,j]
/// ```
///
/// Output size per axis: `O = (N - F + 2P) / S + 1` with `F = d(k - 1) + 1`, rounded down
/// (or up with `ceil_mode`). Forward caches only the argmax indices, and when it is handed
/// its input by value ([`Layer::forward_owned`], as containers do) it keeps the input's buffer
/// to write the input gradient into: the gradient has the input's shape, and a fresh buffer
/// of that size (25 MB for ResNet's first pool at batch 8, 100 MB for VGG's) costs a page
/// fault per 4 KiB every step.
///
/// The course's example: 2x2 windows at stride 2 keep the largest value of each window, and
/// backward sends each gradient to the position that won:
///
/// ```
/// use convnet::prelude::*;
/// use ndarray::IxDyn;
/// # fn main() -> convnet::Result<()> {
/// let x = Tensor::from_shape_vec(
///     IxDyn(&[1, 1, 4, 4]),
///     vec![1.0f32, 1.0, 2.0, 4.0, 5.0, 6.0, 7.0, 8.0, 3.0, 2.0, 1.0, 0.0, 1.0, 2.0, 3.0, 4.0],
/// )?;
/// let mut pool = MaxPool2d::new(MaxPool2dConfig::new(2))?;
/// let y = pool.forward(&x)?;
/// assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![6.0, 8.0, 3.0, 4.0]);
///
/// let dx = pool.backward(&Tensor::ones(y.raw_dim()))?;
/// assert_eq!(dx[[0, 0, 1, 1]], 1.0); // the 6 won its window
/// assert_eq!(dx[[0, 0, 0, 0]], 0.0); // the 1 did not
/// // Overlapping 3x3 windows at stride 2, as in AlexNet: 55x55 -> 27x27.
/// let alex = MaxPool2d::<f32>::new(MaxPool2dConfig::new(3).stride(2))?;
/// assert_eq!(alex.output_shape(&[1, 96, 55, 55])?, vec![1, 96, 27, 27]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct MaxPool2d<T: Float> {
    cfg: MaxPool2dConfig,
    cache: Option<MaxPoolCache>,
    /// The last owned input's buffer, overwritten by the next backward's gradient.
    spare: Option<Vec<T>>,
    _t: PhantomData<T>,
}

#[derive(Clone, Debug)]
struct MaxPoolCache {
    plan: PoolPlan,
    in_shape: Vec<usize>,
    out_shape: Vec<usize>,
    argmax: Vec<u32>,
}

impl<T: Float> MaxPool2d<T> {
    /// A max pooling layer, or [`Error::InvalidConfig`] for a zero kernel, stride or dilation
    /// or a padding larger than half the kernel.
    pub fn new(cfg: MaxPool2dConfig) -> Result<Self> {
        let layer = MaxPool2d {
            cfg,
            cache: None,
            spare: None,
            _t: PhantomData,
        };
        cfg.check(&layer.name())?;
        Ok(layer)
    }

    /// The configuration.
    pub fn config(&self) -> MaxPool2dConfig {
        self.cfg
    }

    fn name(&self) -> String {
        format!("MaxPool2d({})", Layer::<T>::describe(self))
    }
}

impl<T: Float> Layer<T> for MaxPool2d<T> {
    fn kind(&self) -> &'static str {
        "MaxPool2d"
    }

    fn describe(&self) -> String {
        self.cfg.describe_window()
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let name = self.name();
        let [n, c, h, w] = expect_nchw(&name, input, None)?;
        expect_numel(&name, input)?;
        if h == 0 || w == 0 || h * w >= NO_TAP as usize {
            return Err(Error::shape(
                name,
                "[N, C, H, W] with 1 <= H·W < 2^32 - 1",
                input,
            ));
        }
        let [oh, ow] = self.cfg.output_hw(&name, [h, w])?;
        check_output(&name, vec![n, c, oh, ow])
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        self.spare = None;
        let (y, cache) = self.pool(input)?;
        self.cache = Some(cache);
        Ok(y)
    }

    /// As `forward`, keeping the input's buffer (when it holds exactly the input, in order)
    /// for the gradient.
    fn forward_owned(&mut self, input: Tensor<T>) -> Result<Tensor<T>> {
        let y = self.forward(&input)?;
        let len = input.len();
        if input.is_standard_layout() {
            if let (buffer, Some(0)) = input.into_raw_vec_and_offset() {
                self.spare = (buffer.len() == len).then_some(buffer);
            }
        }
        Ok(y)
    }

    /// Pools as `forward` does, without recording where each maximum came from.
    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let (plan, out_shape) = self.plan(input)?;
        let mut y = vec![T::zero(); out_shape.iter().product()];
        max_pool_forward(&plan, &contiguous(input), &mut y, None);
        Ok(from_vec(&out_shape, y))
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let name = self.name();
        let c = self.cache.as_ref().ok_or_else(|| Error::no_cache(&name))?;
        expect_shape(&name, &c.out_shape, grad_output.shape())?;
        let len = c.in_shape.iter().product();
        // The kept input buffer (overwritten by the kernel), else a fresh one.
        let mut dx = match self.spare.take() {
            Some(buffer) if buffer.len() == len => buffer,
            _ => vec![T::zero(); len],
        };
        max_pool_backward(&c.plan, &contiguous(grad_output), &c.argmax, &mut dx);
        Ok(from_vec(&c.in_shape, dx))
    }
}

impl<T: Float> MaxPool2d<T> {
    /// The window plan over this input and the output shape.
    fn plan(&self, input: &Tensor<T>) -> Result<(PoolPlan, Vec<usize>)> {
        let out_shape = self.output_shape(input.shape())?;
        let (&[_, _, h, w], &[_, _, oh, ow]) = (input.shape(), out_shape.as_slice()) else {
            return Err(Error::shape(self.name(), "[N, C, H, W]", input.shape()));
        };
        let plan = self.cfg.plan([h, w], [oh, ow]);
        Ok((plan, out_shape))
    }

    /// The pooled output and what backward needs.
    fn pool(&self, input: &Tensor<T>) -> Result<(Tensor<T>, MaxPoolCache)> {
        let (plan, out_shape) = self.plan(input)?;
        let len = out_shape.iter().product();
        let (mut y, mut argmax) = (vec![T::zero(); len], vec![0u32; len]);
        max_pool_forward(&plan, &contiguous(input), &mut y, Some(&mut argmax));
        let in_shape = input.shape().to_vec();
        let y = from_vec(&out_shape, y);
        let cache = MaxPoolCache {
            plan,
            in_shape,
            out_shape,
            argmax,
        };
        Ok((y, cache))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, GradCheck};
    use crate::rng::Rng64;
    use crate::testutil::assert_f32_matches_f64;
    use crate::testutil::{assert_close, parity, parity_files};

    /// Distinct values (a scaled random permutation), so no two cells are within 0.1 of each
    /// other and finite differences never cross an argmax change.
    fn no_ties(shape: &[usize], seed: u64) -> Tensor<f64> {
        let n: usize = shape.iter().product();
        let mut v: Vec<f64> = (0..n).map(|i| i as f64 * 0.1 - n as f64 * 0.05).collect();
        let mut rng = Rng64::seed(seed);
        for i in (1..n).rev() {
            v.swap(i, rng.below(i + 1));
        }
        from_vec(shape, v)
    }

    fn configs() -> Vec<(Vec<usize>, MaxPool2dConfig)> {
        let c = MaxPool2dConfig::new;
        vec![
            (vec![2, 3, 9, 9], c(3).stride(2)),
            (
                vec![1, 2, 7, 8],
                c(2).kernel_hw([2, 3]).stride_hw([2, 1]).padding_hw([1, 1]),
            ),
            (vec![2, 2, 9, 9], c(3).stride(1).padding(1).dilation(2)),
            (vec![1, 3, 7, 7], c(2).ceil_mode(true)),
            (vec![2, 1, 8, 10], c(3).stride(2).padding(1).ceil_mode(true)),
            (
                vec![1, 1, 5, 7],
                c(3).stride(2)
                    .padding_hw([1, 0])
                    .dilation_hw([2, 1])
                    .ceil_mode(true),
            ),
        ]
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (seed, (shape, cfg)) in configs().into_iter().enumerate() {
            let x = no_ties(&shape, seed as u64);
            let mut layer = MaxPool2d::new(cfg).unwrap();
            let report = check_layer(
                &mut layer,
                &x,
                GradCheck {
                    seed: seed as u64,
                    ..GradCheck::default()
                },
            );
            report.unwrap_or_else(|e| panic!("{cfg:?}: {e}"));
        }
    }

    #[test]
    fn an_owned_input_becomes_the_gradient_buffer_with_the_same_numbers() {
        for (seed, (shape, cfg)) in configs().into_iter().enumerate() {
            let x = no_ties(&shape, seed as u64);
            let mut by_ref = MaxPool2d::<f64>::new(cfg).unwrap();
            let y = by_ref.forward(&x).unwrap();
            let dy = no_ties(y.shape(), 50 + seed as u64);
            let want = by_ref.backward(&dy).unwrap();
            let mut owned = MaxPool2d::<f64>::new(cfg).unwrap();
            // Twice: the second step's buffer is the second input's, dirty with its values.
            for _ in 0..2 {
                assert_eq!(owned.forward_owned(x.clone()).unwrap(), y);
                assert!(owned.spare.is_some(), "{cfg:?}: the input's buffer is kept");
                assert_eq!(owned.backward(&dy).unwrap(), want, "{cfg:?}");
                assert!(owned.spare.is_none());
            }
            // A second backward after one forward has no buffer left: a fresh one, same result.
            assert_eq!(owned.backward(&dy).unwrap(), want, "{cfg:?}");
            // The same tensor stored in another order (column-major) is pooled as given and
            // its buffer not kept.
            let column_major = x
                .clone()
                .reversed_axes()
                .as_standard_layout()
                .into_owned()
                .reversed_axes();
            assert!(!column_major.is_standard_layout());
            assert_eq!(owned.forward_owned(column_major).unwrap(), y);
            assert!(
                owned.spare.is_none(),
                "{cfg:?}: a non-standard layout is not kept"
            );
            assert_eq!(owned.backward(&dy).unwrap(), want, "{cfg:?}");
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        for (seed, (shape, cfg)) in configs().into_iter().enumerate() {
            let x = no_ties(&shape, seed as u64);
            let (mut l64, mut l32) = (
                MaxPool2d::<f64>::new(cfg).unwrap(),
                MaxPool2d::<f32>::new(cfg).unwrap(),
            );
            assert_f32_matches_f64(&mut l64, &mut l32, &x, |s| no_ties(s, 99), 1e-4);
        }
    }

    #[test]
    fn hand_computed_values() {
        // 0..16 in a 4x4 plane, 2x2 windows: the bottom-right cell of each window wins.
        let x = from_vec(&[1, 1, 4, 4], (0..16).map(|v| v as f64).collect());
        let mut layer = MaxPool2d::new(MaxPool2dConfig::new(2)).unwrap();
        let y = layer.forward(&x).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            [5.0, 7.0, 13.0, 15.0]
        );
        let dx = layer
            .backward(&from_vec(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]))
            .unwrap();
        let mut want = vec![0.0; 16];
        (want[5], want[7], want[13], want[15]) = (1.0, 2.0, 3.0, 4.0);
        assert_eq!(dx.iter().copied().collect::<Vec<_>>(), want);

        // Overlapping 3x3 windows at stride 1 on a plane with one peak: every window sees it,
        // so its gradient is the sum of all upstream gradients.
        let mut x = vec![0.0; 16];
        x[5] = 1.0;
        let mut layer = MaxPool2d::new(MaxPool2dConfig::new(3).stride(1)).unwrap();
        let y = layer.forward(&from_vec(&[1, 1, 4, 4], x)).unwrap();
        assert!(y.iter().all(|&v| v == 1.0));
        let dx = layer
            .backward(&from_vec(&[1, 1, 2, 2], vec![1.0, 2.0, 3.0, 4.0]))
            .unwrap();
        assert_eq!(dx.as_slice().unwrap()[5], 10.0);
        assert_eq!(dx.sum(), 10.0);
    }

    #[test]
    fn describe_in_course_words() {
        let d = |cfg| Layer::<f32>::describe(&MaxPool2d::new(cfg).unwrap());
        assert_eq!(
            d(MaxPool2dConfig::new(3).stride(2)),
            "3x3 filters at stride 2"
        );
        assert_eq!(
            d(MaxPool2dConfig::new(3).stride(2).padding(1).ceil_mode(true)),
            "3x3 filters at stride 2, pad 1, ceil_mode"
        );
        assert_eq!(
            d(MaxPool2dConfig::new(2).kernel_hw([2, 3]).stride_hw([2, 1])),
            "2x3 filters at stride 2x1"
        );
        assert_eq!(
            Layer::<f32>::kind(&MaxPool2d::new(MaxPool2dConfig::new(2)).unwrap()),
            "MaxPool2d"
        );
    }

    #[test]
    fn errors() {
        let bad = |cfg| matches!(MaxPool2d::<f64>::new(cfg), Err(Error::InvalidConfig { .. }));
        assert!(bad(MaxPool2dConfig::new(3).padding(2)));
        assert!(bad(MaxPool2dConfig::new(3).padding_hw([1, 2])));
        assert!(bad(MaxPool2dConfig::new(0)));
        assert!(bad(MaxPool2dConfig::new(2).stride(0)));
        assert!(bad(MaxPool2dConfig::new(2).dilation(0)));
        assert!(MaxPool2d::<f64>::new(MaxPool2dConfig::new(3).padding(1)).is_ok());

        let mut layer = MaxPool2d::<f64>::new(MaxPool2dConfig::new(3).stride(2)).unwrap();
        let g = no_ties(&[1, 1, 2, 2], 0);
        assert!(matches!(
            layer.backward(&g),
            Err(Error::BackwardBeforeForward { .. })
        ));
        for shape in [vec![3, 8, 8], vec![1, 1, 1, 8, 8], vec![1, 1, 0, 8]] {
            let err = layer.forward(&Tensor::zeros(shape.as_slice())).unwrap_err();
            assert!(
                matches!(err, Error::ShapeMismatch { .. }),
                "{shape:?}: {err}"
            );
            assert!(
                err.to_string()
                    .contains("MaxPool2d(3x3 filters at stride 2)"),
                "{err}"
            );
        }
        let err = layer
            .forward(&Tensor::zeros(&[1, 1, 2, 8][..]))
            .unwrap_err();
        assert!(matches!(err, Error::Geometry { .. }), "{err}");
        assert!(
            err.to_string().contains("O = (N - F + 2P) / S + 1"),
            "{err}"
        );
        layer.forward(&no_ties(&[1, 1, 5, 5], 0)).unwrap();
        assert!(matches!(
            layer.backward(&no_ties(&[1, 1, 2, 3], 0)),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(layer.backward(&no_ties(&[1, 1, 2, 2], 0)).is_ok());
    }

    fn pair(v: &serde_json::Value) -> [usize; 2] {
        [
            v[0].as_u64().unwrap() as usize,
            v[1].as_u64().unwrap() as usize,
        ]
    }

    #[test]
    fn matches_pytorch_parity_cases() {
        let files = parity_files("max_pool2d_");
        assert_eq!(files.len(), 7);
        for file in files {
            let (cfg, t) = parity(&file);
            let c = MaxPool2dConfig::new(1)
                .kernel_hw(pair(&cfg["kernel_size"]))
                .stride_hw(pair(&cfg["stride"]))
                .padding_hw(pair(&cfg["padding"]))
                .dilation_hw(pair(&cfg["dilation"]))
                .ceil_mode(cfg["ceil_mode"].as_bool().unwrap());
            let mut layer = MaxPool2d::new(c).unwrap();
            let y = layer.forward(&t["input"]).unwrap();
            assert_close(&format!("{cfg} output"), &y, &t["output"]);
            let dx = layer.backward(&t["grad_output"]).unwrap();
            assert_close(&format!("{cfg} grad_input"), &dx, &t["grad_input"]);
        }
    }
}

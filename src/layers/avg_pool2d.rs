use super::{
    check_output, expect_nchw, expect_numel, expect_shape, AvgPool2dConfig, AvgPoolOptions,
};
use crate::error::{Error, Result};
use crate::kernels::pool::{avg_pool_backward, avg_pool_forward, Divisor, PoolPlan};
use crate::layer::Layer;
use crate::tensor::{contiguous, from_vec, Float, Tensor};
use std::marker::PhantomData;

fn divisor(options: &AvgPoolOptions) -> Divisor {
    match (options.divisor_override, options.count_include_pad) {
        (Some(d), _) => Divisor::Fixed(d),
        (None, true) => Divisor::PoolSize,
        (None, false) => Divisor::InBounds,
    }
}

/// 2-D average pooling with PyTorch semantics (`nn.AvgPool2d`).
///
/// ```text
/// forward:  y[n,c,i,j]  = (1 / D(i,j)) Σ_{(h,w) ∈ W(i,j)} x[n,c,h,w]
/// backward: dx[n,c,h,w] = Σ_{(i,j) : (h,w) ∈ W(i,j)} dy[n,c,i,j] / D(i,j)
///
/// per axis: window [o·S - P, o·S - P + k) clipped to [-P, L + P) → pool_size,
///           then clipped to [0, L)                               → W (the cells read)
/// D = pool_size_h · pool_size_w   (count_include_pad, the default)
///   = |W|                         (count_include_pad = false)
///   = divisor_override            (when set)
/// ```
///
/// So even without padding a `ceil_mode` edge window divides by fewer than `kh·kw`. Forward
/// caches only the input shape.
#[derive(Clone, Debug)]
pub struct AvgPool2d<T: Float> {
    cfg: AvgPool2dConfig,
    cache: Option<AvgPoolCache>,
    _t: PhantomData<T>,
}

/// What average-pooling backward needs: the window plan and the shapes.
#[derive(Clone, Debug)]
pub(crate) struct AvgPoolCache {
    pub(crate) plan: PoolPlan,
    pub(crate) in_shape: Vec<usize>,
    pub(crate) out_shape: Vec<usize>,
}

impl AvgPoolCache {
    /// Average-pools `input` into `out_shape` with `plan`, returning the output and the cache.
    pub(crate) fn forward<T: Float>(
        plan: PoolPlan,
        div: Divisor,
        input: &Tensor<T>,
        out_shape: Vec<usize>,
    ) -> (Tensor<T>, Self) {
        let mut y = vec![T::zero(); out_shape.iter().product()];
        avg_pool_forward(&plan, div, &contiguous(input), &mut y);
        let y = from_vec(&out_shape, y);
        (
            y,
            AvgPoolCache {
                plan,
                in_shape: input.shape().to_vec(),
                out_shape,
            },
        )
    }

    /// Spreads `grad_output` back over the windows.
    pub(crate) fn backward<T: Float>(
        &self,
        name: &str,
        div: Divisor,
        grad_output: &Tensor<T>,
    ) -> Result<Tensor<T>> {
        expect_shape(name, &self.out_shape, grad_output.shape())?;
        let mut dx = vec![T::zero(); self.in_shape.iter().product()];
        avg_pool_backward(&self.plan, div, &contiguous(grad_output), &mut dx);
        Ok(from_vec(&self.in_shape, dx))
    }
}

/// Checks `[N, C, H, W]` with `H, W >= 1` and returns the dimensions.
pub(crate) fn expect_planes(name: &str, input: &[usize]) -> Result<[usize; 4]> {
    let [n, c, h, w] = expect_nchw(name, input, None)?;
    expect_numel(name, input)?;
    if h == 0 || w == 0 {
        return Err(Error::shape(name, "[N, C, H, W] with H, W >= 1", input));
    }
    Ok([n, c, h, w])
}

impl<T: Float> AvgPool2d<T> {
    /// An average pooling layer, or [`Error::InvalidConfig`] for a zero kernel, stride or
    /// divisor, or a padding larger than half the kernel.
    pub fn new(cfg: AvgPool2dConfig) -> Result<Self> {
        let layer = AvgPool2d {
            cfg,
            cache: None,
            _t: PhantomData,
        };
        cfg.check(&layer.name())?;
        if cfg.dilation != [1, 1] {
            return Err(Error::config(
                layer.name(),
                format!("average pooling has no dilation, got {:?}", cfg.dilation),
            ));
        }
        if cfg.options.divisor_override == Some(0) {
            return Err(Error::config(
                layer.name(),
                "divisor_override must be at least 1",
            ));
        }
        Ok(layer)
    }

    /// The configuration.
    pub fn config(&self) -> AvgPool2dConfig {
        self.cfg
    }

    fn name(&self) -> String {
        format!("AvgPool2d({})", Layer::<T>::describe(self))
    }
}

impl<T: Float> Layer<T> for AvgPool2d<T> {
    fn kind(&self) -> &'static str {
        "AvgPool2d"
    }

    fn describe(&self) -> String {
        let (mut s, c) = (self.cfg.describe_window(), &self.cfg.options);
        if !c.count_include_pad {
            s += ", count_include_pad=false";
        }
        if let Some(d) = c.divisor_override {
            s += &format!(", divisor_override={d}");
        }
        s
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let name = self.name();
        let [n, c, h, w] = expect_planes(&name, input)?;
        let [oh, ow] = self.cfg.output_hw(&name, [h, w])?;
        check_output(&name, vec![n, c, oh, ow])
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let (plan, out_shape) = self.plan(input.shape())?;
        let (y, cache) = AvgPoolCache::forward(plan, divisor(&self.cfg.options), input, out_shape);
        self.cache = Some(cache);
        Ok(y)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let (plan, out_shape) = self.plan(input.shape())?;
        Ok(AvgPoolCache::forward(plan, divisor(&self.cfg.options), input, out_shape).0)
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let name = self.name();
        let cache = self.cache.as_ref().ok_or_else(|| Error::no_cache(&name))?;
        cache.backward(&name, divisor(&self.cfg.options), grad_output)
    }
}

impl<T: Float> AvgPool2d<T> {
    /// The window plan and output shape for an input of shape `shape`.
    fn plan(&self, shape: &[usize]) -> Result<(PoolPlan, Vec<usize>)> {
        let out_shape = self.output_shape(shape)?;
        let (&[_, _, h, w], &[_, _, oh, ow]) = (shape, out_shape.as_slice()) else {
            return Err(Error::shape(self.name(), "[N, C, H, W]", shape));
        };
        let plan = self.cfg.plan([h, w], [oh, ow]);
        Ok((plan, out_shape))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};
    use crate::testutil::assert_f32_matches_f64;
    use crate::testutil::{assert_close, parity, parity_files};

    fn configs() -> Vec<(Vec<usize>, AvgPool2dConfig)> {
        let c = AvgPool2dConfig::new;
        vec![
            (vec![2, 3, 9, 9], c(3).stride(2)),
            (
                vec![1, 2, 7, 6],
                c(3).kernel_hw([3, 2]).stride_hw([2, 1]).padding_hw([1, 0]),
            ),
            (vec![2, 2, 7, 7], c(2).ceil_mode(true)),
            (
                vec![1, 3, 8, 9],
                c(3).stride(2)
                    .padding(1)
                    .ceil_mode(true)
                    .count_include_pad(false),
            ),
            (vec![1, 1, 5, 5], c(3).stride(2).padding(1).ceil_mode(true)),
            (
                vec![2, 1, 6, 6],
                c(3).stride(1).padding(1).count_include_pad(false),
            ),
            (
                vec![1, 2, 5, 7],
                c(2).stride(1).padding(1).divisor_override(Some(3)),
            ),
        ]
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (seed, (shape, cfg)) in configs().into_iter().enumerate() {
            let x = random_tensor(&shape, seed as u64);
            let mut layer = AvgPool2d::new(cfg).unwrap();
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
    fn f32_agrees_with_f64() {
        for (seed, (shape, cfg)) in configs().into_iter().enumerate() {
            let x = random_tensor(&shape, seed as u64);
            let (mut l64, mut l32) = (
                AvgPool2d::<f64>::new(cfg).unwrap(),
                AvgPool2d::<f32>::new(cfg).unwrap(),
            );
            assert_f32_matches_f64(&mut l64, &mut l32, &x, |s| random_tensor(s, 99), 1e-4);
        }
    }

    fn pool_ones(cfg: AvgPool2dConfig, hw: [usize; 2]) -> Vec<f64> {
        let x = Tensor::<f64>::ones(&[1, 1, hw[0], hw[1]][..]);
        AvgPool2d::new(cfg)
            .unwrap()
            .forward(&x)
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn hand_computed_divisors() {
        let (a, b) = (4.0 / 9.0, 6.0 / 9.0);
        // 5x5 ones, 3x3 windows at stride 2 with pad 1: windows start at -1, 1, 3.
        let cfg = AvgPool2dConfig::new(3).stride(2).padding(1);
        assert_eq!(pool_ones(cfg, [5, 5]), [a, b, a, b, 1.0, b, a, b, a]);
        assert_eq!(pool_ones(cfg.count_include_pad(false), [5, 5]), [1.0; 9]);
        assert_eq!(
            pool_ones(cfg.divisor_override(Some(2)), [5, 5]),
            [2.0, 3.0, 2.0, 3.0, 4.5, 3.0, 2.0, 3.0, 2.0]
        );
        // ceil_mode without padding: the edge windows hold 2 and 1 cells and divide by that,
        // even with count_include_pad.
        assert_eq!(
            pool_ones(AvgPool2dConfig::new(2).ceil_mode(true), [5, 5]),
            [1.0; 9]
        );
        // ceil_mode with padding: L=6, k=3, s=2, p=1 gives 4 windows [-1,2) [1,4) [3,6) [5,8);
        // the last is clipped to [5,7) by L + P = 7: pool_size 2, one cell in bounds.
        let row = pool_ones(
            AvgPool2dConfig::new(3)
                .stride(2)
                .padding(1)
                .ceil_mode(true)
                .kernel_hw([1, 3])
                .padding_hw([0, 1]),
            [1, 6],
        );
        assert_eq!(row, [2.0 / 3.0, 1.0, 1.0, 0.5]);

        // Backward of 2x2 windows on 0..16 spreads each gradient in quarters.
        let x = from_vec(&[1, 1, 4, 4], (0..16).map(|v| v as f64).collect());
        let mut layer = AvgPool2d::new(AvgPool2dConfig::new(2)).unwrap();
        let y = layer.forward(&x).unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            [2.5, 4.5, 10.5, 12.5]
        );
        let dx = layer
            .backward(&from_vec(&[1, 1, 2, 2], vec![4.0, 8.0, 12.0, 16.0]))
            .unwrap();
        assert_eq!(&dx.as_slice().unwrap()[..4], &[1.0, 1.0, 2.0, 2.0]);
        assert_eq!(&dx.as_slice().unwrap()[12..], &[3.0, 3.0, 4.0, 4.0]);
    }

    #[test]
    fn describe_in_course_words() {
        let d = |cfg| Layer::<f32>::describe(&AvgPool2d::new(cfg).unwrap());
        assert_eq!(
            d(AvgPool2dConfig::new(3).stride(2)),
            "3x3 filters at stride 2"
        );
        assert_eq!(
            d(AvgPool2dConfig::new(3).stride(2).padding(1).ceil_mode(true)),
            "3x3 filters at stride 2, pad 1, ceil_mode"
        );
        assert_eq!(
            d(AvgPool2dConfig::new(5).stride(3)),
            "5x5 filters at stride 3"
        );
        assert_eq!(
            d(AvgPool2dConfig::new(2).count_include_pad(false)),
            "2x2 filters at stride 2, count_include_pad=false"
        );
        assert_eq!(
            Layer::<f32>::kind(&AvgPool2d::new(AvgPool2dConfig::new(2)).unwrap()),
            "AvgPool2d"
        );
    }

    #[test]
    fn errors() {
        let bad = |cfg| matches!(AvgPool2d::<f64>::new(cfg), Err(Error::InvalidConfig { .. }));
        assert!(bad(AvgPool2dConfig::new(2).padding(2)));
        assert!(bad(AvgPool2dConfig::new(3).padding_hw([2, 1])));
        assert!(bad(AvgPool2dConfig::new(0)));
        assert!(bad(AvgPool2dConfig::new(2).stride_hw([1, 0])));
        assert!(bad(AvgPool2dConfig::new(2).divisor_override(Some(0))));

        let mut layer = AvgPool2d::<f64>::new(AvgPool2dConfig::new(3).stride(2)).unwrap();
        assert!(matches!(
            layer.backward(&random_tensor(&[1, 1, 2, 2], 0)),
            Err(Error::BackwardBeforeForward { .. })
        ));
        for shape in [vec![8, 8], vec![1, 1, 1, 8, 8], vec![1, 1, 8, 0]] {
            let err = layer.forward(&Tensor::zeros(shape.as_slice())).unwrap_err();
            assert!(
                matches!(err, Error::ShapeMismatch { .. }),
                "{shape:?}: {err}"
            );
            assert!(
                err.to_string()
                    .contains("AvgPool2d(3x3 filters at stride 2)"),
                "{err}"
            );
        }
        let err = layer
            .forward(&Tensor::zeros(&[1, 1, 8, 2][..]))
            .unwrap_err();
        assert!(matches!(err, Error::Geometry { .. }), "{err}");
        layer.forward(&random_tensor(&[2, 1, 5, 5], 0)).unwrap();
        assert!(matches!(
            layer.backward(&random_tensor(&[1, 1, 2, 2], 0)),
            Err(Error::ShapeMismatch { .. })
        ));
        assert_eq!(
            layer
                .backward(&random_tensor(&[2, 1, 2, 2], 0))
                .unwrap()
                .shape(),
            &[2, 1, 5, 5]
        );
    }

    fn pair(v: &serde_json::Value) -> [usize; 2] {
        [
            v[0].as_u64().unwrap() as usize,
            v[1].as_u64().unwrap() as usize,
        ]
    }

    #[test]
    fn matches_pytorch_parity_cases() {
        let files = parity_files("avg_pool2d_");
        assert_eq!(files.len(), 6);
        for file in files {
            let (cfg, t) = parity(&file);
            let c = AvgPool2dConfig::new(1)
                .kernel_hw(pair(&cfg["kernel_size"]))
                .stride_hw(pair(&cfg["stride"]))
                .padding_hw(pair(&cfg["padding"]))
                .ceil_mode(cfg["ceil_mode"].as_bool().unwrap())
                .count_include_pad(cfg["count_include_pad"].as_bool().unwrap())
                .divisor_override(cfg["divisor_override"].as_u64().map(|d| d as usize));
            let mut layer = AvgPool2d::new(c).unwrap();
            let y = layer.forward(&t["input"]).unwrap();
            assert_close(&format!("{cfg} output"), &y, &t["output"]);
            let dx = layer.backward(&t["grad_output"]).unwrap();
            assert_close(&format!("{cfg} grad_input"), &dx, &t["grad_input"]);
        }
    }
}

use super::avg_pool2d::{expect_planes, AvgPoolCache};
use super::check_output;
use crate::error::{Error, Result};
use crate::kernels::pool::{Divisor, PoolPlan};
use crate::layer::Layer;
use crate::tensor::{checked_numel, Float, Tensor};
use std::marker::PhantomData;

/// Adaptive average pooling to a fixed output size (`nn.AdaptiveAvgPool2d`), whatever the
/// input size: the layer that lets a network accept any image size before its classifier.
///
/// ```text
/// bins per axis:  B(i) = [floor(i·L/O), ceil((i+1)·L/O))      (may overlap; O > L allowed)
/// forward:  y[n,c,i,j]  = mean_{h ∈ B(i), w ∈ B(j)} x[n,c,h,w]
/// backward: dx[n,c,h,w] = Σ_{(i,j) : h ∈ B(i), w ∈ B(j)} dy[n,c,i,j] / (|B(i)|·|B(j)|)
/// ```
///
/// Forward caches only the input shape.
#[derive(Clone, Debug)]
pub struct AdaptiveAvgPool2d<T: Float> {
    output: [usize; 2],
    cache: Option<AvgPoolCache>,
    _t: PhantomData<T>,
}

/// How to build an [`AdaptiveAvgPool2d`]: the output size `[oh, ow]`.
///
/// ```
/// use convnet::layers::AdaptiveAvgPool2dConfig;
/// assert_eq!(AdaptiveAvgPool2dConfig::new([7, 7]).output_size, [7, 7]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdaptiveAvgPool2dConfig {
    /// Output size `[oh, ow]`, at least `1x1`.
    pub output_size: [usize; 2],
}

impl AdaptiveAvgPool2dConfig {
    /// Pools every input to `output_size = [oh, ow]`.
    pub fn new(output_size: [usize; 2]) -> Self {
        AdaptiveAvgPool2dConfig { output_size }
    }
}

impl<T: Float> AdaptiveAvgPool2d<T> {
    /// Pools every input to `cfg.output_size`, or [`Error::InvalidConfig`] for a zero output
    /// size.
    pub fn new(cfg: AdaptiveAvgPool2dConfig) -> Result<Self> {
        let output = cfg.output_size;
        let layer = AdaptiveAvgPool2d {
            output,
            cache: None,
            _t: PhantomData,
        };
        if output[0] == 0 || output[1] == 0 {
            return Err(Error::config(
                layer.name(),
                "output size must be at least 1x1",
            ));
        }
        checked_numel(&layer.name(), &output)?;
        Ok(layer)
    }

    /// The output size `[oh, ow]`.
    pub fn output_size(&self) -> [usize; 2] {
        self.output
    }

    fn name(&self) -> String {
        format!("AdaptiveAvgPool2d({})", Layer::<T>::describe(self))
    }
}

impl<T: Float> Layer<T> for AdaptiveAvgPool2d<T> {
    fn kind(&self) -> &'static str {
        "AdaptiveAvgPool2d"
    }

    fn describe(&self) -> String {
        format!("output {}x{}", self.output[0], self.output[1])
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let [n, c, _, _] = expect_planes(&self.name(), input)?;
        check_output(&self.name(), vec![n, c, self.output[0], self.output[1]])
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let out_shape = self.output_shape(input.shape())?;
        let [_, _, h, w] = expect_planes(&self.name(), input.shape())?;
        let plan = PoolPlan::adaptive([h, w], self.output);
        let (y, cache) = AvgPoolCache::forward(plan, Divisor::InBounds, input, out_shape);
        self.cache = Some(cache);
        Ok(y)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let out_shape = self.output_shape(input.shape())?;
        let [_, _, h, w] = expect_planes(&self.name(), input.shape())?;
        let plan = PoolPlan::adaptive([h, w], self.output);
        Ok(AvgPoolCache::forward(plan, Divisor::InBounds, input, out_shape).0)
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let name = self.name();
        let cache = self.cache.as_ref().ok_or_else(|| Error::no_cache(&name))?;
        cache.backward(&name, Divisor::InBounds, grad_output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};
    use crate::tensor::from_vec;
    use crate::testutil::assert_f32_matches_f64;
    use crate::testutil::{assert_close, parity, parity_files};

    fn configs() -> Vec<(Vec<usize>, [usize; 2])> {
        vec![
            (vec![2, 3, 6, 6], [1, 1]),  // global average
            (vec![1, 2, 7, 7], [3, 3]),  // overlapping bins: [0,3) [2,5) [4,7)
            (vec![2, 2, 10, 5], [4, 3]), // non-divisible on both axes
            (vec![1, 3, 3, 2], [5, 7]),  // O > L: cells repeat
            (vec![1, 1, 6, 9], [2, 3]),  // exact division
        ]
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (seed, (shape, out)) in configs().into_iter().enumerate() {
            let x = random_tensor(&shape, seed as u64);
            let mut layer = AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new(out)).unwrap();
            let report = check_layer(
                &mut layer,
                &x,
                GradCheck {
                    seed: seed as u64,
                    ..GradCheck::default()
                },
            );
            report.unwrap_or_else(|e| panic!("{shape:?} -> {out:?}: {e}"));
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        for (seed, (shape, out)) in configs().into_iter().enumerate() {
            let x = random_tensor(&shape, seed as u64);
            let (mut l64, mut l32) = (
                AdaptiveAvgPool2d::<f64>::new(AdaptiveAvgPool2dConfig::new(out)).unwrap(),
                AdaptiveAvgPool2d::<f32>::new(AdaptiveAvgPool2dConfig::new(out)).unwrap(),
            );
            assert_f32_matches_f64(&mut l64, &mut l32, &x, |s| random_tensor(s, 99), 1e-4);
        }
    }

    #[test]
    fn hand_computed_values() {
        // One row 0..5 pooled to 3 bins: [0,2) [1,4) [3,5) → means 0.5, 2, 3.5.
        let x = from_vec(&[1, 1, 1, 5], (0..5).map(|v| v as f64).collect());
        let mut layer = AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new([1, 3])).unwrap();
        let y = layer.forward(&x).unwrap();
        assert_eq!(y.iter().copied().collect::<Vec<_>>(), [0.5, 2.0, 3.5]);
        // Cell 1 is in bins 0 and 1, cell 3 in bins 1 and 2.
        let dx = layer
            .backward(&from_vec(&[1, 1, 1, 3], vec![6.0, 3.0, 12.0]))
            .unwrap();
        assert_eq!(
            dx.iter().copied().collect::<Vec<_>>(),
            [3.0, 4.0, 1.0, 7.0, 6.0]
        );
        // O > L: 2 cells to 4 bins [0,1) [0,1) [1,2) [1,2) copy each cell twice.
        let x = from_vec(&[1, 1, 1, 2], vec![7.0, -1.0]);
        let y = AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new([1, 4]))
            .unwrap()
            .forward(&x)
            .unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            [7.0, 7.0, -1.0, -1.0]
        );
    }

    #[test]
    fn describe_shape_and_errors() {
        let mut layer =
            AdaptiveAvgPool2d::<f64>::new(AdaptiveAvgPool2dConfig::new([6, 6])).unwrap();
        assert_eq!(layer.describe(), "output 6x6");
        assert_eq!(layer.kind(), "AdaptiveAvgPool2d");
        assert_eq!(
            layer.output_shape(&[4, 256, 13, 13]).unwrap(),
            [4, 256, 6, 6]
        );
        assert_eq!(layer.output_shape(&[1, 3, 2, 2]).unwrap(), [1, 3, 6, 6]);
        assert!(matches!(
            AdaptiveAvgPool2d::<f64>::new(AdaptiveAvgPool2dConfig::new([0, 3])),
            Err(Error::InvalidConfig { .. })
        ));
        assert!(matches!(
            layer.backward(&random_tensor(&[1, 1, 6, 6], 0)),
            Err(Error::BackwardBeforeForward { .. })
        ));
        for shape in [vec![256, 13, 13], vec![1, 1, 0, 4]] {
            let err = layer.forward(&Tensor::zeros(shape.as_slice())).unwrap_err();
            assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
            assert!(
                err.to_string().contains("AdaptiveAvgPool2d(output 6x6)"),
                "{err}"
            );
        }
        layer.forward(&random_tensor(&[2, 3, 9, 9], 0)).unwrap();
        assert!(matches!(
            layer.backward(&random_tensor(&[2, 3, 9, 9], 0)),
            Err(Error::ShapeMismatch { .. })
        ));
        assert_eq!(
            layer
                .backward(&random_tensor(&[2, 3, 6, 6], 0))
                .unwrap()
                .shape(),
            &[2, 3, 9, 9]
        );
    }

    #[test]
    fn matches_pytorch_parity_cases() {
        let files = parity_files("adaptive_avg_pool2d_");
        assert_eq!(files.len(), 4);
        for file in files {
            let (cfg, t) = parity(&file);
            let o = &cfg["output_size"];
            let out = [
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            ];
            let mut layer = AdaptiveAvgPool2d::new(AdaptiveAvgPool2dConfig::new(out)).unwrap();
            let y = layer.forward(&t["input"]).unwrap();
            assert_close(&format!("{cfg} output"), &y, &t["output"]);
            let dx = layer.backward(&t["grad_output"]).unwrap();
            assert_close(&format!("{cfg} grad_input"), &dx, &t["grad_input"]);
        }
    }
}

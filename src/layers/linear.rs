use super::{cached, check_output, expect_shape};
use crate::error::{Error, Result};
use crate::init::{layer_rng, Init};
use crate::kernels::elementwise;
use crate::kernels::gemm::{gemm, Op, Threads};
use crate::layer::{Epilogue, Layer, Param, Slot, SlotMut};
use crate::tensor::{contiguous, fmt_shape, from_vec, zeros, Float, Tensor};

/// Fully connected layer (PyTorch `nn.Linear`), weight `W [out, in]`, bias `b [out]`.
///
/// ```text
/// forward:  y[N, out] = x[N, in] · Wᵀ + b
/// backward: dx[N, in]  = dy · W
///           dW[out, in] += dyᵀ · x
///           db[out]     += Σ_n dy[n, :]
/// ```
///
/// The input is cached for `dW`. All three products are one call to the GEMM kernel.
///
/// ```
/// use convnet::prelude::*;
/// use ndarray::IxDyn;
/// # fn main() -> convnet::Result<()> {
/// // y = W·x + b with W = [[1, 2], [3, 4], [5, 6]] and b = [0.5, 0, -0.5].
/// let w = Tensor::from_shape_vec(IxDyn(&[3, 2]), vec![1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0])?;
/// let b = Tensor::from_shape_vec(IxDyn(&[3]), vec![0.5, 0.0, -0.5])?;
/// let mut fc = Linear::from_weights(w, Some(b))?;
/// let x = Tensor::from_shape_vec(IxDyn(&[1, 2]), vec![1.0, 1.0])?;
/// let y = fc.forward(&x)?;
/// assert_eq!(y.iter().copied().collect::<Vec<_>>(), vec![3.5, 7.0, 10.5]);
///
/// // dL/dx = dy · W; dL/dW += dyᵀ · x.
/// let dx = fc.backward(&Tensor::from_shape_vec(IxDyn(&[1, 3]), vec![1.0, 0.0, 1.0])?)?;
/// assert_eq!(dx.iter().copied().collect::<Vec<_>>(), vec![6.0, 8.0]);
/// assert_eq!(fc.weight().grad[[2, 1]], 1.0);
///
/// // The classifier of LeNet-5: 84 -> 10, 84·10 + 10 parameters.
/// assert_eq!(Linear::<f32>::new(LinearConfig::new(84, 10))?.num_params(), 850);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Linear<T: Float> {
    in_features: usize,
    out_features: usize,
    weight: Param<T>,
    bias: Option<Param<T>>,
    input: Option<Tensor<T>>,
}

/// Configuration of a [`Linear`] layer.
///
/// The weight is drawn from [`LinearConfig::init`] with `fan_in = in_features`,
/// `fan_out = out_features`; the bias from [`LinearConfig::bias_init`], whose default
/// ([`Init::PyTorchDefault`]) is PyTorch's `U(-1/sqrt(in), 1/sqrt(in))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearConfig {
    /// Input features per sample.
    pub in_features: usize,
    /// Output features per sample.
    pub out_features: usize,
    /// Whether the layer adds a bias (default `true`).
    pub bias: bool,
    /// Weight initialisation (default [`Init::PyTorchDefault`]).
    pub init: Init,
    /// Bias initialisation (default [`Init::PyTorchDefault`], i.e. `U(±1/sqrt(in))`).
    pub bias_init: Init,
    /// Seed of the initialisation; `None` draws from the global generator
    /// ([`crate::init::manual_seed`]).
    pub seed: Option<u64>,
}

impl LinearConfig {
    /// `in_features -> out_features` with a bias and PyTorch's default initialisation.
    pub fn new(in_features: usize, out_features: usize) -> Self {
        LinearConfig {
            in_features,
            out_features,
            bias: true,
            init: Init::PyTorchDefault,
            bias_init: Init::PyTorchDefault,
            seed: None,
        }
    }

    /// Whether to add a bias.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Weight initialisation.
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// Bias initialisation (e.g. `Init::Constant(0.0)`).
    pub fn bias_init(mut self, init: Init) -> Self {
        self.bias_init = init;
        self
    }

    /// Draws the initial values from this seed instead of the global generator.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }
}

fn name(in_features: usize, out_features: usize) -> String {
    format!("Linear({in_features} -> {out_features})")
}

impl<T: Float> Linear<T> {
    /// A layer with freshly initialised weights, or [`Error::InvalidConfig`] for zero features
    /// or an invalid initialisation.
    pub fn new(cfg: LinearConfig) -> Result<Self> {
        let (i, o) = (cfg.in_features, cfg.out_features);
        let what = name(i, o);
        if i == 0 || o == 0 {
            return Err(Error::config(
                what,
                "in_features and out_features must be at least 1",
            ));
        }
        cfg.init.validate(&what, "weight")?;
        cfg.bias_init.validate(&what, "bias")?;
        let mut rng = layer_rng(cfg.seed);
        let weight = cfg.init.sample(&what, "weight", &[o, i], i, o, &mut rng)?;
        let bias = match cfg.bias {
            true => Some(Param::try_new(
                &what,
                cfg.bias_init.sample(&what, "bias", &[o], i, o, &mut rng)?,
            )?),
            false => None,
        };
        Ok(Linear {
            in_features: i,
            out_features: o,
            weight: Param::try_new(&what, weight)?,
            bias,
            input: None,
        })
    }

    /// A layer with the given weight `[out, in]` and optional bias `[out]`.
    pub fn from_weights(weight: Tensor<T>, bias: Option<Tensor<T>>) -> Result<Self> {
        let &[o, i] = weight.shape() else {
            return Err(Error::shape(
                "Linear (weight)",
                "[out_features, in_features]",
                weight.shape(),
            ));
        };
        if i == 0 || o == 0 {
            return Err(Error::config(
                name(i, o),
                "in_features and out_features must be at least 1",
            ));
        }
        if let Some(b) = &bias {
            if b.shape() != [o] {
                return Err(Error::shape(
                    format!("{} (bias)", name(i, o)),
                    format!("[{o}]"),
                    b.shape(),
                ));
            }
        }
        let standard = |t: Tensor<T>| t.as_standard_layout().into_owned();
        Ok(Linear {
            in_features: i,
            out_features: o,
            weight: Param::new(standard(weight)),
            bias: bias.map(|b| Param::new(standard(b))),
            input: None,
        })
    }

    /// Input features per sample.
    pub fn in_features(&self) -> usize {
        self.in_features
    }

    /// Output features per sample.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// The weight `[out, in]` and its gradient.
    pub fn weight(&self) -> &Param<T> {
        &self.weight
    }

    /// The bias `[out]` and its gradient, if the layer has one.
    pub fn bias(&self) -> Option<&Param<T>> {
        self.bias.as_ref()
    }

    fn name(&self) -> String {
        name(self.in_features, self.out_features)
    }

    /// Checks that the parameters still have their shapes (they are public through
    /// `visit_mut`, so a loader could have replaced them).
    fn check_params(&self) -> Result<()> {
        let (i, o) = (self.in_features, self.out_features);
        expect_param(&self.name(), "weight", &[o, i], &self.weight)?;
        match &self.bias {
            Some(b) => expect_param(&self.name(), "bias", &[o], b),
            None => Ok(()),
        }
    }
}

impl<T: Float> Linear<T> {
    /// `y = x · Wᵀ + b` for `n` rows of `x`, then `max(y, 0)` when `relu`.
    fn compute(&self, n: usize, x: &[T], relu: bool) -> Tensor<T> {
        let (i, o) = (self.in_features, self.out_features);
        let w = contiguous(&self.weight.value);
        let mut y = vec![T::zero(); n * o];
        gemm(n, o, i, x, Op::N, &w, Op::T, &mut y, false, Threads::Pool);
        if let Some(b) = &self.bias {
            let b = contiguous(&b.value);
            for row in y.chunks_exact_mut(o) {
                row.iter_mut().zip(b.iter()).for_each(|(y, &b)| *y += b);
            }
        }
        if relu {
            elementwise::map_inplace(&mut y, elementwise::relu);
        }
        from_vec(&[n, o], y)
    }
}

impl<T: Float> Linear<T> {
    /// `[N, out_features]` for an input `[N, in_features]` (checked by `output_shape`).
    fn rows(&self, input: &[usize]) -> Result<[usize; 2]> {
        match self.output_shape(input)?.as_slice() {
            &[n, o] => Ok([n, o]),
            _ => Err(Error::shape(
                self.name(),
                format!("[N, {}]", self.in_features),
                input,
            )),
        }
    }
}

fn expect_param<T: Float>(layer: &str, which: &str, shape: &[usize], p: &Param<T>) -> Result<()> {
    for t in [&p.value, &p.grad] {
        if t.shape() != shape {
            return Err(Error::shape(
                format!("{layer} ({which})"),
                fmt_shape(shape),
                t.shape(),
            ));
        }
    }
    Ok(())
}

impl<T: Float> Layer<T> for Linear<T> {
    fn kind(&self) -> &'static str {
        "Linear"
    }

    fn describe(&self) -> String {
        // The course's words (`FC6: 4096 neurons`); the input size is in the previous row.
        let bias = if self.bias.is_some() { "" } else { ", no bias" };
        format!("{} neurons{bias}", self.out_features)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        match input {
            &[n, i] if i == self.in_features => {
                check_output(&self.name(), vec![n, self.out_features])
            }
            _ => Err(Error::shape(
                self.name(),
                format!("[N, {}]", self.in_features),
                input,
            )),
        }
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let [n, _] = self.rows(input.shape())?;
        self.check_params()?;
        let x = input.as_standard_layout().into_owned();
        let y = self.compute(n, &contiguous(&x), false);
        self.input = Some(x);
        Ok(y)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let [n, _] = self.rows(input.shape())?;
        self.check_params()?;
        Ok(self.compute(n, &contiguous(input), false))
    }

    /// Fuses a following ReLU (or several) into the bias loop; declines anything else.
    fn infer_fused(
        &self,
        input: &Tensor<T>,
        epilogues: &[Epilogue<T>],
    ) -> Result<Option<Tensor<T>>> {
        if !epilogues.iter().all(|e| *e == Epilogue::Relu) {
            return Ok(None);
        }
        let [n, _] = self.rows(input.shape())?;
        self.check_params()?;
        Ok(Some(self.compute(n, &contiguous(input), true)))
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let layer = self.name();
        let x = cached(&self.input, &layer)?;
        let [n, _] = self.rows(x.shape())?;
        let (i, o) = (self.in_features, self.out_features);
        expect_shape(&layer, &[n, o], grad_output.shape())?;
        self.check_params()?;
        let dy = contiguous(grad_output);
        let x = contiguous(x);

        let mut dx = zeros::<T>(&[n, i]);
        let w = contiguous(&self.weight.value);
        gemm(
            n,
            i,
            o,
            &dy,
            Op::N,
            &w,
            Op::N,
            super::standard_mut(&mut dx),
            false,
            Threads::Pool,
        );
        let dw = super::standard_mut(&mut self.weight.grad);
        gemm(o, i, n, &dy, Op::T, &x, Op::N, dw, true, Threads::Pool);
        if let Some(b) = &mut self.bias {
            let db = super::standard_mut(&mut b.grad);
            for row in dy.chunks_exact(o) {
                db.iter_mut().zip(row).for_each(|(db, &g)| *db += g);
            }
        }
        Ok(dx)
    }

    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        f("weight", Slot::Param(&self.weight));
        if let Some(b) = &self.bias {
            f("bias", Slot::Param(b));
        }
    }

    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {
        f("weight", SlotMut::Param(&mut self.weight));
        if let Some(b) = &mut self.bias {
            f("bias", SlotMut::Param(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck::{check_layer, random_tensor, GradCheck};
    use crate::testutil::{assert_close, parity};

    #[test]
    fn gradient_matches_finite_differences() {
        let cases = [
            (2, 8, 5, true),
            (1, 1, 1, true),
            (3, 7, 2, false),
            (5, 13, 11, true),
            (1, 3, 17, false),
        ];
        for (seed, &(n, i, o, bias)) in cases.iter().enumerate() {
            let cfg = LinearConfig::new(i, o).bias(bias).seed(seed as u64);
            let mut layer = Linear::<f64>::new(cfg).unwrap();
            let x = random_tensor(&[n, i], seed as u64 + 10);
            let opts = GradCheck {
                seed: seed as u64,
                ..GradCheck::default()
            };
            check_layer(&mut layer, &x, opts).unwrap();
        }
    }

    #[test]
    fn hand_computed_values_and_accumulating_grads() {
        let w = from_vec(&[2, 3], vec![1.0, 2.0, 3.0, -1.0, 0.0, 0.5]);
        let b = from_vec(&[2], vec![0.5, -2.0]);
        let mut layer = Linear::<f64>::from_weights(w, Some(b)).unwrap();
        let x = from_vec(&[1, 3], vec![1.0, 1.0, 2.0]);
        let y = layer.forward(&x).unwrap();
        // [1 + 2 + 6 + 0.5, -1 + 0 + 1 - 2]
        assert_eq!(y, from_vec(&[1, 2], vec![9.5, -2.0]));
        let dy = from_vec(&[1, 2], vec![1.0, 2.0]);
        let dx = layer.backward(&dy).unwrap();
        // dy · W = [1 - 2, 2 + 0, 3 + 1]
        assert_eq!(dx, from_vec(&[1, 3], vec![-1.0, 2.0, 4.0]));
        layer.backward(&dy).unwrap();
        // Two backward passes accumulate: 2 · dyᵀ x, 2 · dy.
        assert_eq!(
            layer.weight().grad,
            from_vec(&[2, 3], vec![2.0, 2.0, 4.0, 4.0, 4.0, 8.0])
        );
        assert_eq!(layer.bias().unwrap().grad, from_vec(&[2], vec![2.0, 4.0]));
    }

    #[test]
    fn f32_agrees_with_f64() {
        let x64 = random_tensor(&[4, 9], 3);
        let dy64 = random_tensor(&[4, 6], 4);
        let mut l64 = Linear::<f64>::new(LinearConfig::new(9, 6).seed(7)).unwrap();
        let mut l32 = Linear::<f32>::new(LinearConfig::new(9, 6).seed(7)).unwrap();
        let y64 = l64.forward(&x64).unwrap();
        let y32 = l32.forward(&x64.mapv(|v| v as f32)).unwrap();
        let dx64 = l64.backward(&dy64).unwrap();
        let dx32 = l32.backward(&dy64.mapv(|v| v as f32)).unwrap();
        let close = |a: &Tensor<f32>, b: &Tensor<f64>| {
            a.iter()
                .zip(b)
                .all(|(&a, &b)| (a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()))
        };
        assert!(close(&y32, &y64));
        assert!(close(&dx32, &dx64));
        assert!(close(&l32.weight().grad, &l64.weight().grad));
        assert!(close(&l32.bias().unwrap().grad, &l64.bias().unwrap().grad));
    }

    #[test]
    fn matches_pytorch_parity_cases() {
        for k in 0..4 {
            let (cfg, t) = parity(&format!("linear_{k:03}.safetensors"));
            assert_eq!(cfg["bias"].as_bool().unwrap(), t.contains_key("bias"));
            let mut layer =
                Linear::from_weights(t["weight"].clone(), t.get("bias").cloned()).unwrap();
            assert_eq!(
                layer.in_features(),
                cfg["in_features"].as_u64().unwrap() as usize
            );
            assert_eq!(
                layer.out_features(),
                cfg["out_features"].as_u64().unwrap() as usize
            );
            assert_close("output", &layer.forward(&t["input"]).unwrap(), &t["output"]);
            assert_close(
                "grad_input",
                &layer.backward(&t["grad_output"]).unwrap(),
                &t["grad_input"],
            );
            assert_close("grad_weight", &layer.weight().grad, &t["grad_weight"]);
            if let Some(gb) = t.get("grad_bias") {
                assert_close("grad_bias", &layer.bias().unwrap().grad, gb);
            }
        }
    }

    #[test]
    fn default_init_is_bounded_and_seeded() {
        let a = Linear::<f64>::new(LinearConfig::new(400, 30).seed(1)).unwrap();
        let b = Linear::<f64>::new(LinearConfig::new(400, 30).seed(1)).unwrap();
        assert_eq!(a.weight().value, b.weight().value);
        let bound = 1.0 / 20.0;
        assert!(a.weight().value.iter().all(|w| w.abs() <= bound));
        assert!(a.bias().unwrap().value.iter().all(|w| w.abs() <= bound));
        assert!(a.weight().value.iter().any(|w| w.abs() > 0.9 * bound));
        let zero = LinearConfig::new(4, 3).bias_init(Init::Constant(0.0));
        assert!(Linear::<f32>::new(zero)
            .unwrap()
            .bias()
            .unwrap()
            .value
            .iter()
            .all(|&b| b == 0.0));
        assert_eq!(a.num_params(), 400 * 30 + 30);
    }

    #[test]
    fn kind_describe_and_names() {
        let l = Linear::<f32>::new(LinearConfig::new(120, 84)).unwrap();
        assert_eq!(l.kind(), "Linear");
        assert_eq!(l.describe(), "84 neurons");
        let mut names = Vec::new();
        l.visit(&mut |n, _| names.push(n.to_string()));
        assert_eq!(names, ["weight", "bias"]);
        let nb = Linear::<f32>::new(LinearConfig::new(3, 2).bias(false)).unwrap();
        assert_eq!(nb.describe(), "2 neurons, no bias");
        assert!(nb.bias().is_none());
    }

    #[test]
    fn errors() {
        let mut l = Linear::<f64>::new(LinearConfig::new(120, 84)).unwrap();
        assert!(matches!(
            l.backward(&zeros(&[2, 84])),
            Err(Error::BackwardBeforeForward { .. })
        ));
        let err = l.forward(&zeros(&[2, 100])).unwrap_err();
        assert!(err.to_string().contains("Linear(120 -> 84)"), "{err}");
        assert!(l.forward(&zeros(&[2, 120, 1])).is_err());
        assert!(l.output_shape(&[120]).is_err());
        l.forward(&zeros(&[2, 120])).unwrap();
        assert!(matches!(
            l.backward(&zeros(&[3, 84])),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(Linear::<f64>::new(LinearConfig::new(0, 3)).is_err());
        assert!(Linear::<f64>::new(LinearConfig::new(3, 0)).is_err());
        assert!(Linear::<f64>::new(LinearConfig::new(3, 2).init(Init::Normal(-1.0))).is_err());
        assert!(Linear::<f64>::from_weights(zeros(&[2, 3, 1]), None).is_err());
        assert!(Linear::<f64>::from_weights(zeros(&[2, 3]), Some(zeros(&[3]))).is_err());
        // A parameter replaced with the wrong shape is reported, not a panic in the kernel.
        l.visit_mut(&mut |n, s| {
            if let (SlotMut::Param(p), "weight") = (s, n) {
                *p = Param::new(zeros(&[2, 2]));
            }
        });
        assert!(matches!(
            l.forward(&zeros(&[2, 120])),
            Err(Error::ShapeMismatch { .. })
        ));
    }
}

use super::{cached, check_output, expect_nchw, expect_shape};
use crate::error::{Error, Result};
use crate::geometry::Window2d;
use crate::init::{layer_rng, Init};
use crate::kernels::conv::{self, ChannelOp, ConvGeom, PreparedWeight};
use crate::layer::{Epilogue, Layer, Param, Slot, SlotMut};
use crate::tensor::{checked_numel, contiguous, standard, zeros, Float, Tensor};
use std::sync::OnceLock;

/// How to build a [`Conv2d`]: channels, per-axis window, groups, bias and initialisation.
///
/// Scalar setters set both axes, `_hw` setters take `[h, w]`:
///
/// ```
/// use convnet::layers::Conv2dConfig;
/// // AlexNet CONV1: 96 11x11 filters at stride 4, pad 0.
/// let cfg = Conv2dConfig::new(3, 96, 11).stride(4);
/// assert_eq!(cfg.kernel, [11, 11]);
/// let cfg = Conv2dConfig::new(64, 64, 3).kernel_hw([3, 1]).padding_hw([1, 0]).bias(false);
/// assert_eq!(cfg.padding, [1, 0]);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Conv2dConfig {
    /// Input channels `C_in`.
    pub in_channels: usize,
    /// Output channels (number of filters) `C_out`.
    pub out_channels: usize,
    /// Kernel size `[kh, kw]`.
    pub kernel: [usize; 2],
    /// Stride `[sh, sw]` (default `[1, 1]`).
    pub stride: [usize; 2],
    /// Zero padding on each side `[ph, pw]` (default `[0, 0]`).
    pub padding: [usize; 2],
    /// Dilation `[dh, dw]`: spacing between kernel taps (default `[1, 1]`).
    pub dilation: [usize; 2],
    /// Channel groups: input and output channels are split into `groups` independent
    /// convolutions (default 1; `groups == in == out` is a depthwise convolution).
    pub groups: usize,
    /// Whether the layer has a bias (default true).
    pub bias: bool,
    /// How the weight is initialised (default [`Init::PyTorchDefault`]). The bias is always
    /// drawn as PyTorch does: `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
    pub init: Init,
    /// Seed for the initial weights; `None` draws from the global generator
    /// ([`crate::init::manual_seed`]).
    pub seed: Option<u64>,
}

impl Conv2dConfig {
    /// A square `kernel x kernel` convolution from `in_channels` to `out_channels` with
    /// stride 1, no padding, no dilation, one group and a bias.
    pub fn new(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        Conv2dConfig {
            in_channels,
            out_channels,
            kernel: [kernel, kernel],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            bias: true,
            init: Init::PyTorchDefault,
            seed: None,
        }
    }

    /// Sets the kernel size `[kh, kw]`.
    pub fn kernel_hw(mut self, kernel: [usize; 2]) -> Self {
        self.kernel = kernel;
        self
    }

    /// Sets the stride of both axes.
    pub fn stride(self, stride: usize) -> Self {
        self.stride_hw([stride, stride])
    }

    /// Sets the stride `[sh, sw]`.
    pub fn stride_hw(mut self, stride: [usize; 2]) -> Self {
        self.stride = stride;
        self
    }

    /// Sets the zero padding of both axes.
    pub fn padding(self, padding: usize) -> Self {
        self.padding_hw([padding, padding])
    }

    /// Sets the zero padding `[ph, pw]`.
    pub fn padding_hw(mut self, padding: [usize; 2]) -> Self {
        self.padding = padding;
        self
    }

    /// Sets the dilation of both axes.
    pub fn dilation(self, dilation: usize) -> Self {
        self.dilation_hw([dilation, dilation])
    }

    /// Sets the dilation `[dh, dw]`.
    pub fn dilation_hw(mut self, dilation: [usize; 2]) -> Self {
        self.dilation = dilation;
        self
    }

    /// Sets the number of channel groups.
    pub fn groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Enables or disables the bias.
    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    /// Sets the weight initialisation.
    pub fn init(mut self, init: Init) -> Self {
        self.init = init;
        self
    }

    /// Seeds the initial weights (otherwise they come from the global generator).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The sliding window (kernel, stride, padding, dilation per axis).
    pub fn window(&self) -> Window2d {
        Window2d::new(self.kernel, self.stride, self.padding, self.dilation)
    }

    /// The weight shape `[out, in / groups, kh, kw]` (PyTorch's layout).
    pub fn weight_shape(&self) -> [usize; 4] {
        let in_per_group = self.in_channels / self.groups.max(1);
        [
            self.out_channels,
            in_per_group,
            self.kernel[0],
            self.kernel[1],
        ]
    }

    /// The name used in error messages: `Conv2d(3 -> 96)`.
    pub fn name(&self) -> String {
        format!("Conv2d({} -> {})", self.in_channels, self.out_channels)
    }

    fn validate(&self) -> Result<()> {
        let fail = |msg: String| Err(Error::config(self.name(), msg));
        if self.in_channels == 0 || self.out_channels == 0 {
            return fail("in_channels and out_channels must be at least 1".into());
        }
        if self.groups == 0
            || self.in_channels % self.groups != 0
            || self.out_channels % self.groups != 0
        {
            return fail(format!(
                "groups ({}) must be at least 1 and divide both in_channels ({}) and out_channels ({})",
                self.groups, self.in_channels, self.out_channels
            ));
        }
        let pairs = [
            ("kernel", self.kernel),
            ("stride", self.stride),
            ("dilation", self.dilation),
        ];
        for (what, [h, w]) in pairs {
            if h == 0 || w == 0 {
                return fail(format!(
                    "{what} must be at least 1 on both axes, got [{h}, {w}]"
                ));
            }
        }
        self.window().validate(&self.name())?;
        self.init.validate(&self.name(), "weight")?;
        checked_numel(&format!("{} (weight)", self.name()), &self.weight_shape())?;
        Ok(())
    }
}

/// 2-D convolution (cross-correlation, as PyTorch) over NCHW images, with groups.
///
/// For each image and each group `g` (input channels `C_in/G`, output channels `C_out/G`):
///
/// ```text
/// col_g  = im2col(X_g)                   [C_in/G·kh·kw, OH·OW]
/// forward:   Y_g  = W_g · col_g + b      W_g: [C_out/G, C_in/G·kh·kw], b broadcast over pixels
/// backward:  dW_g += dY_g · col_gᵀ
///            db   += Σ_pixels dY
///            dX_g  = col2im(W_gᵀ · dY_g)
/// OH = (H - F_h + 2P_h) / S_h + 1,  F_h = d_h(kh - 1) + 1   (likewise OW)
/// ```
///
/// A 1x1 kernel with stride 1 and no padding skips im2col: the image already is `col_g`.
/// Images of a batch run in parallel (rayon); the input is cached and the columns are
/// recomputed in backward.
///
/// Six 5x5 filters over a 32x32x3 image give a 28x28x6 volume, `(32 - 5)/1 + 1 = 28`:
///
/// ```
/// use convnet::prelude::*;
/// # fn main() -> convnet::Result<()> {
/// let mut conv = Conv2d::<f32>::new(Conv2dConfig::new(3, 6, 5))?;
/// assert_eq!(conv.weight().value.shape(), &[6, 3, 5, 5]);
/// assert_eq!(conv.num_params(), 6 * (5 * 5 * 3 + 1));
///
/// let x = Tensor::<f32>::ones(ndarray::IxDyn(&[2, 3, 32, 32]));
/// let y = conv.forward(&x)?;
/// assert_eq!(y.shape(), &[2, 6, 28, 28]);
///
/// // backward returns dL/dx and adds dL/dW, dL/db into the parameters' gradients.
/// let dx = conv.backward(&Tensor::ones(y.raw_dim()))?;
/// assert_eq!(dx.shape(), x.shape());
/// // Each bias sees every output pixel of every image once: 2 · 28 · 28.
/// assert_eq!(conv.bias().unwrap().grad[[0]], 2.0 * 28.0 * 28.0);
///
/// // A filter larger than its input is an error that shows the formula.
/// let err = conv.output_shape(&[1, 3, 4, 4]).unwrap_err();
/// assert!(err.to_string().contains("O = (N - F + 2P) / S + 1 = (4 - 5 + 2*0) / 1 + 1 = 0"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Conv2d<T: Float> {
    cfg: Conv2dConfig,
    weight: Param<T>,
    bias: Option<Param<T>>,
    input: Option<Tensor<T>>,
    /// The weight in the form inference reuses (Winograd-transformed), made on the first
    /// `infer` and dropped whenever the weight can change (every `&mut` access goes through
    /// `visit_mut`).
    prepared: OnceLock<Option<PreparedWeight<T>>>,
}

impl<T: Float> Conv2d<T> {
    /// A convolution with freshly initialised weights (see [`Conv2dConfig::init`]), or an
    /// [`Error::InvalidConfig`] for zero channels, groups that do not divide the channels, or a
    /// zero kernel, stride or dilation.
    pub fn new(cfg: Conv2dConfig) -> Result<Self> {
        cfg.validate()?;
        let shape = cfg.weight_shape();
        let fan_in = shape[1] * shape[2] * shape[3];
        let fan_out = shape[0] * shape[2] * shape[3];
        let mut rng = layer_rng(cfg.seed);
        let name = cfg.name();
        let weight = cfg
            .init
            .sample(&name, "weight", &shape, fan_in, fan_out, &mut rng)?;
        let bias = match cfg.bias {
            true => Some(Init::PyTorchDefault.sample(
                &name,
                "bias",
                &[cfg.out_channels],
                fan_in,
                fan_out,
                &mut rng,
            )?),
            false => None,
        };
        Ok(Conv2d {
            cfg,
            weight: Param::try_new(&name, weight)?,
            bias: bias.map(|b| Param::try_new(&name, b)).transpose()?,
            input: None,
            prepared: OnceLock::new(),
        })
    }

    /// A convolution with the given weight `[out, in/groups, kh, kw]` and bias `[out]` (present
    /// exactly when `cfg.bias`). `cfg.init` and `cfg.seed` are ignored.
    pub fn from_weights(
        cfg: Conv2dConfig,
        weight: Tensor<T>,
        bias: Option<Tensor<T>>,
    ) -> Result<Self> {
        cfg.validate()?;
        let name = cfg.name();
        if weight.shape() != cfg.weight_shape() {
            return Err(Error::shape(
                format!("{name} weight"),
                format!("{:?}", cfg.weight_shape()),
                weight.shape(),
            ));
        }
        match &bias {
            Some(b) if !cfg.bias => {
                return Err(Error::shape(
                    format!("{name} bias"),
                    "no bias (config has bias = false)",
                    b.shape(),
                ))
            }
            Some(b) if b.shape() != [cfg.out_channels] => {
                return Err(Error::shape(
                    format!("{name} bias"),
                    format!("[{}]", cfg.out_channels),
                    b.shape(),
                ))
            }
            None if cfg.bias => {
                return Err(Error::config(
                    name,
                    "config has bias = true but no bias tensor was given",
                ));
            }
            _ => {}
        }
        let standard = |t: Tensor<T>| t.as_standard_layout().into_owned();
        Ok(Self::assemble(cfg, standard(weight), bias.map(standard)))
    }

    fn assemble(cfg: Conv2dConfig, weight: Tensor<T>, bias: Option<Tensor<T>>) -> Self {
        Conv2d {
            cfg,
            weight: Param::new(weight),
            bias: bias.map(Param::new),
            input: None,
            prepared: OnceLock::new(),
        }
    }

    /// The configuration the layer was built with.
    pub fn config(&self) -> &Conv2dConfig {
        &self.cfg
    }

    /// The weight `[out, in/groups, kh, kw]` and its gradient.
    pub fn weight(&self) -> &Param<T> {
        &self.weight
    }

    /// The bias `[out]` and its gradient, if the layer has one.
    pub fn bias(&self) -> Option<&Param<T>> {
        self.bias.as_ref()
    }

    /// Checks an input shape and works out every size the kernels need.
    fn plan(&self, shape: &[usize]) -> Result<ConvGeom> {
        let name = self.cfg.name();
        let [n, _, h, w] = expect_nchw(&name, shape, Some(self.cfg.in_channels))?;
        if h == 0 || w == 0 {
            return Err(Error::shape(
                name,
                format!("[N, {}, H, W] with H, W >= 1", self.cfg.in_channels),
                shape,
            ));
        }
        // Parameters and their gradients are public (`visit_mut`): check their shapes too.
        let weight_shape = self.cfg.weight_shape();
        for (what, t) in [
            ("weight", &self.weight.value),
            ("weight gradient", &self.weight.grad),
        ] {
            if t.shape() != weight_shape {
                let expected = format!("{weight_shape:?}");
                return Err(Error::shape(format!("{name} {what}"), expected, t.shape()));
            }
        }
        if let Some(b) = &self.bias {
            for (what, t) in [("bias", &b.value), ("bias gradient", &b.grad)] {
                if t.shape() != [self.cfg.out_channels] {
                    let expected = format!("[{}]", self.cfg.out_channels);
                    return Err(Error::shape(format!("{name} {what}"), expected, t.shape()));
                }
            }
        }
        let win = self.cfg.window();
        let out_hw = win.output_hw(&name, [h, w], false)?;
        let groups = self.cfg.groups;
        let cin_g = self.cfg.in_channels / groups;
        let identity =
            self.cfg.kernel == [1, 1] && self.cfg.stride == [1, 1] && self.cfg.padding == [0, 0];
        // Every buffer a call allocates stays within the tensor limit: the output, and the
        // column matrix of one group of one image, C_in/G·kh·kw x OH·OW.
        check_output(&name, vec![n, self.cfg.out_channels, out_hw[0], out_hw[1]])?;
        if !identity {
            checked_numel(
                &format!("{name} (im2col columns of one image)"),
                &[
                    cin_g,
                    self.cfg.kernel[0],
                    self.cfg.kernel[1],
                    out_hw[0],
                    out_hw[1],
                ],
            )?;
        }
        Ok(ConvGeom {
            n,
            groups,
            cin_g: self.cfg.in_channels / groups,
            cout_g: self.cfg.out_channels / groups,
            in_hw: [h, w],
            out_hw,
            win,
        })
    }
}

impl<T: Float> Conv2d<T> {
    /// Backward of the last forward: `dW += Σ dY·colᵀ`, `db += Σ dY`, and, when `dx` (shaped
    /// as the input) is given, `dX = col2im(Wᵀ · dY)`.
    fn gradients(&mut self, grad_output: &Tensor<T>, dx: Option<&mut Tensor<T>>) -> Result<()> {
        let name = self.cfg.name();
        let x = cached(&self.input, &name)?;
        let plan = self.plan(x.shape())?;
        expect_shape(&name, &plan.output_shape(), grad_output.shape())?;
        let dy = contiguous(grad_output);
        let w = contiguous(&self.weight.value);
        conv::backward(
            &plan,
            &contiguous(x),
            &w,
            &dy,
            dx.map(|dx| super::standard_mut(dx)),
            super::standard_mut(&mut self.weight.grad),
            self.bias.as_mut().map(|b| super::standard_mut(&mut b.grad)),
        );
        Ok(())
    }

    /// `y = epilogues(W · im2col(x) + b)` for a contiguous input shaped as `plan` says.
    ///
    /// The bias and the leading affine maps fold into one per-channel `scale·acc + shift`, and
    /// a ReLU after them into the same pass over the output (the kernel's [`ChannelOp`]);
    /// whatever follows a ReLU is applied afterwards.
    ///
    /// `reuse` keeps the weight's prepared form for later calls (inference).
    fn compute(
        &self,
        plan: &ConvGeom,
        x: &[T],
        epilogues: &[Epilogue<T>],
        reuse: bool,
    ) -> Result<Tensor<T>> {
        let w = contiguous(&self.weight.value);
        let channels = self.cfg.out_channels;
        let mut scale: Option<Vec<T>> = None;
        let mut shift: Option<Vec<T>> = self
            .bias
            .as_ref()
            .map(|b| contiguous(&b.value).into_owned());
        let mut relu = false;
        let mut fused = 0;
        for e in epilogues {
            match e {
                Epilogue::Affine { scale: s, shift: t } if !relu => {
                    // s·(a·acc + b) + t = (s·a)·acc + (s·b + t)
                    let a = scale.get_or_insert_with(|| vec![T::one(); channels]);
                    a.iter_mut().zip(s).for_each(|(a, &s)| *a *= s);
                    let b = shift.get_or_insert_with(|| vec![T::zero(); channels]);
                    b.iter_mut()
                        .zip(s.iter().zip(t))
                        .for_each(|(b, (&s, &t))| *b = *b * s + t);
                }
                Epilogue::Relu if !relu => relu = true,
                _ => break,
            }
            fused += 1;
        }
        let op = ChannelOp {
            scale: scale.as_deref(),
            shift: shift.as_deref(),
            relu,
        };
        let mut y = zeros(&plan.output_shape());
        let ys = super::standard_mut(&mut y);
        let prepared = reuse
            .then(|| {
                self.prepared
                    .get_or_init(|| PreparedWeight::new(plan, &w))
                    .as_ref()
            })
            .flatten();
        conv::forward_prepared(plan, x, &w, prepared, &op, ys);
        for e in epilogues.get(fused..).unwrap_or_default() {
            e.apply(ys, plan.plane())?;
        }
        Ok(y)
    }
}

/// Formats a pair as `4` when both axes agree, else `3x1`.
fn pair(p: [usize; 2]) -> String {
    if p[0] == p[1] {
        p[0].to_string()
    } else {
        format!("{}x{}", p[0], p[1])
    }
}

impl<T: Float> Layer<T> for Conv2d<T> {
    fn kind(&self) -> &'static str {
        "Conv2d"
    }

    fn describe(&self) -> String {
        let c = &self.cfg;
        let mut s = format!(
            "{} {}x{} filters at stride {}, pad {}",
            c.out_channels,
            c.kernel[0],
            c.kernel[1],
            pair(c.stride),
            pair(c.padding)
        );
        if c.dilation != [1, 1] {
            s += &format!(", dilation {}", pair(c.dilation));
        }
        if c.groups != 1 {
            s += &format!(", groups {}", c.groups);
        }
        if !c.bias {
            s += ", no bias";
        }
        s
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        Ok(self.plan(input)?.output_shape())
    }

    fn forward(&mut self, input: &Tensor<T>) -> Result<Tensor<T>> {
        self.forward_owned(input.as_standard_layout().into_owned())
    }

    /// Keeps the input it is handed for backward, with no copy.
    fn forward_owned(&mut self, input: Tensor<T>) -> Result<Tensor<T>> {
        self.input = None;
        let plan = self.plan(input.shape())?;
        let x = standard(input);
        let y = self.compute(&plan, &contiguous(&x), &[], false)?;
        self.input = Some(x);
        Ok(y)
    }

    fn infer(&self, input: &Tensor<T>) -> Result<Tensor<T>> {
        let plan = self.plan(input.shape())?;
        self.compute(&plan, &contiguous(input), &[], true)
    }

    /// Applies the epilogues to each image's output right after its bias, or declines
    /// (`Ok(None)`) when an affine epilogue does not have one value per output channel.
    fn infer_fused(
        &self,
        input: &Tensor<T>,
        epilogues: &[Epilogue<T>],
    ) -> Result<Option<Tensor<T>>> {
        if !epilogues.iter().all(|e| e.fits(self.cfg.out_channels)) {
            return Ok(None);
        }
        let plan = self.plan(input.shape())?;
        self.compute(&plan, &contiguous(input), epilogues, true)
            .map(Some)
    }

    fn backward(&mut self, grad_output: &Tensor<T>) -> Result<Tensor<T>> {
        let mut dx = zeros(cached(&self.input, &self.cfg.name())?.shape());
        self.gradients(grad_output, Some(&mut dx))?;
        Ok(dx)
    }

    /// The weight and bias gradients only: no `Wᵀ·dY`, no col2im.
    fn backward_params(&mut self, grad_output: &Tensor<T>) -> Result<()> {
        self.gradients(grad_output, None)
    }

    fn visit(&self, f: &mut dyn FnMut(&str, Slot<'_, T>)) {
        f("weight", Slot::Param(&self.weight));
        if let Some(b) = &self.bias {
            f("bias", Slot::Param(b));
        }
    }

    fn visit_mut(&mut self, f: &mut dyn FnMut(&str, SlotMut<'_, T>)) {
        self.prepared = OnceLock::new();
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
    use crate::tensor::from_vec;
    use crate::testutil::{assert_close, parity, parity_files};

    fn layer(cfg: Conv2dConfig) -> Conv2d<f64> {
        Conv2d::new(cfg).unwrap()
    }

    /// Gradient checks on many geometries: (config, input shape).
    fn grad_cases() -> Vec<(Conv2dConfig, [usize; 4])> {
        vec![
            // Plain 3x3, pad 1, odd sizes.
            (Conv2dConfig::new(3, 4, 3).padding(1), [2, 3, 5, 6]),
            // Per-axis kernel, stride, padding and dilation.
            (
                Conv2dConfig::new(2, 3, 3)
                    .kernel_hw([3, 2])
                    .stride_hw([2, 1])
                    .padding_hw([1, 0])
                    .dilation_hw([1, 2]),
                [2, 2, 7, 8],
            ),
            // Two groups.
            (
                Conv2dConfig::new(4, 6, 3).groups(2).padding(1),
                [2, 4, 5, 5],
            ),
            // Depthwise with stride 2.
            (
                Conv2dConfig::new(3, 3, 3).groups(3).stride(2).padding(1),
                [2, 3, 7, 7],
            ),
            // No bias.
            (Conv2dConfig::new(2, 3, 2).bias(false), [3, 2, 4, 5]),
            // 1x1 fast path, with and without groups.
            (Conv2dConfig::new(5, 3, 1), [2, 5, 3, 4]),
            (
                Conv2dConfig::new(4, 6, 1).groups(2).bias(false),
                [3, 4, 2, 3],
            ),
            // 1x1 with stride 2 and padding goes through im2col.
            (
                Conv2dConfig::new(2, 2, 1).stride(2).padding(1),
                [2, 2, 5, 4],
            ),
            // Stride larger than the kernel: some inputs are never read.
            (Conv2dConfig::new(2, 2, 2).stride(3), [2, 2, 8, 7]),
            // Batch 1 (threaded GEMM path), dilation 2 with padding 2.
            (
                Conv2dConfig::new(3, 2, 3).padding(2).dilation(2),
                [1, 3, 6, 5],
            ),
            // Larger odd case, more images than threads.
            (
                Conv2dConfig::new(3, 5, 5).stride(2).padding(2),
                [5, 3, 9, 11],
            ),
            // Enough channels for the Winograd path (forward and data gradient), pad 0, 1, 2;
            // odd sizes so that the last 4x4 tiles are cut off.
            (Conv2dConfig::new(16, 16, 3).padding(1), [2, 16, 7, 6]),
            (Conv2dConfig::new(16, 17, 3).bias(false), [1, 16, 6, 9]),
            (Conv2dConfig::new(17, 16, 3).padding(2), [3, 17, 5, 5]),
            // Small maps batched across images (several images per product).
            (
                Conv2dConfig::new(4, 6, 3).padding(1).stride(2),
                [9, 4, 5, 5],
            ),
            (Conv2dConfig::new(6, 5, 1), [11, 6, 3, 3]),
        ]
    }

    #[test]
    fn gradient_matches_finite_differences() {
        for (i, (cfg, shape)) in grad_cases().into_iter().enumerate() {
            let mut conv = layer(cfg.seed(i as u64));
            let x = random_tensor(&shape, 100 + i as u64);
            let opts = GradCheck {
                seed: i as u64,
                ..GradCheck::default()
            };
            let report = check_layer(&mut conv, &x, opts)
                .unwrap_or_else(|e| panic!("case {i} {cfg:?}: {e}"));
            assert!(report.coords > 0);
        }
    }

    #[test]
    fn backward_params_gives_the_parameter_gradients_of_backward() {
        let mut cases = grad_cases();
        // A window as large as the padded image: the dense path (one product per batch).
        cases.push((Conv2dConfig::new(3, 4, 3), [2, 3, 3, 3]));
        for (i, (cfg, shape)) in cases.into_iter().enumerate() {
            let x = random_tensor(&shape, 200 + i as u64);
            let mut full = layer(cfg.seed(i as u64));
            let mut params_only = layer(cfg.seed(i as u64));
            let y = full.forward(&x).unwrap();
            params_only.forward(&x).unwrap();
            let g = random_tensor(y.shape(), 300 + i as u64);
            full.backward(&g).unwrap();
            params_only.backward_params(&g).unwrap();
            assert_eq!(
                full.weight().grad,
                params_only.weight().grad,
                "case {i} {cfg:?}"
            );
            assert_eq!(
                full.bias().map(|b| &b.grad),
                params_only.bias().map(|b| &b.grad),
                "case {i} {cfg:?}"
            );
            assert!(full.weight().grad.iter().any(|v| *v != 0.0), "case {i}");
        }
        let mut fresh = layer(Conv2dConfig::new(2, 2, 3));
        assert!(matches!(
            fresh.backward_params(&random_tensor(&[1, 2, 3, 3], 1)),
            Err(Error::BackwardBeforeForward { .. })
        ));
    }

    #[test]
    fn backward_accumulates_parameter_gradients() {
        let mut conv = layer(Conv2dConfig::new(2, 3, 3).padding(1).seed(4));
        let x = random_tensor(&[2, 2, 5, 5], 1);
        let g = random_tensor(&[2, 3, 5, 5], 2);
        conv.forward(&x).unwrap();
        conv.backward(&g).unwrap();
        let once = (
            conv.weight().grad.clone(),
            conv.bias().unwrap().grad.clone(),
        );
        conv.backward(&g).unwrap();
        for (a, b) in conv.weight().grad.iter().zip(&once.0) {
            assert!((a - 2.0 * b).abs() < 1e-12);
        }
        for (a, b) in conv.bias().unwrap().grad.iter().zip(&once.1) {
            assert!((a - 2.0 * b).abs() < 1e-12);
        }
    }

    #[test]
    fn stride_larger_than_kernel_leaves_unread_inputs_with_zero_gradient() {
        // k = 2, s = 3 on 8 rows: windows cover rows {0,1}, {3,4}, {6,7}; rows 2 and 5 are
        // never read. On 7 columns only 2 windows fit ({0,1}, {3,4}): columns 2, 5, 6 are unread.
        let mut conv = layer(Conv2dConfig::new(1, 2, 2).stride(3).seed(1));
        let x = random_tensor(&[1, 1, 8, 7], 3);
        let y = conv.forward(&x).unwrap();
        assert_eq!(y.shape(), &[1, 2, 3, 2]);
        let dx = conv.backward(&random_tensor(y.shape(), 4)).unwrap();
        for r in 0..8 {
            for c in 0..7 {
                let unread = r % 3 == 2 || c % 3 == 2 || c == 6;
                assert_eq!(dx[[0, 0, r, c]] == 0.0, unread, "pixel ({r}, {c})");
            }
        }
    }

    #[test]
    fn small_case_by_hand() {
        // x = [[1,2,3],[4,5,6],[7,8,9]], a 2x2 kernel of ones, bias 0.5: window sums + 0.5.
        let cfg = Conv2dConfig::new(1, 1, 2);
        let w = from_vec(&[1, 1, 2, 2], vec![1.0; 4]);
        let b = from_vec(&[1], vec![0.5]);
        let mut conv = Conv2d::from_weights(cfg, w, Some(b)).unwrap();
        let x = from_vec(&[1, 1, 3, 3], (1..=9).map(f64::from).collect());
        let y = conv.forward(&x).unwrap();
        assert_eq!(y.as_slice().unwrap(), &[12.5, 16.5, 24.5, 28.5]);
        let dx = conv
            .backward(&from_vec(&[1, 1, 2, 2], vec![1.0; 4]))
            .unwrap();
        // dX counts the windows covering each pixel; dW[i,j] sums the pixels tap (i,j) saw.
        assert_eq!(
            dx.as_slice().unwrap(),
            &[1., 2., 1., 2., 4., 2., 1., 2., 1.]
        );
        assert_eq!(
            conv.weight().grad.as_slice().unwrap(),
            &[12., 16., 24., 28.]
        );
        assert_eq!(conv.bias().unwrap().grad.as_slice().unwrap(), &[4.]);
    }

    #[test]
    fn groups_connect_each_output_to_its_own_input_channels() {
        // 4 -> 2 channels in 2 groups, 1x1: y0 = 2·x0 + 3·x1, y1 = 5·x2 + 7·x3.
        let cfg = Conv2dConfig::new(4, 2, 1).groups(2).bias(false);
        let w = from_vec(&[2, 2, 1, 1], vec![2., 3., 5., 7.]);
        let mut conv = Conv2d::from_weights(cfg, w, None).unwrap();
        let x = from_vec(
            &[1, 4, 1, 2],
            vec![1., 10., 100., 1000., 1e4, 1e5, 1e6, 1e7],
        );
        let y = conv.forward(&x).unwrap();
        assert_eq!(y.as_slice().unwrap(), &[302., 3020., 7.05e6, 7.05e7]);
    }

    #[test]
    fn f32_agrees_with_f64() {
        for (i, (cfg, shape)) in grad_cases().into_iter().enumerate() {
            let mut c64 = layer(cfg.seed(50 + i as u64));
            let cast = |t: &Tensor<f64>| t.mapv(|v| v as f32);
            let bias32 = c64.bias().map(|b| cast(&b.value));
            let mut c32 =
                Conv2d::<f32>::from_weights(cfg, cast(&c64.weight().value), bias32).unwrap();
            let x = random_tensor(&shape, 7 + i as u64);
            let y64 = c64.forward(&x).unwrap();
            let y32 = c32.forward(&cast(&x)).unwrap();
            let g = random_tensor(y64.shape(), 8 + i as u64);
            let dx64 = c64.backward(&g).unwrap();
            let dx32 = c32.backward(&cast(&g)).unwrap();
            let close = |a: &Tensor<f32>, b: &Tensor<f64>, what: &str| {
                let scale = 1.0 + b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                let err = a
                    .iter()
                    .zip(b)
                    .fold(0.0f64, |m, (x, y)| m.max((*x as f64 - y).abs()));
                assert!(
                    err <= 1e-4 * scale,
                    "case {i} {what}: {err} vs scale {scale}"
                );
            };
            close(&y32, &y64, "output");
            close(&dx32, &dx64, "grad_input");
            close(&c32.weight().grad, &c64.weight().grad, "grad_weight");
            if let (Some(b32), Some(b64)) = (c32.bias(), c64.bias()) {
                close(&b32.grad, &b64.grad, "grad_bias");
            }
        }
    }

    #[test]
    fn inference_reuses_the_prepared_weight_until_the_weight_changes() {
        // 16 -> 16 channels, 3x3, pad 1: the Winograd path, whose transformed weight `infer`
        // keeps between calls.
        let cfg = Conv2dConfig::new(16, 16, 3).padding(1).seed(3);
        let mut conv = layer(cfg);
        let x = random_tensor(&[2, 16, 6, 6], 1);
        let first = conv.infer(&x).unwrap();
        assert_eq!(first, conv.infer(&x).unwrap());
        // Change the weight through the one mutable path an optimizer or a weight load takes.
        conv.visit_mut(&mut |name, slot| {
            if let ("weight", SlotMut::Param(p)) = (name, slot) {
                p.value.mapv_inplace(|v| 0.5 - 2.0 * v);
            }
        });
        let changed = conv.infer(&x).unwrap();
        let fresh = Conv2d::from_weights(
            cfg,
            conv.weight().value.clone(),
            conv.bias().map(|b| b.value.clone()),
        )
        .unwrap();
        assert_eq!(changed, fresh.infer(&x).unwrap());
        assert_ne!(changed, first);
        // Training-mode forward never uses (or needs) the prepared form.
        assert_close("train forward", &conv.forward(&x).unwrap(), &changed);
    }

    #[test]
    fn describe_reads_like_the_course_listing() {
        let alex = layer(Conv2dConfig::new(3, 96, 11).stride(4));
        assert_eq!(alex.describe(), "96 11x11 filters at stride 4, pad 0");
        assert_eq!(Layer::<f64>::kind(&alex), "Conv2d");
        let cfg = Conv2dConfig::new(64, 64, 3)
            .kernel_hw([3, 1])
            .stride_hw([2, 1])
            .padding_hw([1, 0])
            .dilation(2)
            .groups(32)
            .bias(false);
        assert_eq!(
            layer(cfg).describe(),
            "64 3x1 filters at stride 2x1, pad 1x0, dilation 2, groups 32, no bias"
        );
    }

    #[test]
    fn output_shape_and_parameters() {
        let alex = layer(Conv2dConfig::new(3, 96, 11).stride(4));
        assert_eq!(
            alex.output_shape(&[2, 3, 227, 227]).unwrap(),
            vec![2, 96, 55, 55]
        );
        assert_eq!(alex.num_params(), 96 * 3 * 11 * 11 + 96);
        let mut names = Vec::new();
        alex.visit(&mut |n, _| names.push(n.to_string()));
        assert_eq!(names, ["weight", "bias"]);
        let dw = layer(Conv2dConfig::new(8, 8, 3).groups(8).bias(false));
        assert_eq!(dw.weight().value.shape(), &[8, 1, 3, 3]);
        assert!(dw.bias().is_none());
    }

    #[test]
    fn initialisation_follows_pytorch_bounds_and_seeds() {
        let cfg = Conv2dConfig::new(4, 16, 3).seed(5);
        let a = layer(cfg);
        let bound = 1.0 / ((4 * 9) as f64).sqrt();
        for t in [&a.weight().value, &a.bias().unwrap().value] {
            assert!(t.iter().all(|v| v.abs() <= bound));
            assert!(t.iter().any(|v| v.abs() > 0.5 * bound));
        }
        assert_eq!(a.weight().value, layer(cfg).weight().value);
        assert_ne!(a.weight().value, layer(cfg.seed(6)).weight().value);
        let c = layer(cfg.init(Init::Constant(0.25)));
        assert!(c.weight().value.iter().all(|&v| v == 0.25));
    }

    #[test]
    fn impossible_geometry_explains_the_formula() {
        let mut conv = layer(Conv2dConfig::new(1, 1, 5));
        let x = random_tensor(&[1, 1, 3, 3], 0);
        for err in [
            conv.output_shape(x.shape()).unwrap_err(),
            conv.forward(&x).unwrap_err(),
        ] {
            let msg = err.to_string();
            assert!(matches!(err, Error::Geometry { .. }), "{err:?}");
            assert!(msg.contains("O = (N - F + 2P) / S + 1"), "{msg}");
        }
    }

    #[test]
    fn bad_inputs_are_shape_errors_naming_the_layer() {
        let mut conv = layer(Conv2dConfig::new(3, 96, 11).stride(4));
        for shape in [vec![2, 4, 227, 227], vec![3, 227, 227], vec![1, 3, 0, 227]] {
            let err = conv.forward(&random_tensor(&shape, 0)).unwrap_err();
            assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
            assert!(err.to_string().contains("Conv2d(3 -> 96)"), "{err}");
        }
    }

    #[test]
    fn backward_errors() {
        let mut conv = layer(Conv2dConfig::new(2, 3, 3));
        let err = conv.backward(&random_tensor(&[1, 3, 2, 2], 0)).unwrap_err();
        assert!(matches!(err, Error::BackwardBeforeForward { .. }));
        conv.forward(&random_tensor(&[1, 2, 4, 4], 0)).unwrap();
        let err = conv.backward(&random_tensor(&[1, 3, 3, 2], 0)).unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }));
        assert!(conv.backward(&random_tensor(&[1, 3, 2, 2], 0)).is_ok());
    }

    #[test]
    fn bad_configurations_are_rejected() {
        let bad = [
            Conv2dConfig::new(0, 4, 3),
            Conv2dConfig::new(4, 0, 3),
            Conv2dConfig::new(4, 6, 3).groups(4),
            Conv2dConfig::new(6, 4, 3).groups(3),
            Conv2dConfig::new(4, 4, 3).groups(0),
            Conv2dConfig::new(4, 4, 0),
            Conv2dConfig::new(4, 4, 3).kernel_hw([3, 0]),
            Conv2dConfig::new(4, 4, 3).stride_hw([0, 1]),
            Conv2dConfig::new(4, 4, 3).dilation(0),
        ];
        for cfg in bad {
            let err = Conv2d::<f64>::new(cfg).unwrap_err();
            assert!(
                matches!(err, Error::InvalidConfig { .. }),
                "{cfg:?}: {err:?}"
            );
            assert!(err.to_string().contains(&cfg.name()), "{err}");
        }
    }

    #[test]
    fn from_weights_checks_shapes() {
        let cfg = Conv2dConfig::new(4, 6, 3).groups(2);
        let w = || zeros::<f64>(&[6, 2, 3, 3]);
        assert!(Conv2d::from_weights(cfg, w(), Some(zeros(&[6]))).is_ok());
        assert!(Conv2d::from_weights(cfg, zeros::<f64>(&[6, 4, 3, 3]), Some(zeros(&[6]))).is_err());
        assert!(Conv2d::from_weights(cfg, w(), Some(zeros(&[4]))).is_err());
        assert!(Conv2d::from_weights(cfg, w(), None).is_err());
        assert!(Conv2d::from_weights(cfg.bias(false), w(), Some(zeros(&[6]))).is_err());
        assert!(Conv2d::from_weights(cfg.bias(false), w(), None).is_ok());
    }

    /// Every `tests/parity/conv2d_*.safetensors` case, reproduced to 1e-9 relative.
    #[test]
    fn matches_pytorch_parity_cases() {
        let files = parity_files("conv2d_");
        assert!(files.len() >= 10, "found {} conv2d cases", files.len());
        for case in files {
            let (c, t) = parity(&case);
            let pair = |k: &str| {
                [
                    c[k][0].as_u64().unwrap() as usize,
                    c[k][1].as_u64().unwrap() as usize,
                ]
            };
            let num = |k: &str| c[k].as_u64().unwrap() as usize;
            let cfg = Conv2dConfig::new(num("in_channels"), num("out_channels"), 1)
                .kernel_hw(pair("kernel_size"))
                .stride_hw(pair("stride"))
                .padding_hw(pair("padding"))
                .dilation_hw(pair("dilation"))
                .groups(num("groups"))
                .bias(c["bias"].as_bool().unwrap());
            let mut conv =
                Conv2d::from_weights(cfg, t["weight"].clone(), t.get("bias").cloned()).unwrap();
            let y = conv.forward(&t["input"]).unwrap();
            let dx = conv.backward(&t["grad_output"]).unwrap();
            let check = |got: &Tensor<f64>, name: &str| {
                assert_close(&format!("{case} {name}"), got, &t[name]);
            };
            check(&y, "output");
            check(&dx, "grad_input");
            check(&conv.weight().grad, "grad_weight");
            match conv.bias() {
                Some(b) => check(&b.grad, "grad_bias"),
                None => assert!(!t.contains_key("grad_bias"), "{case}"),
            }
        }
    }
}

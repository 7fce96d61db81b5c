use crate::error::{Error, Result};
use crate::geometry::Window2d;
use crate::kernels::pool::PoolPlan;

/// The pooling window shared by [`MaxPool2d`](super::MaxPool2d) and
/// [`AvgPool2d`](super::AvgPool2d), builder style, with each layer's own options on top
/// (`O`: `()` for max pooling, [`AvgPoolOptions`] for average pooling). All pairs are
/// `[height, width]`; the defaults are PyTorch's.
///
/// Use it through the layers' names, [`MaxPool2dConfig`] and [`AvgPool2dConfig`]:
///
/// ```
/// use convnet::layers::{AvgPool2dConfig, MaxPool2dConfig};
/// let max = MaxPool2dConfig::new(3).stride(2).padding(1).dilation(2);
/// assert_eq!((max.kernel, max.stride_or_kernel(), max.padding), ([3, 3], [2, 2], [1, 1]));
/// let avg = AvgPool2dConfig::new(3).stride(2).ceil_mode(true).count_include_pad(false);
/// assert_eq!((avg.stride_or_kernel(), avg.options.count_include_pad), ([2, 2], false));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dConfig<O> {
    /// Window size `k`.
    pub kernel: [usize; 2],
    /// Stride `S`; `None` means "equal to the kernel", PyTorch's default.
    pub stride: Option<[usize; 2]>,
    /// Padding `P` on each side (read as -inf by max pooling, as zero by average pooling), at
    /// most `k / 2`.
    pub padding: [usize; 2],
    /// Dilation `d`: spacing between window taps (default `[1, 1]`; only max pooling has a
    /// setter for it, as in PyTorch).
    pub dilation: [usize; 2],
    /// Round the output size up instead of down (the last window must still start inside the
    /// input or its left padding).
    pub ceil_mode: bool,
    /// The options of the particular pooling layer.
    pub options: O,
}

/// Settings of a [`MaxPool2d`](super::MaxPool2d): the window alone.
pub type MaxPool2dConfig = Pool2dConfig<()>;

/// Settings of an [`AvgPool2d`](super::AvgPool2d): the window and [`AvgPoolOptions`].
pub type AvgPool2dConfig = Pool2dConfig<AvgPoolOptions>;

/// What average pooling adds to the window: how each window sum is divided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AvgPoolOptions {
    /// Count padding cells in the divisor (default `true`, as PyTorch).
    pub count_include_pad: bool,
    /// Divide every window by this instead (at least 1).
    pub divisor_override: Option<usize>,
}

impl Default for AvgPoolOptions {
    fn default() -> Self {
        AvgPoolOptions {
            count_include_pad: true,
            divisor_override: None,
        }
    }
}

impl<O: Default> Pool2dConfig<O> {
    /// A `kernel x kernel` window at stride `kernel`, no padding, no dilation, floor mode, and
    /// the layer's default options.
    pub fn new(kernel: usize) -> Self {
        Pool2dConfig {
            kernel: [kernel, kernel],
            stride: None,
            padding: [0, 0],
            dilation: [1, 1],
            ceil_mode: false,
            options: O::default(),
        }
    }
}

impl<O> Pool2dConfig<O> {
    /// Sets a `[kh, kw]` window.
    pub fn kernel_hw(mut self, kernel: [usize; 2]) -> Self {
        self.kernel = kernel;
        self
    }

    /// Sets the stride on both axes.
    pub fn stride(self, stride: usize) -> Self {
        self.stride_hw([stride, stride])
    }

    /// Sets a `[sh, sw]` stride.
    pub fn stride_hw(mut self, stride: [usize; 2]) -> Self {
        self.stride = Some(stride);
        self
    }

    /// Sets the padding on both axes.
    pub fn padding(self, padding: usize) -> Self {
        self.padding_hw([padding, padding])
    }

    /// Sets a `[ph, pw]` padding.
    pub fn padding_hw(mut self, padding: [usize; 2]) -> Self {
        self.padding = padding;
        self
    }

    /// Rounds the output size up (`true`) or down (`false`, the default).
    pub fn ceil_mode(mut self, ceil_mode: bool) -> Self {
        self.ceil_mode = ceil_mode;
        self
    }

    /// The stride in effect: the one set, or the kernel.
    pub fn stride_or_kernel(&self) -> [usize; 2] {
        self.stride.unwrap_or(self.kernel)
    }

    /// The sliding window (kernel, stride in effect, padding, dilation per axis).
    pub fn window(&self) -> Window2d {
        Window2d::new(
            self.kernel,
            self.stride_or_kernel(),
            self.padding,
            self.dilation,
        )
    }

    /// PyTorch's pooling checks: kernel, stride and dilation at least 1, padding at most
    /// `k / 2`.
    pub(crate) fn check(&self, what: &str) -> Result<()> {
        let w = self.window();
        w.validate(what)?;
        for (axis, a) in [("height", &w.h), ("width", &w.w)] {
            if a.padding > a.kernel / 2 {
                return Err(Error::config(
                    what,
                    format!(
                        "padding {} on the {axis} axis exceeds half the kernel size {}",
                        a.padding, a.kernel
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `3x3 filters at stride 2, pad 1, dilation 2, ceil_mode`, leaving out the defaults.
    pub(crate) fn describe_window(&self) -> String {
        let mut s = format!(
            "{} filters at stride {}",
            hw_text(self.kernel, false),
            hw_text(self.stride_or_kernel(), true)
        );
        if self.padding != [0, 0] {
            s += &format!(", pad {}", hw_text(self.padding, true));
        }
        if self.dilation != [1, 1] {
            s += &format!(", dilation {}", hw_text(self.dilation, true));
        }
        if self.ceil_mode {
            s += ", ceil_mode";
        }
        s
    }

    /// The output `[oh, ow]` for an input plane `[h, w]`, or why no window fits.
    pub(crate) fn output_hw(&self, what: &str, in_hw: [usize; 2]) -> Result<[usize; 2]> {
        self.window().output_hw(what, in_hw, self.ceil_mode)
    }

    /// The kernels' window plan from input plane `in_hw` to output plane `out_hw`.
    pub(crate) fn plan(&self, in_hw: [usize; 2], out_hw: [usize; 2]) -> PoolPlan {
        PoolPlan::window(
            in_hw,
            out_hw,
            self.kernel,
            self.stride_or_kernel(),
            self.padding,
            self.dilation,
        )
    }
}

impl MaxPool2dConfig {
    /// Sets the dilation on both axes.
    pub fn dilation(self, dilation: usize) -> Self {
        self.dilation_hw([dilation, dilation])
    }

    /// Sets a `[dh, dw]` dilation.
    pub fn dilation_hw(mut self, dilation: [usize; 2]) -> Self {
        self.dilation = dilation;
        self
    }
}

impl AvgPool2dConfig {
    /// Whether padding cells count in the divisor (default `true`).
    pub fn count_include_pad(mut self, count_include_pad: bool) -> Self {
        self.options.count_include_pad = count_include_pad;
        self
    }

    /// Divides every window sum by a fixed number instead of its size.
    pub fn divisor_override(mut self, divisor: Option<usize>) -> Self {
        self.options.divisor_override = divisor;
        self
    }
}

/// `3x3` for a kernel; `2` or `2x1` for stride, padding and dilation.
fn hw_text(v: [usize; 2], square_as_one: bool) -> String {
    if square_as_one && v[0] == v[1] {
        v[0].to_string()
    } else {
        format!("{}x{}", v[0], v[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Layer;
    use crate::layers::{AvgPool2d, MaxPool2d};

    #[test]
    fn both_pools_share_the_window_checks_and_text() {
        // PyTorch's rules hold for both: padding at most half the kernel, stride at least 1.
        assert!(MaxPool2d::<f32>::new(MaxPool2dConfig::new(2).padding(2)).is_err());
        assert!(AvgPool2d::<f32>::new(AvgPool2dConfig::new(2).padding(2)).is_err());
        assert!(MaxPool2d::<f32>::new(MaxPool2dConfig::new(3).stride(0)).is_err());
        assert!(AvgPool2d::<f32>::new(AvgPool2dConfig::new(3).stride(0)).is_err());
        let window = |c: MaxPool2dConfig| c.stride(2).padding(1).ceil_mode(true);
        let max = MaxPool2d::<f32>::new(window(MaxPool2dConfig::new(3))).unwrap();
        let avg =
            AvgPool2d::<f32>::new(AvgPool2dConfig::new(3).stride(2).padding(1).ceil_mode(true))
                .unwrap();
        assert_eq!(max.describe(), "3x3 filters at stride 2, pad 1, ceil_mode");
        assert_eq!(avg.describe(), max.describe());
        // O = (7 - 3 + 2·1) / 2 + 1 = 4 for both.
        assert_eq!(max.output_shape(&[1, 1, 7, 7]).unwrap(), vec![1, 1, 4, 4]);
        assert_eq!(avg.output_shape(&[1, 1, 7, 7]).unwrap(), vec![1, 1, 4, 4]);
    }

    #[test]
    fn average_pooling_has_no_dilation() {
        let mut cfg = AvgPool2dConfig::new(2);
        cfg.dilation = [2, 2];
        let err = AvgPool2d::<f32>::new(cfg).unwrap_err();
        assert!(err.to_string().contains("no dilation"), "{err}");
    }
}

//! Sliding-window geometry shared by convolution and pooling.
//!
//! The output length of a window of size `F` sliding with stride `S` over an input of length
//! `N` padded by `P` on both sides is the course formula
//!
//! ```text
//! O = (N - F + 2P) / S + 1
//! ```
//!
//! with PyTorch's refinements: a dilated window covers `F = d(k - 1) + 1` cells, the division
//! floors (or ceils with `ceil_mode`), and with `ceil_mode` the last window must start inside
//! the input or its left padding.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::error::{Error, Result};
use crate::tensor::MAX_ELEMENTS;

/// One axis of a sliding window: kernel size, stride, padding and dilation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Kernel size `k` along this axis.
    pub kernel: usize,
    /// Stride `S`.
    pub stride: usize,
    /// Zero (or -inf) padding `P` on each side.
    pub padding: usize,
    /// Dilation `d`: the spacing between kernel taps.
    pub dilation: usize,
}

impl Window {
    /// The number of input cells one window spans, `d(k - 1) + 1` (saturating at
    /// `usize::MAX`; [`Window::validate`] keeps real windows far below that).
    pub fn span(&self) -> usize {
        self.dilation
            .saturating_mul(self.kernel.saturating_sub(1))
            .saturating_add(1)
    }

    /// Checks the window itself: kernel, stride and dilation at least 1, and every one of
    /// kernel, stride, padding and dilation at most [`MAX_ELEMENTS`] (2^28), the most cells
    /// a tensor may have, so that no size computed from them can overflow.
    pub fn validate(&self, layer: &str, axis: &str) -> Result<()> {
        if self.kernel == 0 || self.stride == 0 || self.dilation == 0 {
            return Err(Error::config(
                layer,
                format!(
                    "kernel ({}), stride ({}) and dilation ({}) must all be at least 1 on the {axis} axis",
                    self.kernel, self.stride, self.dilation
                ),
            ));
        }
        let values = [
            ("kernel", self.kernel),
            ("stride", self.stride),
            ("padding", self.padding),
            ("dilation", self.dilation),
        ];
        for (what, v) in values {
            if v > MAX_ELEMENTS {
                return Err(Error::config(
                    layer,
                    format!(
                        "{what} {v} on the {axis} axis is larger than {MAX_ELEMENTS} (2^28), \
                         the most cells a tensor may have"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Output length along this axis for an input of length `input`, or an
    /// [`Error::Geometry`] that explains with `O = (N - F + 2P) / S + 1` why no window fits.
    ///
    /// `layer` and `axis` ("height"/"width") only label the error message.
    pub fn output_len(
        &self,
        layer: &str,
        axis: &str,
        input: usize,
        ceil_mode: bool,
    ) -> Result<usize> {
        self.validate(layer, axis)?;
        let too_long = || Error::Geometry {
            layer: layer.to_string(),
            explanation: format!(
                "on the {axis} axis the padded input N + 2P = {input} + 2*{} does not fit in a \
                 machine word",
                self.padding
            ),
        };
        // validate() bounds kernel and dilation by 2^28, so the span fits in 57 bits.
        let span = self.span();
        let padded = self
            .padding
            .checked_mul(2)
            .and_then(|p| p.checked_add(input))
            .ok_or_else(too_long)?;
        if padded < span {
            // Every term is below 2^63 here (padded < span <= 2^62 + 1), so i128 is exact.
            let numer = input as i128 - span as i128 + 2 * self.padding as i128;
            let o = numer.div_euclid(self.stride as i128) + 1;
            let filter = if self.dilation > 1 {
                format!(
                    "F = d(k - 1) + 1 = {}({} - 1) + 1 = {}",
                    self.dilation, self.kernel, span
                )
            } else {
                format!("F = {span}")
            };
            return Err(Error::Geometry {
                layer: layer.to_string(),
                explanation: format!(
                    "on the {axis} axis O = (N - F + 2P) / S + 1 = ({input} - {span} + 2*{p}) / {s} + 1 = {o} \
                     with N = {input}, {filter}, P = {p}, S = {s}: the window is larger than the padded \
                     input ({padded} cells); use more padding, a smaller or less dilated kernel, or a larger input",
                    p = self.padding,
                    s = self.stride,
                ),
            });
        }
        let room = padded - span;
        let mut out = if ceil_mode {
            room.div_ceil(self.stride) + 1
        } else {
            room / self.stride + 1
        };
        // With ceil_mode the last window must start inside the input or the left padding.
        // (out - 1)·S <= room + S - 1 <= padded + S, which fits: padded fits and S <= 2^28,
        // but compute it in u128 so no input can make it wrap.
        if ceil_mode
            && (out as u128 - 1) * self.stride as u128 >= input as u128 + self.padding as u128
        {
            out -= 1;
        }
        Ok(out)
    }
}

impl Window {
    /// The course's strict output length: like [`Window::output_len`], but a stride that does
    /// not divide `N - F + 2P` is an [`Error::Geometry`] instead of being rounded down.
    ///
    /// The course draws a 3x3 filter on a 7x7 input at stride 3 and says it "does not fit":
    /// `(7 - 3) / 3 + 1 = 2.33`. PyTorch (and every convnet layer) rounds that down to 2 and
    /// leaves the last cells unread; this check refuses instead, and says how many cells.
    pub fn output_len_exact(&self, layer: &str, axis: &str, input: usize) -> Result<usize> {
        let out = self.output_len(layer, axis, input, false)?;
        // output_len succeeded, so padded >= span and padded fits in a usize.
        let padded = input + 2 * self.padding;
        let room = padded - self.span();
        let unread = room % self.stride;
        if unread == 0 {
            return Ok(out);
        }
        let exact = room as f64 / self.stride as f64 + 1.0;
        Err(Error::Geometry {
            layer: layer.to_string(),
            explanation: format!(
                "on the {axis} axis O = (N - F + 2P) / S + 1 = ({input} - {span} + 2*{p}) / {s} + 1 \
                 = {exact:.2} with N = {input}, F = {span}, P = {p}, S = {s}: the stride {s} does \
                 not divide N - F + 2P = {room}, so the filter does not fit; rounding down to \
                 {out} (as PyTorch does) would leave the last {unread} cell{plural} unread. \
                 Use a stride that divides {room}, or padding that makes N - F + 2P a multiple of {s}",
                span = self.span(),
                p = self.padding,
                s = self.stride,
                plural = if unread == 1 { "" } else { "s" },
            ),
        })
    }
}

/// The course's output size `O = (N - F + 2P) / S + 1` for an input of `n` cells, a filter of
/// `f`, stride `s` and zero padding `p`, or an [`Error::Geometry`] explaining with the formula
/// why the filter does not fit (too large, or a stride that does not divide `N - F + 2P`).
///
/// ```
/// use convnet::geometry::output_size;
/// assert_eq!(output_size(7, 3, 1, 0).unwrap(), 5); // 7x7 input, 3x3 filter, stride 1
/// assert_eq!(output_size(7, 3, 2, 0).unwrap(), 3); // stride 2
/// assert_eq!(output_size(7, 3, 1, 1).unwrap(), 7); // padding 1 keeps the size
/// let err = output_size(7, 3, 3, 0).unwrap_err(); // stride 3 does not fit
/// assert!(err.to_string().contains("(7 - 3 + 2*0) / 3 + 1 = 2.33"));
/// ```
pub fn output_size(n: usize, f: usize, s: usize, p: usize) -> Result<usize> {
    let window = Window {
        kernel: f,
        stride: s,
        padding: p,
        dilation: 1,
    };
    // Square filters on square inputs: the width axis speaks for both.
    window.output_len_exact(
        &format!("a {f}x{f} filter at stride {s}, pad {p}"),
        "width",
        n,
    )
}

/// A 2-D window: one [`Window`] per axis, `[height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window2d {
    /// The height axis.
    pub h: Window,
    /// The width axis.
    pub w: Window,
}

impl Window2d {
    /// Builds a 2-D window from per-axis `[h, w]` pairs.
    pub fn new(
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
    ) -> Self {
        let ([kh, kw], [sh, sw], [ph, pw], [dh, dw]) = (kernel, stride, padding, dilation);
        Window2d {
            h: Window {
                kernel: kh,
                stride: sh,
                padding: ph,
                dilation: dh,
            },
            w: Window {
                kernel: kw,
                stride: sw,
                padding: pw,
                dilation: dw,
            },
        }
    }

    /// [`Window::validate`] on both axes.
    pub fn validate(&self, layer: &str) -> Result<()> {
        self.h.validate(layer, "height")?;
        self.w.validate(layer, "width")
    }

    /// [`Window::output_len_exact`] on both axes: the course's rule that the filter must fit
    /// exactly, with no cell left unread.
    pub fn output_hw_exact(&self, layer: &str, input: [usize; 2]) -> Result<[usize; 2]> {
        Ok([
            self.h.output_len_exact(layer, "height", input[0])?,
            self.w.output_len_exact(layer, "width", input[1])?,
        ])
    }

    /// Output `[height, width]` for an input of `[height, width]`.
    pub fn output_hw(&self, layer: &str, input: [usize; 2], ceil_mode: bool) -> Result<[usize; 2]> {
        Ok([
            self.h.output_len(layer, "height", input[0], ceil_mode)?,
            self.w.output_len(layer, "width", input[1], ceil_mode)?,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(k: usize, s: usize, p: usize, d: usize) -> Window {
        Window {
            kernel: k,
            stride: s,
            padding: p,
            dilation: d,
        }
    }

    #[test]
    fn course_examples() {
        // AlexNet CONV1: (227 - 11) / 4 + 1 = 55.
        assert_eq!(
            win(11, 4, 0, 1)
                .output_len("c", "height", 227, false)
                .unwrap(),
            55
        );
        // 7x7 input, 3x3 filter, stride 2: 3x3 output.
        assert_eq!(
            win(3, 2, 0, 1).output_len("c", "height", 7, false).unwrap(),
            3
        );
        // Padding 1 keeps a 3x3 conv size-preserving.
        assert_eq!(
            win(3, 1, 1, 1)
                .output_len("c", "height", 32, false)
                .unwrap(),
            32
        );
        // Dilation 2 turns a 3-tap kernel into a 5-cell window.
        assert_eq!(
            win(3, 1, 0, 2).output_len("c", "height", 9, false).unwrap(),
            5
        );
    }

    #[test]
    fn ceil_mode_drops_window_starting_in_right_padding() {
        // L=5, k=2, s=2, p=1: floor gives 3, ceil gives 4 but the 4th window starts at 6-1=5 >= L+p=6? no:
        // (4-1)*2 = 6 >= 5 + 1 = 6, so it is dropped.
        assert_eq!(
            win(2, 2, 1, 1).output_len("p", "width", 5, true).unwrap(),
            3
        );
        // L=6, k=3, s=2, p=0: floor 2, ceil 3 (the last window starts at 4 < 6).
        assert_eq!(
            win(3, 2, 0, 1).output_len("p", "width", 6, false).unwrap(),
            2
        );
        assert_eq!(
            win(3, 2, 0, 1).output_len("p", "width", 6, true).unwrap(),
            3
        );
    }

    #[test]
    fn impossible_geometry_explains_itself() {
        let err = win(5, 1, 0, 1)
            .output_len("Conv2d(1 -> 1)", "height", 3, false)
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("O = (N - F + 2P) / S + 1 = (3 - 5 + 2*0) / 1 + 1 = -1"),
            "{msg}"
        );
        assert!(msg.contains("Conv2d(1 -> 1)"), "{msg}");
        assert!(matches!(err, Error::Geometry { .. }));
    }

    #[test]
    fn huge_windows_and_paddings_are_errors_not_wrapped_sizes() {
        // A padding of usize::MAX / 2 used to wrap in N + 2P and give a wrong, tiny output.
        let err = win(3, 1, usize::MAX / 2, 1)
            .output_len("Conv2d(1 -> 1)", "height", 4, false)
            .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
        // A max-pool window of 2^63 + 1 with dilation 2 used to wrap to a window of 1.
        let err = win((1 << 63) + 1, 1, 0, 2)
            .output_len("MaxPool2d", "width", 4, false)
            .unwrap_err();
        assert!(err.to_string().contains("kernel"), "{err}");
        // The largest allowed window parameters on the largest input do not overflow.
        let big = MAX_ELEMENTS;
        for ceil in [false, true] {
            assert!(win(big, big, big, big)
                .output_len("x", "height", usize::MAX, ceil)
                .is_err());
            let o = win(big, big, big, 1)
                .output_len("x", "height", usize::MAX - 2 * big, ceil)
                .unwrap();
            assert!(o >= 1);
            let o = win(2, big, big, big)
                .output_len("x", "height", 1, ceil)
                .unwrap();
            assert!(o >= 1);
        }
    }

    #[test]
    fn exact_output_refuses_a_stride_that_leaves_cells_unread() {
        // The course: 7x7 input, 3x3 filter: stride 1 gives 5, stride 2 gives 3, stride 3 does
        // not fit ((7 - 3) / 3 + 1 = 2.33).
        assert_eq!(output_size(7, 3, 1, 0).unwrap(), 5);
        assert_eq!(output_size(7, 3, 2, 0).unwrap(), 3);
        assert_eq!(output_size(7, 3, 1, 1).unwrap(), 7);
        assert_eq!(output_size(32, 5, 1, 0).unwrap(), 28);
        assert_eq!(output_size(227, 11, 4, 0).unwrap(), 55);
        let err = output_size(7, 3, 3, 0).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Geometry { .. }), "{msg}");
        assert!(msg.contains("(7 - 3 + 2*0) / 3 + 1 = 2.33"), "{msg}");
        assert!(msg.contains("last 1 cell unread"), "{msg}");
        // Padding 1 makes it fit: (7 - 3 + 2) / 3 + 1 = 3.
        assert_eq!(output_size(7, 3, 3, 1).unwrap(), 3);
        // 8 cells, filter 3, stride 3: 5 % 3 = 2 cells unread.
        assert!(output_size(8, 3, 3, 0)
            .unwrap_err()
            .to_string()
            .contains("last 2 cells unread"));
        // A filter larger than the input keeps the general explanation.
        assert!(output_size(3, 5, 1, 0)
            .unwrap_err()
            .to_string()
            .contains("larger than the padded input"));
        // The floor rule and the exact rule agree whenever the exact one accepts.
        for n in 1..20 {
            for f in 1..6 {
                for s in 1..4 {
                    for p in 0..3 {
                        let w = win(f, s, p, 1);
                        if let Ok(o) = w.output_len_exact("x", "h", n) {
                            assert_eq!(o, w.output_len("x", "h", n, false).unwrap());
                            assert_eq!((o - 1) * s + f, n + 2 * p);
                        }
                    }
                }
            }
        }
        let hw = Window2d::new([3, 3], [2, 3], [0, 0], [1, 1]);
        assert!(hw
            .output_hw_exact("c", [7, 7])
            .unwrap_err()
            .to_string()
            .contains("width"));
    }

    #[test]
    fn zero_stride_is_a_config_error() {
        assert!(matches!(
            win(3, 0, 0, 1).output_len("x", "height", 8, false),
            Err(Error::InvalidConfig { .. })
        ));
    }
}

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

use crate::error::{Error, Result};

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
    /// The number of input cells one window spans, `d(k - 1) + 1`.
    pub fn span(&self) -> usize {
        self.dilation * (self.kernel - 1) + 1
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
        if self.kernel == 0 || self.stride == 0 || self.dilation == 0 {
            return Err(Error::config(
                layer,
                format!(
                    "kernel ({}), stride ({}) and dilation ({}) must all be at least 1",
                    self.kernel, self.stride, self.dilation
                ),
            ));
        }
        let span = self.span();
        let padded = input + 2 * self.padding;
        if padded < span {
            let numer = input as i64 - span as i64 + 2 * self.padding as i64;
            let o = numer.div_euclid(self.stride as i64) + 1;
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
        if ceil_mode && (out - 1) * self.stride >= input + self.padding {
            out -= 1;
        }
        Ok(out)
    }
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
        let axis = |i: usize| Window {
            kernel: kernel[i],
            stride: stride[i],
            padding: padding[i],
            dilation: dilation[i],
        };
        Window2d {
            h: axis(0),
            w: axis(1),
        }
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
    fn zero_stride_is_a_config_error() {
        assert!(matches!(
            win(3, 0, 0, 1).output_len("x", "height", 8, false),
            Err(Error::InvalidConfig { .. })
        ));
    }
}

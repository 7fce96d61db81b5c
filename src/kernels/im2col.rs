//! im2col and col2im for one image: turning a convolution into a matrix multiply.
//!
//! For an image `x[C, H, W]` and a window with kernel `kh x kw`, stride `(sh, sw)`, padding
//! `(ph, pw)` and dilation `(dh, dw)`, the column matrix has one row per kernel tap and one
//! column per output pixel:
//!
//! ```text
//! col[(c·kh + i)·kw + j, oy·OW + ox] = x[c, oy·sh - ph + i·dh, ox·sw - pw + j·dw]   (0 outside x)
//! shape: [C·kh·kw, OH·OW], row-major
//! ```
//!
//! `col2im` is the adjoint: it scatter-adds every column entry back onto the pixel it was read
//! from (pixels read by several windows receive the sum). For each tap the output positions
//! whose input coordinate lies inside the image form one contiguous range per axis, computed
//! once ([`valid_range`]), so the inner loops copy or add without bounds tests.

use crate::geometry::Window2d;
use crate::tensor::Float;

/// Output positions `o` in `[lo, hi)` for which `o·stride + offset - pad` lies in
/// `[0, len)`, clamped to `[0, out_len)`. `offset` is the tap's offset `i·dilation`.
#[inline]
fn valid_range(
    offset: usize,
    pad: usize,
    stride: usize,
    len: usize,
    out_len: usize,
) -> (usize, usize) {
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    let hi = if len + pad <= offset {
        0
    } else {
        (len + pad - offset).div_ceil(stride)
    };
    let hi = hi.min(out_len);
    (lo.min(hi), hi)
}

/// Checks the slice lengths shared by both directions and returns `(C·H·W, rows·OH·OW)`.
fn lengths(
    channels: usize,
    in_hw: [usize; 2],
    win: &Window2d,
    out_hw: [usize; 2],
) -> (usize, usize) {
    let image = channels * in_hw[0] * in_hw[1];
    let col = channels * win.h.kernel * win.w.kernel * out_hw[0] * out_hw[1];
    assert!(
        win.h.stride > 0 && win.w.stride > 0,
        "im2col: stride must be at least 1"
    );
    assert!(
        in_hw[0] * in_hw[1] > 0 && out_hw[0] * out_hw[1] > 0,
        "im2col: empty image or output"
    );
    (image, col)
}

/// Fills `col[C·kh·kw, OH·OW]` from the image `x[C, H, W]` (every entry is written).
///
/// `in_hw = [H, W]`, `out_hw = [OH, OW]` as computed by [`Window2d::output_hw`].
///
/// # Panics
/// If `x` or `col` is shorter than its shape (a bug in the caller).
pub fn im2col<T: Float>(
    x: &[T],
    channels: usize,
    in_hw: [usize; 2],
    win: &Window2d,
    out_hw: [usize; 2],
    col: &mut [T],
) {
    let (image_len, col_len) = lengths(channels, in_hw, win, out_hw);
    assert!(
        x.len() >= image_len,
        "im2col: image has {} elements, needs {image_len}",
        x.len()
    );
    assert!(
        col.len() >= col_len,
        "im2col: col has {} elements, needs {col_len}",
        col.len()
    );
    let [h, w] = in_hw;
    let [oh, ow] = out_hw;
    let (wh, ww) = (win.h, win.w);
    let plane = oh * ow;
    let mut rows = col[..col_len].chunks_exact_mut(plane);
    for xc in x[..image_len].chunks_exact(h * w).take(channels) {
        for i in 0..wh.kernel {
            let (ylo, yhi) = valid_range(i * wh.dilation, wh.padding, wh.stride, h, oh);
            for j in 0..ww.kernel {
                let (xlo, xhi) = valid_range(j * ww.dilation, ww.padding, ww.stride, w, ow);
                let row = rows.next().expect("one row per tap");
                row[..ylo * ow].fill(T::zero());
                row[yhi * ow..].fill(T::zero());
                for oy in ylo..yhi {
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    dst[..xlo].fill(T::zero());
                    dst[xhi..].fill(T::zero());
                    if xlo == xhi {
                        continue;
                    }
                    let iy = oy * wh.stride + i * wh.dilation - wh.padding;
                    let ix = xlo * ww.stride + j * ww.dilation - ww.padding;
                    let src = &xc[iy * w + ix..(iy + 1) * w];
                    let dst = &mut dst[xlo..xhi];
                    if ww.stride == 1 {
                        dst.copy_from_slice(&src[..dst.len()]);
                    } else {
                        for (d, s) in dst.iter_mut().zip(src.iter().step_by(ww.stride)) {
                            *d = *s;
                        }
                    }
                }
            }
        }
    }
}

/// Adds every entry of `col[C·kh·kw, OH·OW]` onto the pixel of `dx[C, H, W]` it was read from
/// by [`im2col`] (entries that came from padding are dropped). `dx` is accumulated into, not
/// overwritten.
///
/// # Panics
/// If `col` or `dx` is shorter than its shape (a bug in the caller).
pub fn col2im<T: Float>(
    col: &[T],
    channels: usize,
    in_hw: [usize; 2],
    win: &Window2d,
    out_hw: [usize; 2],
    dx: &mut [T],
) {
    let (image_len, col_len) = lengths(channels, in_hw, win, out_hw);
    assert!(
        dx.len() >= image_len,
        "col2im: image has {} elements, needs {image_len}",
        dx.len()
    );
    assert!(
        col.len() >= col_len,
        "col2im: col has {} elements, needs {col_len}",
        col.len()
    );
    let [h, w] = in_hw;
    let [oh, ow] = out_hw;
    let (wh, ww) = (win.h, win.w);
    let plane = oh * ow;
    let mut rows = col[..col_len].chunks_exact(plane);
    for dxc in dx[..image_len].chunks_exact_mut(h * w).take(channels) {
        for i in 0..wh.kernel {
            let (ylo, yhi) = valid_range(i * wh.dilation, wh.padding, wh.stride, h, oh);
            for j in 0..ww.kernel {
                let (xlo, xhi) = valid_range(j * ww.dilation, ww.padding, ww.stride, w, ow);
                let row = rows.next().expect("one row per tap");
                if xlo == xhi {
                    continue;
                }
                for oy in ylo..yhi {
                    let src = &row[oy * ow + xlo..oy * ow + xhi];
                    let iy = oy * wh.stride + i * wh.dilation - wh.padding;
                    let ix = xlo * ww.stride + j * ww.dilation - ww.padding;
                    let dst = &mut dxc[iy * w + ix..(iy + 1) * w];
                    if ww.stride == 1 {
                        for (d, s) in dst.iter_mut().zip(src) {
                            *d += *s;
                        }
                    } else {
                        for (d, s) in dst.iter_mut().step_by(ww.stride).zip(src) {
                            *d += *s;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng64;

    /// The tap-by-tap definition, with explicit bounds tests: `Some(index into x)` or `None`
    /// for padding.
    fn source(
        c: usize,
        i: usize,
        j: usize,
        oy: usize,
        ox: usize,
        in_hw: [usize; 2],
        win: &Window2d,
    ) -> Option<usize> {
        let iy = (oy * win.h.stride + i * win.h.dilation) as i64 - win.h.padding as i64;
        let ix = (ox * win.w.stride + j * win.w.dilation) as i64 - win.w.padding as i64;
        if iy < 0 || ix < 0 || iy >= in_hw[0] as i64 || ix >= in_hw[1] as i64 {
            None
        } else {
            Some((c * in_hw[0] + iy as usize) * in_hw[1] + ix as usize)
        }
    }

    fn naive_im2col(
        x: &[f64],
        c: usize,
        in_hw: [usize; 2],
        win: &Window2d,
        out_hw: [usize; 2],
    ) -> Vec<f64> {
        let (kh, kw) = (win.h.kernel, win.w.kernel);
        let plane = out_hw[0] * out_hw[1];
        let mut col = vec![0.0; c * kh * kw * plane];
        for ch in 0..c {
            for i in 0..kh {
                for j in 0..kw {
                    for oy in 0..out_hw[0] {
                        for ox in 0..out_hw[1] {
                            let r = (ch * kh + i) * kw + j;
                            if let Some(s) = source(ch, i, j, oy, ox, in_hw, win) {
                                col[r * plane + oy * out_hw[1] + ox] = x[s];
                            }
                        }
                    }
                }
            }
        }
        col
    }

    fn naive_col2im(
        col: &[f64],
        c: usize,
        in_hw: [usize; 2],
        win: &Window2d,
        out_hw: [usize; 2],
    ) -> Vec<f64> {
        let (kh, kw) = (win.h.kernel, win.w.kernel);
        let plane = out_hw[0] * out_hw[1];
        let mut dx = vec![0.0; c * in_hw[0] * in_hw[1]];
        for ch in 0..c {
            for i in 0..kh {
                for j in 0..kw {
                    for oy in 0..out_hw[0] {
                        for ox in 0..out_hw[1] {
                            let r = (ch * kh + i) * kw + j;
                            if let Some(s) = source(ch, i, j, oy, ox, in_hw, win) {
                                dx[s] += col[r * plane + oy * out_hw[1] + ox];
                            }
                        }
                    }
                }
            }
        }
        dx
    }

    fn random(n: usize, rng: &mut Rng64) -> Vec<f64> {
        (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect()
    }

    /// (channels, in_hw, kernel, stride, padding, dilation)
    type Case = (
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 2],
        [usize; 2],
        [usize; 2],
    );

    const CASES: &[Case] = &[
        (1, [5, 5], [3, 3], [1, 1], [0, 0], [1, 1]),
        (3, [8, 8], [3, 3], [1, 1], [1, 1], [1, 1]),
        (2, [7, 9], [3, 2], [2, 1], [1, 0], [1, 2]),
        (2, [9, 9], [3, 3], [2, 2], [0, 0], [1, 1]),
        (3, [27, 27], [11, 11], [4, 4], [2, 2], [1, 1]),
        (1, [6, 7], [2, 2], [5, 4], [0, 1], [1, 1]),
        (2, [5, 6], [3, 3], [1, 3], [3, 2], [2, 1]),
        (1, [1, 1], [3, 3], [1, 1], [1, 1], [1, 1]),
        (4, [4, 4], [1, 1], [1, 1], [0, 0], [1, 1]),
        (2, [3, 8], [1, 5], [1, 2], [0, 4], [1, 3]),
    ];

    #[test]
    fn im2col_and_col2im_match_the_definition() {
        let mut rng = Rng64::seed(3);
        for &(c, in_hw, k, s, p, d) in CASES {
            let win = Window2d::new(k, s, p, d);
            let out_hw = win.output_hw("test", in_hw, false).unwrap();
            let x = random(c * in_hw[0] * in_hw[1], &mut rng);
            // Garbage in `col` must be overwritten, padding entries included.
            let mut col = vec![f64::NAN; c * k[0] * k[1] * out_hw[0] * out_hw[1]];
            im2col(&x, c, in_hw, &win, out_hw, &mut col);
            assert_eq!(
                col,
                naive_im2col(&x, c, in_hw, &win, out_hw),
                "im2col {k:?} {s:?} {p:?} {d:?}"
            );

            let g = random(col.len(), &mut rng);
            let base = random(x.len(), &mut rng);
            let mut dx = base.clone();
            col2im(&g, c, in_hw, &win, out_hw, &mut dx);
            let want = naive_col2im(&g, c, in_hw, &win, out_hw);
            for ((got, b), w) in dx.iter().zip(&base).zip(&want) {
                assert!(
                    (got - b - w).abs() < 1e-12,
                    "col2im {k:?} {s:?} {p:?} {d:?}"
                );
            }
        }
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), g> = <x, col2im(g)> for any x, g.
        let mut rng = Rng64::seed(11);
        for &(c, in_hw, k, s, p, d) in CASES {
            let win = Window2d::new(k, s, p, d);
            let out_hw = win.output_hw("test", in_hw, false).unwrap();
            let x = random(c * in_hw[0] * in_hw[1], &mut rng);
            let g = random(c * k[0] * k[1] * out_hw[0] * out_hw[1], &mut rng);
            let mut col = vec![0.0; g.len()];
            im2col(&x, c, in_hw, &win, out_hw, &mut col);
            let mut dx = vec![0.0; x.len()];
            col2im(&g, c, in_hw, &win, out_hw, &mut dx);
            let lhs: f64 = col.iter().zip(&g).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-10 * (1.0 + lhs.abs()));
        }
    }

    #[test]
    fn small_case_by_hand() {
        // x = [[1,2,3],[4,5,6],[7,8,9]], 2x2 kernel, stride 1, no padding: 4 taps x 4 outputs.
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let win = Window2d::new([2, 2], [1, 1], [0, 0], [1, 1]);
        let mut col = vec![0f32; 16];
        im2col(&x, 1, [3, 3], &win, [2, 2], &mut col);
        #[rustfmt::skip]
        let want = [
            1., 2., 4., 5.,
            2., 3., 5., 6.,
            4., 5., 7., 8.,
            5., 6., 8., 9.,
        ];
        assert_eq!(col, want);
        // Every interior pixel is read by 4 windows, edges by 2, corners by 1.
        let mut counts = vec![0f32; 9];
        col2im(&[1f32; 16], 1, [3, 3], &win, [2, 2], &mut counts);
        assert_eq!(counts, [1., 2., 1., 2., 4., 2., 1., 2., 1.]);
    }

    #[test]
    fn valid_range_edges() {
        // offset 0, pad 2, stride 1, len 3, out 7: o - 2 in [0, 3) -> o in [2, 5).
        assert_eq!(valid_range(0, 2, 1, 3, 7), (2, 5));
        // stride 3, pad 1, offset 0, len 5, out 2: 3o - 1 in [0,5) -> o in [1, 2).
        assert_eq!(valid_range(0, 1, 3, 5, 2), (1, 2));
        // A tap entirely in the right padding reads nothing.
        assert_eq!(valid_range(6, 1, 1, 3, 2), (0, 0));
    }
}

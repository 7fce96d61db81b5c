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
//! once (`valid_range`), so the inner loops copy or add without bounds tests.

use super::simd::vectorized;
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

/// Which output rows of one image a column block covers, and where they sit in the block's
/// matrix: output pixel `(oy, ox)` with `oy` in `rows` is column
/// `offset + (oy - rows.start)·OW + ox` of a matrix whose rows are `ld` elements apart.
///
/// The whole image in a matrix of its own is `Block::whole(out_hw)`; several images side by
/// side (small feature maps batched into one product) use `offset = i·OH·OW`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Output rows `[start, end)` of the image.
    pub rows: std::ops::Range<usize>,
    /// Column of the matrix where output row `rows.start` begins.
    pub offset: usize,
    /// Distance between the starts of consecutive matrix rows (taps).
    pub ld: usize,
}

impl Block {
    /// Every output pixel of an image, in a matrix of its own.
    pub fn whole(out_hw: [usize; 2]) -> Self {
        Block {
            rows: 0..out_hw[0],
            offset: 0,
            ld: out_hw[0] * out_hw[1],
        }
    }

    /// The number of matrix columns this image's part covers.
    pub fn width(&self, out_w: usize) -> usize {
        self.rows.len() * out_w
    }
}

/// Checks the slice lengths shared by both directions and returns the image length.
fn check_lengths<T>(
    image: &[T],
    col: &[T],
    channels: usize,
    in_hw: [usize; 2],
    win: &Window2d,
    out_hw: [usize; 2],
    block: &Block,
) -> usize {
    let image_len = channels * in_hw[0] * in_hw[1];
    let taps = channels * win.h.kernel * win.w.kernel;
    assert!(
        win.h.stride > 0 && win.w.stride > 0,
        "im2col: stride must be at least 1"
    );
    assert!(
        image_len > 0 && out_hw[0] * out_hw[1] > 0,
        "im2col: empty image or output"
    );
    assert!(
        block.rows.end <= out_hw[0] && block.offset + block.width(out_hw[1]) <= block.ld,
        "im2col: block {block:?} does not fit an output of {out_hw:?}"
    );
    assert!(
        image.len() >= image_len,
        "im2col: image has {} elements, needs {image_len}",
        image.len()
    );
    let col_len = (taps - 1) * block.ld + block.offset + block.width(out_hw[1]);
    assert!(
        col.len() >= col_len,
        "im2col: col has {} elements, needs {col_len}",
        col.len()
    );
    image_len
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
    im2col_block(x, channels, in_hw, win, out_hw, &Block::whole(out_hw), col);
}

/// Writes the columns of output rows `block.rows` of image `x[C, H, W]` into `col` at the
/// place `block` says (every entry of those columns is written, padding as zero).
///
/// # Panics
/// If a slice is shorter than its shape or the block does not fit (a bug in the caller).
pub fn im2col_block<T: Float>(
    x: &[T],
    channels: usize,
    in_hw: [usize; 2],
    win: &Window2d,
    out_hw: [usize; 2],
    block: &Block,
    col: &mut [T],
) {
    let image_len = check_lengths(x, col, channels, in_hw, win, out_hw, block);
    let [h, w] = in_hw;
    let [oh, ow] = out_hw;
    let (wh, ww) = (win.h, win.w);
    let (r0, r1) = (block.rows.start, block.rows.end);
    // Compiled for AVX2 where the CPU has it: the stride-2 copies become vector shuffles.
    vectorized(
        #[inline(always)]
        || {
            let mut tap = 0;
            for xc in x[..image_len].chunks_exact(h * w).take(channels) {
                for i in 0..wh.kernel {
                    let (ylo, yhi) = valid_range(i * wh.dilation, wh.padding, wh.stride, h, oh);
                    let (ylo, yhi) = (ylo.clamp(r0, r1), yhi.clamp(r0, r1));
                    for j in 0..ww.kernel {
                        let (xlo, xhi) = valid_range(j * ww.dilation, ww.padding, ww.stride, w, ow);
                        let start = tap * block.ld + block.offset;
                        tap += 1;
                        let row = &mut col[start..start + block.width(ow)];
                        zero_run(&mut row[..(ylo - r0) * ow]);
                        zero_run(&mut row[(yhi - r0) * ow..]);
                        for oy in ylo..yhi {
                            let dst = &mut row[(oy - r0) * ow..(oy - r0 + 1) * ow];
                            zero_run(&mut dst[..xlo]);
                            zero_run(&mut dst[xhi..]);
                            if xlo == xhi {
                                continue;
                            }
                            let iy = oy * wh.stride + i * wh.dilation - wh.padding;
                            let ix = xlo * ww.stride + j * ww.dilation - ww.padding;
                            let src = &xc[iy * w + ix..(iy + 1) * w];
                            let dst = &mut dst[xlo..xhi];
                            match ww.stride {
                                1 => copy_run(dst, &src[..dst.len()]),
                                2 => copy_every_second(dst, src),
                                stride => {
                                    for (d, s) in dst.iter_mut().zip(src.iter().step_by(stride)) {
                                        *d = *s;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    );
}

/// Runs shorter than this are copied or zeroed inline; longer ones through `memcpy`/`memset`.
const SHORT_RUN: usize = 64;

/// `dst = src` (same length). Small feature maps (LeNet's 28, 14 and 10 columns) make
/// im2col a stream of short row copies, where the call into `memcpy` costs more than the
/// copy: those go through fixed 8-element moves, the last one overlapping the one before.
#[inline(always)]
fn copy_run<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len();
    if !(8..SHORT_RUN).contains(&n) {
        dst.copy_from_slice(src);
        return;
    }
    for (d, s) in dst.chunks_exact_mut(8).zip(src.chunks_exact(8)) {
        d.copy_from_slice(s);
    }
    dst[n - 8..].copy_from_slice(&src[n - 8..]);
}

/// `dst[k] = src[2k]`: the stride-2 windows of ResNet's and GoogLeNet's 7x7 stems and of
/// their stride-2 3x3 convolutions. Pairs of `src`, so the compiler loads whole vectors and
/// keeps the even lanes (a `step_by(2)` iterator stays one element at a time).
#[inline(always)]
fn copy_every_second<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len();
    let pairs = src.len().min(2 * n) / 2;
    for (d, pair) in dst[..pairs].iter_mut().zip(src.chunks_exact(2)) {
        *d = pair[0];
    }
    if pairs < n {
        dst[pairs] = src[2 * pairs];
    }
}

/// `dst = 0`, inline for short runs like [`copy_run`].
#[inline(always)]
fn zero_run<T: Float>(dst: &mut [T]) {
    let n = dst.len();
    if !(8..SHORT_RUN).contains(&n) {
        dst.fill(T::zero());
        return;
    }
    for d in dst.chunks_exact_mut(8) {
        d.copy_from_slice(&[T::zero(); 8]);
    }
    dst[n - 8..].copy_from_slice(&[T::zero(); 8]);
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
    col2im_block(col, channels, in_hw, win, out_hw, &Block::whole(out_hw), dx);
}

/// The adjoint of [`im2col_block`]: adds the columns of output rows `block.rows`, read from
/// `col` where `block` says, onto the pixels of `dx[C, H, W]` they came from.
///
/// # Panics
/// If a slice is shorter than its shape or the block does not fit (a bug in the caller).
pub fn col2im_block<T: Float>(
    col: &[T],
    channels: usize,
    in_hw: [usize; 2],
    win: &Window2d,
    out_hw: [usize; 2],
    block: &Block,
    dx: &mut [T],
) {
    let image_len = check_lengths(dx, col, channels, in_hw, win, out_hw, block);
    let [h, w] = in_hw;
    let [oh, ow] = out_hw;
    let (wh, ww) = (win.h, win.w);
    let (r0, r1) = (block.rows.start, block.rows.end);
    vectorized(
        #[inline(always)]
        || {
            let mut tap = 0;
            for dxc in dx[..image_len].chunks_exact_mut(h * w).take(channels) {
                for i in 0..wh.kernel {
                    let (ylo, yhi) = valid_range(i * wh.dilation, wh.padding, wh.stride, h, oh);
                    let (ylo, yhi) = (ylo.clamp(r0, r1), yhi.clamp(r0, r1));
                    for j in 0..ww.kernel {
                        let (xlo, xhi) = valid_range(j * ww.dilation, ww.padding, ww.stride, w, ow);
                        let start = tap * block.ld + block.offset;
                        tap += 1;
                        if xlo == xhi {
                            continue;
                        }
                        let row = &col[start..start + block.width(ow)];
                        for oy in ylo..yhi {
                            let src = &row[(oy - r0) * ow + xlo..(oy - r0) * ow + xhi];
                            let iy = oy * wh.stride + i * wh.dilation - wh.padding;
                            let ix = xlo * ww.stride + j * ww.dilation - ww.padding;
                            let dst = &mut dxc[iy * w + ix..(iy + 1) * w];
                            match ww.stride {
                                1 => dst.iter_mut().zip(src).for_each(|(d, s)| *d += *s),
                                2 => add_every_second(dst, src),
                                stride => {
                                    for (d, s) in dst.iter_mut().step_by(stride).zip(src) {
                                        *d += *s;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    );
}

/// `dst[2k] += src[k]`, the adjoint of [`copy_every_second`], on pairs of `dst` likewise.
#[inline(always)]
fn add_every_second<T: Float>(dst: &mut [T], src: &[T]) {
    let n = src.len();
    let pairs = dst.len().min(2 * n) / 2;
    for (pair, s) in dst.chunks_exact_mut(2).zip(&src[..pairs]) {
        pair[0] += *s;
    }
    if pairs < n {
        dst[2 * pairs] += src[pairs];
    }
}

/// The *wide* column layout of a stride-1 window over a narrow image.
///
/// With the image zero-padded to `[Hp, Wp]` and flattened, output pixel `(oy, ox)` at
/// position `p = oy·Wp + ox` reads tap `(c, i, j)` at `p + c·Hp·Wp + i·dh·Wp + j·dw`: every tap
/// is the same image shifted by a constant. So a tap's row of the column matrix is *one*
/// contiguous run of the padded image, `len = (OH - 1)·Wp + OW` long, instead of `OH` short
/// runs; the price is `Wp - OW` unused columns per output row (positions with `ox >= OW`), which
/// the caller skips when it reads the product and keeps at zero in output gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wide {
    /// The padded image `[Hp, Wp]`.
    pub padded_hw: [usize; 2],
    /// Columns per image: `(OH - 1)·Wp + OW`.
    pub len: usize,
}

impl Wide {
    /// The wide layout of a stride-1 window, or `None` for other strides or an empty output.
    pub fn new(in_hw: [usize; 2], win: &Window2d, out_hw: [usize; 2]) -> Option<Self> {
        let (wh, ww) = (win.h, win.w);
        if wh.stride != 1 || ww.stride != 1 || out_hw[0] == 0 || out_hw[1] == 0 {
            return None;
        }
        let padded_hw = [in_hw[0] + 2 * wh.padding, in_hw[1] + 2 * ww.padding];
        Some(Wide {
            padded_hw,
            len: (out_hw[0] - 1) * padded_hw[1] + out_hw[1],
        })
    }

    /// Elements of one padded channel plane.
    pub fn plane(&self) -> usize {
        self.padded_hw[0] * self.padded_hw[1]
    }

    /// Offsets of every tap `(c, i, j)` in the padded image, in column-matrix row order.
    fn tap_offsets(&self, channels: usize, win: &Window2d) -> impl Iterator<Item = usize> + '_ {
        let (wh, ww, wp, plane) = (win.h, win.w, self.padded_hw[1], self.plane());
        (0..channels).flat_map(move |c| {
            (0..wh.kernel).flat_map(move |i| {
                (0..ww.kernel).map(move |j| c * plane + i * wh.dilation * wp + j * ww.dilation)
            })
        })
    }

    /// Whether `(in_hw, win)` pads the image (else the image is its own padded image).
    fn pads(win: &Window2d) -> bool {
        win.h.padding > 0 || win.w.padding > 0
    }
}

/// Copies `x[C, H, W]` into the middle of `padded[C, Hp, Wp]` whose border is zeroed.
fn pad_image<T: Float>(
    x: &[T],
    channels: usize,
    in_hw: [usize; 2],
    win: &Window2d,
    wide: &Wide,
    padded: &mut [T],
) {
    let [h, w] = in_hw;
    let ([_, wp], (ph, pw)) = (wide.padded_hw, (win.h.padding, win.w.padding));
    padded[..channels * wide.plane()].fill(T::zero());
    for (xc, pc) in x
        .chunks_exact(h * w)
        .zip(padded.chunks_exact_mut(wide.plane()))
        .take(channels)
    {
        for (row, dst) in xc.chunks_exact(w).zip(pc[ph * wp..].chunks_exact_mut(wp)) {
            dst[pw..pw + w].copy_from_slice(row);
        }
    }
}

/// Writes image `x[C, H, W]`'s wide column matrix (see [`Wide`]) at column `offset` of `col`,
/// a `[C·kh·kw, ld]` matrix. `scratch` holds the padded image when the window pads (at least
/// `C·Hp·Wp` elements; unused otherwise).
///
/// # Panics
/// If a slice is shorter than its shape (a bug in the caller).
#[allow(clippy::too_many_arguments)]
pub fn wide_im2col<T: Float>(
    x: &[T],
    channels: usize,
    in_hw: [usize; 2],
    win: &Window2d,
    wide: &Wide,
    scratch: &mut [T],
    col: &mut [T],
    offset: usize,
    ld: usize,
) {
    let src: &[T] = if Wide::pads(win) {
        pad_image(x, channels, in_hw, win, wide, scratch);
        scratch
    } else {
        x
    };
    for (tap, off) in wide.tap_offsets(channels, win).enumerate() {
        col[tap * ld + offset..][..wide.len].copy_from_slice(&src[off..off + wide.len]);
    }
}

/// The adjoint of [`wide_im2col`]: adds the wide columns at `offset` of `col` (`ld` apart)
/// back onto the pixels of `dx[C, H, W]` they were read from (padding dropped). Columns that
/// are not output pixels must be zero in `col` (the caller's output gradient is zero there).
/// `scratch` as for [`wide_im2col`].
///
/// # Panics
/// If a slice is shorter than its shape (a bug in the caller).
#[allow(clippy::too_many_arguments)]
pub fn wide_col2im<T: Float>(
    col: &[T],
    channels: usize,
    in_hw: [usize; 2],
    win: &Window2d,
    wide: &Wide,
    scratch: &mut [T],
    dx: &mut [T],
    offset: usize,
    ld: usize,
) {
    let pads = Wide::pads(win);
    let dst: &mut [T] = if pads {
        scratch[..channels * wide.plane()].fill(T::zero());
        scratch
    } else {
        dx
    };
    for (tap, off) in wide.tap_offsets(channels, win).enumerate() {
        let src = &col[tap * ld + offset..][..wide.len];
        for (d, s) in dst[off..off + wide.len].iter_mut().zip(src) {
            *d += *s;
        }
    }
    if pads {
        let [h, w] = in_hw;
        let ([_, wp], (ph, pw)) = (wide.padded_hw, (win.h.padding, win.w.padding));
        for (dc, pc) in dx
            .chunks_exact_mut(h * w)
            .zip(scratch.chunks_exact(wide.plane()))
            .take(channels)
        {
            for (row, src) in dc.chunks_exact_mut(w).zip(pc[ph * wp..].chunks_exact(wp)) {
                row.iter_mut()
                    .zip(&src[pw..pw + w])
                    .for_each(|(d, s)| *d += *s);
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
        // The 7x7 stride-2 stem's geometry on odd and even widths (pairs of a row's end).
        (2, [15, 14], [7, 7], [2, 2], [3, 3], [1, 1]),
        (1, [10, 13], [3, 3], [2, 2], [1, 0], [1, 1]),
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
    fn blocks_assemble_the_whole_matrix() {
        // Two images side by side, each split into two row blocks, give the same columns as
        // im2col of each image, and col2im of the blocks adds up to col2im of the whole.
        let mut rng = Rng64::seed(5);
        for &(c, in_hw, k, s, p, d) in CASES {
            let win = Window2d::new(k, s, p, d);
            let out_hw = win.output_hw("test", in_hw, false).unwrap();
            let (plane, taps) = (out_hw[0] * out_hw[1], c * k[0] * k[1]);
            let xs: Vec<Vec<f64>> = (0..2)
                .map(|_| random(c * in_hw[0] * in_hw[1], &mut rng))
                .collect();
            let ld = 2 * plane + 3; // room to spare at the end of each row
            let mut col = vec![f64::NAN; taps * ld];
            let split = out_hw[0] / 2;
            for (img, x) in xs.iter().enumerate() {
                for rows in [0..split, split..out_hw[0]] {
                    let offset = img * plane + rows.start * out_hw[1];
                    let block = Block { rows, offset, ld };
                    im2col_block(x, c, in_hw, &win, out_hw, &block, &mut col);
                }
            }
            for (img, x) in xs.iter().enumerate() {
                let want = naive_im2col(x, c, in_hw, &win, out_hw);
                for t in 0..taps {
                    let got = &col[t * ld + img * plane..t * ld + (img + 1) * plane];
                    assert_eq!(got, &want[t * plane..(t + 1) * plane], "{k:?} {s:?} {p:?}");
                }
            }
            let g = random(col.len(), &mut rng);
            for img in 0..2 {
                let mut whole_g = vec![0.0; taps * plane];
                for t in 0..taps {
                    whole_g[t * plane..(t + 1) * plane]
                        .copy_from_slice(&g[t * ld + img * plane..t * ld + (img + 1) * plane]);
                }
                let want = naive_col2im(&whole_g, c, in_hw, &win, out_hw);
                let mut dx = vec![0.0; want.len()];
                for rows in [0..split, split..out_hw[0]] {
                    let offset = img * plane + rows.start * out_hw[1];
                    let block = Block { rows, offset, ld };
                    col2im_block(&g, c, in_hw, &win, out_hw, &block, &mut dx);
                }
                for (a, b) in dx.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-12);
                }
            }
        }
    }

    /// The wide layout gives the definition's columns at every output pixel, and its
    /// col2im is the adjoint of its im2col (with zeros in the unused columns).
    #[test]
    fn wide_layout_matches_the_definition_and_its_adjoint() {
        let mut rng = Rng64::seed(5);
        for (c, hw, k, pad, dil) in [
            (1, [28, 28], [5, 5], [2, 2], [1, 1]),
            (3, [10, 7], [5, 3], [0, 1], [1, 1]),
            (2, [9, 11], [3, 3], [2, 1], [2, 1]),
            (2, [4, 4], [1, 1], [1, 0], [1, 1]),
        ] {
            let win = Window2d::new(k, [1, 1], pad, dil);
            let out = win.output_hw("test", hw, false).unwrap();
            let wide = Wide::new(hw, &win, out).unwrap();
            let taps = c * k[0] * k[1];
            let x = random(c * hw[0] * hw[1], &mut rng);
            let ld = wide.len + 3;
            let mut col = vec![f64::NAN; taps * ld];
            let mut scratch = vec![f64::NAN; c * wide.plane()];
            wide_im2col(&x, c, hw, &win, &wide, &mut scratch, &mut col, 2, ld);
            let reference = naive_im2col(&x, c, hw, &win, out);
            let is_pixel = |p: usize| p % wide.padded_hw[1] < out[1];
            for t in 0..taps {
                for p in (0..wide.len).filter(|&p| is_pixel(p)) {
                    let (oy, ox) = (p / wide.padded_hw[1], p % wide.padded_hw[1]);
                    assert_eq!(
                        col[t * ld + 2 + p],
                        reference[t * out[0] * out[1] + oy * out[1] + ox]
                    );
                }
            }
            // <im2col(x), g> == <x, col2im(g)> with g zero off the output pixels.
            let mut g = vec![0.0; taps * ld];
            for t in 0..taps {
                for p in (0..wide.len).filter(|&p| is_pixel(p)) {
                    g[t * ld + 2 + p] = rng.uniform() - 0.5;
                }
            }
            let mut dx = vec![0.0; x.len()];
            wide_col2im(&g, c, hw, &win, &wide, &mut scratch, &mut dx, 2, ld);
            let lhs: f64 = (0..taps)
                .flat_map(|t| (0..wide.len).map(move |p| t * ld + 2 + p))
                .map(|i| col[i] * g[i])
                .sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-10, "{lhs} vs {rhs}");
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

//! Pooling loops on contiguous NCHW slices, one `H x W` plane at a time, planes in parallel.
//!
//! A [`PoolPlan`] lists, for every output row and every output column, which input cells the
//! window reads (its [`Taps`]). The 2-D window of output `(oh, ow)` is the product
//! `rows[oh] x cols[ow]`, so the loops below never test bounds per cell:
//!
//! ```text
//! sliding window (max/avg): start = o·S - P, taps start + j·d for j in 0..k, kept if in [0, L)
//!                           pool_size = min(start + F, L + P) - start        (F = d(k-1) + 1)
//! adaptive bin i:           [floor(i·L/O), ceil((i+1)·L/O))
//! ```
//!
//! Max pooling records the flat in-plane index of the winner (the first maximum in row-major
//! window order; padding is -inf and never wins), and its backward adds each upstream gradient
//! to that cell. Average pooling divides by a [`Divisor`] and spreads the gradient evenly.

use crate::kernels::simd::vectorized;
use crate::parallel::prelude::*;
use crate::tensor::Float;

/// The argmax of a window that holds no input cell (possible only with dilation, when every
/// tap falls in the padding): its output is -inf and it receives no gradient.
pub const NO_TAP: u32 = u32::MAX;

/// The input cells one output position reads along one axis: `count` taps starting at
/// `first`, `dilation` apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taps {
    /// Input index of the first in-bounds tap.
    pub first: usize,
    /// Number of in-bounds taps (0 when the window lies entirely in the padding).
    pub count: usize,
    /// Cells of the window clipped to `[-P, L + P)`: the divisor share of
    /// `count_include_pad` average pooling (padding counts, cells past `L + P` do not).
    pub pool_size: usize,
}

/// Per-axis taps of every output position of a 2-D pooling, for planes of size `in_hw`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolPlan {
    /// Input plane `[height, width]`.
    pub in_hw: [usize; 2],
    /// Spacing between taps `[height, width]` (1 except for dilated max pooling).
    pub dilation: [usize; 2],
    /// Taps of each output row.
    pub rows: Vec<Taps>,
    /// Taps of each output column.
    pub cols: Vec<Taps>,
    /// The window the taps come from, for a sliding-window plan (`None` for adaptive bins).
    pub sliding: Option<Sliding>,
}

/// The window of a sliding-window [`PoolPlan`]; all pairs are `[height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sliding {
    /// Taps per window.
    pub kernel: [usize; 2],
    /// Step between windows.
    pub stride: [usize; 2],
    /// Implicit padding above and left of the input.
    pub padding: [usize; 2],
}

/// The taps of a sliding window along one axis of length `len` with `out` positions.
fn window_axis(
    len: usize,
    out: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dil: usize,
) -> Vec<Taps> {
    let (len_i, pad_i, dil_i) = (len as isize, pad as isize, dil as isize);
    let span = (dil * (kernel - 1) + 1) as isize;
    (0..out)
        .map(|o| {
            let start = (o * stride) as isize - pad_i;
            let pool_size = ((start + span).min(len_i + pad_i) - start).max(0) as usize;
            // Skip taps in the left padding: the first j with start + j·d >= 0.
            let skip = if start < 0 {
                (-start + dil_i - 1) / dil_i
            } else {
                0
            };
            let first = start + skip * dil_i;
            let count = if skip >= kernel as isize || first >= len_i {
                0
            } else {
                (kernel - skip as usize).min(((len_i - 1 - first) / dil_i + 1) as usize)
            };
            let first = if count == 0 { 0 } else { first as usize };
            Taps {
                first,
                count,
                pool_size,
            }
        })
        .collect()
}

/// The bins of adaptive pooling along one axis: `[floor(i·L/O), ceil((i+1)·L/O))`.
fn adaptive_axis(len: usize, out: usize) -> Vec<Taps> {
    (0..out)
        .map(|i| {
            let first = i * len / out;
            let end = ((i + 1) * len).div_ceil(out);
            Taps {
                first,
                count: end - first,
                pool_size: end - first,
            }
        })
        .collect()
}

impl PoolPlan {
    /// A sliding window with `out_hw` positions (from [`crate::geometry::Window2d::output_hw`]).
    ///
    /// All pairs are `[height, width]`; kernel, stride and dilation must be at least 1.
    pub fn window(
        in_hw: [usize; 2],
        out_hw: [usize; 2],
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
    ) -> Self {
        let axis = |a: usize| {
            window_axis(
                in_hw[a],
                out_hw[a],
                kernel[a],
                stride[a],
                padding[a],
                dilation[a],
            )
        };
        PoolPlan {
            in_hw,
            dilation,
            rows: axis(0),
            cols: axis(1),
            sliding: Some(Sliding {
                kernel,
                stride,
                padding,
            }),
        }
    }

    /// Adaptive pooling from `in_hw` to `out_hw` (both at least 1 per axis).
    pub fn adaptive(in_hw: [usize; 2], out_hw: [usize; 2]) -> Self {
        PoolPlan {
            in_hw,
            dilation: [1, 1],
            rows: adaptive_axis(in_hw[0], out_hw[0]),
            cols: adaptive_axis(in_hw[1], out_hw[1]),
            sliding: None,
        }
    }

    /// Output plane `[height, width]`.
    pub fn out_hw(&self) -> [usize; 2] {
        [self.rows.len(), self.cols.len()]
    }

    /// Whether every window is a full 2x2 tile at stride 2 without padding or dilation (the
    /// pools of LeNet and VGG): window `(i, j)` reads exactly input rows `2i, 2i+1` and
    /// columns `2j, 2j+1`, and no input cell is read by two windows.
    pub fn tiles_2x2(&self) -> bool {
        let tiled = |taps: &[Taps]| {
            taps.iter()
                .enumerate()
                .all(|(o, t)| t.count == 2 && t.first == 2 * o)
        };
        self.dilation == [1, 1] && tiled(&self.rows) && tiled(&self.cols)
    }

    fn plane_sizes(&self) -> (usize, usize) {
        let (hw, ohw) = (
            self.in_hw[0] * self.in_hw[1],
            self.rows.len() * self.cols.len(),
        );
        assert!(hw > 0 && ohw > 0, "pool kernel: empty plane");
        (hw, ohw)
    }
}

/// What an average window divides its sum by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Divisor {
    /// `pool_size` of rows times columns: padding counts (`count_include_pad = true`).
    PoolSize,
    /// The number of in-bounds cells (`count_include_pad = false`, adaptive pooling).
    InBounds,
    /// A fixed divisor (`divisor_override`), at least 1.
    Fixed(usize),
}

impl Divisor {
    fn of(self, r: &Taps, c: &Taps) -> usize {
        match self {
            Divisor::PoolSize => r.pool_size * c.pool_size,
            Divisor::InBounds => r.count * c.count,
            Divisor::Fixed(d) => d,
        }
    }
}

/// Max pooling forward: `y[o] = max over the window of x`, and when `argmax` is given, the
/// in-plane index of the winner: the first maximum in row-major window order, or the last NaN
/// if the window holds one (NaN counts as a maximum, as in PyTorch).
///
/// The max is separable, so each plane is computed in two passes over a copy of it padded with
/// -inf (see [`Padded`]), where every window is whole: a vertical pass takes, for every padded
/// column, the winner over each window's rows, and a horizontal pass the winner of each
/// window's columns among those; both are element-wise loops over whole planes, so they
/// vectorise. Both passes pick winners by one strict order on (value, flat index) (see
/// [`beats`]), which gives exactly the row-major rule above. Windows that are 2x2 tiles
/// ([`PoolPlan::tiles_2x2`]) are read directly instead: four taps each, in row-major order.
///
/// `x` holds whole input planes, `y` and `argmax` the matching output planes.
pub fn max_pool_forward<T: Float>(
    plan: &PoolPlan,
    x: &[T],
    y: &mut [T],
    argmax: Option<&mut [u32]>,
) {
    let (hw, ohw) = plan.plane_sizes();
    assert!(x.len() % hw == 0 && y.len() == x.len() / hw * ohw);
    let w = plan.in_hw[1];
    if plan.tiles_2x2() {
        let ow = plan.cols.len();
        for_each_plane_group(
            x,
            y,
            argmax,
            1,
            plan,
            || (),
            |_, x, y, arg| match arg {
                Some(arg) => max_2x2_plane(x, w, ow, y, arg),
                None => max_2x2_plane_values(x, w, ow, y),
            },
        );
        return;
    }
    match plan.sliding {
        Some(sliding) => padded_max_pool(plan, &sliding, x, y, argmax),
        // Adaptive bins (no layer max-pools this way): one window at a time.
        None => for_each_plane_group(
            x,
            y,
            argmax,
            1,
            plan,
            || (),
            |_, x, y, arg| max_by_taps(plan, x, y, arg),
        ),
    }
}

/// Runs `body(scratch, x, y, argmax)` in parallel over groups of `planes` consecutive planes:
/// the matching chunks of input, output and (when given) winners' positions. Each task gets
/// a `scratch` from `init`.
fn for_each_plane_group<T: Float, S>(
    x: &[T],
    y: &mut [T],
    argmax: Option<&mut [u32]>,
    planes: usize,
    plan: &PoolPlan,
    init: impl Fn() -> S + Send + Sync,
    body: impl Fn(&mut S, &[T], &mut [T], Option<&mut [u32]>) + Send + Sync,
) {
    let (hw, ohw) = plan.plane_sizes();
    let (x_len, y_len) = (planes * hw, planes * ohw);
    match argmax {
        Some(argmax) => {
            assert_eq!(argmax.len(), y.len());
            x.par_chunks(x_len)
                .zip(y.par_chunks_mut(y_len))
                .zip(argmax.par_chunks_mut(y_len))
                .for_each_init(init, |s, ((x, y), arg)| body(s, x, y, Some(arg)));
        }
        None => x
            .par_chunks(x_len)
            .zip(y.par_chunks_mut(y_len))
            .for_each_init(init, |s, (x, y)| body(s, x, y, None)),
    }
}

/// One step of the row-major rule: the window's running winner `(m, at)` gives way to the
/// next tap `(v, k)` when `v` is larger or NaN, so ties keep the earlier tap and NaNs the
/// later one. Branch-free.
#[inline(always)]
fn take_max<T: Float>(m: &mut T, at: &mut u32, v: T, k: u32) {
    let take = (v > *m) | v.is_nan();
    *m = if take { v } else { *m };
    *at = if take { k } else { *at };
}

/// [`max_pool_forward`] of one plane (`w` wide) whose windows are 2x2 tiles
/// ([`PoolPlan::tiles_2x2`]), `ow` outputs per row: the four taps of each window in row-major
/// order, straight from the two input rows it covers.
fn max_2x2_plane<T: Float>(x: &[T], w: usize, ow: usize, y: &mut [T], arg: &mut [u32]) {
    let rows = y.chunks_exact_mut(ow).zip(arg.chunks_exact_mut(ow));
    for (oh, (y, arg)) in rows.enumerate() {
        let top = 2 * oh * w;
        let (a, b) = (&x[top..top + 2 * ow], &x[top + w..top + w + 2 * ow]);
        let taps = a.chunks_exact(2).zip(b.chunks_exact(2));
        let (top, w) = (top as u32, w as u32);
        for (o, ((y, arg), (a, b))) in y.iter_mut().zip(arg.iter_mut()).zip(taps).enumerate() {
            let first = top + 2 * o as u32;
            let (mut m, mut at) = (a[0], first);
            take_max(&mut m, &mut at, a[1], first + 1);
            take_max(&mut m, &mut at, b[0], first + w);
            take_max(&mut m, &mut at, b[1], first + w + 1);
            (*y, *arg) = (m, at);
        }
    }
}

/// [`max_2x2_plane`] without the winners' positions (inference).
fn max_2x2_plane_values<T: Float>(x: &[T], w: usize, ow: usize, y: &mut [T]) {
    for (oh, y) in y.chunks_exact_mut(ow).enumerate() {
        let top = 2 * oh * w;
        let (a, b) = (&x[top..top + 2 * ow], &x[top + w..top + w + 2 * ow]);
        for (y, (a, b)) in y.iter_mut().zip(a.chunks_exact(2).zip(b.chunks_exact(2))) {
            let (mut m, mut at) = (a[0], 0);
            take_max(&mut m, &mut at, a[1], 0);
            take_max(&mut m, &mut at, b[0], 0);
            take_max(&mut m, &mut at, b[1], 0);
            *y = m;
        }
    }
}

/// Whether tap `(v, k)` (value, flat input index) beats the running winner `(b, i)` under the
/// row-major rule of [`max_pool_forward`] stated as an order: NaN above every number, a larger
/// number above a smaller one, and among equals the smaller index for numbers (the first
/// maximum) and the larger for NaNs (the last NaN). Padding is `(-inf, NO_TAP)`: it loses to
/// every input cell, even one holding -inf. The order is strict and total on distinct cells,
/// so the winner does not depend on the order taps are visited in (which makes the separable
/// passes exact). Branch-free.
#[inline(always)]
fn beats<T: Float>(v: T, k: u32, b: T, i: u32) -> bool {
    (v.is_nan() & (!b.is_nan() | (k > i))) | (v > b) | ((v == b) & (k < i))
}

/// [`max_pool_forward`] of a plan without a sliding window (adaptive bins), one window at a
/// time in row-major tap order.
fn max_by_taps<T: Float>(plan: &PoolPlan, x: &[T], y: &mut [T], mut arg: Option<&mut [u32]>) {
    let (w, [dh, dw]) = (plan.in_hw[1], plan.dilation);
    let windows = plan
        .rows
        .iter()
        .flat_map(|r| plan.cols.iter().map(move |c| (r, c)));
    for (o, (r, c)) in windows.enumerate() {
        let (mut m, mut at) = (T::neg_infinity(), NO_TAP);
        for i in 0..r.count {
            for j in 0..c.count {
                let k = (r.first + i * dh) * w + c.first + j * dw;
                if beats(x[k], k as u32, m, at) {
                    (m, at) = (x[k], k as u32);
                }
            }
        }
        y[o] = m;
        if let Some(arg) = arg.as_deref_mut() {
            arg[o] = at;
        }
    }
}

/// The padded plane of a sliding-window max pooling: the input plane copied into a larger
/// one (`rows x pitch`) whose extra cells, the window's padding and ceil mode's overhang, hold
/// -inf and index [`NO_TAP`]. There every window is whole: output `(oh, ow)` reads padded
/// cells `(oh·Sh + i·dh, ow·Sw + j·dw)`, and both passes are loops over whole planes.
#[derive(Clone, Copy, Debug)]
struct Padded {
    /// Padded rows.
    rows: usize,
    /// Padded row length, a multiple of the width stride.
    pitch: usize,
    /// Padding rows above the input and columns left of it.
    top: usize,
    left: usize,
}

impl Padded {
    fn new(plan: &PoolPlan, s: &Sliding) -> Self {
        let out = plan.out_hw();
        let reach =
            |a: usize| (out[a] - 1) * s.stride[a] + plan.dilation[a] * (s.kernel[a] - 1) + 1;
        Padded {
            rows: (s.padding[0] + plan.in_hw[0]).max(reach(0)),
            pitch: (s.padding[1] + plan.in_hw[1])
                .max(reach(1))
                .next_multiple_of(s.stride[1]),
            top: s.padding[0],
            left: s.padding[1],
        }
    }
}

/// Per-task buffers of [`padded_max_pool`]: the padded plane and its cells' flat input
/// indices, the column winners (`oh` padded rows, then a tail of padding so the last
/// windows stay in bounds), and the winners of every window start in a padded row before
/// the `ow` real ones are copied out.
struct MaxScratch<T> {
    plane: Vec<T>,
    index: Vec<u32>,
    col: Vec<T>,
    col_at: Vec<u32>,
    out: Vec<T>,
    out_at: Vec<u32>,
}

impl<T: Float> MaxScratch<T> {
    fn new(plan: &PoolPlan, s: &Sliding, p: &Padded, argmax: bool) -> Self {
        let (w, [oh, _]) = (plan.in_hw[1], plan.out_hw());
        let cells = p.rows * p.pitch;
        let cols = oh * p.pitch + plan.dilation[1] * (s.kernel[1] - 1) + s.stride[1];
        let outs = oh * p.pitch / s.stride[1];
        let index = if argmax {
            (0..cells)
                .map(|cell| {
                    let (r, c) = (cell / p.pitch, cell % p.pitch);
                    let (r, c) = (r.wrapping_sub(p.top), c.wrapping_sub(p.left));
                    if r < plan.in_hw[0] && c < w {
                        (r * w + c) as u32
                    } else {
                        NO_TAP
                    }
                })
                .collect()
        } else {
            Vec::new()
        };
        let tap_len = |n: usize| if argmax { n } else { 0 };
        MaxScratch {
            plane: vec![T::neg_infinity(); cells],
            index,
            col: vec![T::neg_infinity(); cols],
            col_at: vec![NO_TAP; tap_len(cols)],
            out: vec![T::neg_infinity(); outs],
            out_at: vec![NO_TAP; tap_len(outs)],
        }
    }
}

/// [`max_pool_forward`] of a sliding-window plan through the [`Padded`] plane, in three loops
/// over whole planes: the vertical pass takes, for every padded column and output row, the
/// winner over the window's rows (with stride 1 along the height, one loop over all output
/// rows at once); the horizontal pass takes the winner over each window's columns among
/// those, for every window start in a padded row; the first `ow` of each row are the output.
fn padded_max_pool<T: Float>(
    plan: &PoolPlan,
    s: &Sliding,
    x: &[T],
    y: &mut [T],
    argmax: Option<&mut [u32]>,
) {
    let p = Padded::new(plan, s);
    // Small planes go several to a task, so that each task's loops are long.
    let planes = (4096 / (p.rows * p.pitch)).max(1);
    let with_argmax = argmax.is_some();
    let init = || MaxScratch::new(plan, s, &p, with_argmax);
    for_each_plane_group(x, y, argmax, planes, plan, init, |scratch, x, y, arg| {
        vectorized(
            #[inline(always)]
            || padded_planes(plan, s, &p, scratch, x, y, arg),
        )
    });
}

/// Consecutive planes of [`padded_max_pool`], one at a time (inlined into [`vectorized`]'s
/// wide-vector function: its loops are the ones to vectorise).
#[inline(always)]
fn padded_planes<T: Float>(
    plan: &PoolPlan,
    s: &Sliding,
    p: &Padded,
    scratch: &mut MaxScratch<T>,
    x: &[T],
    y: &mut [T],
    mut arg: Option<&mut [u32]>,
) {
    let (hw, ohw) = plan.plane_sizes();
    for (i, (x, y)) in x.chunks_exact(hw).zip(y.chunks_exact_mut(ohw)).enumerate() {
        let arg = arg.as_deref_mut().map(|a| &mut a[i * ohw..(i + 1) * ohw]);
        padded_plane(plan, s, p, scratch, x, y, arg);
    }
}

/// One plane of [`padded_max_pool`].
#[inline(always)]
fn padded_plane<T: Float>(
    plan: &PoolPlan,
    s: &Sliding,
    p: &Padded,
    scratch: &mut MaxScratch<T>,
    x: &[T],
    y: &mut [T],
    arg: Option<&mut [u32]>,
) {
    let ([h, w], [oh, ow], [dh, dw]) = (plan.in_hw, plan.out_hw(), plan.dilation);
    let (sh, sw, pitch) = (s.stride[0], s.stride[1], p.pitch);
    let MaxScratch {
        plane,
        index,
        col,
        col_at,
        out,
        out_at,
    } = scratch;
    // The padding cells of `plane` keep the -inf they were made with.
    for (r, x) in x.chunks_exact(w).enumerate().take(h) {
        plane[(p.top + r) * pitch + p.left..][..w].copy_from_slice(x);
    }
    // Vertical pass: column winners of output row o over padded rows o·Sh + i·dh.
    let row_blocks = if sh == 1 { 1 } else { oh };
    let len = oh * pitch / row_blocks;
    for b in 0..row_blocks {
        let (dst, src) = (b * len, b * sh * pitch);
        col[dst..dst + len].copy_from_slice(&plane[src..src + len]);
        if arg.is_some() {
            col_at[dst..dst + len].copy_from_slice(&index[src..src + len]);
        }
        for i in 1..s.kernel[0] {
            let src = src + i * dh * pitch;
            let (v, m) = (&plane[src..src + len], &mut col[dst..dst + len]);
            if arg.is_some() {
                let (k, at) = (&index[src..src + len], &mut col_at[dst..dst + len]);
                fold_argmax(m, at, v, k);
            } else {
                fold_max(m, v);
            }
        }
    }
    // Horizontal pass: the winner of padded columns q·Sw + j·dw for every start q.
    let outs = oh * pitch / sw;
    let (out, out_at) = (&mut out[..outs], &mut out_at[..]);
    match (sw, arg.is_some()) {
        (1, false) => shifts_max::<T, 1>(out, col, s.kernel[1], dw, 1),
        (2, false) => shifts_max::<T, 2>(out, col, s.kernel[1], dw, 2),
        (_, false) => shifts_max::<T, 0>(out, col, s.kernel[1], dw, sw),
        (1, true) => {
            shifts_argmax::<T, 1>(out, &mut out_at[..outs], col, col_at, s.kernel[1], dw, 1)
        }
        (2, true) => {
            shifts_argmax::<T, 2>(out, &mut out_at[..outs], col, col_at, s.kernel[1], dw, 2)
        }
        (_, true) => {
            shifts_argmax::<T, 0>(out, &mut out_at[..outs], col, col_at, s.kernel[1], dw, sw)
        }
    }
    // The real outputs: the first `ow` window starts of each row.
    let row = pitch / sw;
    for (y, out) in y.chunks_exact_mut(ow).zip(out.chunks_exact(row)) {
        y.copy_from_slice(&out[..ow]);
    }
    if let Some(arg) = arg {
        for (a, out_at) in arg.chunks_exact_mut(ow).zip(out_at.chunks_exact(row)) {
            a.copy_from_slice(&out_at[..ow]);
        }
    }
}

/// `m = max(m, v)` element-wise, NaN winning.
#[inline(always)]
fn fold_max<T: Float>(m: &mut [T], v: &[T]) {
    for (m, &v) in m.iter_mut().zip(v) {
        *m = nan_max(*m, v);
    }
}

/// `max(m, v)` with a NaN `v` winning (the value half of [`take_max`]). Branch-free.
#[inline(always)]
fn nan_max<T: Float>(m: T, v: T) -> T {
    // `|`, not `||`: no branch.
    if (v > m) | v.is_nan() {
        v
    } else {
        m
    }
}

/// `(m, at) = (v, k)` where the tap [`beats`] the running winner. Branch-free.
#[inline(always)]
fn take_beating<T: Float>(m: &mut T, at: &mut u32, v: T, k: u32) {
    let take = beats(v, k, *m, *at);
    *m = if take { v } else { *m };
    *at = if take { k } else { *at };
}

/// `(m, at) = (v, k)` element-wise where the tap [`beats`] the running winner.
#[inline(always)]
fn fold_argmax<T: Float>(m: &mut [T], at: &mut [u32], v: &[T], k: &[u32]) {
    for ((m, at), (&v, &k)) in m.iter_mut().zip(at.iter_mut()).zip(v.iter().zip(k)) {
        take_beating(m, at, v, k);
    }
}

/// `out[q] = max_j col[q·S + j·dw]` over `taps` taps, NaN winning. `S` is the stride when
/// it is a constant (1 or 2, so the loops vectorise), 0 to use `stride`.
#[inline(always)]
fn shifts_max<T: Float, const S: usize>(
    out: &mut [T],
    col: &[T],
    taps: usize,
    dw: usize,
    stride: usize,
) {
    let s = if S == 0 { stride } else { S };
    let n = out.len() * s;
    if s == 1 {
        out.copy_from_slice(&col[..n]);
        for j in 1..taps {
            fold_max(out, &col[j * dw..j * dw + n]);
        }
        return;
    }
    for (m, c) in out.iter_mut().zip(col[..n].chunks_exact(s)) {
        *m = c[0];
    }
    for j in 1..taps {
        for (m, c) in out.iter_mut().zip(col[j * dw..j * dw + n].chunks_exact(s)) {
            *m = nan_max(*m, c[0]);
        }
    }
}

/// [`shifts_max`] with the winners' flat input indices, by [`beats`].
#[inline(always)]
fn shifts_argmax<T: Float, const S: usize>(
    out: &mut [T],
    out_at: &mut [u32],
    col: &[T],
    col_at: &[u32],
    taps: usize,
    dw: usize,
    stride: usize,
) {
    let s = if S == 0 { stride } else { S };
    let n = out.len() * s;
    if s == 1 {
        out.copy_from_slice(&col[..n]);
        out_at.copy_from_slice(&col_at[..n]);
        for j in 1..taps {
            let tap = j * dw..j * dw + n;
            fold_argmax(out, out_at, &col[tap.clone()], &col_at[tap]);
        }
        return;
    }
    let outs = out.iter_mut().zip(out_at.iter_mut());
    for ((m, a), (c, k)) in outs.zip(col[..n].chunks_exact(s).zip(col_at[..n].chunks_exact(s))) {
        (*m, *a) = (c[0], k[0]);
    }
    for j in 1..taps {
        let tap = j * dw..j * dw + n;
        let taps = col[tap.clone()]
            .chunks_exact(s)
            .zip(col_at[tap].chunks_exact(s));
        for ((m, a), (c, k)) in out.iter_mut().zip(out_at.iter_mut()).zip(taps) {
            take_beating(m, a, c[0], k[0]);
        }
    }
}
/// Max pooling backward: `dx = 0`, then `dx[argmax[o]] += dy[o]`. `dx` may hold anything
/// on entry (a buffer reused from an earlier step): each plane is zeroed right before its
/// gradients are scattered into it, while it is in cache.
pub fn max_pool_backward<T: Float>(plan: &PoolPlan, dy: &[T], argmax: &[u32], dx: &mut [T]) {
    let (hw, ohw) = plan.plane_sizes();
    assert!(dx.len() % hw == 0 && dy.len() == dx.len() / hw * ohw && argmax.len() == dy.len());
    dx.par_chunks_mut(hw)
        .zip(dy.par_chunks(ohw))
        .zip(argmax.par_chunks(ohw))
        .for_each(|((dx, dy), arg)| {
            dx.fill(T::zero());
            for (&g, &at) in dy.iter().zip(arg) {
                if at != NO_TAP {
                    dx[at as usize] += g;
                }
            }
        });
}

/// Average pooling forward: `y[o] = Σ_window x / divisor(o)`.
pub fn avg_pool_forward<T: Float>(plan: &PoolPlan, divisor: Divisor, x: &[T], y: &mut [T]) {
    let (hw, ohw) = plan.plane_sizes();
    assert!(x.len() % hw == 0 && y.len() == x.len() / hw * ohw);
    let w = plan.in_hw[1];
    x.par_chunks(hw)
        .zip(y.par_chunks_mut(ohw))
        .for_each(|(x, y)| {
            let mut o = 0;
            for r in &plan.rows {
                for c in &plan.cols {
                    let mut sum = T::zero();
                    for i in r.first..r.first + r.count {
                        sum += x[i * w + c.first..i * w + c.first + c.count]
                            .iter()
                            .copied()
                            .sum::<T>();
                    }
                    let d = divisor.of(r, c);
                    y[o] = if d == 0 {
                        T::zero()
                    } else {
                        sum / T::of(d as f64)
                    };
                    o += 1;
                }
            }
        });
}

/// Average pooling backward: every cell of window `o` gets `dy[o] / divisor(o)` (adds into `dx`).
pub fn avg_pool_backward<T: Float>(plan: &PoolPlan, divisor: Divisor, dy: &[T], dx: &mut [T]) {
    let (hw, ohw) = plan.plane_sizes();
    assert!(dx.len() % hw == 0 && dy.len() == dx.len() / hw * ohw);
    let w = plan.in_hw[1];
    dx.par_chunks_mut(hw)
        .zip(dy.par_chunks(ohw))
        .for_each(|(dx, dy)| {
            let mut o = 0;
            for r in &plan.rows {
                for c in &plan.cols {
                    let d = divisor.of(r, c);
                    let g = if d == 0 {
                        T::zero()
                    } else {
                        dy[o] / T::of(d as f64)
                    };
                    for i in r.first..r.first + r.count {
                        dx[i * w + c.first..i * w + c.first + c.count]
                            .iter_mut()
                            .for_each(|v| *v += g);
                    }
                    o += 1;
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Window2d;
    use crate::rng::Rng64;

    fn rand_vec(n: usize, seed: u64) -> Vec<f64> {
        let mut rng = Rng64::seed(seed);
        (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect()
    }

    /// Naive max pool straight from the definition: every tap of the full window in row-major
    /// order, padding read as -inf, the first strictly larger value wins.
    #[allow(clippy::too_many_arguments)]
    fn naive_max(
        x: &[f64],
        l: [usize; 2],
        o: [usize; 2],
        k: [usize; 2],
        s: [usize; 2],
        p: [usize; 2],
        d: [usize; 2],
    ) -> (Vec<f64>, Vec<u32>) {
        let (mut y, mut a) = (vec![], vec![]);
        for oh in 0..o[0] {
            for ow in 0..o[1] {
                let (mut best, mut at) = (f64::NEG_INFINITY, NO_TAP);
                for i in 0..k[0] {
                    for j in 0..k[1] {
                        let h = (oh * s[0] + i * d[0]) as isize - p[0] as isize;
                        let w = (ow * s[1] + j * d[1]) as isize - p[1] as isize;
                        let inside = h >= 0 && w >= 0 && (h as usize) < l[0] && (w as usize) < l[1];
                        if !inside {
                            continue;
                        }
                        let idx = h as usize * l[1] + w as usize;
                        // The first strict maximum, or the last NaN (NaN counts as a maximum).
                        if at == NO_TAP || x[idx] > best || x[idx].is_nan() {
                            best = x[idx];
                            at = idx as u32;
                        }
                    }
                }
                y.push(best);
                a.push(at);
            }
        }
        (y, a)
    }

    /// Naive average pool from the PyTorch divisor definition, cell by cell.
    #[allow(clippy::too_many_arguments)]
    fn naive_avg(
        x: &[f64],
        l: [usize; 2],
        o: [usize; 2],
        k: [usize; 2],
        s: [usize; 2],
        p: [usize; 2],
        div: Divisor,
    ) -> Vec<f64> {
        let mut y = vec![];
        for oh in 0..o[0] {
            for ow in 0..o[1] {
                let (mut sum, mut padded, mut inside) = (0.0, 0, 0);
                for i in 0..k[0] {
                    for j in 0..k[1] {
                        let h = (oh * s[0] + i) as isize - p[0] as isize;
                        let w = (ow * s[1] + j) as isize - p[1] as isize;
                        // Cells past L + P (created by ceil_mode) do not exist at all.
                        if h >= (l[0] + p[0]) as isize || w >= (l[1] + p[1]) as isize {
                            continue;
                        }
                        padded += 1;
                        if h >= 0 && w >= 0 && (h as usize) < l[0] && (w as usize) < l[1] {
                            inside += 1;
                            sum += x[h as usize * l[1] + w as usize];
                        }
                    }
                }
                let d = match div {
                    Divisor::PoolSize => padded,
                    Divisor::InBounds => inside,
                    Divisor::Fixed(d) => d,
                };
                y.push(sum / d as f64);
            }
        }
        y
    }

    fn naive_adaptive(x: &[f64], l: [usize; 2], o: [usize; 2]) -> Vec<f64> {
        let bin = |i: usize, l: usize, o: usize| {
            let lo = (i as f64 * l as f64 / o as f64).floor() as usize;
            let hi = ((i + 1) as f64 * l as f64 / o as f64).ceil() as usize;
            lo..hi
        };
        let mut y = vec![];
        for oh in 0..o[0] {
            for ow in 0..o[1] {
                let (mut sum, mut n) = (0.0, 0.0);
                for h in bin(oh, l[0], o[0]) {
                    for w in bin(ow, l[1], o[1]) {
                        sum += x[h * l[1] + w];
                        n += 1.0;
                    }
                }
                y.push(sum / n);
            }
        }
        y
    }

    fn close(a: &[f64], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-12 * (1.0 + y.abs()) || x == y,
                "at {i}: {x} vs {y}"
            );
        }
    }

    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    // (input, kernel, stride, padding, dilation, ceil_mode)
    type Case = (
        [usize; 2],
        [usize; 2],
        [usize; 2],
        [usize; 2],
        [usize; 2],
        bool,
    );
    const CASES: [Case; 17] = [
        ([8, 8], [2, 2], [2, 2], [0, 0], [1, 1], false),
        ([9, 7], [3, 3], [2, 2], [1, 1], [1, 1], false),
        ([7, 7], [2, 2], [2, 2], [0, 0], [1, 1], true),
        ([8, 10], [3, 3], [2, 2], [0, 0], [1, 1], true),
        ([5, 6], [3, 2], [2, 1], [1, 1], [1, 1], true),
        ([6, 7], [2, 3], [2, 1], [0, 1], [1, 1], false),
        ([9, 9], [3, 3], [1, 2], [1, 1], [2, 2], false),
        ([8, 11], [3, 2], [2, 3], [1, 1], [2, 3], true),
        ([1, 1], [1, 1], [1, 1], [0, 0], [1, 1], false),
        // Stride 1 along the width with long runs of full windows (the shifted-slice path).
        ([5, 21], [3, 3], [1, 1], [1, 1], [1, 1], true),
        ([4, 19], [2, 3], [1, 1], [0, 2], [1, 2], false),
        ([6, 30], [3, 4], [2, 1], [1, 2], [1, 1], false),
        // Stride 2 with runs of at least 8 full windows (the strided-slice path).
        ([6, 28], [2, 2], [2, 2], [0, 0], [1, 1], false),
        ([7, 37], [3, 3], [2, 2], [1, 1], [1, 1], true),
        // Padding wider than a dilated window's reach: the first in-bounds tap of window 1
        // lies left of window 0's (found by the property test).
        ([2, 3], [2, 2], [1, 1], [0, 1], [1, 3], false),
        ([3, 5], [2, 3], [1, 1], [1, 2], [2, 3], false),
        ([4, 20], [2, 2], [1, 1], [0, 1], [1, 3], true),
    ];

    #[test]
    fn max_pool_matches_naive_and_scatters_to_argmax() {
        for (t, &(l, k, s, p, d, ceil)) in CASES.iter().enumerate() {
            let o = Window2d::new(k, s, p, d).output_hw("t", l, ceil).unwrap();
            let plan = PoolPlan::window(l, o, k, s, p, d);
            let planes = 3;
            let x = rand_vec(planes * l[0] * l[1], t as u64);
            let mut y = vec![0.0; planes * o[0] * o[1]];
            let mut arg = vec![0; y.len()];
            max_pool_forward(&plan, &x, &mut y, Some(&mut arg));
            let (ohw, hw) = (o[0] * o[1], l[0] * l[1]);
            for c in 0..planes {
                let (ny, na) = naive_max(&x[c * hw..(c + 1) * hw], l, o, k, s, p, d);
                assert_eq!(&y[c * ohw..(c + 1) * ohw], &ny[..], "case {t}");
                assert_eq!(&arg[c * ohw..(c + 1) * ohw], &na[..], "case {t}");
            }
            // Backward: a naive scatter, plus the identity <dx, x> = <dy, y>.
            let dy = rand_vec(y.len(), 100 + t as u64);
            // `dx` starts dirty (as a reused buffer does): the kernel overwrites it.
            let mut dx = vec![7.5; x.len()];
            max_pool_backward(&plan, &dy, &arg, &mut dx);
            let mut want = vec![0.0; x.len()];
            for (i, (&g, &a)) in dy.iter().zip(&arg).enumerate() {
                want[i / ohw * hw + a as usize] += g;
            }
            close(&dx, &want);
            assert!((dot(&dx, &x) - dot(&dy, &y)).abs() < 1e-10);
        }
    }

    /// Values drawn from {-1, 0, 1, NaN}: windows full of ties and NaNs, where the separable
    /// kernel must still pick exactly the row-major winner, with and without argmax.
    #[test]
    fn max_pool_ties_and_nans_match_the_row_major_rule() {
        for (t, &(l, k, s, p, d, ceil)) in CASES.iter().enumerate() {
            let o = Window2d::new(k, s, p, d).output_hw("t", l, ceil).unwrap();
            let plan = PoolPlan::window(l, o, k, s, p, d);
            let planes = 4;
            let mut rng = Rng64::seed(7 + t as u64);
            let x: Vec<f64> = (0..planes * l[0] * l[1])
                .map(|_| match rng.below(if t % 2 == 0 { 3 } else { 8 }) {
                    0 => -1.0,
                    1 => 0.0,
                    2 => 1.0,
                    3 => f64::NAN,
                    _ => 0.0,
                })
                .collect();
            let mut y = vec![0.0; planes * o[0] * o[1]];
            let mut arg = vec![0; y.len()];
            max_pool_forward(&plan, &x, &mut y, Some(&mut arg));
            let mut y_only = vec![0.0; y.len()];
            max_pool_forward(&plan, &x, &mut y_only, None);
            let (ohw, hw) = (o[0] * o[1], l[0] * l[1]);
            let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
            for c in 0..planes {
                let (ny, na) = naive_max(&x[c * hw..(c + 1) * hw], l, o, k, s, p, d);
                for i in 0..ohw {
                    assert!(same(y[c * ohw + i], ny[i]), "case {t}");
                    assert!(same(y_only[c * ohw + i], ny[i]), "case {t}");
                }
                assert_eq!(&arg[c * ohw..(c + 1) * ohw], &na[..], "case {t}");
            }
        }
    }

    /// The 2x2-tile path (LeNet's and VGG's pools) against the definition, on planes with an
    /// odd row or column left over, with values full of ties and NaNs; and which plans take it.
    #[test]
    fn max_pool_2x2_tiles_match_the_row_major_rule() {
        let tile = |l: [usize; 2], ceil: bool| {
            let win = Window2d::new([2, 2], [2, 2], [0, 0], [1, 1]);
            let o = win.output_hw("t", l, ceil).unwrap();
            (o, PoolPlan::window(l, o, [2, 2], [2, 2], [0, 0], [1, 1]))
        };
        for (t, l) in [[28, 28], [10, 10], [7, 9], [2, 2], [5, 4]]
            .into_iter()
            .enumerate()
        {
            let (o, plan) = tile(l, false);
            assert!(plan.tiles_2x2(), "{l:?}");
            let planes = 5;
            let (hw, ohw) = (l[0] * l[1], o[0] * o[1]);
            for values in [3, 5] {
                let mut rng = Rng64::seed(40 + t as u64);
                let x: Vec<f64> = (0..planes * hw)
                    .map(|_| match rng.below(values) {
                        0 => -1.0,
                        1 => 0.5,
                        2 => f64::NAN,
                        _ => rng.uniform(),
                    })
                    .collect();
                let mut y = vec![0.0; planes * ohw];
                let mut arg = vec![0; y.len()];
                max_pool_forward(&plan, &x, &mut y, Some(&mut arg));
                let mut y_only = vec![0.0; y.len()];
                max_pool_forward(&plan, &x, &mut y_only, None);
                let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
                for c in 0..planes {
                    let xc = &x[c * hw..(c + 1) * hw];
                    let (ny, na) = naive_max(xc, l, o, [2, 2], [2, 2], [0, 0], [1, 1]);
                    assert_eq!(&arg[c * ohw..(c + 1) * ohw], &na[..], "{l:?}");
                    for i in 0..ohw {
                        assert!(same(y[c * ohw + i], ny[i]), "{l:?}");
                        assert!(same(y_only[c * ohw + i], ny[i]), "{l:?}");
                    }
                }
            }
        }
        // Not tiles: a partial last window (ceil mode), overlap, padding, dilation.
        assert!(!tile([7, 7], true).1.tiles_2x2());
        let other = |k, s, p, d| PoolPlan::window([8, 8], [3, 3], [k; 2], [s; 2], [p; 2], [d; 2]);
        assert!(!other(2, 3, 0, 1).tiles_2x2());
        assert!(!other(3, 2, 0, 1).tiles_2x2());
        assert!(!other(2, 2, 1, 1).tiles_2x2());
        assert!(!other(2, 2, 0, 2).tiles_2x2());
    }

    #[test]
    fn max_pool_ties_take_the_first_and_padding_never_wins() {
        // All equal negative values: padding (-inf) must lose, the first in-bounds tap wins.
        let (l, k, s, p) = ([3, 3], [3, 3], [1, 1], [1, 1]);
        let plan = PoolPlan::window(l, [3, 3], k, s, p, [1, 1]);
        let x = vec![-5.0; 9];
        let (mut y, mut arg) = (vec![0.0; 9], vec![0; 9]);
        max_pool_forward(&plan, &x, &mut y, Some(&mut arg));
        assert!(y.iter().all(|&v| v == -5.0));
        // Output (1, 1) sees the whole plane; (2, 2) starts at input (1, 1).
        assert_eq!(arg, vec![0, 0, 1, 0, 0, 1, 3, 3, 4]);
    }

    /// GoogLeNet's pools (3x3 at stride 1 pad 1 in the inception branches, 3x3 stride 2 in
    /// ceil mode between stages) and other shapes of the padded path (stride 3, dilation with
    /// padding, odd sizes), in f64 and f32, several planes, against the definition; values
    /// drawn from {-inf, -1, 0, 1, NaN, uniform} so that windows hold ties, NaNs, and -inf
    /// cells that must still beat the padding.
    #[test]
    fn padded_max_pool_matches_the_definition_in_f64_and_f32() {
        let cases: [Case; 12] = [
            ([28, 28], [3, 3], [1, 1], [1, 1], [1, 1], true),
            ([14, 14], [3, 3], [1, 1], [1, 1], [1, 1], true),
            ([7, 7], [3, 3], [1, 1], [1, 1], [1, 1], true),
            ([112, 112], [3, 3], [2, 2], [0, 0], [1, 1], true),
            ([56, 56], [3, 3], [2, 2], [0, 0], [1, 1], true),
            ([14, 14], [3, 3], [2, 2], [0, 0], [1, 1], true),
            ([27, 13], [3, 3], [2, 2], [1, 1], [1, 1], true),
            ([5, 3], [3, 3], [1, 1], [1, 1], [1, 1], false),
            ([11, 17], [3, 4], [3, 3], [1, 2], [1, 1], true),
            ([10, 9], [2, 3], [3, 1], [1, 1], [2, 2], false),
            ([9, 12], [3, 2], [1, 2], [0, 1], [1, 3], true),
            ([1, 2], [3, 3], [2, 2], [1, 1], [1, 1], true),
        ];
        for (t, &(l, k, s, p, d, ceil)) in cases.iter().enumerate() {
            let o = Window2d::new(k, s, p, d).output_hw("t", l, ceil).unwrap();
            let plan = PoolPlan::window(l, o, k, s, p, d);
            assert!(!plan.tiles_2x2());
            let planes = 3;
            let (hw, ohw) = (l[0] * l[1], o[0] * o[1]);
            for values in [6, 5, 3] {
                let mut rng = Rng64::seed(300 + 10 * t as u64 + values as u64);
                let x: Vec<f64> = (0..planes * hw)
                    .map(|_| match rng.below(values) {
                        0 => -1.0,
                        1 => f64::NEG_INFINITY,
                        2 => 0.0,
                        3 => 1.0,
                        4 => f64::NAN,
                        // Exact in f32, so both precisions share one definition.
                        _ => rng.uniform() as f32 as f64,
                    })
                    .collect();
                let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
                let mut y = vec![0.0; planes * ohw];
                let mut arg = vec![0; y.len()];
                max_pool_forward(&plan, &x, &mut y, Some(&mut arg));
                let mut y_only = vec![0.0; y.len()];
                max_pool_forward(&plan, &x, &mut y_only, None);
                let mut yf = vec![0.0f32; y.len()];
                let mut argf = vec![0; y.len()];
                max_pool_forward(&plan, &xf, &mut yf, Some(&mut argf));
                let mut yf_only = vec![0.0f32; y.len()];
                max_pool_forward(&plan, &xf, &mut yf_only, None);
                let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
                for c in 0..planes {
                    let (ny, na) = naive_max(&x[c * hw..(c + 1) * hw], l, o, k, s, p, d);
                    let at = c * ohw..(c + 1) * ohw;
                    assert_eq!(&arg[at.clone()], &na[..], "case {t}");
                    assert_eq!(&argf[at.clone()], &na[..], "case {t} f32");
                    for (i, &want) in ny.iter().enumerate() {
                        let i = c * ohw + i;
                        assert!(same(y[i], want), "case {t}");
                        assert!(same(y_only[i], want), "case {t}");
                        assert!(same(yf[i] as f64, want), "case {t} f32");
                        assert!(same(yf_only[i] as f64, want), "case {t} f32");
                    }
                }
            }
        }
    }

    /// A plan without a sliding window (adaptive bins) against the definition.
    #[test]
    fn adaptive_max_pool_matches_the_definition() {
        let (l, o) = ([7, 10], [3, 4]);
        let plan = PoolPlan::adaptive(l, o);
        let mut rng = Rng64::seed(5);
        let x: Vec<f64> = (0..2 * 70)
            .map(|_| match rng.below(4) {
                0 => 0.0,
                1 => f64::NAN,
                _ => rng.uniform(),
            })
            .collect();
        let (mut y, mut arg) = (vec![0.0; 24], vec![0; 24]);
        max_pool_forward(&plan, &x, &mut y, Some(&mut arg));
        let bin = |i: usize, l: usize, o: usize| (i * l / o)..((i + 1) * l).div_ceil(o);
        for c in 0..2 {
            for (oh, ow) in (0..o[0]).flat_map(|a| (0..o[1]).map(move |b| (a, b))) {
                let (mut best, mut at) = (f64::NEG_INFINITY, NO_TAP);
                for h in bin(oh, l[0], o[0]) {
                    for w in bin(ow, l[1], o[1]) {
                        let idx = h * l[1] + w;
                        let v = x[c * 70 + idx];
                        if at == NO_TAP || v > best || v.is_nan() {
                            (best, at) = (v, idx as u32);
                        }
                    }
                }
                let i = c * 12 + oh * o[1] + ow;
                assert_eq!(arg[i], at);
                assert!(y[i] == best || (y[i].is_nan() && best.is_nan()));
            }
        }
    }

    #[test]
    fn window_entirely_in_padding_has_no_tap() {
        // k=2, d=3, p=1 over L=2: taps at -1 and 2, both outside.
        let plan = PoolPlan::window([2, 2], [1, 1], [2, 2], [1, 1], [1, 1], [3, 3]);
        assert_eq!(plan.rows[0].count, 0);
        let (mut y, mut arg) = (vec![0.0; 1], vec![0; 1]);
        max_pool_forward(&plan, &[1.0, 2.0, 3.0, 4.0], &mut y, Some(&mut arg));
        assert_eq!((y[0], arg[0]), (f64::NEG_INFINITY, NO_TAP));
        let mut dx = vec![0.0; 4];
        max_pool_backward(&plan, &[1.0], &arg, &mut dx);
        assert_eq!(dx, vec![0.0; 4]);
    }

    #[test]
    fn avg_pool_matches_naive_and_is_its_own_adjoint() {
        for (t, &(l, k, s, p, _, ceil)) in CASES.iter().enumerate() {
            let o = Window2d::new(k, s, p, [1, 1])
                .output_hw("t", l, ceil)
                .unwrap();
            let plan = PoolPlan::window(l, o, k, s, p, [1, 1]);
            for div in [Divisor::PoolSize, Divisor::InBounds, Divisor::Fixed(5)] {
                let x = rand_vec(2 * l[0] * l[1], t as u64);
                let mut y = vec![0.0; 2 * o[0] * o[1]];
                avg_pool_forward(&plan, div, &x, &mut y);
                let hw = l[0] * l[1];
                let mut want = naive_avg(&x[..hw], l, o, k, s, p, div);
                want.extend(naive_avg(&x[hw..], l, o, k, s, p, div));
                close(&y, &want);
                // The forward is linear, so backward must be its transpose.
                let dy = rand_vec(y.len(), 50 + t as u64);
                let mut dx = vec![0.0; x.len()];
                avg_pool_backward(&plan, div, &dy, &mut dx);
                assert!(
                    (dot(&dx, &x) - dot(&dy, &y)).abs() < 1e-10,
                    "case {t} {div:?}"
                );
            }
        }
    }

    #[test]
    fn ceil_mode_edge_window_divisors() {
        // L=5, k=2, s=2, p=0, ceil: windows [0,2) [2,4) [4,6) -> the last one is clipped to
        // [4,5) by L + P = 5, so even count_include_pad divides by 1 there.
        let t = window_axis(5, 3, 2, 2, 0, 1);
        assert_eq!(
            t[2],
            Taps {
                first: 4,
                count: 1,
                pool_size: 1
            }
        );
        // L=5, k=3, s=2, p=1: windows [-1,2) [1,4) [3,6): pool sizes 3, in-bounds 2, 3, 2.
        let t = window_axis(5, 3, 3, 2, 1, 1);
        assert_eq!(
            t.iter().map(|t| (t.pool_size, t.count)).collect::<Vec<_>>(),
            [(3, 2), (3, 3), (3, 2)]
        );
    }

    #[test]
    fn adaptive_matches_naive_and_is_its_own_adjoint() {
        for (t, (l, o)) in [
            ([6, 6], [1, 1]),
            ([7, 7], [3, 3]),
            ([6, 9], [2, 3]),
            ([3, 2], [5, 7]),
            ([5, 10], [3, 4]),
            ([1, 1], [2, 2]),
        ]
        .into_iter()
        .enumerate()
        {
            let plan = PoolPlan::adaptive(l, o);
            assert_eq!(plan.out_hw(), o);
            let x = rand_vec(l[0] * l[1], t as u64);
            let mut y = vec![0.0; o[0] * o[1]];
            avg_pool_forward(&plan, Divisor::InBounds, &x, &mut y);
            close(&y, &naive_adaptive(&x, l, o));
            let dy = rand_vec(y.len(), 9 + t as u64);
            let mut dx = vec![0.0; x.len()];
            avg_pool_backward(&plan, Divisor::InBounds, &dy, &mut dx);
            assert!((dot(&dx, &x) - dot(&dy, &y)).abs() < 1e-10);
        }
    }
}

//! Convolution as column blocks times a weight matrix (im2col + GEMM), forward and backward.
//!
//! For each group `g` the weight `W_g` is a `[C_out/G, C_in/G·kh·kw]` matrix and the image's
//! columns form a `[C_in/G·kh·kw, OH·OW]` matrix (see [`super::im2col`]):
//!
//! ```text
//! forward:   Y_g  = W_g · col_g                  then the per-channel epilogue (bias, BN, ReLU)
//! backward:  dW_g += dY_g · col_gᵀ,   db += Σ_pixels dY,   dX_g = col2im(W_gᵀ · dY_g)
//! ```
//!
//! The columns are never built for a whole batch at once. The batch is cut into *tasks*:
//! one image per task when its output is large (the image's rows are then cut into blocks
//! whose columns fit a few MiB), or several whole images side by side when the output is
//! small (ResNet's 14x14 and 7x7 stages), so that every product is wide enough to run near
//! the GEMM's peak. Tasks run in parallel; a lone task uses the GEMM's own threads instead.
//! Column buffers come from [`super::workspace`], so steady-state calls allocate only their
//! outputs. A 1x1 stride-1 unpadded convolution of a single image reads the image itself as
//! its column matrix.

use super::gemm::{gemm_view, MatMut, MatRef, Threads};
use super::im2col::{col2im_block, im2col_block, wide_col2im, wide_im2col, Block, Wide};
use super::norm::lane_sum;
use super::winograd::{self, Weights, WinogradGeom};
use super::workspace;
use crate::geometry::Window2d;
use crate::parallel::prelude::*;
use crate::tensor::Float;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};

/// A product narrower than this many columns runs well below the GEMM's peak: smaller
/// outputs are batched across images.
const TARGET_COLS: usize = 512;
/// Elements of one column block (4 MiB of f32): large enough for long products, small enough
/// to stay in the last-level cache.
const BLOCK_ELEMS: usize = 1 << 20;
/// Winograd's transforms cost about as much per channel as a few taps of the product: below
/// this many input and output channels im2col + GEMM is as fast.
const WINOGRAD_MIN_CHANNELS: usize = 16;

static WIDE: AtomicBool = AtomicBool::new(true);

/// Turns the wide layout for narrow stride-1 convolutions on (the default) or off (then
/// im2col's row-by-row layout is used everywhere; the numbers are the same up to rounding).
pub fn set_wide(enabled: bool) {
    WIDE.store(enabled, Ordering::Relaxed);
}

static WINOGRAD: AtomicBool = AtomicBool::new(true);

/// Output rows shorter than this make im2col a stream of short copies (one per output row and
/// tap); stride-1 windows over such images use the wide layout of [`Wide`] instead.
const WIDE_MAX_ROW: usize = 64;
/// ... when the product is short enough (this many output channels per group or fewer) that
/// building the columns costs as much as multiplying them; with more channels the wide
/// layout's unused columns cost more in the product than they save in im2col.
const WIDE_MAX_OUT_CHANNELS: usize = 32;

/// Turns the Winograd path for 3x3 stride-1 convolutions on (the default) or off.
///
/// Winograd F(4x4, 3x3) (forward, data gradient and weight gradient) does a quarter of the
/// multiplications but rounds differently: in f32 its results differ from direct convolution
/// by about 1e-6 relative, its weight gradient on batch-8 ResNet/VGG layers by up to ~1e-5
/// (im2col's by ~5e-7; measured in this module's tests). Turn it off to get im2col + GEMM
/// everywhere.
pub fn set_winograd(enabled: bool) {
    WINOGRAD.store(enabled, Ordering::Relaxed);
}

/// The sizes of one convolution call.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvGeom {
    /// Images in the batch.
    pub n: usize,
    /// Channel groups.
    pub groups: usize,
    /// Input channels per group.
    pub cin_g: usize,
    /// Output channels per group.
    pub cout_g: usize,
    /// Input `[H, W]`.
    pub in_hw: [usize; 2],
    /// Output `[OH, OW]`.
    pub out_hw: [usize; 2],
    /// Kernel, stride, padding and dilation.
    pub win: Window2d,
}

impl ConvGeom {
    /// Rows of a group's column matrix: `C_in/G · kh · kw`.
    pub fn taps(&self) -> usize {
        self.cin_g * self.win.h.kernel * self.win.w.kernel
    }
    /// Output pixels per channel, `OH · OW`.
    pub fn plane(&self) -> usize {
        self.out_hw[0] * self.out_hw[1]
    }
    /// Elements of one input image.
    pub fn image_len(&self) -> usize {
        self.groups * self.cin_g * self.in_hw[0] * self.in_hw[1]
    }
    /// Elements of one output image.
    pub fn out_len(&self) -> usize {
        self.groups * self.cout_g * self.plane()
    }
    /// `[N, C_out, OH, OW]`.
    pub fn output_shape(&self) -> Vec<usize> {
        vec![
            self.n,
            self.groups * self.cout_g,
            self.out_hw[0],
            self.out_hw[1],
        ]
    }
    /// Elements of one group's weight matrix.
    fn weight_len(&self) -> usize {
        self.cout_g * self.taps()
    }
    /// 1x1, stride 1, no padding: the image is its own column matrix.
    fn identity(&self) -> bool {
        let (h, w) = (self.win.h, self.win.w);
        h.kernel == 1
            && w.kernel == 1
            && h.stride == 1
            && w.stride == 1
            && h.padding == 0
            && w.padding == 0
    }

    /// The window covers the whole unpadded input (one output pixel, undilated, like LeNet's
    /// C5): an image's column matrix is the image itself, so the batch is one plain product
    /// `Y[N, C_out] = X[N, C_in·H·W] · Wᵀ` (per group) with no im2col at all.
    fn dense(&self) -> bool {
        let (h, w) = (self.win.h, self.win.w);
        self.out_hw == [1, 1]
            && [(h, self.in_hw[0]), (w, self.in_hw[1])]
                .iter()
                .all(|(a, len)| a.kernel == *len && a.padding == 0 && a.dilation == 1)
    }

    /// The wide column layout (see [`Wide`]) for a stride-1 convolution with short output rows
    /// and few output channels, where im2col's per-row copies cost as much as the product.
    fn wide(&self) -> Option<Wide> {
        if self.identity()
            || self.out_hw[1] >= WIDE_MAX_ROW
            || self.cout_g > WIDE_MAX_OUT_CHANNELS
            || !WIDE.load(Ordering::Relaxed)
        {
            return None;
        }
        Wide::new(self.in_hw, &self.win, self.out_hw)
            .filter(|wide| self.taps() * wide.len <= 4 * BLOCK_ELEMS)
    }

    /// The wide column matrix of group `g` for `images` consecutive images of `x`, side by
    /// side: `[taps, images · wide.len]`.
    fn wide_columns<T: Float>(
        &self,
        x: &[T],
        images: usize,
        g: usize,
        wide: &Wide,
    ) -> workspace::Workspace<T> {
        let group_in = self.cin_g * self.in_hw[0] * self.in_hw[1];
        let ld = images * wide.len;
        let mut col = workspace::take::<T>(self.taps() * ld);
        let mut scratch = workspace::take::<T>(self.cin_g * wide.plane());
        for i in 0..images {
            let x_i = &x[i * self.image_len() + g * group_in..][..group_in];
            wide_im2col(
                x_i,
                self.cin_g,
                self.in_hw,
                &self.win,
                wide,
                &mut scratch,
                &mut col,
                i * wide.len,
                ld,
            );
        }
        col
    }

    /// The column matrix of group `g` for output rows `rows` of `images` consecutive images of
    /// `x`, side by side (`[taps, images · rows · OW]`), in a scratch buffer.
    fn columns<T: Float>(
        &self,
        x: &[T],
        images: usize,
        g: usize,
        rows: Range<usize>,
    ) -> workspace::Workspace<T> {
        let group_in = self.cin_g * self.in_hw[0] * self.in_hw[1];
        let width = rows.len() * self.out_hw[1];
        let ld = images * width;
        let mut buf = workspace::take::<T>(self.taps() * ld);
        if self.identity() && rows == (0..self.out_hw[0]) {
            // 1x1: an image's columns are its planes, side by side.
            let plane = self.plane();
            for i in 0..images {
                let x_i = &x[i * self.image_len() + g * group_in..][..group_in];
                for (c, x_c) in x_i.chunks_exact(plane).enumerate() {
                    buf[c * ld + i * width..][..plane].copy_from_slice(x_c);
                }
            }
            return buf;
        }
        for i in 0..images {
            let block = Block {
                rows: rows.clone(),
                offset: i * width,
                ld,
            };
            let x_i = &x[i * self.image_len() + g * group_in..][..group_in];
            im2col_block(
                x_i,
                self.cin_g,
                self.in_hw,
                &self.win,
                self.out_hw,
                &block,
                &mut buf,
            );
        }
        buf
    }

    /// The Winograd geometry when this is a 3x3, stride-1, undilated, ungrouped convolution
    /// with enough channels for the transforms to pay (see [`super::winograd`]).
    pub fn winograd(&self) -> Option<WinogradGeom> {
        let (h, w) = (self.win.h, self.win.w);
        let fits = [h, w]
            .iter()
            .all(|a| a.kernel == 3 && a.stride == 1 && a.dilation == 1 && a.padding <= 2);
        (fits
            && self.groups == 1
            && self.cin_g >= WINOGRAD_MIN_CHANNELS
            && self.cout_g >= WINOGRAD_MIN_CHANNELS)
            .then_some(WinogradGeom {
                n: self.n,
                cin: self.cin_g,
                cout: self.cout_g,
                in_hw: self.in_hw,
                padding: [h.padding, w.padding],
            })
    }

    /// Splits the batch into tasks of consecutive images (sizes differ by at most one).
    fn tasks(&self) -> Vec<Range<usize>> {
        let threads = crate::parallel::current_num_threads().max(1);
        let (plane, taps) = (self.plane().max(1), self.taps().max(1));
        let mut count = if plane >= TARGET_COLS {
            self.n
        } else {
            // Enough columns per product, and columns of several images within the budget.
            let by_width = self.n * plane / TARGET_COLS;
            let by_budget = (self.n * plane * taps).div_ceil(4 * BLOCK_ELEMS);
            let wanted = by_width.max(by_budget).min(self.n);
            if wanted >= threads {
                wanted - wanted % threads
            } else {
                by_budget.clamp(1, self.n)
            }
        };
        count = count.clamp(1, self.n.max(1));
        let (base, extra) = (self.n / count, self.n % count);
        let mut start = 0;
        (0..count)
            .map(|t| {
                let len = base + usize::from(t < extra);
                start += len;
                start - len..start
            })
            .collect()
    }

    /// The column blocks of a task: row blocks of its one image, or its whole images.
    fn blocks(&self, images: &Range<usize>) -> Vec<Range<usize>> {
        let [oh, ow] = self.out_hw;
        if images.len() > 1 || self.identity() {
            return std::iter::once(0..oh).collect();
        }
        let rows = (BLOCK_ELEMS / (self.taps() * ow).max(1)).clamp(1, oh);
        let count = oh.div_ceil(rows);
        let rows = oh.div_ceil(count);
        (0..count)
            .map(|b| b * rows..((b + 1) * rows).min(oh))
            .collect()
    }
}

/// A per-output-channel map applied to each output as it is written:
/// `y = act(scale[c] · acc + shift[c])`, where `act` is the identity or a ReLU.
#[derive(Clone, Copy, Debug, Default)]
pub struct ChannelOp<'a, T> {
    /// Per-channel factor (1 when absent).
    pub scale: Option<&'a [T]>,
    /// Per-channel offset, e.g. the bias (0 when absent).
    pub shift: Option<&'a [T]>,
    /// Whether a ReLU follows (NaN stays NaN).
    pub relu: bool,
}

impl<T: Float> ChannelOp<'_, T> {
    /// Applies the map of channel `channel` to `values` in place.
    #[inline(always)]
    pub fn apply(&self, channel: usize, values: &mut [T]) {
        let s = self.scale.map(|s| s[channel]);
        let b = self.shift.map_or(T::zero(), |b| b[channel]);
        match (s, self.relu) {
            (None, false) if self.shift.is_none() => {}
            (None, false) => values.iter_mut().for_each(|v| *v += b),
            (Some(s), false) => values.iter_mut().for_each(|v| *v = *v * s + b),
            (s, true) => {
                let s = s.unwrap_or(T::one());
                values.iter_mut().for_each(|v| {
                    let t = *v * s + b;
                    // `t < 0` is false for NaN, which therefore passes through.
                    *v = if t < T::zero() { T::zero() } else { t };
                })
            }
        }
    }
}

/// Splits `data` into consecutive pieces of `lens[i] * unit` elements.
fn split_mut<'a, T>(mut data: &'a mut [T], lens: &[usize], unit: usize) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(lens.len());
    for &len in lens {
        let (head, tail) = data.split_at_mut(len * unit);
        out.push(head);
        data = tail;
    }
    out
}

/// `y = op(W · im2col(x))` for a whole batch: `x[N, C_in, H, W]`, `w[C_out, C_in/G, kh, kw]`,
/// `y[N, C_out, OH, OW]` (every element written).
///
/// # Panics
/// If a slice is shorter than `geom` says (a bug in the caller).
pub fn forward<T: Float>(geom: &ConvGeom, x: &[T], w: &[T], op: &ChannelOp<'_, T>, y: &mut [T]) {
    forward_prepared(geom, x, w, None, op, y);
}

/// A weight prepared once for many calls of [`forward_prepared`] (inference): the Winograd
/// transform of a 3x3 kernel, which [`forward`] otherwise recomputes on every call.
#[derive(Clone, Debug)]
pub struct PreparedWeight<T> {
    /// `U[36][C_out][C_in]` (see [`winograd::transform_weights`]).
    transformed: Vec<T>,
    cout: usize,
    cin: usize,
}

impl<T: Float> PreparedWeight<T> {
    /// The prepared form of `w` for convolutions shaped like `geom`, or `None` when `geom`
    /// does not take the Winograd path (then there is nothing to prepare).
    pub fn new(geom: &ConvGeom, w: &[T]) -> Option<Self> {
        geom.winograd().map(|wg| PreparedWeight {
            transformed: winograd::transform_weights(w, wg.cout, wg.cin),
            cout: wg.cout,
            cin: wg.cin,
        })
    }
}

/// [`forward`] with the weight's prepared form, when it has one and suits `geom`. `prepared`
/// must have been made from this same `w` (the caller keeps the two together and drops the
/// prepared form when the weight changes).
pub fn forward_prepared<T: Float>(
    geom: &ConvGeom,
    x: &[T],
    w: &[T],
    prepared: Option<&PreparedWeight<T>>,
    op: &ChannelOp<'_, T>,
    y: &mut [T],
) {
    forward_with(
        geom,
        x,
        w,
        prepared,
        op,
        y,
        WINOGRAD.load(Ordering::Relaxed),
    );
}

/// [`forward`] with Winograd allowed or not (tests compare the two paths without touching the
/// process-wide switch).
fn forward_with<T: Float>(
    geom: &ConvGeom,
    x: &[T],
    w: &[T],
    prepared: Option<&PreparedWeight<T>>,
    op: &ChannelOp<'_, T>,
    y: &mut [T],
    allow_winograd: bool,
) {
    assert!(x.len() >= geom.n * geom.image_len() && y.len() >= geom.n * geom.out_len());
    assert!(w.len() >= geom.groups * geom.weight_len());
    if geom.n == 0 || geom.out_len() == 0 {
        return;
    }
    if let Some(wg) = geom.winograd().filter(|_| allow_winograd) {
        let weights = match prepared {
            Some(p) if (p.cout, p.cin) == (wg.cout, wg.cin) => Weights::Transformed(&p.transformed),
            _ => Weights::Plain(w),
        };
        winograd::forward(&wg, x, weights, op, y);
        return;
    }
    if geom.dense() {
        dense_forward(geom, x, w, op, y);
        return;
    }
    let tasks = geom.tasks();
    let threads = if tasks.len() == 1 {
        Threads::Pool
    } else {
        Threads::Single
    };
    let lens: Vec<usize> = tasks.iter().map(|t| t.len()).collect();
    let ys = split_mut(&mut y[..geom.n * geom.out_len()], &lens, geom.out_len());
    tasks.par_iter().zip(ys).for_each(|(images, y_task)| {
        let x_task = &x[images.start * geom.image_len()..images.end * geom.image_len()];
        forward_task(geom, x_task, images.len(), w, op, y_task, threads);
    });
}

fn forward_task<T: Float>(
    geom: &ConvGeom,
    x: &[T],
    images: usize,
    w: &[T],
    op: &ChannelOp<'_, T>,
    y: &mut [T],
    threads: Threads,
) {
    if let Some(wide) = geom.wide() {
        wide_forward_task(geom, &wide, x, images, w, op, y, threads);
        return;
    }
    let (plane, taps, ow) = (geom.plane(), geom.taps(), geom.out_hw[1]);
    let group_in = geom.cin_g * geom.in_hw[0] * geom.in_hw[1];
    let group_out = geom.cout_g * plane;
    for g in 0..geom.groups {
        let wg = MatRef::new(&w[g * geom.weight_len()..], geom.cout_g, taps, taps);
        for rows in geom.blocks(&(0..images)) {
            let block_cols = rows.len() * ow;
            if images == 1 {
                // Write straight into the image's output rows.
                let x_g = &x[g * group_in..(g + 1) * group_in];
                let y_g = &mut y[g * group_out + rows.start * ow..];
                let col = (!geom.identity()).then(|| geom.columns(x, 1, g, rows.clone()));
                let b = match &col {
                    None => MatRef::new(&x_g[rows.start * ow..], taps, block_cols, plane),
                    Some(col) => MatRef::new(&col[..], taps, block_cols, block_cols),
                };
                gemm_view(
                    wg,
                    b,
                    MatMut::new(y_g, geom.cout_g, block_cols, plane),
                    false,
                    threads,
                );
                for o in 0..geom.cout_g {
                    op.apply(
                        g * geom.cout_g + o,
                        &mut y_g[o * plane..o * plane + block_cols],
                    );
                }
            } else {
                // Several whole images side by side, then scattered to NCHW.
                let ld = images * plane;
                let col = geom.columns(x, images, g, 0..geom.out_hw[0]);
                let mut out = workspace::take::<T>(geom.cout_g * ld);
                gemm_view(
                    wg,
                    MatRef::new(&col, taps, ld, ld),
                    MatMut::new(&mut out, geom.cout_g, ld, ld),
                    false,
                    threads,
                );
                for i in 0..images {
                    for o in 0..geom.cout_g {
                        let dst = &mut y[i * geom.out_len() + g * group_out + o * plane..][..plane];
                        dst.copy_from_slice(&out[o * ld + i * plane..][..plane]);
                        op.apply(g * geom.cout_g + o, dst);
                    }
                }
            }
        }
    }
}

/// [`forward_task`] in the wide layout: `Y'_g = W_g · col_g` over `images · wide.len`
/// columns, then each output row's first `OW` columns go to `y` through the epilogue.
#[allow(clippy::too_many_arguments)]
fn wide_forward_task<T: Float>(
    geom: &ConvGeom,
    wide: &Wide,
    x: &[T],
    images: usize,
    w: &[T],
    op: &ChannelOp<'_, T>,
    y: &mut [T],
    threads: Threads,
) {
    let (plane, taps, ow, wp) = (geom.plane(), geom.taps(), geom.out_hw[1], wide.padded_hw[1]);
    let ld = images * wide.len;
    for g in 0..geom.groups {
        let wg = MatRef::new(&w[g * geom.weight_len()..], geom.cout_g, taps, taps);
        let col = geom.wide_columns(x, images, g, wide);
        let mut out = workspace::take::<T>(geom.cout_g * ld);
        gemm_view(
            wg,
            MatRef::new(&col, taps, ld, ld),
            MatMut::new(&mut out, geom.cout_g, ld, ld),
            false,
            threads,
        );
        for i in 0..images {
            for o in 0..geom.cout_g {
                let channel = g * geom.cout_g + o;
                let dst = &mut y[i * geom.out_len() + channel * plane..][..plane];
                let src = &out[o * ld + i * wide.len..][..wide.len];
                for (row, s) in dst.chunks_exact_mut(ow).zip(src.chunks(wp)) {
                    row.copy_from_slice(&s[..ow]);
                }
                op.apply(channel, dst);
            }
        }
    }
}

/// [`backward_task`] in the wide layout: the output gradient is spread to wide columns (zero
/// in the unused ones), then `dW_g += dY'_g · col_gᵀ` and `dX = wide_col2im(W_gᵀ · dY'_g)`.
#[allow(clippy::too_many_arguments)]
fn wide_backward_task<T: Float>(
    geom: &ConvGeom,
    wide: &Wide,
    x: &[T],
    images: usize,
    w: &[T],
    dy: &[T],
    mut dx: Option<&mut [T]>,
    dw: &mut [T],
    db: &mut [T],
    threads: Threads,
) {
    let (plane, taps, ow, wp) = (geom.plane(), geom.taps(), geom.out_hw[1], wide.padded_hw[1]);
    let group_in = geom.cin_g * geom.in_hw[0] * geom.in_hw[1];
    let ld = images * wide.len;
    for g in 0..geom.groups {
        let w_len = geom.weight_len();
        // Every element is written below: output rows copied, unused columns set to zero.
        let mut dyw = workspace::take::<T>(geom.cout_g * ld);
        for i in 0..images {
            for o in 0..geom.cout_g {
                let channel = g * geom.cout_g + o;
                let src = &dy[i * geom.out_len() + channel * plane..][..plane];
                if !db.is_empty() {
                    db[channel] += lane_sum(src, src, |v, _| v);
                }
                let dst = &mut dyw[o * ld + i * wide.len..][..wide.len];
                for (d, row) in dst.chunks_mut(wp).zip(src.chunks_exact(ow)) {
                    let (used, unused) = d.split_at_mut(ow);
                    used.copy_from_slice(row);
                    unused.fill(T::zero());
                }
            }
        }
        let dyw_m = MatRef::new(&dyw, geom.cout_g, ld, ld);
        let col = geom.wide_columns(x, images, g, wide);
        gemm_view(
            dyw_m,
            MatRef::new(&col, taps, ld, ld).t(),
            MatMut::new(&mut dw[g * w_len..][..w_len], geom.cout_g, taps, taps),
            true,
            threads,
        );
        drop(col);
        let Some(dx) = dx.as_deref_mut() else {
            continue;
        };
        let wt = MatRef::new(&w[g * w_len..][..w_len], geom.cout_g, taps, taps).t();
        let mut dcol = workspace::take::<T>(taps * ld);
        gemm_view(
            wt,
            dyw_m,
            MatMut::new(&mut dcol, taps, ld, ld),
            false,
            threads,
        );
        let mut scratch = workspace::take::<T>(geom.cin_g * wide.plane());
        for i in 0..images {
            let dx_i = &mut dx[i * geom.image_len() + g * group_in..][..group_in];
            wide_col2im(
                &dcol,
                geom.cin_g,
                geom.in_hw,
                &geom.win,
                wide,
                &mut scratch,
                dx_i,
                i * wide.len,
                ld,
            );
        }
    }
}

/// The whole batch of a [`ConvGeom::dense`] convolution: per group
/// `Y_g[N, C_out/G] = X_g[N, taps] · W_gᵀ`, read and written in place (rows of `X` are
/// `C_in·H·W` apart, rows of `Y` are `C_out` apart), then the epilogue per channel.
fn dense_forward<T: Float>(geom: &ConvGeom, x: &[T], w: &[T], op: &ChannelOp<'_, T>, y: &mut [T]) {
    let (n, taps, cout) = (geom.n, geom.taps(), geom.groups * geom.cout_g);
    for g in 0..geom.groups {
        let x_g = MatRef::new(&x[g * taps..], n, taps, geom.image_len());
        let w_g = MatRef::new(&w[g * geom.weight_len()..], geom.cout_g, taps, taps);
        let y_g = MatMut::new(&mut y[g * geom.cout_g..], n, geom.cout_g, cout);
        gemm_view(x_g, w_g.t(), y_g, false, Threads::Pool);
    }
    for row in y[..n * cout].chunks_exact_mut(cout) {
        for (c, v) in row.iter_mut().enumerate() {
            op.apply(c, std::slice::from_mut(v));
        }
    }
}

/// Gradients of [`dense_forward`]: per group `dW_g += dY_gᵀ · X_g`, `dX_g = dY_g · W_g`,
/// `db += Σ_n dY`.
fn dense_backward<T: Float>(
    geom: &ConvGeom,
    x: &[T],
    w: &[T],
    dy: &[T],
    mut dx: Option<&mut [T]>,
    dw: &mut [T],
    db: Option<&mut [T]>,
) {
    let (n, taps, cout) = (geom.n, geom.taps(), geom.groups * geom.cout_g);
    for g in 0..geom.groups {
        let x_g = MatRef::new(&x[g * taps..], n, taps, geom.image_len());
        let dy_g = MatRef::new(&dy[g * geom.cout_g..], n, geom.cout_g, cout);
        let w_len = geom.weight_len();
        let w_g = MatRef::new(&w[g * w_len..], geom.cout_g, taps, taps);
        let dw_g = MatMut::new(&mut dw[g * w_len..], geom.cout_g, taps, taps);
        gemm_view(dy_g.t(), x_g, dw_g, true, Threads::Pool);
        if let Some(dx) = dx.as_deref_mut() {
            let dx_g = MatMut::new(&mut dx[g * taps..], n, taps, geom.image_len());
            gemm_view(dy_g, w_g, dx_g, false, Threads::Pool);
        }
    }
    if let Some(db) = db {
        for row in dy[..n * cout].chunks_exact(cout) {
            db.iter_mut().zip(row).for_each(|(b, d)| *b += *d);
        }
    }
}

/// Gradients of [`forward`] without epilogue: `dw += Σ dY·colᵀ`, `db += Σ dY` (when given) and
/// `dx = col2im(Wᵀ · dY)` (when given; every element of `dx` written). Without `dx` the data
/// gradient's product and col2im are skipped: the first layer of a model needs none.
///
/// The weight gradient is summed per fixed run of tasks and the runs are added in order, so
/// the result does not depend on scheduling (only on the thread count).
///
/// # Panics
/// If a slice is shorter than `geom` says (a bug in the caller).
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    geom: &ConvGeom,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: Option<&mut [T]>,
) {
    backward_with(geom, x, w, dy, dx, dw, db, WINOGRAD.load(Ordering::Relaxed));
}

/// [`backward`] with Winograd allowed or not (tests compare the two paths without touching
/// the process-wide switch).
#[allow(clippy::too_many_arguments)]
fn backward_with<T: Float>(
    geom: &ConvGeom,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: Option<&mut [T]>,
    allow_winograd: bool,
) {
    let (n, image_len, out_len) = (geom.n, geom.image_len(), geom.out_len());
    assert!(x.len() >= n * image_len && dy.len() >= n * out_len);
    assert!(dx.as_ref().is_none_or(|dx| dx.len() >= n * image_len));
    assert!(
        w.len() >= geom.groups * geom.weight_len() && dw.len() >= geom.groups * geom.weight_len()
    );
    if n == 0 || out_len == 0 {
        if let Some(dx) = dx {
            dx[..n * image_len].fill(T::zero());
        }
        return;
    }
    if geom.dense() {
        dense_backward(geom, x, w, dy, dx, dw, db);
        return;
    }
    if let Some(wg) = geom.winograd().filter(|_| allow_winograd) {
        winograd_backward(&wg, x, w, dy, dx, dw, db);
        return;
    }
    let tasks = geom.tasks();
    let threads = crate::parallel::current_num_threads().max(1);
    let gemm_threads = if tasks.len() == 1 {
        Threads::Pool
    } else {
        Threads::Single
    };
    // Fixed runs of consecutive tasks, one per thread.
    let per_run = tasks.len().div_ceil(threads);
    let runs: Vec<&[Range<usize>]> = tasks.chunks(per_run).collect();
    let run_lens: Vec<usize> = runs
        .iter()
        .map(|r| r.iter().map(|t| t.len()).sum())
        .collect();
    let dxs: Vec<Option<&mut [T]>> = match dx {
        Some(dx) => split_mut(&mut dx[..n * image_len], &run_lens, image_len)
            .into_iter()
            .map(Some)
            .collect(),
        None => run_lens.iter().map(|_| None).collect(),
    };
    let (w_len, db_len) = (
        geom.groups * geom.weight_len(),
        db.as_ref().map_or(0, |d| d.len()),
    );
    let partials: Vec<(workspace::Workspace<T>, workspace::Workspace<T>)> = runs
        .par_iter()
        .zip(dxs)
        .map(|(run, mut dx_run)| {
            let mut dw_run = workspace::take::<T>(w_len).zeroed();
            let mut db_run = workspace::take::<T>(db_len).zeroed();
            let first = run[0].start;
            for images in run.iter() {
                let xs = &x[images.start * image_len..images.end * image_len];
                let dys = &dy[images.start * out_len..images.end * out_len];
                let dxt = dx_run.as_deref_mut().map(|dx| {
                    &mut dx[(images.start - first) * image_len..(images.end - first) * image_len]
                });
                backward_task(
                    geom,
                    xs,
                    images.len(),
                    w,
                    dys,
                    dxt,
                    &mut dw_run,
                    &mut db_run,
                    gemm_threads,
                );
            }
            (dw_run, db_run)
        })
        .collect();
    let dw = &mut dw[..w_len];
    let mut db = db;
    for (dw_run, db_run) in &partials {
        dw.iter_mut().zip(dw_run.iter()).for_each(|(g, d)| *g += *d);
        if let Some(db) = db.as_deref_mut() {
            db.iter_mut().zip(db_run.iter()).for_each(|(g, d)| *g += *d);
        }
    }
}

/// [`backward`] of a convolution on the Winograd path: `dX = conv3x3(dY, flipped Wᵀ)` at
/// padding `2 - p` and `dW += Gᵀ [Σ (Bᵀ X B) ⊙ (A dY Aᵀ)] G` (see
/// [`winograd::weight_gradient`]), both by Winograd; `db += Σ dY` per channel, summed in
/// image order.
fn winograd_backward<T: Float>(
    wg: &WinogradGeom,
    x: &[T],
    w: &[T],
    dy: &[T],
    dx: Option<&mut [T]>,
    dw: &mut [T],
    db: Option<&mut [T]>,
) {
    let (n, cin, cout) = (wg.n, wg.cin, wg.cout);
    let [oh, ow] = wg.out_hw();
    let plane = oh * ow;
    if let Some(db) = db {
        db[..cout].par_iter_mut().enumerate().for_each(|(o, b)| {
            for i in 0..n {
                let row = &dy[(i * cout + o) * plane..][..plane];
                *b += lane_sum(row, row, |v, _| v);
            }
        });
    }
    winograd::weight_gradient(wg, x, dy, dw);
    let Some(dx) = dx else {
        return;
    };
    let mut flipped = workspace::take::<T>(cout * cin * 9);
    winograd::flip_kernel(w, cout, cin, &mut flipped);
    let data_geom = WinogradGeom {
        n,
        cin: cout,
        cout: cin,
        in_hw: [oh, ow],
        padding: [2 - wg.padding[0], 2 - wg.padding[1]],
    };
    winograd::forward(
        &data_geom,
        dy,
        Weights::Plain(&flipped),
        &ChannelOp::default(),
        &mut dx[..n * cin * wg.in_hw[0] * wg.in_hw[1]],
    );
}

#[allow(clippy::too_many_arguments)]
fn backward_task<T: Float>(
    geom: &ConvGeom,
    x: &[T],
    images: usize,
    w: &[T],
    dy: &[T],
    mut dx: Option<&mut [T]>,
    dw: &mut [T],
    db: &mut [T],
    threads: Threads,
) {
    let (plane, taps, ow) = (geom.plane(), geom.taps(), geom.out_hw[1]);
    let group_in = geom.cin_g * geom.in_hw[0] * geom.in_hw[1];
    let group_out = geom.cout_g * plane;
    // A 1x1 identity convolution writes every element of dx below (the product, or a copy of
    // it); the others add into it.
    if let Some(dx) = dx.as_deref_mut().filter(|_| !geom.identity()) {
        dx.fill(T::zero());
    }
    if let Some(wide) = geom.wide() {
        wide_backward_task(geom, &wide, x, images, w, dy, dx, dw, db, threads);
        return;
    }
    for g in 0..geom.groups {
        let w_g = &w[g * geom.weight_len()..][..geom.weight_len()];
        let wt = MatRef::new(w_g, geom.cout_g, taps, taps).t();
        let dw_g = &mut dw[g * geom.weight_len()..][..geom.weight_len()];
        for rows in geom.blocks(&(0..images)) {
            let r0 = rows.start * ow;
            let cols = rows.len() * ow * images;
            // The block's output gradient as a [C_out/G, cols] matrix: a view of dY for a
            // single image, gathered side by side for several.
            let dy_buf = (images > 1).then(|| {
                let mut buf = workspace::take::<T>(geom.cout_g * cols);
                for i in 0..images {
                    for o in 0..geom.cout_g {
                        buf[o * cols + i * plane..][..plane].copy_from_slice(
                            &dy[i * geom.out_len() + g * group_out + o * plane..][..plane],
                        );
                    }
                }
                buf
            });
            let (dyb, dy_ld) = match &dy_buf {
                None => (&dy[g * group_out + r0..], plane),
                Some(buf) => (&buf[..], cols),
            };
            let dyb = MatRef::new(dyb, geom.cout_g, cols, dy_ld);
            if !db.is_empty() {
                for o in 0..geom.cout_g {
                    let row = match &dy_buf {
                        None => &dy[g * group_out + o * plane + r0..][..cols],
                        Some(buf) => &buf[o * cols..][..cols],
                    };
                    db[g * geom.cout_g + o] += lane_sum(row, row, |v, _| v);
                }
            }
            // Columns of x for this block (a view of x for a single 1x1 image).
            let col_buf =
                (images > 1 || !geom.identity()).then(|| geom.columns(x, images, g, rows.clone()));
            let col = match &col_buf {
                None => MatRef::new(&x[g * group_in + r0..], taps, cols, plane),
                Some(buf) => MatRef::new(&buf[..], taps, cols, cols),
            };
            gemm_view(
                dyb,
                col.t(),
                MatMut::new(dw_g, geom.cout_g, taps, taps),
                true,
                threads,
            );
            drop(col_buf);
            let Some(dx) = dx.as_deref_mut() else {
                continue;
            };
            // dX: Wᵀ · dY, written straight into dx for a single 1x1 image, else col2im.
            if images == 1 && geom.identity() {
                let dst = MatMut::new(&mut dx[g * group_in + r0..], taps, cols, plane);
                gemm_view(wt, dyb, dst, false, threads);
            } else {
                let mut dcol = workspace::take::<T>(taps * cols);
                gemm_view(
                    wt,
                    dyb,
                    MatMut::new(&mut dcol, taps, cols, cols),
                    false,
                    threads,
                );
                for i in 0..images {
                    let dx_i = &mut dx[i * geom.image_len() + g * group_in..][..group_in];
                    if geom.identity() {
                        // 1x1: image i's part of dX's columns is its planes.
                        for (c, dx_c) in dx_i.chunks_exact_mut(plane).enumerate() {
                            dx_c.copy_from_slice(&dcol[c * cols + i * plane..][..plane]);
                        }
                        continue;
                    }
                    let block = Block {
                        rows: rows.clone(),
                        offset: i * plane,
                        ld: cols,
                    };
                    col2im_block(
                        &dcol,
                        geom.cin_g,
                        geom.in_hw,
                        &geom.win,
                        geom.out_hw,
                        &block,
                        dx_i,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng64;

    fn geom(n: usize, cin: usize, cout: usize, hw: usize, pad: usize) -> ConvGeom {
        let win = Window2d::new([3, 3], [1, 1], [pad, pad], [1, 1]);
        let out_hw = win.output_hw("test", [hw, hw], false).unwrap();
        ConvGeom {
            n,
            groups: 1,
            cin_g: cin,
            cout_g: cout,
            in_hw: [hw, hw],
            out_hw,
            win,
        }
    }

    #[test]
    fn winograd_and_im2col_agree_with_the_epilogue() {
        let mut rng = Rng64::seed(9);
        for g in [
            geom(3, 16, 24, 11, 1),
            geom(2, 32, 16, 6, 0),
            geom(1, 16, 16, 9, 2),
        ] {
            assert!(g.winograd().is_some());
            let x: Vec<f64> = (0..g.n * g.image_len())
                .map(|_| rng.uniform() - 0.5)
                .collect();
            let w: Vec<f64> = (0..g.cout_g * g.taps())
                .map(|_| rng.uniform() - 0.5)
                .collect();
            let scale: Vec<f64> = (0..g.cout_g).map(|_| rng.uniform() + 0.5).collect();
            let shift: Vec<f64> = (0..g.cout_g).map(|_| rng.uniform() - 0.5).collect();
            let op = ChannelOp {
                scale: Some(&scale),
                shift: Some(&shift),
                relu: true,
            };
            let mut a = vec![f64::NAN; g.n * g.out_len()];
            let mut b = vec![f64::NAN; g.n * g.out_len()];
            forward_with(&g, &x, &w, None, &op, &mut a, true);
            forward_with(&g, &x, &w, None, &op, &mut b, false);
            assert!(a.contains(&0.0) && a.iter().any(|&v| v > 0.0));
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() < 1e-12, "{p} vs {q}");
            }
            // A prepared weight gives exactly the Winograd numbers; one prepared for other
            // channel counts is not used.
            let prepared = PreparedWeight::new(&g, &w).unwrap();
            let mut c = vec![f64::NAN; g.n * g.out_len()];
            forward_with(&g, &x, &w, Some(&prepared), &op, &mut c, true);
            assert_eq!(a, c);
            let other = geom(1, g.cin_g + 1, g.cout_g, 5, 1);
            let w_other = vec![7.0; other.cout_g * other.taps()];
            let wrong = PreparedWeight::new(&other, &w_other).unwrap();
            forward_with(&g, &x, &w, Some(&wrong), &op, &mut c, true);
            assert_eq!(a, c);
        }
    }

    /// A window covering the whole input (LeNet's C5) takes the plain-product path: checked
    /// against the sums written out, with groups, bias, scale and ReLU, forward and backward.
    #[test]
    fn dense_window_is_a_plain_product() {
        let mut rng = Rng64::seed(21);
        let (n, groups, cin_g, cout_g, hw) = (5, 2, 3, 4, [5, 4]);
        let win = Window2d::new(hw, [2, 3], [0, 0], [1, 1]);
        let out_hw = win.output_hw("test", hw, false).unwrap();
        let g = ConvGeom {
            n,
            groups,
            cin_g,
            cout_g,
            in_hw: hw,
            out_hw,
            win,
        };
        assert!(g.dense() && !geom(2, 3, 4, 5, 0).dense());
        let taps = g.taps();
        let cout = groups * cout_g;
        let mut random =
            |len: usize| -> Vec<f64> { (0..len).map(|_| rng.uniform() - 0.5).collect() };
        let x = random(n * g.image_len());
        let w = random(cout * taps);
        let (scale, shift) = (random(cout), random(cout));
        let op = ChannelOp {
            scale: Some(&scale),
            shift: Some(&shift),
            relu: true,
        };
        let mut y = vec![f64::NAN; n * cout];
        forward(&g, &x, &w, &op, &mut y);
        let pre = |i: usize, o: usize| -> f64 {
            let gi = o / cout_g;
            (0..taps)
                .map(|t| x[i * g.image_len() + gi * taps + t] * w[o * taps + t])
                .sum()
        };
        for i in 0..n {
            for o in 0..cout {
                let want = (pre(i, o) * scale[o] + shift[o]).max(0.0);
                assert!((y[i * cout + o] - want).abs() < 1e-12);
            }
        }
        assert!(y.contains(&0.0) && y.iter().any(|&v| v > 0.0));
        let dy = random(n * cout);
        let mut dx = vec![f64::NAN; x.len()];
        let mut dw = vec![1.0; w.len()];
        let mut db = vec![1.0; cout];
        backward(&g, &x, &w, &dy, Some(&mut dx), &mut dw, Some(&mut db));
        for o in 0..cout {
            let gi = o / cout_g;
            let want_b: f64 = 1.0 + (0..n).map(|i| dy[i * cout + o]).sum::<f64>();
            assert!((db[o] - want_b).abs() < 1e-12);
            for t in 0..taps {
                let want: f64 = 1.0
                    + (0..n)
                        .map(|i| dy[i * cout + o] * x[i * g.image_len() + gi * taps + t])
                        .sum::<f64>();
                assert!((dw[o * taps + t] - want).abs() < 1e-12);
            }
        }
        for i in 0..n {
            for gi in 0..groups {
                for t in 0..taps {
                    let want: f64 = (gi * cout_g..(gi + 1) * cout_g)
                        .map(|o| dy[i * cout + o] * w[o * taps + t])
                        .sum();
                    assert!((dx[i * g.image_len() + gi * taps + t] - want).abs() < 1e-12);
                }
            }
        }
    }

    /// The convolution and its gradients written out as sums over the window, with bounds
    /// tests: `(y, dx, dw, db)` for output gradient `dy`.
    fn direct(g: &ConvGeom, x: &[f64], w: &[f64], dy: &[f64]) -> [Vec<f64>; 4] {
        let ([h, wd], [oh, ow], win) = (g.in_hw, g.out_hw, g.win);
        let cout = g.groups * g.cout_g;
        let mut y = vec![0.0; g.n * g.out_len()];
        let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; cout]);
        for n in 0..g.n {
            for (o, db_o) in db.iter_mut().enumerate() {
                let gi = o / g.cout_g;
                for (oy, ox) in (0..oh).flat_map(|a| (0..ow).map(move |b| (a, b))) {
                    let yi = n * g.out_len() + (o * oh + oy) * ow + ox;
                    *db_o += dy[yi];
                    for c in 0..g.cin_g {
                        for (i, j) in
                            (0..win.h.kernel).flat_map(|a| (0..win.w.kernel).map(move |b| (a, b)))
                        {
                            let iy = (oy * win.h.stride + i * win.h.dilation) as isize
                                - win.h.padding as isize;
                            let ix = (ox * win.w.stride + j * win.w.dilation) as isize
                                - win.w.padding as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                continue;
                            }
                            let xi = n * g.image_len()
                                + ((gi * g.cin_g + c) * h + iy as usize) * wd
                                + ix as usize;
                            let wi = ((o * g.cin_g + c) * win.h.kernel + i) * win.w.kernel + j;
                            y[yi] += w[wi] * x[xi];
                            dx[xi] += w[wi] * dy[yi];
                            dw[wi] += x[xi] * dy[yi];
                        }
                    }
                }
            }
        }
        [y, dx, dw, db]
    }

    /// Every path (wide, row blocks, several images per product, dense, Winograd) against the
    /// sums written out, forward and all three gradients.
    #[test]
    fn every_path_matches_the_direct_sums() {
        let mut rng = Rng64::seed(33);
        let cases = [
            // (n, groups, cin_g, cout_g, in_hw, kernel, stride, padding, dilation)
            (3, 1, 1, 6, [28, 28], [5, 5], [1, 1], [2, 2], [1, 1]), // LeNet C1: wide
            (5, 1, 6, 16, [14, 14], [5, 5], [1, 1], [0, 0], [1, 1]), // LeNet C3: wide, batched
            (2, 2, 3, 4, [9, 7], [3, 2], [1, 1], [1, 2], [2, 1]),   // wide, groups, dilation
            (2, 1, 3, 40, [9, 9], [3, 3], [1, 1], [1, 1], [1, 1]),  // too many channels: im2col
            (2, 1, 2, 3, [20, 70], [3, 3], [1, 1], [1, 1], [1, 1]), // long rows: im2col
            (3, 1, 2, 5, [11, 11], [3, 3], [2, 2], [1, 1], [1, 1]), // stride 2: im2col
            (4, 2, 3, 2, [5, 5], [5, 5], [1, 1], [0, 0], [1, 1]),   // dense
            (2, 1, 16, 16, [8, 8], [3, 3], [1, 1], [1, 1], [1, 1]), // Winograd
            (5, 2, 3, 5, [7, 7], [1, 1], [1, 1], [0, 0], [1, 1]),   // 1x1, images side by side
            (2, 1, 4, 3, [24, 23], [1, 1], [1, 1], [0, 0], [1, 1]), // 1x1, one image a task
        ];
        for (case, (n, groups, cin_g, cout_g, in_hw, k, st, pad, dil)) in
            cases.into_iter().enumerate()
        {
            let win = Window2d::new(k, st, pad, dil);
            let out_hw = win.output_hw("test", in_hw, false).unwrap();
            let g = ConvGeom {
                n,
                groups,
                cin_g,
                cout_g,
                in_hw,
                out_hw,
                win,
            };
            match case {
                0..=2 => assert!(g.wide().is_some()),
                3..=5 => assert!(g.wide().is_none()),
                6 => assert!(g.dense()),
                7 => assert!(g.winograd().is_some()),
                _ => assert!(g.identity() && g.wide().is_none()),
            }
            let mut random =
                |len: usize| -> Vec<f64> { (0..len).map(|_| rng.uniform() - 0.5).collect() };
            let x = random(n * g.image_len());
            let w = random(groups * g.weight_len());
            let dy = random(n * g.out_len());
            let [y_ref, dx_ref, dw_ref, db_ref] = direct(&g, &x, &w, &dy);
            let mut y = vec![f64::NAN; y_ref.len()];
            forward(&g, &x, &w, &ChannelOp::default(), &mut y);
            let (mut dx, mut dw, mut db) = (
                vec![f64::NAN; x.len()],
                vec![0.0; w.len()],
                vec![0.0; db_ref.len()],
            );
            backward(&g, &x, &w, &dy, Some(&mut dx), &mut dw, Some(&mut db));
            for (name, got, want) in [
                ("y", &y, &y_ref),
                ("dx", &dx, &dx_ref),
                ("dw", &dw, &dw_ref),
                ("db", &db, &db_ref),
            ] {
                for (a, b) in got.iter().zip(want.iter()) {
                    assert!((a - b).abs() < 1e-9, "{name} of {g:?}: {a} vs {b}");
                }
            }
        }
    }

    /// `dw[o][c][i][j] = Σ dy[n][o][oy][ox] · x[n][c][oy + i - p][ox + j - p]` for a 3x3
    /// stride-1 ungrouped convolution, summed in f64 (rows of the output as slices).
    fn direct_weight_gradient(g: &ConvGeom, x: &[f32], dy: &[f32]) -> Vec<f64> {
        let ([h, wd], [oh, ow], p) = (g.in_hw, g.out_hw, g.win.h.padding as isize);
        let (cin, cout) = (g.cin_g, g.cout_g);
        let x: Vec<f64> = x.iter().map(|&v| v.into()).collect();
        let dy: Vec<f64> = dy.iter().map(|&v| v.into()).collect();
        let mut dw = vec![0.0; cout * cin * 9];
        for n in 0..g.n {
            for (o, dw_o) in dw.chunks_exact_mut(cin * 9).enumerate() {
                let dy_o = &dy[(n * cout + o) * oh * ow..][..oh * ow];
                for (c, dw_oc) in dw_o.chunks_exact_mut(9).enumerate() {
                    let x_c = &x[(n * cin + c) * h * wd..][..h * wd];
                    for (tap, acc) in dw_oc.iter_mut().enumerate() {
                        let (i, j) = ((tap / 3) as isize - p, (tap % 3) as isize - p);
                        // Output columns whose input column ox + j stays inside.
                        let lo = (-j).max(0) as usize;
                        let hi = (wd as isize - j).min(ow as isize).max(0) as usize;
                        for oy in 0..oh {
                            let iy = oy as isize + i;
                            if iy < 0 || iy >= h as isize || lo >= hi {
                                continue;
                            }
                            let xr = &x_c[iy as usize * wd..][..wd];
                            let dr = &dy_o[oy * ow..][..ow];
                            *acc += (lo..hi)
                                .map(|ox| dr[ox] * xr[(ox as isize + j) as usize])
                                .sum::<f64>();
                        }
                    }
                }
            }
        }
        dw
    }

    /// Largest error of an f32 weight gradient against the f64 sums, relative to the largest
    /// reference value: `(winograd, im2col)`.
    fn weight_gradient_errors(g: &ConvGeom, seed: u64) -> (f64, f64) {
        let mut rng = Rng64::seed(seed);
        // Inputs as after a ReLU, output gradients of either sign.
        let x: Vec<f32> = (0..g.n * g.image_len())
            .map(|_| (rng.uniform() as f32).max(0.3) - 0.3)
            .collect();
        let w: Vec<f32> = (0..g.cout_g * g.taps())
            .map(|_| rng.uniform() as f32 - 0.5)
            .collect();
        let dy: Vec<f32> = (0..g.n * g.out_len())
            .map(|_| (rng.uniform() as f32 - 0.5) * 1e-3)
            .collect();
        let want = direct_weight_gradient(g, &x, &dy);
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = |allow: bool| {
            let mut dx = vec![0f32; x.len()];
            let mut dw = vec![0f32; w.len()];
            backward_with(g, &x, &w, &dy, Some(&mut dx), &mut dw, None, allow);
            dw.iter()
                .zip(&want)
                .fold(0.0f64, |m, (a, b)| m.max((f64::from(*a) - b).abs()))
                / scale
        };
        (err(true), err(false))
    }

    /// The Winograd weight gradient in f32 against the f64 sums, beside im2col + GEMM's.
    #[test]
    fn winograd_weight_gradient_stays_accurate_in_f32() {
        for (case, g) in [geom(2, 32, 32, 28, 1), geom(4, 64, 48, 7, 1)]
            .iter()
            .enumerate()
        {
            assert!(g.winograd().is_some());
            let (wino, im2col) = weight_gradient_errors(g, 40 + case as u64);
            assert!(
                wino < 1e-4 && im2col < 1e-5,
                "{g:?}: winograd {wino:.2e}, im2col {im2col:.2e}"
            );
        }
    }

    /// The same on the sizes of ResNet's and VGG's layers at batch 8 (slow without
    /// optimisation): `cargo test --release --lib weight_gradient_error -- --ignored
    /// --nocapture` prints both errors.
    #[test]
    #[ignore]
    fn weight_gradient_error_on_network_sized_layers() {
        for (case, g) in [
            geom(8, 64, 64, 56, 1),
            geom(8, 128, 128, 28, 1),
            geom(8, 256, 256, 14, 1),
            geom(8, 512, 512, 7, 1),
        ]
        .iter()
        .enumerate()
        {
            let (wino, im2col) = weight_gradient_errors(g, 50 + case as u64);
            println!(
                "{} -> {} channels, {}x{}, batch {}: winograd {wino:.2e}, im2col {im2col:.2e}",
                g.cin_g, g.cout_g, g.in_hw[0], g.in_hw[1], g.n
            );
            assert!(wino < 1e-4, "{g:?}: winograd {wino:.2e}");
        }
    }

    #[test]
    fn tasks_cover_the_batch_in_order() {
        for (n, hw) in [(1, 3), (8, 7), (8, 14), (64, 10), (5, 56), (3, 1)] {
            let g = geom(n, 4, 4, hw, 1);
            let tasks = g.tasks();
            assert_eq!(tasks.first().unwrap().start, 0);
            assert_eq!(tasks.last().unwrap().end, n);
            assert!(tasks
                .windows(2)
                .all(|w| w[0].end == w[1].start && !w[0].is_empty()));
        }
    }
}

//! Winograd convolution F(4x4, 3x3) for 3x3 kernels at stride 1 (Lavin and Gray, 2016).
//!
//! A 4x4 tile of output needs a 6x6 tile of input. With the constant matrices `Bᵀ` (6x6),
//! `G` (6x3) and `Aᵀ` (4x6), the tile of output channel `o` is
//!
//! ```text
//! Y_o = Aᵀ [ Σ_c (G W_oc Gᵀ) ⊙ (Bᵀ X_c B) ] A
//! ```
//!
//! The sum over `c` at each of the 36 positions `ξ` of the 6x6 transformed tile is a matrix
//! product: `M_ξ[o, t] = Σ_c U_ξ[o, c] · V_ξ[c, t]` over all tiles `t`. That is 36 products
//! of `[C_out x C_in] · [C_in x tiles]` where direct convolution needs the work of 144: four
//! times fewer multiplications (the transforms are additions and a few scalings).
//!
//! The data gradient of a 3x3 stride-1 convolution with padding `p` is itself one: the
//! output gradient convolved with the flipped, channel-transposed kernel at padding `2 - p`
//! ([`flip_kernel`]). The weight gradient is a Winograd sum as well: 36 products of
//! `[C_out x tiles] · [tiles x C_in]`, see [`weight_gradient`].

use super::conv::ChannelOp;
use super::gemm::{gemm_view, MatMut, MatRef, Threads};
use super::workspace;
use crate::kernels::simd::vectorized;
use crate::parallel::prelude::*;
use crate::tensor::Float;

/// Elements of the transformed input and output held at once (16 MiB of f32 each).
const CHUNK_ELEMS: usize = 1 << 22;

/// The sizes of one 3x3 stride-1 convolution call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WinogradGeom {
    /// Images.
    pub n: usize,
    /// Input channels.
    pub cin: usize,
    /// Output channels.
    pub cout: usize,
    /// Input `[H, W]`.
    pub in_hw: [usize; 2],
    /// Zero padding `[ph, pw]`.
    pub padding: [usize; 2],
}

impl WinogradGeom {
    /// Output `[OH, OW] = [H + 2ph - 2, W + 2pw - 2]`.
    pub fn out_hw(&self) -> [usize; 2] {
        [
            self.in_hw[0] + 2 * self.padding[0] - 2,
            self.in_hw[1] + 2 * self.padding[1] - 2,
        ]
    }
    /// Tiles per image `[rows, cols]`.
    fn tiles_hw(&self) -> [usize; 2] {
        let [oh, ow] = self.out_hw();
        [oh.div_ceil(4), ow.div_ceil(4)]
    }
}

/// `Bᵀ d` along one axis of a 6-vector (read with stride `s`).
#[inline(always)]
fn input_1d<T: Float>(d: [T; 6]) -> [T; 6] {
    let (two, four, five) = (T::of(2.0), T::of(4.0), T::of(5.0));
    [
        four * d[0] - five * d[2] + d[4],
        -four * (d[1] + d[2]) + d[3] + d[4],
        four * (d[1] - d[2]) - d[3] + d[4],
        two * (d[3] - d[1]) - d[2] + d[4],
        two * (d[1] - d[3]) - d[2] + d[4],
        four * d[1] - five * d[3] + d[5],
    ]
}

/// `Aᵀ m` along one axis: 6 values to 4.
#[inline(always)]
fn output_1d<T: Float>(m: [T; 6]) -> [T; 4] {
    let (a, b) = (m[1] + m[2], m[1] - m[2]);
    let (c, d) = (m[3] + m[4], m[3] - m[4]);
    let (two, four, eight) = (T::of(2.0), T::of(4.0), T::of(8.0));
    [
        m[0] + a + c,
        b + two * d,
        a + four * c,
        b + eight * d + m[5],
    ]
}

/// `G g` along one axis: 3 values to 6.
#[inline(always)]
fn kernel_1d<T: Float>(g: [T; 3]) -> [T; 6] {
    let (q, s, t) = (T::of(0.25), T::of(1.0 / 6.0), T::of(1.0 / 12.0));
    let u = T::of(1.0 / 24.0);
    [
        q * g[0],
        -s * (g[0] + g[1] + g[2]),
        -s * (g[0] - g[1] + g[2]),
        u * g[0] + t * g[1] + s * g[2],
        u * g[0] - t * g[1] + s * g[2],
        g[2],
    ]
}

/// `A e` along one axis of an output-gradient tile: 4 values to 6 (the transpose of
/// [`output_1d`]).
#[inline(always)]
fn grad_output_1d<T: Float>(e: [T; 4]) -> [T; 6] {
    let (two, four, eight) = (T::of(2.0), T::of(4.0), T::of(8.0));
    let (even, odd) = (e[0] + e[2], e[1] + e[3]);
    let (even4, odd2) = (e[0] + four * e[2], two * e[1] + eight * e[3]);
    [
        e[0],
        even + odd,
        even - odd,
        even4 + odd2,
        even4 - odd2,
        e[3],
    ]
}

/// `Gᵀ m` along one axis: 6 values to 3 (the transpose of [`kernel_1d`]).
#[inline(always)]
fn grad_kernel_1d<T: Float>(m: [T; 6]) -> [T; 3] {
    let (q, s, t) = (T::of(0.25), T::of(1.0 / 6.0), T::of(1.0 / 12.0));
    let u = T::of(1.0 / 24.0);
    let (a, b) = (m[1] + m[2], m[1] - m[2]);
    let (c, d) = (m[3] + m[4], m[3] - m[4]);
    [q * m[0] - s * a + u * c, t * d - s * b, s * (c - a) + m[5]]
}

/// `U[ξ][o][c] = (G w[o][c] Gᵀ)[ξ]` for a weight `w[C_out, C_in, 3, 3]`.
///
/// One output channel per task; within it the input channels are the vector lanes: the nine
/// taps are first laid out as nine rows over `c`, then `G` runs down the columns and along
/// the rows of every channel's 3x3 kernel at once.
fn transform_kernel<T: Float>(w: &[T], cout: usize, cin: usize, u: &mut [T]) {
    let rows = split_strided(&mut u[..36 * cout * cin], 36, cout, cin);
    rows.into_par_iter()
        .zip(w.par_chunks(cin * 9))
        .for_each(|(mut u_o, w_o)| {
            // taps[k][c] = w[o][c][k], then cols[i·3 + j][c] = (G w[o][c])[i][j].
            let mut buf = workspace::take::<T>(27 * cin);
            let (taps, cols) = buf.split_at_mut(9 * cin);
            for (c, g) in w_o.chunks_exact(9).enumerate() {
                for (k, &v) in g.iter().enumerate() {
                    taps[k * cin + c] = v;
                }
            }
            let taps = &*taps;
            for j in 0..3 {
                let inp: [&[T]; 3] = std::array::from_fn(|i| &taps[(i * 3 + j) * cin..][..cin]);
                let mut out = split_every::<T, 6>(cols, j, 3, cin);
                transform_rows(&mut out, inp, kernel_1d);
            }
            for i in 0..6 {
                let inp: [&[T]; 3] = std::array::from_fn(|j| &cols[(i * 3 + j) * cin..][..cin]);
                let mut out: [&mut [T]; 6] = u_o.row_group(i * 6, 0..cin);
                transform_rows(&mut out, inp, kernel_1d);
            }
        });
}

/// The transformed weight `U` of `transform_kernel` in a new buffer (`36·C_out·C_in`
/// values): computed once, it serves every later call of [`forward`] with the same weight.
pub fn transform_weights<T: Float>(w: &[T], cout: usize, cin: usize) -> Vec<T> {
    assert!(w.len() >= cout * cin * 9, "winograd: weight too short");
    let mut u = vec![T::zero(); 36 * cout * cin];
    transform_kernel(w, cout, cin, &mut u);
    u
}

/// The kernel of the data gradient: `w'[c][o][i][j] = w[o][c][2 - i][2 - j]`.
///
/// # Panics
/// If `w` or `out` holds fewer than `C_out·C_in·9` values (a bug in the caller).
pub fn flip_kernel<T: Float>(w: &[T], cout: usize, cin: usize, out: &mut [T]) {
    let len = cout * cin * 9;
    assert!(
        w.len() >= len && out.len() >= len,
        "winograd: flip_kernel needs {len} values"
    );
    for o in 0..cout {
        for c in 0..cin {
            let src = &w[(o * cin + c) * 9..][..9];
            let dst = &mut out[(c * cout + o) * 9..][..9];
            for k in 0..9 {
                dst[k] = src[8 - k];
            }
        }
    }
}

/// `y = op(conv3x3(x, w))` at stride 1 with the geometry's padding: `x[N, C_in, H, W]`,
/// `w[C_out, C_in, 3, 3]`, `y[N, C_out, OH, OW]` (every element written).
///
/// # Panics
/// If a slice is shorter than `geom` says (an internal error in the caller, which checked
/// the geometry: `H + 2·ph >= 3` and `W + 2·pw >= 3`).
///
/// `w` is the weight as stored, or already transformed by [`transform_weights`]
/// ([`Weights::Transformed`]), which saves the transform on every call.
pub fn forward<T: Float>(
    geom: &WinogradGeom,
    x: &[T],
    w: Weights<'_, T>,
    op: &ChannelOp<'_, T>,
    y: &mut [T],
) {
    let chunk = CHUNK_ELEMS / (36 * geom.cin.max(geom.cout).max(1));
    forward_chunked(geom, x, w, op, y, chunk);
}

/// A 3x3 weight as [`forward`] takes it.
#[derive(Clone, Copy, Debug)]
pub enum Weights<'a, T> {
    /// `w[C_out, C_in, 3, 3]` as stored: transformed on each call.
    Plain(&'a [T]),
    /// `U[36][C_out][C_in]` from [`transform_weights`].
    Transformed(&'a [T]),
}

/// Where tile `t` of a batch lies: image, tile row, tile column.
#[derive(Clone, Copy)]
struct Tiles {
    th: usize,
    tw: usize,
}

impl Tiles {
    #[inline(always)]
    fn locate(&self, t: usize) -> (usize, usize, usize) {
        let per_image = self.th * self.tw;
        let rest = t % per_image;
        (t / per_image, rest / self.tw, rest % self.tw)
    }

    /// The place of the tile after `(img, ty, tx)` (what `locate(t + 1)` gives for
    /// `locate(t)`), without a division.
    #[inline(always)]
    fn next(&self, (img, ty, tx): (usize, usize, usize)) -> (usize, usize, usize) {
        if tx + 1 < self.tw {
            (img, ty, tx + 1)
        } else if ty + 1 < self.th {
            (img, ty + 1, 0)
        } else {
            (img + 1, 0, 0)
        }
    }

    /// The places of tiles `first .. first + count`, in order, dividing only for the first.
    #[inline(always)]
    fn run(&self, first: usize, count: usize) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
        std::iter::successors(Some(self.locate(first)), |&at| Some(self.next(at))).take(count)
    }
}

/// [`forward`] with at most `chunk` tiles (across images) transformed at once.
fn forward_chunked<T: Float>(
    geom: &WinogradGeom,
    x: &[T],
    w: Weights<'_, T>,
    op: &ChannelOp<'_, T>,
    y: &mut [T],
    chunk: usize,
) {
    let [h, wd] = geom.in_hw;
    let [oh, ow] = geom.out_hw();
    let (cin, cout) = (geom.cin, geom.cout);
    assert!(
        x.len() >= geom.n * cin * h * wd,
        "winograd: input too short"
    );
    assert!(
        y.len() >= geom.n * cout * oh * ow,
        "winograd: output too short"
    );
    if geom.n == 0 || oh == 0 || ow == 0 {
        return;
    }
    let mut fresh = None;
    let u: &[T] = match w {
        Weights::Plain(w) => {
            assert!(w.len() >= cout * cin * 9, "winograd: weight too short");
            let u = fresh.insert(workspace::take::<T>(36 * cout * cin));
            transform_kernel(w, cout, cin, u);
            u
        }
        Weights::Transformed(u) => {
            assert!(u.len() >= 36 * cout * cin, "winograd: weight too short");
            u
        }
    };

    let [th, tw] = geom.tiles_hw();
    let tiles = Tiles { th, tw };
    let total = geom.n * th * tw;
    let ld = chunk.clamp(1, total);
    let mut v = workspace::take::<T>(36 * cin * ld);
    let mut m = workspace::take::<T>(36 * cout * ld);
    let y_image = cout * oh * ow;

    let mut start = 0;
    while start < total {
        let len = ld.min(total - start);
        transform_input(
            geom,
            x,
            tiles,
            start..start + len,
            &mut v[..36 * cin * ld],
            ld,
        );
        // M_ξ = U_ξ · V_ξ, 36 independent products.
        let (u_ref, v_ref) = (u, &v);
        m[..36 * cout * ld]
            .par_chunks_mut(cout * ld)
            .enumerate()
            .for_each(|(xi, m_xi)| {
                gemm_view(
                    MatRef::new(&u_ref[xi * cout * cin..], cout, cin, cin),
                    MatRef::new(&v_ref[xi * cin * ld..], cin, len, ld),
                    MatMut::new(m_xi, cout, len, ld),
                    false,
                    Threads::Single,
                );
            });
        // Y = Aᵀ M A per tile, cropped at the image's edge, then the epilogue; one output
        // channel per task.
        let m_ref = &m;
        let (img0, img1) = (start / (th * tw), (start + len - 1) / (th * tw));
        let y_chunk = &mut y[img0 * y_image..(img1 + 1) * y_image];
        split_channels(y_chunk, img1 + 1 - img0, cout, oh * ow)
            .into_par_iter()
            .enumerate()
            .for_each(|(o, mut y_o)| {
                vectorized(
                    #[inline(always)]
                    || {
                        let mut mt = [[T::zero(); LANES]; 36];
                        let mut f = [[T::zero(); LANES]; 24];
                        let mut r = [[T::zero(); LANES]; 16];
                        for t0 in (0..len).step_by(LANES) {
                            let lanes = LANES.min(len - t0);
                            for (xi, row) in mt.iter_mut().enumerate() {
                                copy_lanes(row, &m_ref[(xi * cout + o) * ld + t0..], lanes);
                            }
                            output_tile(&mt, &mut f, &mut r);
                            for row in r.iter_mut() {
                                op.apply(o, &mut row[..lanes]);
                            }
                            // r[row·4 + col][lane] -> y, cropped at the image's edge.
                            for (l, (img, ty, tx)) in tiles.run(start + t0, lanes).enumerate() {
                                let plane = y_o.image(img - img0);
                                let rows = 4.min(oh - ty * 4);
                                let cols = 4.min(ow - tx * 4);
                                for row in 0..rows {
                                    let dst = &mut plane[(ty * 4 + row) * ow + tx * 4..][..cols];
                                    for (col, v) in dst.iter_mut().enumerate() {
                                        *v = r[row * 4 + col][l];
                                    }
                                }
                            }
                        }
                    },
                );
            });
        start += len;
    }
}

/// The weight gradient `dw += Σ_n,pixels dY ⋆ X` of a 3x3 stride-1 convolution with the
/// geometry's padding: `x[N, C_in, H, W]`, `dy[N, C_out, OH, OW]`, `dw[C_out, C_in, 3, 3]`.
///
/// Each output tile's forward is linear in the kernel `g`:
/// `Y_t = Aᵀ [(G g Gᵀ) ⊙ V_t] A` with `V_t = Bᵀ d_t B`. For any matrices,
/// `⟨Aᵀ P A, E⟩ = ⟨P, A E Aᵀ⟩`, `⟨P ⊙ V, Q⟩ = ⟨P, V ⊙ Q⟩` and `⟨G g Gᵀ, R⟩ = ⟨g, Gᵀ R G⟩`,
/// so the gradient of `⟨Y_t, E_t⟩` with respect to `g` is `Gᵀ [V_t ⊙ (A E_t Aᵀ)] G`, and over
/// all tiles `t` of the batch (the output-gradient tile `E_t` is zero past the output's edge):
///
/// ```text
/// dW_oc = Gᵀ [ Σ_t (Bᵀ d_c,t B) ⊙ (A E_o,t Aᵀ) ] G
/// ```
///
/// At each of the 36 positions `ξ` the sum over tiles is one product
/// `M_ξ[o, c] = Σ_t Ê_ξ[o, t] · V_ξ[c, t]` (`[C_out x tiles] · [tiles x C_in]`, 4x fewer
/// multiplications than im2col's `[C_out x pixels] · [pixels x 9·C_in]`); `Gᵀ M G` then
/// gives the 3x3 kernels.
///
/// The 36 products run in parallel, each accumulating the batch's chunks in order, so the
/// result does not depend on the thread count or the scheduling.
///
/// # Panics
/// If a slice is shorter than `geom` says (a bug in the caller).
pub fn weight_gradient<T: Float>(geom: &WinogradGeom, x: &[T], dy: &[T], dw: &mut [T]) {
    let chunk = CHUNK_ELEMS / (36 * geom.cin.max(geom.cout).max(1));
    weight_gradient_chunked(geom, x, dy, dw, chunk);
}

/// [`weight_gradient`] with at most `chunk` tiles (across images) transformed at once.
fn weight_gradient_chunked<T: Float>(
    geom: &WinogradGeom,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    chunk: usize,
) {
    let [h, wd] = geom.in_hw;
    let [oh, ow] = geom.out_hw();
    let (cin, cout) = (geom.cin, geom.cout);
    assert!(
        x.len() >= geom.n * cin * h * wd,
        "winograd: input too short"
    );
    assert!(
        dy.len() >= geom.n * cout * oh * ow,
        "winograd: output gradient too short"
    );
    assert!(
        dw.len() >= cout * cin * 9,
        "winograd: weight gradient too short"
    );
    if geom.n == 0 || oh == 0 || ow == 0 || cin == 0 || cout == 0 {
        return;
    }
    let [th, tw] = geom.tiles_hw();
    let tiles = Tiles { th, tw };
    let total = geom.n * th * tw;
    let ld = chunk.clamp(1, total);
    let mut v = workspace::take::<T>(36 * cin * ld);
    let mut e = workspace::take::<T>(36 * cout * ld);
    // Every element of M is written by the first chunk's product (accumulate = false).
    let mut m = workspace::take::<T>(36 * cout * cin);

    let mut start = 0;
    while start < total {
        let len = ld.min(total - start);
        transform_input(
            geom,
            x,
            tiles,
            start..start + len,
            &mut v[..36 * cin * ld],
            ld,
        );
        transform_grad_output(
            geom,
            dy,
            tiles,
            start..start + len,
            &mut e[..36 * cout * ld],
            ld,
        );
        // M_ξ (+)= Ê_ξ · V_ξᵀ, 36 independent products.
        let (e_ref, v_ref) = (&e, &v);
        m.par_chunks_mut(cout * cin)
            .enumerate()
            .for_each(|(xi, m_xi)| {
                gemm_view(
                    MatRef::new(&e_ref[xi * cout * ld..], cout, len, ld),
                    MatRef::new(&v_ref[xi * cin * ld..], cin, len, ld).t(),
                    MatMut::new(m_xi, cout, cin, cin),
                    start > 0,
                    Threads::Single,
                );
            });
        start += len;
    }
    drop((v, e));
    // dw[o][c] += Gᵀ M[·][o][c] G, one output channel per task, the input channels as lanes.
    let m_ref = &m;
    dw[..cout * cin * 9]
        .par_chunks_mut(cin * 9)
        .enumerate()
        .for_each(|(o, dw_o)| {
            let mut buf = workspace::take::<T>(27 * cin);
            let (f, r) = buf.split_at_mut(18 * cin);
            // Gᵀ along each row of the 6x6 (j), then down its columns (i).
            for i in 0..6 {
                let inp: [&[T]; 6] =
                    std::array::from_fn(|j| &m_ref[((i * 6 + j) * cout + o) * cin..][..cin]);
                let mut out: [&mut [T]; 3] = split_every(&mut f[i * 3 * cin..], 0, 1, cin);
                transform_rows(&mut out, inp, grad_kernel_1d);
            }
            for k in 0..3 {
                let inp: [&[T]; 6] = std::array::from_fn(|i| &f[(i * 3 + k) * cin..][..cin]);
                let mut out: [&mut [T]; 3] = split_every(r, k, 3, cin);
                transform_rows(&mut out, inp, grad_kernel_1d);
            }
            for (c, g) in dw_o.chunks_exact_mut(9).enumerate() {
                for (tap, v) in g.iter_mut().enumerate() {
                    *v += r[tap * cin + c];
                }
            }
        });
}

/// `Ê[ξ][o][t] = (A E_o,t Aᵀ)[ξ]` for the tiles `range` of the batch, into
/// `e[36][C_out][ld]`, where `E_o,t` is the 4x4 tile of `dy` (zero past the output's edge);
/// one output channel per task.
fn transform_grad_output<T: Float>(
    geom: &WinogradGeom,
    dy: &[T],
    tiles: Tiles,
    range: std::ops::Range<usize>,
    e: &mut [T],
    ld: usize,
) {
    let [oh, ow] = geom.out_hw();
    let (cout, start, len) = (geom.cout, range.start, range.len());
    split_strided(e, 36, cout, ld)
        .into_par_iter()
        .enumerate()
        .for_each(|(o, mut e_o)| {
            let plane_of = |img: usize| &dy[(img * cout + o) * oh * ow..][..oh * ow];
            vectorized(
                #[inline(always)]
                || {
                    let mut d = [[T::zero(); LANES]; 16];
                    let mut f = [[T::zero(); LANES]; 24];
                    let mut e = [[T::zero(); LANES]; 36];
                    for t0 in (0..len).step_by(LANES) {
                        let lanes = LANES.min(len - t0);
                        // d[i·4 + j][lane] = dy[4ty + i][4tx + j], zero outside.
                        for (l, (img, ty, tx)) in tiles.run(start + t0, lanes).enumerate() {
                            let plane = plane_of(img);
                            let (rows, cols) = (4.min(oh - ty * 4), 4.min(ow - tx * 4));
                            for i in 0..4 {
                                for j in 0..4 {
                                    d[i * 4 + j][l] = if i < rows && j < cols {
                                        plane[(ty * 4 + i) * ow + tx * 4 + j]
                                    } else {
                                        T::zero()
                                    };
                                }
                            }
                        }
                        grad_output_tile(&d, &mut f, &mut e);
                        for (xi, row) in e.iter().enumerate() {
                            copy_lanes(&mut e_o.row(xi)[t0..], row, lanes);
                        }
                    }
                },
            );
        });
}

/// `V[ξ][c][t] = (Bᵀ X_c,t B)[ξ]` for the tiles `range` of the batch (`t` counted from
/// `range.start`), into `v[36][C_in][ld]`; one input channel per task.
fn transform_input<T: Float>(
    geom: &WinogradGeom,
    x: &[T],
    tiles: Tiles,
    range: std::ops::Range<usize>,
    v: &mut [T],
    ld: usize,
) {
    let [h, wd] = geom.in_hw;
    let (cin, start, len) = (geom.cin, range.start, range.len());
    split_strided(v, 36, cin, ld)
        .into_par_iter()
        .enumerate()
        .for_each(|(c, mut v_c)| {
            let channel_of = |img: usize| &x[(img * cin + c) * h * wd..][..h * wd];
            vectorized(
                #[inline(always)]
                || {
                    let mut d = [[T::zero(); LANES]; 36];
                    let mut e = [[T::zero(); LANES]; 36];
                    let mut v = [[T::zero(); LANES]; 36];
                    for t0 in (0..len).step_by(LANES) {
                        let lanes = LANES.min(len - t0);
                        // d[i·6 + j][lane] = padded x[4ty + i - ph][4tx + j - pw]
                        for (l, (img, ty, tx)) in tiles.run(start + t0, lanes).enumerate() {
                            gather_tile(channel_of(img), geom, ty, tx, |k, val| d[k][l] = val);
                        }
                        input_tile(&d, &mut e, &mut v);
                        for (xi, row) in v.iter().enumerate() {
                            copy_lanes(&mut v_c.row(xi)[t0..], row, lanes);
                        }
                    }
                },
            );
        });
}

/// Calls `put(i·6 + j, value)` for the 6x6 input tile at tile row `ty`, column `tx` of one
/// channel (zero outside the image).
#[inline(always)]
fn gather_tile<T: Float>(
    xc: &[T],
    geom: &WinogradGeom,
    ty: usize,
    tx: usize,
    mut put: impl FnMut(usize, T),
) {
    let [h, wd] = geom.in_hw;
    let (y0, x0) = (
        (ty * 4) as isize - geom.padding[0] as isize,
        (tx * 4) as isize - geom.padding[1] as isize,
    );
    let inside = y0 >= 0 && x0 >= 0 && y0 as usize + 6 <= h && x0 as usize + 6 <= wd;
    if inside {
        let (y0, x0) = (y0 as usize, x0 as usize);
        for i in 0..6 {
            let row = &xc[(y0 + i) * wd + x0..][..6];
            for (j, &v) in row.iter().enumerate() {
                put(i * 6 + j, v);
            }
        }
    } else {
        for i in 0..6 {
            let iy = y0 + i as isize;
            for j in 0..6 {
                let ix = x0 + j as isize;
                let v = if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                    xc[iy as usize * wd + ix as usize]
                } else {
                    T::zero()
                };
                put(i * 6 + j, v);
            }
        }
    }
}

/// Tiles transformed side by side: 16 values, a cache line of f32 (one AVX-512 register,
/// two AVX2 ones). Each group reads or writes 36 rows of the transformed buffers, far apart:
/// whole cache lines per row halved the transforms' time against 8 lanes on an AVX-512
/// machine (docs/PERFORMANCE.md); 32 lanes were slower again.
const LANES: usize = 16;

/// One value per tile for [`LANES`] tiles.
type Lanes<T> = [T; LANES];

/// `dst[..lanes] = src[..lanes]`: a full group as one fixed-size (vector) copy, the last
/// short group out of line. (Written as two equal copies, the compiler merges them into one
/// call to `memmove` of a run-time length, too slow for a few values.)
#[inline(always)]
fn copy_lanes<T: Copy>(dst: &mut [T], src: &[T], lanes: usize) {
    if lanes == LANES {
        dst[..LANES].copy_from_slice(&src[..LANES]);
    } else {
        copy_short_group(dst, src, lanes);
    }
}

#[cold]
#[inline(never)]
fn copy_short_group<T: Copy>(dst: &mut [T], src: &[T], lanes: usize) {
    dst[..lanes].copy_from_slice(&src[..lanes]);
}

/// `dst[dst_at(k)][l] = f(src[src_at(0)][l], …)[k]` for every lane `l`: a 1-D transform of
/// `LANES` tiles at once. The index maps are constants once inlined, so the compiler sees
/// fixed-size arrays and turns the lane loop into vector arithmetic.
#[inline(always)]
fn per_lane<T: Float, const I: usize, const K: usize>(
    src: &[Lanes<T>],
    src_at: impl Fn(usize) -> usize,
    dst: &mut [Lanes<T>],
    dst_at: impl Fn(usize) -> usize,
    f: impl Fn([T; I]) -> [T; K],
) {
    for l in 0..LANES {
        let v = f(std::array::from_fn(|i| src[src_at(i)][l]));
        for (k, v) in v.into_iter().enumerate() {
            dst[dst_at(k)][l] = v;
        }
    }
}

/// `out = Bᵀ d B` for `LANES` 6x6 input tiles `d[i·6 + j]`: down each column (into `cols`),
/// then along each row.
#[inline(always)]
fn input_tile<T: Float>(d: &[Lanes<T>; 36], cols: &mut [Lanes<T>; 36], out: &mut [Lanes<T>; 36]) {
    for j in 0..6 {
        per_lane(d, |i| i * 6 + j, cols, |i| i * 6 + j, input_1d);
    }
    for i in 0..6 {
        per_lane(cols, |j| i * 6 + j, out, |k| i * 6 + k, input_1d);
    }
}

/// `out = A e Aᵀ` for `LANES` 4x4 output-gradient tiles `e[i·4 + j]`: down each column (4
/// rows to 6, into `cols`), then along each row (4 columns to 6).
#[inline(always)]
fn grad_output_tile<T: Float>(
    e: &[Lanes<T>; 16],
    cols: &mut [Lanes<T>; 24],
    out: &mut [Lanes<T>; 36],
) {
    for j in 0..4 {
        per_lane(e, |i| i * 4 + j, cols, |i| i * 4 + j, grad_output_1d);
    }
    for i in 0..6 {
        per_lane(cols, |j| i * 4 + j, out, |k| i * 6 + k, grad_output_1d);
    }
}

/// `out = Aᵀ m A` for `LANES` transformed 6x6 tiles `m[i·6 + j]`: along each row (6 columns
/// to 4, into `rows`), then down each column (6 rows to 4); the 4x4 result as `[row·4 + col]`.
#[inline(always)]
fn output_tile<T: Float>(m: &[Lanes<T>; 36], rows: &mut [Lanes<T>; 24], out: &mut [Lanes<T>; 16]) {
    for i in 0..6 {
        per_lane(m, |j| i * 6 + j, rows, |k| i * 4 + k, output_1d);
    }
    for k in 0..4 {
        per_lane(rows, |i| i * 4 + k, out, |row| row * 4 + k, output_1d);
    }
}

/// `out[k][t] = f(inp[0][t], …, inp[5][t])[k]` for every `t`: a 1-D transform applied to
/// many tiles at once.
///
/// Tiles go through in groups of [`LANES`] copied into local arrays, so the compiler sees
/// fixed-size, non-overlapping data and turns each group into vector arithmetic (compiled for
/// AVX2/AVX-512 where the CPU has it, see [`vectorized`]); the last few tiles one at a time.
#[inline(always)]
fn transform_rows<T: Float, const I: usize, const K: usize>(
    out: &mut [&mut [T]; K],
    inp: [&[T]; I],
    f: impl Fn([T; I]) -> [T; K],
) {
    let n = out[0].len();
    let inp: [&[T]; I] = std::array::from_fn(|i| &inp[i][..n]);
    vectorized(
        #[inline(always)]
        || {
            let full = n - n % LANES;
            for t0 in (0..full).step_by(LANES) {
                let mut a = [[T::zero(); LANES]; I];
                for (a, inp) in a.iter_mut().zip(&inp) {
                    a.copy_from_slice(&inp[t0..t0 + LANES]);
                }
                let mut r = [[T::zero(); LANES]; K];
                for l in 0..LANES {
                    let v = f(std::array::from_fn(|i| a[i][l]));
                    for k in 0..K {
                        r[k][l] = v[k];
                    }
                }
                for (o, r) in out.iter_mut().zip(&r) {
                    o[t0..t0 + LANES].copy_from_slice(r);
                }
            }
            for t in full..n {
                let r = f(std::array::from_fn(|i| inp[i][t]));
                for k in 0..K {
                    out[k][t] = r[k];
                }
            }
        },
    );
}

/// The `K` rows `i·step + j` (`i = 0..K`) of a buffer of rows of `len`.
fn split_every<T, const K: usize>(
    buf: &mut [T],
    j: usize,
    step: usize,
    len: usize,
) -> [&mut [T]; K] {
    let mut rows: Vec<&mut [T]> = buf
        .chunks_exact_mut(len)
        .skip(j)
        .step_by(step)
        .take(K)
        .collect();
    std::array::from_fn(|_| rows.remove(0))
}

/// The 36 rows `[ξ][c][..]` of channel `c` of a `[36][channels][ld]` buffer, one handle per
/// channel so that channels can be filled in parallel.
fn split_strided<T>(
    buf: &mut [T],
    planes: usize,
    channels: usize,
    ld: usize,
) -> Vec<Strided<'_, T>> {
    let mut per_channel: Vec<Vec<&mut [T]>> =
        (0..channels).map(|_| Vec::with_capacity(planes)).collect();
    for plane in buf.chunks_mut(channels * ld).take(planes) {
        for (c, row) in plane.chunks_mut(ld).enumerate() {
            per_channel[c].push(row);
        }
    }
    per_channel
        .into_iter()
        .map(|rows| Strided { rows })
        .collect()
}

/// One channel's rows across the 36 planes.
struct Strided<'a, T> {
    rows: Vec<&'a mut [T]>,
}

impl<T> Strided<'_, T> {
    /// Row `ξ` of this channel (its values on plane `ξ`).
    fn row(&mut self, xi: usize) -> &mut [T] {
        self.rows[xi]
    }

    /// Columns `cols` of the six rows `first .. first + 6`.
    fn row_group(&mut self, first: usize, cols: std::ops::Range<usize>) -> [&mut [T]; 6] {
        let mut rows: Vec<&mut [T]> = self.rows[first..first + 6]
            .iter_mut()
            .map(|r| &mut r[cols.clone()])
            .collect();
        std::array::from_fn(|_| rows.remove(0))
    }
}

/// One output channel's planes across a run of images of `y[images][channels][plane]`.
struct ChannelPlanes<'a, T> {
    planes: Vec<&'a mut [T]>,
}

impl<T> ChannelPlanes<'_, T> {
    fn image(&mut self, i: usize) -> &mut [T] {
        self.planes[i]
    }
}

fn split_channels<T>(
    y: &mut [T],
    images: usize,
    channels: usize,
    plane: usize,
) -> Vec<ChannelPlanes<'_, T>> {
    let mut per_channel: Vec<Vec<&mut [T]>> =
        (0..channels).map(|_| Vec::with_capacity(images)).collect();
    for image in y.chunks_mut(channels * plane).take(images) {
        for (c, p) in image.chunks_mut(plane).enumerate() {
            per_channel[c].push(p);
        }
    }
    per_channel
        .into_iter()
        .map(|planes| ChannelPlanes { planes })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng64;

    /// Direct 3x3 stride-1 convolution by definition.
    fn direct(g: &WinogradGeom, x: &[f64], w: &[f64]) -> Vec<f64> {
        let [h, wd] = g.in_hw;
        let [oh, ow] = g.out_hw();
        let mut y = vec![0.0; g.n * g.cout * oh * ow];
        for n in 0..g.n {
            for o in 0..g.cout {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = 0.0;
                        for c in 0..g.cin {
                            for i in 0..3 {
                                for j in 0..3 {
                                    let iy = (oy + i) as isize - g.padding[0] as isize;
                                    let ix = (ox + j) as isize - g.padding[1] as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd
                                    {
                                        s += x[((n * g.cin + c) * h + iy as usize) * wd
                                            + ix as usize]
                                            * w[((o * g.cin + c) * 3 + i) * 3 + j];
                                    }
                                }
                            }
                        }
                        y[((n * g.cout + o) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn random(n: usize, rng: &mut Rng64) -> Vec<f64> {
        (0..n).map(|_| rng.uniform() * 2.0 - 1.0).collect()
    }

    const GEOMS: &[WinogradGeom] = &[
        WinogradGeom {
            n: 2,
            cin: 3,
            cout: 5,
            in_hw: [9, 7],
            padding: [1, 1],
        },
        WinogradGeom {
            n: 1,
            cin: 4,
            cout: 2,
            in_hw: [4, 4],
            padding: [1, 1],
        },
        WinogradGeom {
            n: 3,
            cin: 2,
            cout: 3,
            in_hw: [6, 11],
            padding: [0, 2],
        },
        WinogradGeom {
            n: 1,
            cin: 1,
            cout: 1,
            in_hw: [3, 3],
            padding: [0, 0],
        },
        WinogradGeom {
            n: 2,
            cin: 6,
            cout: 4,
            in_hw: [1, 2],
            padding: [2, 2],
        },
        WinogradGeom {
            n: 2,
            cin: 5,
            cout: 7,
            in_hw: [14, 14],
            padding: [1, 0],
        },
    ];

    #[test]
    fn next_tile_is_the_located_successor() {
        for (th, tw) in [(1, 1), (1, 5), (4, 1), (3, 7), (14, 14)] {
            let tiles = Tiles { th, tw };
            let mut at = tiles.locate(0);
            for t in 1..3 * th * tw + 2 {
                at = tiles.next(at);
                assert_eq!(at, tiles.locate(t), "{th}x{tw} tile {t}");
            }
            for first in [0, 1, tw, th * tw + 1] {
                let run: Vec<_> = tiles.run(first, 2 * tw + 3).collect();
                let want: Vec<_> = (first..first + 2 * tw + 3)
                    .map(|t| tiles.locate(t))
                    .collect();
                assert_eq!(run, want, "{th}x{tw} from {first}");
            }
        }
    }

    #[test]
    fn matches_direct_convolution_in_f64() {
        let mut rng = Rng64::seed(21);
        for g in GEOMS {
            let x = random(g.n * g.cin * g.in_hw[0] * g.in_hw[1], &mut rng);
            let w = random(g.cout * g.cin * 9, &mut rng);
            let want = direct(g, &x, &w);
            let mut y = vec![f64::NAN; want.len()];
            forward(g, &x, Weights::Plain(&w), &ChannelOp::default(), &mut y);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "{g:?}: {a} vs {b}");
            }
            // The weight transformed once ahead gives the very same numbers.
            let u = transform_weights(&w, g.cout, g.cin);
            let mut z = vec![f64::NAN; want.len()];
            forward(
                g,
                &x,
                Weights::Transformed(&u),
                &ChannelOp::default(),
                &mut z,
            );
            assert_eq!(y, z);
        }
    }

    /// The weight gradient by definition: `dw[o][c][i][j] = Σ_n,oy,ox dy[n][o][oy][ox] ·
    /// x_padded[n][c][oy + i][ox + j]`.
    fn direct_weight_gradient(g: &WinogradGeom, x: &[f64], dy: &[f64]) -> Vec<f64> {
        let [h, wd] = g.in_hw;
        let [oh, ow] = g.out_hw();
        let mut dw = vec![0.0; g.cout * g.cin * 9];
        for n in 0..g.n {
            for o in 0..g.cout {
                for c in 0..g.cin {
                    for i in 0..3 {
                        for j in 0..3 {
                            let mut s = 0.0;
                            for oy in 0..oh {
                                for ox in 0..ow {
                                    let iy = (oy + i) as isize - g.padding[0] as isize;
                                    let ix = (ox + j) as isize - g.padding[1] as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd
                                    {
                                        s += dy[((n * g.cout + o) * oh + oy) * ow + ox]
                                            * x[((n * g.cin + c) * h + iy as usize) * wd
                                                + ix as usize];
                                    }
                                }
                            }
                            dw[((o * g.cin + c) * 3 + i) * 3 + j] += s;
                        }
                    }
                }
            }
        }
        dw
    }

    #[test]
    fn weight_gradient_matches_the_direct_sums_in_f64() {
        let mut rng = Rng64::seed(5);
        for g in GEOMS {
            let [oh, ow] = g.out_hw();
            let x = random(g.n * g.cin * g.in_hw[0] * g.in_hw[1], &mut rng);
            let dy = random(g.n * g.cout * oh * ow, &mut rng);
            let want = direct_weight_gradient(g, &x, &dy);
            // It adds to what the gradient holds.
            let start = random(want.len(), &mut rng);
            let mut dw = start.clone();
            weight_gradient(g, &x, &dy, &mut dw);
            for ((a, b), s) in dw.iter().zip(&want).zip(&start) {
                assert!(
                    (a - s - b).abs() < 1e-12 * (1.0 + b.abs()),
                    "{g:?}: {} vs {b}",
                    a - s
                );
            }
        }
    }

    #[test]
    fn weight_gradient_chunks_give_the_same_result() {
        // Chunks that end inside an image, one tile at a time, and all tiles at once.
        let mut rng = Rng64::seed(6);
        let g = WinogradGeom {
            n: 3,
            cin: 2,
            cout: 3,
            in_hw: [13, 10],
            padding: [1, 2],
        };
        let [oh, ow] = g.out_hw();
        let x = random(g.n * g.cin * 130, &mut rng);
        let dy = random(g.n * g.cout * oh * ow, &mut rng);
        let want = direct_weight_gradient(&g, &x, &dy);
        for chunk in [1, 5, 17, 1000] {
            let mut dw = vec![0.0; want.len()];
            weight_gradient_chunked(&g, &x, &dy, &mut dw, chunk);
            for (a, b) in dw.iter().zip(&want) {
                assert!((a - b).abs() < 1e-12 * (1.0 + b.abs()), "chunk {chunk}");
            }
        }
    }

    #[test]
    fn f32_error_stays_small_on_a_resnet_sized_layer() {
        // 64 -> 64 channels on 14x14 (pad 1): the f32 Winograd result against f64 direct.
        let mut rng = Rng64::seed(4);
        let g = WinogradGeom {
            n: 1,
            cin: 64,
            cout: 64,
            in_hw: [14, 14],
            padding: [1, 1],
        };
        let x = random(64 * 196, &mut rng);
        let w: Vec<f64> = random(64 * 64 * 9, &mut rng)
            .iter()
            .map(|v| v / 24.0)
            .collect();
        let want = direct(&g, &x, &w);
        let (x32, w32): (Vec<f32>, Vec<f32>) = (
            x.iter().map(|&v| v as f32).collect(),
            w.iter().map(|&v| v as f32).collect(),
        );
        let mut y = vec![0f32; want.len()];
        forward(
            &g,
            &x32,
            Weights::Plain(&w32),
            &ChannelOp::default(),
            &mut y,
        );
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = y
            .iter()
            .zip(&want)
            .fold(0.0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
        assert!(err / scale < 1e-5, "relative error {}", err / scale);
    }

    #[test]
    fn flipped_kernel_gives_the_data_gradient() {
        // <conv(x, w), dy> = <x, conv(dy, flip(w), 2 - p)> for pad 0, 1, 2.
        let mut rng = Rng64::seed(8);
        for p in 0..3 {
            let g = WinogradGeom {
                n: 2,
                cin: 3,
                cout: 4,
                in_hw: [7, 6],
                padding: [p, p],
            };
            let [oh, ow] = g.out_hw();
            let x = random(g.n * g.cin * 42, &mut rng);
            let w = random(g.cout * g.cin * 9, &mut rng);
            let dy = random(g.n * g.cout * oh * ow, &mut rng);
            let y = direct(&g, &x, &w);
            let mut wf = vec![0.0; w.len()];
            flip_kernel(&w, g.cout, g.cin, &mut wf);
            let gb = WinogradGeom {
                n: 2,
                cin: 4,
                cout: 3,
                in_hw: [oh, ow],
                padding: [2 - p, 2 - p],
            };
            assert_eq!(gb.out_hw(), g.in_hw);
            let mut dx = vec![0.0; x.len()];
            forward(
                &gb,
                &dy,
                Weights::Plain(&wf),
                &ChannelOp::default(),
                &mut dx,
            );
            let lhs: f64 = y.iter().zip(&dy).map(|(a, b)| a * b).sum();
            let rhs: f64 = x.iter().zip(&dx).map(|(a, b)| a * b).sum();
            assert!((lhs - rhs).abs() < 1e-10 * (1.0 + lhs.abs()), "pad {p}");
        }
    }

    #[test]
    fn chunks_smaller_than_the_batch_give_the_same_result() {
        // Chunks that end inside an image, one tile at a time, and all tiles at once.
        let mut rng = Rng64::seed(2);
        let g = WinogradGeom {
            n: 3,
            cin: 1,
            cout: 1,
            in_hw: [40, 40],
            padding: [1, 1],
        };
        let x = random(3 * 1600, &mut rng);
        let w = random(9, &mut rng);
        let want = direct(&g, &x, &w);
        for chunk in [1, 7, 100, 401] {
            let mut y = vec![f64::NAN; want.len()];
            forward_chunked(
                &g,
                &x,
                Weights::Plain(&w),
                &ChannelOp::default(),
                &mut y,
                chunk,
            );
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 1e-12, "chunk {chunk}");
            }
        }
    }
}

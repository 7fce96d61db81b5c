//! Matrix multiply on row-major slices, backed by the `gemm` crate (AVX-512/AVX2/FMA kernels,
//! rayon threads).
//!
//! `C = op(A) · op(B)` or `C += op(A) · op(B)` where `op` optionally transposes. This is the
//! one place the crate calls into `unsafe` code: `gemm::gemm` takes raw pointers and strides.
//! The safe wrapper below checks every slice length first. `benches/gemm.rs` measures it
//! against ndarray's safe `general_mat_mul`, which it beats several-fold on this machine
//! (see docs/PERFORMANCE.md).

use crate::kernels::simd::vectorized;
use crate::parallel::prelude::*;
use crate::tensor::Float;

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Use the matrix as stored (row-major).
    N,
    /// Use its transpose: the slice holds the matrix row-major with rows and columns swapped.
    T,
}

/// Whether the kernel may split work across rayon threads.
///
/// Pass [`Threads::Single`] when the caller already runs on a rayon worker (for example one
/// image of a batch per thread) so that threads are not oversubscribed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// Use the rayon pool for large products.
    Pool,
    /// Run on the calling thread.
    Single,
}

/// A read-only matrix view: element `(i, j)` of a `rows x cols` matrix is
/// `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a, T> MatRef<'a, T> {
    /// A row-major `rows x cols` matrix whose rows start `ld` elements apart (`ld >= cols`).
    pub fn new(data: &'a [T], rows: usize, cols: usize, ld: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            row_stride: ld,
            col_stride: 1,
        }
    }

    /// `op(X)` for a row-major stored `X` (`rows x cols` of `op(X)`), as [`gemm()`] takes it.
    pub fn op(data: &'a [T], op: Op, rows: usize, cols: usize) -> Self {
        match op {
            Op::N => Self::new(data, rows, cols, cols),
            Op::T => Self::new(data, cols, rows, rows).t(),
        }
    }

    /// The transpose (a view: no copy).
    pub fn t(self) -> Self {
        MatRef {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// One past the largest index the view reads (0 for an empty matrix).
    fn extent(&self) -> usize {
        extent(self.rows, self.cols, self.row_stride, self.col_stride)
    }
}

/// A writable matrix view, laid out like [`MatRef::new`].
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    ld: usize,
}

impl<'a, T> MatMut<'a, T> {
    /// A row-major `rows x cols` matrix whose rows start `ld` elements apart (`ld >= cols`).
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, ld: usize) -> Self {
        MatMut {
            data,
            rows,
            cols,
            ld,
        }
    }
}

fn extent(rows: usize, cols: usize, rs: usize, cs: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// `C[m x n] (+)= op(A)[m x k] · op(B)[k x n]`, all row-major.
///
/// * `a` holds `op(A)` as stored: `m x k` for [`Op::N`], `k x m` for [`Op::T`].
/// * `b` holds `op(B)` as stored: `k x n` for [`Op::N`], `n x k` for [`Op::T`].
/// * With `accumulate` the product is added to `c`; otherwise `c` is overwritten.
///
/// # Panics
/// If a slice is shorter than its matrix (an internal error in the caller).
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    op_a: Op,
    b: &[T],
    op_b: Op,
    c: &mut [T],
    accumulate: bool,
    threads: Threads,
) {
    gemm_view(
        MatRef::op(a, op_a, m, k),
        MatRef::op(b, op_b, k, n),
        MatMut::new(c, m, n, n),
        accumulate,
        threads,
    );
}

/// `C (+)= A · B` on strided views: `A` is `m x k`, `B` is `k x n`, `C` is `m x n`.
///
/// # Panics
/// If the shapes disagree, a view reaches past its slice, or `C`'s rows overlap (`ld < n`):
/// all internal errors of the caller, checked before the unsafe call.
pub fn gemm_view<T: Float>(
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    c: MatMut<'_, T>,
    accumulate: bool,
    threads: Threads,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && c.rows == m && c.cols == n,
        "gemm: shapes {m}x{k} · {}x{n} -> {}x{}",
        b.rows,
        c.rows,
        c.cols
    );
    assert!(
        a.data.len() >= a.extent(),
        "gemm: A has {} elements, needs {}",
        a.data.len(),
        a.extent()
    );
    assert!(
        b.data.len() >= b.extent(),
        "gemm: B has {} elements, needs {}",
        b.data.len(),
        b.extent()
    );
    let c_extent = extent(m, n, c.ld, 1);
    assert!(
        c.data.len() >= c_extent && (m <= 1 || c.ld >= n),
        "gemm: C has {} elements and row stride {}, needs {c_extent} and at least {n}",
        c.data.len(),
        c.ld
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in c.data.chunks_mut(c.ld.max(1)).take(m) {
                row[..n].fill(T::zero());
            }
        }
        return;
    }
    // A few rows against a large B: bound by reading B once (see `skinny`).
    if m <= SKINNY_ROWS && k >= 32 && n * k >= SKINNY_MIN_WEIGHT {
        if a.col_stride == 1 && b.row_stride == 1 {
            skinny(&a, &b, c, accumulate, threads);
            return;
        }
        if b.col_stride == 1 {
            skinny_rows(&a, &b, c, accumulate, threads);
            return;
        }
    }
    let parallelism = match threads {
        Threads::Pool => crate::parallel::GEMM_POOL,
        Threads::Single => gemm::Parallelism::None,
    };
    // SAFETY: the asserts above guarantee that every element the views address lies inside
    // their slices: the largest offset read from A is (m-1)*rs + (k-1)*cs = extent - 1 <
    // a.data.len() (likewise for B), and the largest offset written in C is (m-1)*ld + n-1 <
    // c.data.len(). C's rows do not overlap (ld >= n, or a single row), so no element of C is
    // written twice, and `c` is borrowed mutably, so it cannot alias `a` or `b`. `gemm`
    // dispatches on the `TypeId` of T, and `Float` is sealed to f32 and f64, both supported.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.data.as_mut_ptr(),
            1,
            c.ld as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// At most this many rows of A take the dot-product path ([`skinny`]).
const SKINNY_ROWS: usize = 16;
/// ... and only when `B` has at least this many elements (4 MiB of f32: a product bound by
/// reading B; below, the packing GEMM's register tiling wins).
const SKINNY_MIN_WEIGHT: usize = 1 << 20;

/// `C (+)= A · B` for a few rows of A (a small batch through a fully connected layer) when
/// `Bᵀ` is stored row-major, as a `Linear` weight `W[out, in]` is: every output is the dot
/// product of a row of A with a row of W, and W is read once, straight from memory. The
/// packing GEMM would first copy the whole weight (AlexNet's first FC layer: 151 MB) for a
/// product that is bound by reading it.
///
/// Each dot product runs in 8 lanes summed in a fixed order, so the result does not depend
/// on the thread count.
fn skinny<T: Float>(
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    c: MatMut<'_, T>,
    accumulate: bool,
    threads: Threads,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let rows: Vec<&[T]> = (0..m).map(|i| &a.data[i * a.row_stride..][..k]).collect();
    // ct[j][i] = Σ_p A[i][p] · W[j][p], W's rows split across threads.
    let mut ct = vec![T::zero(); n * m];
    let fma = fma_available();
    let per_task = 16;
    let task = |(t, out): (usize, &mut [T])| {
        for (jj, out) in out.chunks_exact_mut(m).enumerate() {
            let j = t * per_task + jj;
            let w = &b.data[j * b.col_stride..][..k];
            for (i0, out) in (0..m).step_by(8).zip(out.chunks_mut(8)) {
                let rows = &rows[i0..(i0 + 8).min(m)];
                // The closures must be inlined into the dispatcher's AVX2 body, or `mul_add`
                // compiles to a library call (see `kernels::simd`).
                match fma {
                    true => vectorized(
                        #[inline(always)]
                        || dots::<T, true>(rows, w, out),
                    ),
                    false => vectorized(
                        #[inline(always)]
                        || dots::<T, false>(rows, w, out),
                    ),
                }
            }
        }
    };
    match threads {
        Threads::Pool => ct.par_chunks_mut(per_task * m).enumerate().for_each(task),
        Threads::Single => ct.chunks_mut(per_task * m).enumerate().for_each(task),
    }
    for (i, row) in c.data.chunks_mut(c.ld.max(1)).take(m).enumerate() {
        for (j, v) in row[..n].iter_mut().enumerate() {
            let d = ct[j * m + i];
            *v = if accumulate { *v + d } else { d };
        }
    }
}

/// `C (+)= A · B` for a few rows of A when B is stored row-major and large (the data gradient
/// of a `Linear` layer, `dX = dY · W`): each row of C is a sum of B's rows scaled by A's
/// entries, taken over blocks of columns so that B is read once and the block of C stays in
/// L1. Every element is summed over k in order, whatever the thread count.
fn skinny_rows<T: Float>(
    a: &MatRef<'_, T>,
    b: &MatRef<'_, T>,
    c: MatMut<'_, T>,
    accumulate: bool,
    threads: Threads,
) {
    const BLOCK: usize = 256;
    let (m, k, n) = (a.rows, a.cols, b.cols);
    // blocks[t][i][j] = C[i][t·BLOCK + j]
    let mut blocks = vec![T::zero(); n.div_ceil(BLOCK) * m * BLOCK];
    let task = |(t, out): (usize, &mut [T])| {
        let j0 = t * BLOCK;
        let cols = BLOCK.min(n - j0);
        vectorized(
            #[inline(always)]
            || {
                for p in 0..k {
                    let src = &b.data[p * b.row_stride + j0..][..cols];
                    for (i, acc) in out.chunks_exact_mut(BLOCK).enumerate() {
                        let s = a.data[i * a.row_stride + p * a.col_stride];
                        acc[..cols]
                            .iter_mut()
                            .zip(src)
                            .for_each(|(c, &v)| *c = s * v + *c);
                    }
                }
            },
        );
    };
    match threads {
        Threads::Pool => blocks.par_chunks_mut(m * BLOCK).enumerate().for_each(task),
        Threads::Single => blocks.chunks_mut(m * BLOCK).enumerate().for_each(task),
    }
    for (i, row) in c.data.chunks_mut(c.ld.max(1)).take(m).enumerate() {
        for (t, dst) in row[..n].chunks_mut(BLOCK).enumerate() {
            let src = &blocks[(t * m + i) * BLOCK..][..dst.len()];
            if accumulate {
                dst.iter_mut().zip(src).for_each(|(c, &v)| *c += v);
            } else {
                dst.copy_from_slice(src);
            }
        }
    }
}

/// `out[r] = rows[r] · w` for up to 8 rows (each `w.len()` long): 8 lanes per row, then the
/// lanes summed in order, then the tail.
#[inline(always)]
fn dots<T: Float, const FMA: bool>(rows: &[&[T]], w: &[T], out: &mut [T]) {
    const LANES: usize = 8;
    let k = w.len();
    let full = k - k % LANES;
    let r = rows.len().min(8);
    // Unused slots repeat W (their sums are dropped): fixed-size work for the compiler.
    let heads: [&[T]; 8] = std::array::from_fn(|i| match rows.get(i) {
        Some(row) if i < r => &row[..full],
        _ => &w[..full],
    });
    let w_head = &w[..full];
    let mut acc = [[T::zero(); LANES]; 8];
    for k0 in (0..full).step_by(LANES) {
        let Ok(wv) = <&[T; LANES]>::try_from(&w_head[k0..k0 + LANES]) else {
            continue;
        };
        for (acc, row) in acc.iter_mut().zip(&heads) {
            let Ok(av) = <&[T; LANES]>::try_from(&row[k0..k0 + LANES]) else {
                continue;
            };
            for l in 0..LANES {
                acc[l] = if FMA {
                    av[l].mul_add(wv[l], acc[l])
                } else {
                    av[l] * wv[l] + acc[l]
                };
            }
        }
    }
    for ((o, acc), row) in out.iter_mut().zip(&acc).zip(rows).take(r) {
        let head = acc.iter().fold(T::zero(), |s, &v| s + v);
        *o = row[full..k]
            .iter()
            .zip(&w[full..k])
            .fold(head, |s, (&x, &y)| s + x * y);
    }
}

/// Whether the CPU fuses multiply and add (then `mul_add` is one instruction).
fn fma_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    fn naive(m: usize, n: usize, k: usize, a: &[f64], op_a: Op, b: &[f64], op_b: Op) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let av = if op_a == Op::N {
                        a[i * k + p]
                    } else {
                        a[p * m + i]
                    };
                    let bv = if op_b == Op::N {
                        b[p * n + j]
                    } else {
                        b[j * k + p]
                    };
                    s += av * bv;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn matches_naive_in_every_transpose_combination() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 9),
            (64, 70, 130),
            (5, 1, 300),
            // A few rows against a large transposed B: the dot-product path (op_b = T), with
            // k not a multiple of the 8 lanes, and up to the 16-row limit.
            (8, 1100, 1000),
            (3, 2100, 501),
            (16, 1030, 1031),
            (17, 1030, 1031),
            // ... and against a large B as stored (op_b = N): the scaled-rows path.
            (7, 1500, 700),
        ] {
            let a: Vec<f64> = (0..m * k).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f64> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
            for op_a in [Op::N, Op::T] {
                for op_b in [Op::N, Op::T] {
                    let want = naive(m, n, k, &a, op_a, &b, op_b);
                    for threads in [Threads::Pool, Threads::Single] {
                        let mut c = vec![1.0; m * n];
                        gemm(m, n, k, &a, op_a, &b, op_b, &mut c, false, threads);
                        for (x, y) in c.iter().zip(&want) {
                            assert!((x - y).abs() < 1e-12, "{m}x{n}x{k} {op_a:?}{op_b:?}");
                        }
                        gemm(m, n, k, &a, op_a, &b, op_b, &mut c, true, threads);
                        for (x, y) in c.iter().zip(&want) {
                            assert!((x - 2.0 * y).abs() < 1e-12, "accumulate {m}x{n}x{k}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn f32_matches_f64() {
        let (m, n, k) = (9, 11, 13);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
        let want = naive(m, n, k, &a, Op::N, &b, Op::N);
        let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
        let b32: Vec<f32> = b.iter().map(|&x| x as f32).collect();
        let mut c = vec![0f32; m * n];
        gemm(
            m,
            n,
            k,
            &a32,
            Op::N,
            &b32,
            Op::N,
            &mut c,
            false,
            Threads::Pool,
        );
        for (x, y) in c.iter().zip(&want) {
            assert!((*x as f64 - y).abs() < 1e-5);
        }
    }

    #[test]
    fn empty_inner_dimension_zeroes_or_keeps() {
        let mut c = vec![3.0f64; 4];
        gemm(2, 2, 0, &[], Op::N, &[], Op::N, &mut c, true, Threads::Pool);
        assert_eq!(c, vec![3.0; 4]);
        gemm(
            2,
            2,
            0,
            &[],
            Op::N,
            &[],
            Op::N,
            &mut c,
            false,
            Threads::Pool,
        );
        assert_eq!(c, vec![0.0; 4]);
    }

    #[test]
    fn strided_views_match_naive() {
        // C's rows 7 apart inside a larger buffer; A a 3x4 window of a 5x9 matrix; B transposed.
        let (m, n, k) = (3, 5, 4);
        let big_a: Vec<f64> = (0..45).map(|i| (i as f64 * 0.3).sin()).collect();
        let a: Vec<f64> = (0..m)
            .flat_map(|i| (0..k).map(move |p| (i, p)))
            .map(|(i, p)| big_a[i * 9 + 2 + p])
            .collect();
        let bt: Vec<f64> = (0..n * k).map(|i| (i as f64 * 0.7).cos()).collect();
        let want = naive(m, n, k, &a, Op::N, &bt, Op::T);
        let mut c = vec![9.0; 7 * m];
        gemm_view(
            MatRef::new(&big_a[2..], m, k, 9),
            MatRef::new(&bt, n, k, k).t(),
            MatMut::new(&mut c, m, n, 7),
            false,
            Threads::Single,
        );
        for i in 0..m {
            for j in 0..7 {
                if j < n {
                    assert!((c[i * 7 + j] - want[i * n + j]).abs() < 1e-12);
                } else {
                    assert_eq!(c[i * 7 + j], 9.0, "padding between rows untouched");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "gemm: C has")]
    fn overlapping_rows_are_refused() {
        let mut c = vec![0.0f64; 8];
        gemm_view(
            MatRef::new(&[1.0; 4], 2, 2, 2),
            MatRef::new(&[1.0; 4], 2, 2, 2),
            MatMut::new(&mut c, 2, 2, 1),
            false,
            Threads::Single,
        );
    }

    #[test]
    #[should_panic(expected = "gemm: B has")]
    fn short_slice_is_caught_before_unsafe() {
        let mut c = vec![0.0f64; 4];
        gemm(
            2,
            2,
            2,
            &[0.0; 4],
            Op::N,
            &[0.0; 3],
            Op::N,
            &mut c,
            false,
            Threads::Pool,
        );
    }
}

//! Matrix multiply on row-major slices, backed by the `gemm` crate (AVX-512/AVX2/FMA kernels,
//! rayon threads).
//!
//! `C = op(A) · op(B)` or `C += op(A) · op(B)` where `op` optionally transposes. This is the
//! one place the crate calls into `unsafe` code: `gemm::gemm` takes raw pointers and strides.
//! The safe wrapper below checks every slice length first. `benches/gemm.rs` measures it
//! against ndarray's safe `general_mat_mul`, which it beats several-fold on this machine
//! (see docs/PERFORMANCE.md).

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

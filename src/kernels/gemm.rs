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

/// Row-major strides `(row_stride, col_stride)` of `op(X)` for a stored matrix whose `op`
/// has `cols` columns (and whose stored form has `stored_cols` columns).
fn strides(op: Op, rows_of_op: usize, cols_of_op: usize) -> (isize, isize) {
    match op {
        // op(X) = X stored rows x cols: element (i, j) at i*cols + j.
        Op::N => (cols_of_op as isize, 1),
        // op(X) = X^T where X is stored cols x rows: element (i, j) of op(X) at j*rows + i.
        Op::T => (1, rows_of_op as isize),
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
    assert!(
        a.len() >= m * k,
        "gemm: A has {} elements, needs {}",
        a.len(),
        m * k
    );
    assert!(
        b.len() >= k * n,
        "gemm: B has {} elements, needs {}",
        b.len(),
        k * n
    );
    assert!(
        c.len() >= m * n,
        "gemm: C has {} elements, needs {}",
        c.len(),
        m * n
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(T::zero());
        }
        return;
    }
    let (a_rs, a_cs) = strides(op_a, m, k);
    let (b_rs, b_cs) = strides(op_b, k, n);
    let parallelism = match threads {
        Threads::Pool => gemm::Parallelism::Rayon(0),
        Threads::Single => gemm::Parallelism::None,
    };
    // SAFETY: the asserts above guarantee that `a` holds at least m*k elements, `b` at least
    // k*n and `c` at least m*n. With the strides chosen by `strides`, the largest offset read
    // from A is (m-1)*a_rs + (k-1)*a_cs = m*k - 1 in both layouts (likewise k*n - 1 for B), and
    // the largest offset written in C is (m-1)*n + (n-1) = m*n - 1, so every access is in
    // bounds. `c` is borrowed mutably, so it cannot alias `a` or `b`. `gemm` dispatches on the
    // `TypeId` of T, and `Float` is sealed to f32 and f64, both of which it supports.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
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

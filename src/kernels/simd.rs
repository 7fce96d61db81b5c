//! Runtime dispatch of the crate's own loops to the widest vector instructions the CPU has.
//!
//! The crate is compiled for the x86-64 baseline (SSE2, 4 lanes of f32, no FMA), so that it
//! runs on any x86-64 machine. [`vectorized`] runs a closure inside a function compiled for
//! AVX2+FMA (or AVX-512 where present) when the CPU reports those features at run time, and
//! as plain baseline code otherwise: the same source, auto-vectorised per target by LLVM. The
//! detection and the `#[target_feature]` functions live in the `pulp` crate (also the
//! GEMM's dispatcher), so no `unsafe` is needed here.
//!
//! Use it around a hot loop whose body is plain slice arithmetic. The closure is compiled once
//! per target only if it is inlined into each of them: mark a closure with a loop in it
//! `#[inline(always)]` (or have it call an `#[inline(always)]` function), or it stays one
//! baseline function called from every target.

/// Runs `f` compiled for the best instruction set this CPU supports (see the module docs).
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_the_same_numbers_as_the_plain_loop() {
        let x: Vec<f32> = (0..1003).map(|i| (i as f32 * 0.37).sin()).collect();
        let plain: Vec<f32> = x.iter().map(|v| v.mul_add(1.5, 0.25)).collect();
        let fast = vectorized(|| x.iter().map(|v| v.mul_add(1.5, 0.25)).collect::<Vec<_>>());
        assert_eq!(plain, fast);
    }
}

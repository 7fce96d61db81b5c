//! Dropout has no deterministic PyTorch reference (its mask comes from PyTorch's generator),
//! so it is checked against what `nn.Dropout` promises: in training each element is zeroed
//! with probability p independently and the survivors are scaled by 1/(1-p), so the
//! expectation is the identity; backward applies the same mask and scale; eval mode is the
//! identity.

use convnet::prelude::*;
use ndarray::IxDyn;

#[test]
fn dropout_zeroes_a_fraction_p_and_scales_survivors_by_one_over_one_minus_p() {
    let n = 200_000;
    for (seed, p) in [(1u64, 0.1), (2, 0.3), (3, 0.5), (4, 0.9)] {
        let mut d = Dropout::<f64>::new(DropoutConfig::new().p(p).seed(seed)).unwrap();
        let x = Tensor::<f64>::from_elem(IxDyn(&[n]), 2.0);
        let y = d.forward(&x).unwrap();
        let scale = 1.0 / (1.0 - p);
        let zeros = y.iter().filter(|&&v| v == 0.0).count();
        // Every survivor is exactly 2 / (1 - p).
        assert!(
            y.iter()
                .all(|&v| v == 0.0 || (v - 2.0 * scale).abs() < 1e-12),
            "p = {p}: a survivor is not scaled by 1/(1-p)"
        );
        // The dropped fraction is p within 5 standard deviations of a binomial count.
        let frac = zeros as f64 / n as f64;
        let sigma = (p * (1.0 - p) / n as f64).sqrt();
        assert!((frac - p).abs() < 5.0 * sigma, "p = {p}: dropped {frac}");
        // So the mean is preserved (within the same 5 sigma, scaled).
        let mean = y.sum() / n as f64;
        assert!(
            (mean - 2.0).abs() < 5.0 * 2.0 * scale * sigma,
            "p = {p}: mean {mean}"
        );
        // Backward applies the same mask and scale.
        let dy = Tensor::<f64>::from_elem(IxDyn(&[n]), 1.0);
        let dx = d.backward(&dy).unwrap();
        for (a, b) in dx.iter().zip(y.iter()) {
            assert_eq!(*a, b / 2.0);
        }
        // Neighbouring elements are independent: P(both dropped) is p^2.
        let pairs = y
            .as_slice()
            .unwrap()
            .chunks_exact(2)
            .filter(|c| c[0] == 0.0 && c[1] == 0.0)
            .count() as f64
            / (n / 2) as f64;
        let s2 = (p * p * (1.0 - p * p) / (n / 2) as f64).sqrt();
        assert!((pairs - p * p).abs() < 5.0 * s2, "p = {p}: pairs {pairs}");
    }
}

#[test]
fn dropout_in_eval_mode_and_with_p_zero_is_the_identity() {
    let x = Tensor::<f64>::from_shape_fn(IxDyn(&[3, 4]), |i| i[0] as f64 - i[1] as f64);
    let mut d = Dropout::<f64>::new(DropoutConfig::new().p(0.5).seed(1)).unwrap();
    d.set_mode(Mode::Eval);
    assert_eq!(d.forward(&x).unwrap(), x);
    assert_eq!(d.backward(&x).unwrap(), x);
    let mut d = Dropout::<f64>::new(DropoutConfig::new().p(0.0)).unwrap();
    assert_eq!(d.forward(&x).unwrap(), x);
    // p = 1 drops everything (PyTorch returns zeros); p outside [0, 1] is an error.
    let mut d = Dropout::<f64>::new(DropoutConfig::new().p(1.0)).unwrap();
    assert!(d.forward(&x).unwrap().iter().all(|&v| v == 0.0));
    assert!(Dropout::<f64>::new(DropoutConfig::new().p(1.5)).is_err());
    assert!(Dropout::<f64>::new(DropoutConfig::new().p(f64::NAN)).is_err());
}

//! The two 16-bit float formats of saved weights, widened exactly to `f32`.
//!
//! * IEEE 754 half (`float16`): 1 sign bit, 5 exponent bits (bias 15), 10 fraction bits.
//!   Normal numbers move to `f32`'s bias 127 with the fraction shifted left by 13; subnormals
//!   are `fraction · 2^-24`; exponent 31 is infinity (fraction 0) or NaN.
//! * `bfloat16`: the upper 16 bits of an `f32`, so widening is a shift.

/// Widens an IEEE half-precision value (its bit pattern) to `f32`, exactly.
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exponent = ((h >> 10) & 0x1f) as u32;
    let fraction = (h & 0x3ff) as u32;
    match exponent {
        0 => {
            // Zero or subnormal: fraction · 2^-24, exact in f32.
            let magnitude = fraction as f32 * (1.0 / 16_777_216.0);
            if sign != 0 {
                -magnitude
            } else {
                magnitude
            }
        }
        0x1f => f32::from_bits(sign | 0x7f80_0000 | (fraction << 13)),
        e => f32::from_bits(sign | ((e + 127 - 15) << 23) | (fraction << 13)),
    }
}

/// Widens a `bfloat16` value (its bit pattern) to `f32`, exactly.
pub(crate) fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_values_from_the_ieee_table() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95); // 1/3 rounded to 10 fraction bits
        assert_eq!(f16_to_f32(0x7bff), 65504.0); // largest normal
        assert_eq!(f16_to_f32(0x0400), 2f32.powi(-14)); // smallest normal
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24)); // smallest subnormal
        assert_eq!(f16_to_f32(0x03ff), 1023.0 * 2f32.powi(-24)); // largest subnormal
        assert_eq!(f16_to_f32(0x0000).to_bits(), 0);
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000); // -0
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert_eq!(f16_to_f32(0xfc00), f32::NEG_INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn every_half_round_trips_through_f32() {
        // Narrowing back by the standard rules must give the same bits (NaNs aside), so the
        // widening loses nothing and puts every value where it belongs.
        for h in 0..=u16::MAX {
            let x = f16_to_f32(h);
            if x.is_nan() {
                continue;
            }
            let bits = x.to_bits();
            let sign = ((bits >> 16) & 0x8000) as u16;
            let e = ((bits >> 23) & 0xff) as i32 - 127 + 15;
            let back = if x == 0.0 {
                sign
            } else if x.is_infinite() {
                sign | 0x7c00
            } else if e <= 0 {
                sign | (x.abs() * 16_777_216.0) as u16
            } else {
                sign | ((e as u16) << 10) | ((bits >> 13) & 0x3ff) as u16
            };
            assert_eq!(back, h, "{h:#06x} -> {x}");
        }
    }

    #[test]
    fn bfloat16_is_the_top_half_of_f32() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
        assert_eq!(bf16_to_f32(0x7f80), f32::INFINITY);
        assert_eq!(bf16_to_f32(0x3eab), 0.333_984_38);
    }
}

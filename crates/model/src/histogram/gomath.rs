//! `log2` and `exp2` computed the way Go's `math` package computes them (the fdlibm
//! algorithms without fused multiply-adds), because Prometheus's quantile and fraction
//! interpolation depends on their exact results and Go's are not always the correctly
//! rounded ones that Rust's `f64::log2`/`f64::exp2` return (Go's `Exp2(0.5)` is one ulp
//! below `sqrt(2)`, for example).

// The constants are the published fdlibm ones, digits as given there.
#![allow(clippy::excessive_precision)]

use super::bounds::ldexp;

const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;

/// Splits a finite non-zero `x` into a fraction in [0.5, 1) and a power of two.
fn frexp(x: f64) -> (f64, i32) {
    let mut x = x;
    let mut exp = 0;
    if x.abs() < f64::MIN_POSITIVE {
        // Subnormal: scale into the normal range first.
        x *= (1u64 << 52) as f64;
        exp = -52;
    }
    let bits = x.to_bits();
    exp += ((bits >> 52) & 0x7ff) as i32 - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    (frac, exp)
}

/// Natural logarithm (fdlibm's `e_log.c` algorithm).
fn ln(x: f64) -> f64 {
    const L1: f64 = 6.666_666_666_666_735_130e-1;
    const L2: f64 = 3.999_999_999_940_941_908e-1;
    const L3: f64 = 2.857_142_874_366_239_149e-1;
    const L4: f64 = 2.222_219_843_214_978_396e-1;
    const L5: f64 = 1.818_357_216_161_805_012e-1;
    const L6: f64 = 1.531_383_769_920_937_332e-1;
    const L7: f64 = 1.479_819_860_511_658_591e-1;
    if x.is_nan() || x == f64::INFINITY {
        return x;
    }
    if x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    let (mut f1, mut ki) = frexp(x);
    if f1 < std::f64::consts::SQRT_2 / 2.0 {
        f1 *= 2.0;
        ki -= 1;
    }
    let f = f1 - 1.0;
    let k = ki as f64;
    let s = f / (2.0 + f);
    let s2 = s * s;
    let s4 = s2 * s2;
    let odd = s2 * (L1 + s4 * (L3 + s4 * (L5 + s4 * L7)));
    let even = s4 * (L2 + s4 * (L4 + s4 * L6));
    let r = odd + even;
    let hfsq = 0.5 * f * f;
    k * LN2_HI - ((hfsq - (s * (hfsq + r) + k * LN2_LO)) - f)
}

/// Base-2 logarithm, exact for powers of two.
pub(super) fn log2(x: f64) -> f64 {
    if x.is_nan() || x.is_infinite() || x <= 0.0 {
        return ln(x);
    }
    let (frac, exp) = frexp(x);
    if frac == 0.5 {
        return (exp - 1) as f64;
    }
    ln(frac) * (1.0 / std::f64::consts::LN_2) + exp as f64
}

/// `2^x` (fdlibm-style reduction to `e^r * 2^k` with `|r| <= ln(2)/2`).
pub(super) fn exp2(x: f64) -> f64 {
    const P1: f64 = 1.666_666_666_666_666_574_15e-1;
    const P2: f64 = -2.777_777_777_701_559_338_42e-3;
    const P3: f64 = 6.613_756_321_437_934_361_17e-5;
    const P4: f64 = -1.653_390_220_546_525_153_90e-6;
    const P5: f64 = 4.138_136_797_057_238_460_39e-8;
    if x.is_nan() {
        return x;
    }
    if x > 1.023_999_999_999_999_9e3 {
        return f64::INFINITY;
    }
    if x < -1.074e3 {
        return 0.0;
    }
    let k: i64 = if x > 0.0 {
        (x + 0.5) as i64
    } else if x < 0.0 {
        (x - 0.5) as i64
    } else {
        0
    };
    let t = x - k as f64;
    let hi = t * LN2_HI;
    let lo = -t * LN2_LO;
    let r = hi - lo;
    let tt = r * r;
    let c = r - tt * (P1 + tt * (P2 + tt * (P3 + tt * (P4 + tt * P5))));
    let y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    ldexp(y, k)
}

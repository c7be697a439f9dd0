//! The tests' random numbers: xorshift64, seeded, so every machine draws
//! the same cases.

/// Steps `x` and returns its new value.
pub(crate) fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

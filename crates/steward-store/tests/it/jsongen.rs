//! Random JSON maps that exercise every corner of Python's output format.

use rand::{Rng, RngExt};
use serde_json::{Map, Number, Value};

/// A random string: ASCII, control characters, U+007F, Latin, CJK, astral
/// characters (emoji), quotes and backslashes.
pub(crate) fn string(rng: &mut impl Rng) -> String {
    let len = rng.random_range(0..12);
    (0..len)
        .map(|_| match rng.random_range(0..8) {
            0 => char::from(rng.random_range(0u8..0x20)),
            1 => {
                ['"', '\\', '/', '\u{7f}', '\u{80}', '\u{ffff}', '\u{fffe}'][rng.random_range(0..7)]
            }
            2 => char::from_u32(rng.random_range(0xA0..0xD800)).unwrap_or('x'),
            3 => char::from_u32(rng.random_range(0xE000..0x1_0000)).unwrap_or('x'),
            4 => char::from_u32(rng.random_range(0x1_0000..0x11_0000)).unwrap_or('x'),
            _ => char::from(rng.random_range(0x20u8..0x7f)),
        })
        .collect()
}

/// A random finite float from every magnitude, plus the special ones.
pub(crate) fn float(rng: &mut impl Rng) -> f64 {
    match rng.random_range(0..6) {
        0 => [
            0.0,
            -0.0,
            1e16,
            1e-5,
            1e-4,
            100.0,
            0.1,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
        ][rng.random_range(0..10)],
        1 => rng.random_range(-1e6..1e6),
        2 => (rng.random_range(-1000i64..1000) as f64) * 10f64.powi(rng.random_range(-20..20)),
        _ => loop {
            let f = f64::from_bits(rng.random());
            if f.is_finite() {
                break f;
            }
        },
    }
}

pub(crate) fn number(rng: &mut impl Rng) -> Number {
    match rng.random_range(0..5) {
        0 => Number::from(rng.random::<i64>()),
        1 => Number::from(rng.random::<u64>()),
        2 => Number::from([i64::MIN, i64::MAX, 0, -1][rng.random_range(0..4)]),
        3 => Number::from(u64::MAX),
        _ => Number::from_f64(float(rng)).unwrap_or_else(|| Number::from(0)),
    }
}

pub(crate) fn value(rng: &mut impl Rng, depth: usize) -> Value {
    let top = if depth >= 3 { 4 } else { 6 };
    match rng.random_range(0..top) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        2 => Value::Number(number(rng)),
        3 => Value::String(string(rng)),
        4 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(map(rng, depth + 1, 4)),
    }
}

pub(crate) fn map(rng: &mut impl Rng, depth: usize, max_len: usize) -> Map<String, Value> {
    (0..rng.random_range(0..=max_len))
        .map(|_| (string(rng), value(rng, depth)))
        .collect()
}

//! The few distributions the fleet draws from, on a seeded `StdRng` so that a seed replays the same fleet.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// A seeded generator for one purpose (`salt`), so that what one part draws does not shift another's draws.
pub fn stream(seed: u64, salt: u64) -> StdRng {
    // SplitMix64's increment spreads nearby seeds and salts apart.
    StdRng::seed_from_u64(seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Uniform in `[low, high]`.
pub fn between(rng: &mut StdRng, low: i64, high: i64) -> i64 {
    if high <= low { low } else { rng.random_range(low..=high) }
}

pub fn chance(rng: &mut StdRng, p: f64) -> bool {
    rng.random_bool(p.clamp(0.0, 1.0))
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Log-normal with the given median and shape: the long right tail of durations measured on real networks.
pub fn log_normal(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// [`log_normal`] in whole milliseconds, kept within `[min, max]`.
pub fn log_normal_ms(rng: &mut StdRng, median: f64, sigma: f64, min: i64, max: i64) -> i64 {
    (log_normal(rng, median, sigma).round() as i64).clamp(min, max)
}

/// The wait until the next event of a Poisson process of `per_ms` events per millisecond.
pub fn exponential_ms(rng: &mut StdRng, per_ms: f64) -> f64 {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    -u.ln() / per_ms
}

/// One of `items`, with probability proportional to its weight.
pub fn weighted<T: Copy>(rng: &mut StdRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total.max(1));
    for (item, w) in items {
        if pick < *w {
            return *item;
        }
        pick -= w;
    }
    items[items.len() - 1].0
}

/// A random (version 4) UUID, lowercase as Chime prints meeting and attendee ids.
pub fn uuid(rng: &mut StdRng) -> String {
    let b: [u8; 16] = rng.random();
    format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-4{:01x}{:02x}-{:01x}{:01x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        b[0],
        b[1],
        b[2],
        b[3],
        b[4],
        b[5],
        b[6] & 0x0f,
        b[7],
        8 | (b[8] & 0x03),
        b[8] >> 4,
        b[9],
        b[10],
        b[11],
        b[12],
        b[13],
        b[14],
        b[15]
    )
}

/// `len` lowercase letters and digits, as in Voice Connector ids and SIP tags.
pub fn token(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect()
}

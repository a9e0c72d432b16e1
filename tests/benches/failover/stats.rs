//! Samples, their min/median/max, and the seeded random numbers of the
//! injection points.

/// The seeded generator of the injection points: the simulator's.
pub use xvrrpd::sim::Rng;

/// min / median / max of a set of samples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

pub fn summarize(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Summary {
        n,
        min: v[0],
        median,
        max: v[n - 1],
    })
}

//! Load generation for codis-rs benchmarks. See `src/bin/loadgen.rs`.

/// Latency percentiles of one window, in microseconds.
pub fn percentiles(samples: &mut [u64]) -> (u64, u64, u64) {
    if samples.is_empty() {
        return (0, 0, 0);
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), *samples.last().expect("not empty"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles() {
        let mut v: Vec<u64> = (1..=100).collect();
        assert_eq!(super::percentiles(&mut v), (51, 99, 100));
        assert_eq!(super::percentiles(&mut []), (0, 0, 0));
    }
}

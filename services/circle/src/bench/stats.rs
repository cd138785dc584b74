//! Latencies and rates of one measured step.

use std::time::Duration;

/// Every call of a step: its latency (µs) when it succeeded, and how many failed.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    micros: Vec<u32>,
    pub failed: u64,
    /// The step's wall time (set by whoever ran it).
    pub elapsed: Duration,
}

impl Latencies {
    pub fn record(&mut self, latency: Duration, ok: bool) {
        if ok {
            self.micros
                .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
        } else {
            self.failed += 1;
        }
    }

    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
        self.failed += other.failed;
    }

    pub fn count(&self) -> usize {
        self.micros.len()
    }

    /// Successful calls per second of wall time.
    pub fn rate(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.micros.len() as f64 / seconds
        } else {
            0.0
        }
    }

    /// The `q` quantile (0..=1) in milliseconds (0 when nothing succeeded).
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.micros.is_empty() {
            return 0.0;
        }
        self.micros.sort_unstable();
        let rank = ((self.micros.len() as f64 * q).ceil() as usize).clamp(1, self.micros.len());
        f64::from(self.micros[rank - 1]) / 1000.0
    }

    pub fn summary(&mut self) -> Summary {
        Summary {
            count: self.micros.len() as u64,
            failed: self.failed,
            per_second: round(self.rate()),
            p50_ms: round(self.quantile_ms(0.50)),
            p99_ms: round(self.quantile_ms(0.99)),
            p999_ms: round(self.quantile_ms(0.999)),
        }
    }
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// What a step measured, as the report shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub count: u64,
    pub failed: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_ranks_of_the_sorted_latencies() {
        let mut latencies = Latencies::default();
        for micros in (1..=1000).rev() {
            latencies.record(Duration::from_micros(micros), true);
        }
        latencies.record(Duration::from_micros(5), false);
        latencies.elapsed = Duration::from_secs(2);
        let summary = latencies.summary();
        assert_eq!(summary.count, 1000);
        assert_eq!(summary.failed, 1);
        assert_eq!(summary.per_second, 500.0);
        assert_eq!(summary.p50_ms, 0.5);
        assert_eq!(summary.p99_ms, 0.99);
        assert_eq!(summary.p999_ms, 1.0);
    }

    #[test]
    fn an_empty_step_reports_zeros() {
        let mut latencies = Latencies::default();
        let summary = latencies.summary();
        assert_eq!(summary.count, 0);
        assert_eq!(summary.p99_ms, 0.0);
        assert_eq!(summary.per_second, 0.0);
    }
}

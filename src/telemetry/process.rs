//! Process metrics: the `prometheus` crate's process collector, with the
//! CPU counter in microseconds instead of whole seconds. That collector
//! divides clock ticks by ticks per second in integers, so
//! `process_cpu_seconds_total` moved in steps of one second and a rate
//! over a short window read 0 or 1 core.

use prometheus::core::{Collector, Desc};
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::{Counter, MetricFamily};

/// [`ProcessCollector`] with `process_cpu_seconds_total` exact to the
/// microsecond.
pub(crate) struct ProcessMetrics(ProcessCollector);

impl ProcessMetrics {
    pub fn for_self() -> Self {
        Self(ProcessCollector::for_self())
    }
}

/// User plus system CPU time of this process, in seconds.
fn cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole `rusage` to the pointer on success
    // (return value 0) and nothing else.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut families = self.0.collect();
        let cpu = cpu_seconds();
        for family in &mut families {
            if family.name() != "process_cpu_seconds_total" {
                continue;
            }
            for metric in family.mut_metric() {
                if let Some(secs) = cpu {
                    let mut c = Counter::default();
                    c.set_value(secs);
                    metric.set_counter(c);
                }
            }
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_not_whole_seconds() {
        // Use some CPU; a value with a fraction shows microsecond
        // resolution (a whole number of seconds is a one-in-a-million
        // chance; the old collector gave 0 here).
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(30) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let families = ProcessMetrics::for_self().collect();
        let cpu = families
            .iter()
            .find(|f| f.name() == "process_cpu_seconds_total")
            .expect("the CPU counter is collected");
        let v = cpu.get_metric()[0].get_counter().get_value();
        assert!(v > 0.0 && v.fract() != 0.0, "{v}");
    }
}

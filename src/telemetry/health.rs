//! Liveness and readiness of the consumer loops, for `/healthz` and
//! `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use super::metrics::now_ms;

/// Liveness (every consumer loop polls) and readiness (every consumer has
/// had its first assignment, state restored, and reaches a broker) for
/// the admin endpoint.
#[derive(Debug, Default)]
pub struct Health {
    loops: std::sync::Mutex<Vec<Arc<LoopHealth>>>,
}

/// One consumer loop's progress.
#[derive(Debug)]
pub struct LoopHealth {
    /// What it consumes, for the endpoint's answer.
    pub name: String,
    last_poll_ms: AtomicI64,
    assigned: AtomicBool,
    /// Whether its consumer reaches a broker.
    connected: AtomicBool,
    /// Why its pipeline failed, once it has.
    failure: std::sync::Mutex<Option<String>>,
    /// How long without a poll counts as stuck.
    pub stall_after: std::time::Duration,
}

impl LoopHealth {
    /// The loop polled just now.
    pub fn polled(&self) {
        self.last_poll_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The consumer's first assignment completed.
    pub fn assigned(&self) {
        self.assigned.store(true, Ordering::Relaxed);
    }

    /// The pipeline failed: the loop is not alive any more, whatever it
    /// still does while it drains and stops.
    pub fn failed(&self, reason: &str) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert_with(|| reason.to_string());
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the consumer reaches a broker (as last seen).
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The consumer reaches a broker, or no longer does. Returns whether
    /// that changed.
    pub fn set_connected(&self, connected: bool) -> bool {
        self.connected.swap(connected, Ordering::Relaxed) != connected
    }
}

impl Health {
    /// Registers a consumer loop.
    pub fn register(&self, name: &str, stall_after: std::time::Duration) -> Arc<LoopHealth> {
        let l = Arc::new(LoopHealth {
            name: name.to_string(),
            last_poll_ms: AtomicI64::new(now_ms()),
            assigned: AtomicBool::new(false),
            connected: AtomicBool::new(true),
            failure: std::sync::Mutex::new(None),
            stall_after,
        });
        self.loops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::clone(&l));
        l
    }

    /// `Err` naming the loops whose pipeline failed and those that have
    /// not polled for too long.
    pub fn live(&self) -> Result<(), String> {
        let now = now_ms();
        let loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        let dead: Vec<String> = loops
            .iter()
            .filter_map(|l| {
                if let Some(why) = l.failure() {
                    return Some(format!("{}: failed: {why}", l.name));
                }
                let quiet = now - l.last_poll_ms.load(Ordering::Relaxed);
                (quiet > l.stall_after.as_millis() as i64)
                    .then(|| format!("{}: no poll for {quiet} ms", l.name))
            })
            .collect();
        if dead.is_empty() {
            Ok(())
        } else {
            Err(dead.join("\n"))
        }
    }

    /// `Err` naming the consumers still waiting for their first
    /// assignment and those that cannot reach a broker (they serve nothing
    /// meanwhile).
    pub fn ready(&self) -> Result<(), String> {
        let loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        if loops.is_empty() {
            return Err("no consumer started yet".into());
        }
        let names = |unready: fn(&LoopHealth) -> bool| -> Vec<&str> {
            loops
                .iter()
                .filter(|l| unready(l))
                .map(|l| l.name.as_str())
                .collect()
        };
        let mut why = Vec::new();
        let waiting = names(|l| !l.assigned.load(Ordering::Relaxed));
        if !waiting.is_empty() {
            why.push(format!(
                "waiting for a partition assignment: {}",
                waiting.join(", ")
            ));
        }
        let cut_off = names(|l| !l.connected());
        if !cut_off.is_empty() {
            why.push(format!("cannot reach the brokers: {}", cut_off.join(", ")));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why.join("\n"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ready_once_assigned_and_while_a_broker_is_reachable() {
        let h = Health::default();
        assert!(h.ready().is_err());
        let a = h.register("a", Duration::from_secs(60));
        assert_eq!(
            h.ready().unwrap_err(),
            "waiting for a partition assignment: a"
        );
        a.assigned();
        assert_eq!(h.ready(), Ok(()));
        assert!(a.set_connected(false));
        assert!(!a.set_connected(false), "no change");
        assert_eq!(h.ready().unwrap_err(), "cannot reach the brokers: a");
        assert!(h.live().is_ok(), "liveness is the loop, not the broker");
        a.set_connected(true);
        assert_eq!(h.ready(), Ok(()));
        a.failed("partition 3: boom");
        a.failed("a later error");
        assert_eq!(h.live().unwrap_err(), "a: failed: partition 3: boom");
    }
}

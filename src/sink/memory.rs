//! A sink that keeps what it is given in memory: the partition driver and
//! the operators are tested with it without a broker, and a library user
//! can run a pipeline's operator over records and read what it wrote.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rdkafka::error::KafkaError;

use super::{Delivery, Origin, Output, SendError, Sink};
use crate::checkpoint::Chunk;
use crate::codec::WindowOutput;

/// One record written to a [`MemorySink`].
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The partition it was derived from.
    pub partition: i32,
    /// What was written.
    pub output: Output,
    /// Written without key and value (a dead letter the broker had
    /// refused as too large).
    pub headers_only: bool,
}

#[derive(Debug, Default)]
struct State {
    written: Vec<Written>,
    /// Checkpoint chunks, by partition.
    checkpoints: Vec<(i32, Chunk)>,
    /// Delivery reports not given yet (only while holding).
    held: Vec<Delivery>,
    hold: bool,
    /// Errors the next writes' delivery reports carry, in order.
    failures: VecDeque<KafkaError>,
    /// Most unacknowledged records before a write is refused as
    /// `QueueFull` (only while holding).
    capacity: Option<usize>,
}

/// Keeps every output in memory. By default each write is acknowledged at
/// once, as a broker that takes everything would; [`MemorySink::holding`]
/// keeps the acknowledgements until [`MemorySink::acknowledge`], to see
/// what waits for them.
#[derive(Debug, Default)]
pub struct MemorySink {
    state: Mutex<State>,
}

impl MemorySink {
    /// A sink acknowledging every write at once.
    pub fn new() -> Self {
        Self::default()
    }

    /// A sink that acknowledges nothing until [`MemorySink::acknowledge`],
    /// and refuses writes as a full queue once `capacity` records wait.
    pub fn holding(capacity: usize) -> Self {
        let sink = Self::default();
        {
            let mut s = sink.state();
            s.hold = true;
            s.capacity = Some(capacity);
        }
        sink
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Acknowledges every write held so far.
    pub fn acknowledge(&self) {
        let held = std::mem::take(&mut self.state().held);
        for d in held {
            d.report(Ok(()));
        }
    }

    /// The next write's delivery report will carry `error`.
    pub fn fail_next(&self, error: KafkaError) {
        self.state().failures.push_back(error);
    }

    /// Everything written, in order.
    pub fn written(&self) -> Vec<Written> {
        self.state().written.clone()
    }

    /// The final window results written, in order.
    pub fn finals(&self) -> Vec<WindowOutput> {
        self.state()
            .written
            .iter()
            .filter_map(|w| match &w.output {
                Output::Final(e) => Some(e.window.clone()),
                _ => None,
            })
            .collect()
    }
}

impl MemorySink {
    /// Every checkpoint chunk written, in order, with its partition.
    pub fn checkpoints(&self) -> Vec<(i32, Chunk)> {
        self.state().checkpoints.clone()
    }

    /// Acknowledges (or fails) one delivery as the sink is set to.
    fn settle(&self, mut s: MutexGuard<'_, State>, delivery: Delivery) {
        if let Some(e) = s.failures.pop_front() {
            drop(s);
            delivery.report(Err(e));
        } else if s.hold {
            s.held.push(delivery);
        } else {
            drop(s);
            delivery.report(Ok(()));
        }
    }

    fn full(s: &State) -> bool {
        s.capacity.is_some_and(|c| s.held.len() >= c)
    }
}

impl Sink for MemorySink {
    fn write_checkpoint(
        &self,
        partition: i32,
        chunk: &Chunk,
        delivery: Box<Delivery>,
    ) -> Result<(), SendError> {
        let mut s = self.state();
        if Self::full(&s) {
            return Err(SendError::QueueFull);
        }
        s.checkpoints.push((partition, chunk.clone()));
        self.settle(s, *delivery);
        Ok(())
    }

    fn write(
        &self,
        origin: &Origin<'_>,
        output: &Output,
        headers_only: bool,
        delivery: Box<Delivery>,
    ) -> Result<bool, SendError> {
        let mut s = self.state();
        if Self::full(&s) {
            return Err(SendError::QueueFull);
        }
        s.written.push(Written {
            partition: origin.partition,
            output: output.clone(),
            headers_only,
        });
        self.settle(s, *delivery);
        Ok(false)
    }

    fn in_flight(&self) -> usize {
        self.state().held.len()
    }
}

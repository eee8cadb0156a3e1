//! Where partition tasks publish their commit points and the consumer
//! thread picks them up.

use std::collections::HashMap;
use std::sync::Mutex;

use super::CommitPoint;

#[derive(Debug, Clone, Copy)]
struct Entry {
    point: CommitPoint,
    committed: bool,
    /// The checkpoint of the last point committed, if it had one.
    committed_checkpoint: Option<u64>,
}

/// Latest commit point per partition, and whether it was committed yet.
#[derive(Debug, Default)]
pub struct CommitBoard {
    entries: Mutex<HashMap<i32, Entry>>,
}

impl CommitBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Entry>> {
        // A panic elsewhere must not stop commits; the map stays consistent.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `point` for `partition` (a no-op if unchanged).
    pub fn publish(&self, partition: i32, point: CommitPoint) {
        let mut map = self.lock();
        match map.get_mut(&partition) {
            Some(e) if e.point == point => {}
            Some(e) => {
                e.point = point;
                e.committed = false;
            }
            None => {
                map.insert(
                    partition,
                    Entry {
                        point,
                        committed: false,
                        committed_checkpoint: None,
                    },
                );
            }
        }
    }

    /// Points not yet committed, for the given partitions (all if `None`).
    pub fn uncommitted(&self, only: Option<&[i32]>) -> Vec<(i32, CommitPoint)> {
        self.lock()
            .iter()
            .filter(|(p, e)| !e.committed && only.is_none_or(|o| o.contains(p)))
            .map(|(p, e)| (*p, e.point))
            .collect()
    }

    /// Marks `point` of `partition` committed, unless a newer one was
    /// published meanwhile.
    pub fn mark_committed(&self, partition: i32, point: CommitPoint) {
        if let Some(e) = self.lock().get_mut(&partition)
            && e.point == point
        {
            e.committed = true;
            if point.checkpoint.is_some() {
                e.committed_checkpoint = point.checkpoint;
            }
        }
    }

    /// The checkpoint of the last point of `partition` committed (the
    /// one a restart would restore), if any.
    pub fn committed_checkpoint(&self, partition: i32) -> Option<u64> {
        self.lock()
            .get(&partition)
            .and_then(|e| e.committed_checkpoint)
    }

    /// Forgets a partition that is no longer owned.
    pub fn remove(&self, partition: i32) {
        self.lock().remove(&partition);
    }

    /// The latest point of `partition`.
    pub fn get(&self, partition: i32) -> Option<CommitPoint> {
        self.lock().get(&partition).map(|e| e.point)
    }
}

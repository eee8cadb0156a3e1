//! The records whose outputs are written and not yet acknowledged, by
//! offset: what keeps a partition's commit back. Held in offset order as
//! a rule (a partition's outputs are written in the order of its
//! records), so a queue takes them; a hold below the newest goes to an
//! ordered map beside it.

use std::collections::{BTreeMap, VecDeque};

/// How many outputs of one record are unacknowledged, and the largest
/// event time before the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    count: u32,
    max_event_time_before: i64,
}

/// Unacknowledged outputs by the offset of the record they came from.
#[derive(Debug, Default)]
pub(super) struct Holds {
    /// Holds in increasing offset order; released ones (count 0) stay
    /// until they reach the front.
    queue: VecDeque<(i64, Hold)>,
    /// Holds of offsets below the queue's newest when they came.
    others: BTreeMap<i64, Hold>,
    /// Unacknowledged outputs in all.
    total: usize,
}

impl Holds {
    /// One more output of record `offset` is unacknowledged.
    pub(super) fn hold(&mut self, offset: i64, max_event_time_before: i64) {
        self.total += 1;
        let fresh = Hold {
            count: 1,
            max_event_time_before,
        };
        match self.queue.back_mut() {
            Some((last, h)) if *last == offset && h.count > 0 => h.count += 1,
            Some((last, _)) if *last >= offset => {
                // Below the newest (or at a released one): in the map,
                // or counted where the queue still holds it.
                if let Some(h) = self.queued(offset).filter(|h| h.count > 0) {
                    h.count += 1;
                } else {
                    self.others
                        .entry(offset)
                        .and_modify(|h| h.count += 1)
                        .or_insert(fresh);
                }
            }
            // Above the queue's newest, but perhaps held in the map since
            // (the queue emptied after it was): counted there.
            _ => match self.others.get_mut(&offset) {
                Some(h) => h.count += 1,
                None => self.queue.push_back((offset, fresh)),
            },
        }
    }

    /// One output of record `offset` was acknowledged. Returns whether
    /// the offset held anything.
    pub(super) fn release(&mut self, offset: i64) -> bool {
        if let Some(h) = self.others.get_mut(&offset) {
            h.count -= 1;
            if h.count == 0 {
                self.others.remove(&offset);
            }
        } else if let Some(h) = self.queued(offset).filter(|h| h.count > 0) {
            h.count -= 1;
            while self.queue.front().is_some_and(|(_, h)| h.count == 0) {
                self.queue.pop_front();
            }
        } else {
            return false;
        }
        self.total -= 1;
        true
    }

    /// The lowest held offset, and the largest event time before it.
    pub(super) fn first(&self) -> Option<(i64, i64)> {
        let queued = self
            .queue
            .front()
            .map(|(o, h)| (*o, h.max_event_time_before));
        let other = self
            .others
            .first_key_value()
            .map(|(o, h)| (*o, h.max_event_time_before));
        match (queued, other) {
            (Some(q), Some(o)) => Some(if o.0 < q.0 { o } else { q }),
            (q, o) => q.or(o),
        }
    }

    /// Unacknowledged outputs in all.
    pub(super) fn len(&self) -> usize {
        self.total
    }

    /// The queue's entry for `offset`, if it has one.
    fn queued(&mut self, offset: i64) -> Option<&mut Hold> {
        let i = self.queue.binary_search_by_key(&offset, |(o, _)| *o).ok()?;
        self.queue.get_mut(i).map(|(_, h)| h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the holds must behave as: counts in an ordered map.
    #[derive(Default)]
    struct Model(BTreeMap<i64, (u32, i64)>);

    impl Model {
        fn hold(&mut self, offset: i64, met: i64) {
            self.0.entry(offset).or_insert((0, met)).0 += 1;
        }

        fn release(&mut self, offset: i64) -> bool {
            let Some(h) = self.0.get_mut(&offset) else {
                return false;
            };
            h.0 -= 1;
            if h.0 == 0 {
                self.0.remove(&offset);
            }
            true
        }

        fn first(&self) -> Option<(i64, i64)> {
            self.0.first_key_value().map(|(o, (_, met))| (*o, *met))
        }

        fn len(&self) -> usize {
            self.0.values().map(|(n, _)| *n as usize).sum()
        }
    }

    proptest! {
        /// Holds mostly in offset order, some behind, repeats, and
        /// releases in any order, against the model.
        #[test]
        fn holds_behave_as_counts_in_an_ordered_map(
            steps in proptest::collection::vec((any::<bool>(), 0i64..40, any::<prop::sample::Index>()), 1..200),
        ) {
            let (mut holds, mut model) = (Holds::default(), Model::default());
            let mut next = 0;
            for (step, (is_hold, back, pick)) in steps.into_iter().enumerate() {
                if is_hold {
                    // Usually the next offset or the same one again; now
                    // and then one behind.
                    let offset = if back < 30 { next + back % 2 } else { (next - back).max(0) };
                    next = next.max(offset);
                    // Each hold has an event time of its own: the first
                    // hold of an offset's is the one that counts.
                    let met = step as i64;
                    holds.hold(offset, met);
                    model.hold(offset, met);
                } else {
                    let held: Vec<i64> = model.0.keys().copied().collect();
                    let offset = if held.is_empty() { 7 } else { held[pick.index(held.len())] };
                    prop_assert_eq!(holds.release(offset), model.release(offset));
                }
                prop_assert_eq!(holds.first(), model.first());
                prop_assert_eq!(holds.len(), model.len());
            }
        }
    }

    #[test]
    fn an_offset_held_behind_then_above_an_emptied_queue_keeps_its_first_hold() {
        let mut holds = Holds::default();
        holds.hold(5, 50);
        holds.hold(3, 30);
        assert!(holds.release(5));
        holds.hold(3, 31);
        assert_eq!((holds.first(), holds.len()), (Some((3, 30)), 2));
        assert!(holds.release(3));
        assert!(holds.release(3));
        assert_eq!((holds.first(), holds.len()), (None, 0));
    }

    #[test]
    fn an_offset_held_again_after_its_release_is_held_again() {
        let mut holds = Holds::default();
        holds.hold(1, 10);
        holds.hold(2, 20);
        assert!(holds.release(2));
        // 2 is released but still queued behind 1: held anew.
        holds.hold(2, 20);
        assert!(holds.release(1));
        assert_eq!(holds.first(), Some((2, 20)));
        assert!(holds.release(2));
        assert_eq!((holds.first(), holds.len()), (None, 0));
        assert!(!holds.release(2));
    }
}

//! The commit frontier of one partition: the highest offset that may be
//! committed, and the event-time state to resume from there.
//!
//! Offset O may be committed only when
//! 1. every output derived from records before O is acknowledged, and
//! 2. no open window holds a record before O, and
//! 3. O does not cut an emitted window in two: a window whose records lie
//!    on both sides of O would be re-emitted from its later half alone
//!    after a restart.
//!
//! Together with the largest event time seen before O (stored in the
//! commit), a restart at O makes exactly the same lateness and window
//! decisions as the first run did for every record from O on, so every
//! window it emits again is identical to the first emission.

use std::collections::BTreeMap;

use crate::window::NO_TIME;

/// What is committed for a partition: the offset to resume at and the
/// largest event time seen before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPoint {
    /// Next offset to read after a restart.
    pub offset: i64,
    /// Largest event time before `offset` (`NO_TIME` if none).
    pub max_event_time: i64,
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    count: u32,
    max_event_time_before: i64,
}

#[derive(Debug, Clone, Copy)]
struct Span {
    first: i64,
    last: i64,
    max_event_time_before_first: i64,
}

/// Tracks holds (unacknowledged outputs, open windows) and emitted spans.
#[derive(Debug, Default)]
pub struct Frontier {
    /// Next offset to process and the largest event time before it.
    position: Option<CommitPoint>,
    holds: BTreeMap<i64, Hold>,
    spans: Vec<Span>,
    last: Option<CommitPoint>,
}

impl Frontier {
    /// A frontier with nothing processed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records have been processed up to `next_offset - 1`; `max_event_time`
    /// is the largest event time among all records before `next_offset`.
    pub fn advance(&mut self, next_offset: i64, max_event_time: i64) {
        self.position = Some(CommitPoint {
            offset: next_offset,
            max_event_time,
        });
    }

    /// Something derived from record `offset` is not yet safe: an open
    /// window starting there or an output not yet acknowledged.
    pub fn hold(&mut self, offset: i64, max_event_time_before: i64) {
        self.holds
            .entry(offset)
            .and_modify(|h| h.count += 1)
            .or_insert(Hold {
                count: 1,
                max_event_time_before,
            });
    }

    /// Releases one hold taken at `offset`.
    pub fn release(&mut self, offset: i64) {
        if let Some(h) = self.holds.get_mut(&offset) {
            h.count -= 1;
            if h.count == 0 {
                self.holds.remove(&offset);
            }
        } else {
            debug_assert!(false, "release of offset {offset} that holds nothing");
        }
    }

    /// A window with records from `first` to `last` was emitted and its
    /// output acknowledged: its hold (taken at `first`) becomes a span the
    /// frontier must not cut.
    pub fn window_acknowledged(&mut self, first: i64, last: i64, max_event_time_before_first: i64) {
        self.release(first);
        if last > first {
            self.spans.push(Span {
                first,
                last,
                max_event_time_before_first,
            });
        }
    }

    /// The point that may be committed now, if anything was processed.
    /// Never moves backwards.
    pub fn commit_point(&mut self) -> Option<CommitPoint> {
        let position = self.position?;
        let mut point = match self.holds.first_key_value() {
            Some((&offset, h)) if offset < position.offset => CommitPoint {
                offset,
                max_event_time: h.max_event_time_before,
            },
            _ => position,
        };
        // Step back to the start of any emitted window that straddles the
        // point; the start of that window may itself sit inside another.
        while let Some(s) = self
            .spans
            .iter()
            .filter(|s| s.first < point.offset && point.offset <= s.last)
            .min_by_key(|s| s.first)
        {
            point = CommitPoint {
                offset: s.first,
                max_event_time: s.max_event_time_before_first,
            };
        }
        // Spans wholly before the point can never matter again: the point
        // only moves forward.
        self.spans.retain(|s| s.last >= point.offset);
        if let Some(last) = self.last
            && last.offset > point.offset
        {
            debug_assert!(false, "frontier moved back from {last:?} to {point:?}");
            return Some(last);
        }
        self.last = Some(point);
        Some(point)
    }

    /// Number of holds (open windows plus unacknowledged outputs).
    pub fn holds(&self) -> usize {
        self.holds.values().map(|h| h.count as usize).sum()
    }
}

/// Commit metadata: `streamfold/1 met=<largest event time before offset>`.
pub fn encode_metadata(p: &CommitPoint) -> String {
    if p.max_event_time == NO_TIME {
        "streamfold/1 met=-".to_string()
    } else {
        format!("streamfold/1 met={}", p.max_event_time)
    }
}

/// Reads commit metadata written by [`encode_metadata`].
///
/// Returns `None` when the metadata is absent or not ours (the broker
/// dropped it, or another tool committed), `Some(NO_TIME)` when the
/// partition had seen no event time yet.
pub fn decode_metadata(s: &str) -> Option<i64> {
    let rest = s.strip_prefix("streamfold/1 met=")?;
    if rest == "-" {
        Some(NO_TIME)
    } else {
        rest.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn metadata_round_trips() {
        for m in [NO_TIME, 0, -5, 1_700_000_000_000] {
            let p = CommitPoint {
                offset: 3,
                max_event_time: m,
            };
            assert_eq!(decode_metadata(&encode_metadata(&p)), Some(m));
        }
        assert_eq!(decode_metadata(""), None);
        assert_eq!(decode_metadata("something else"), None);
    }

    /// The example from the design notes: window W = {0, 2} was emitted and
    /// acknowledged, window V opened at offset 1 is still open. Committing 1
    /// would replay W from offset 2 alone: the frontier must stay at 0.
    #[test]
    fn does_not_cut_an_emitted_window_in_two() {
        let mut f = Frontier::new();
        f.hold(0, NO_TIME); // W opens at 0
        f.hold(1, 30); // V opens at 1
        f.advance(4, 95);
        f.window_acknowledged(0, 2, NO_TIME);
        assert_eq!(
            f.commit_point(),
            Some(CommitPoint {
                offset: 0,
                max_event_time: NO_TIME
            })
        );
        f.release(1); // V closes and is acknowledged (single record)
        assert_eq!(
            f.commit_point(),
            Some(CommitPoint {
                offset: 4,
                max_event_time: 95
            })
        );
    }

    /// A model partition for the property test: each record opens or joins
    /// a window, or is a dead letter; windows close; outputs are
    /// acknowledged in arbitrary order.
    #[derive(Debug, Clone)]
    enum Step {
        /// Process a record: `Some(w)` joins window slot w, `None` is a
        /// dead letter (output needing an ack).
        Record(Option<u8>, i64),
        /// Close (emit) window slot w.
        Close(u8),
        /// Acknowledge the n-th oldest pending output.
        Ack(prop::sample::Index),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (prop::option::weighted(0.85, 0u8..6), 0i64..1000).prop_map(|(w, t)| Step::Record(w, t)),
            1 => (0u8..6).prop_map(Step::Close),
            2 => any::<prop::sample::Index>().prop_map(Step::Ack),
        ]
    }

    #[derive(Debug)]
    struct ModelWindow {
        first: i64,
        last: i64,
        m_first: i64,
    }

    enum Pending {
        DeadLetter(i64),
        Window(ModelWindow),
    }

    proptest! {
        #[test]
        fn never_commits_past_an_unacknowledged_output_or_an_open_window(
            steps in prop::collection::vec(step(), 1..200)
        ) {
            let mut f = Frontier::new();
            let mut next = 100i64; // partitions rarely start at 0
            let mut max_before: Vec<i64> = Vec::new(); // M before each offset
            let mut m = NO_TIME;
            let mut open: [Option<ModelWindow>; 6] = Default::default();
            let mut pending: Vec<Pending> = Vec::new();
            let mut acked: Vec<ModelWindow> = Vec::new();
            let mut previous = i64::MIN;
            for s in steps {
                match s {
                    Step::Record(slot, t) => {
                        let offset = next;
                        max_before.push(m);
                        match slot {
                            Some(w) => match &mut open[w as usize] {
                                Some(win) => win.last = offset,
                                slot => {
                                    f.hold(offset, m);
                                    *slot = Some(ModelWindow { first: offset, last: offset, m_first: m });
                                }
                            },
                            None => {
                                f.hold(offset, m);
                                pending.push(Pending::DeadLetter(offset));
                            }
                        }
                        m = m.max(t);
                        next += 1;
                        f.advance(next, m);
                    }
                    Step::Close(w) => {
                        if let Some(win) = open[w as usize].take() {
                            pending.push(Pending::Window(win));
                        }
                    }
                    Step::Ack(i) => {
                        if !pending.is_empty() {
                            match pending.remove(i.index(pending.len())) {
                                Pending::DeadLetter(o) => f.release(o),
                                Pending::Window(w) => {
                                    f.window_acknowledged(w.first, w.last, w.m_first);
                                    acked.push(w);
                                }
                            }
                        }
                    }
                }
                let Some(p) = f.commit_point() else { continue };
                prop_assert!(p.offset <= next);
                prop_assert!(p.offset >= previous, "moved back");
                previous = p.offset;
                for w in open.iter().flatten() {
                    prop_assert!(p.offset <= w.first, "passed open window {w:?}: {p:?}");
                }
                for q in &pending {
                    let first = match q { Pending::DeadLetter(o) => *o, Pending::Window(w) => w.first };
                    prop_assert!(p.offset <= first, "passed unacked output at {first}: {p:?}");
                }
                for w in &acked {
                    prop_assert!(!(w.first < p.offset && p.offset <= w.last), "cut {w:?}: {p:?}");
                }
                let expected_m = if p.offset == next { m } else { max_before[(p.offset - 100) as usize] };
                prop_assert_eq!(p.max_event_time, expected_m);
            }
        }
    }
}

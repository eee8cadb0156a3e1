//! The commit frontier of one partition: the highest offset that may be
//! committed, and the state to resume from there.
//!
//! A commit is three numbers: an offset O, the largest event time seen
//! before O, and a *settled* bound E such that every window ending at or
//! before E has been emitted and acknowledged. O may be committed only when
//! 1. every dead letter derived from a record before O is acknowledged, and
//! 2. every window ending after E (open, or emitted but not yet settled)
//!    has all its records at or after O.
//!
//! A restart at O with that event time makes exactly the same lateness and
//! window decisions as the first run for every record from O on. Windows
//! ending after E are rebuilt from all their records, so a repeated
//! emission is identical to the first; records of windows ending at or
//! before E were already reflected in acknowledged output and are skipped,
//! so a window is never emitted again from the part of its records that
//! lies after O.

use std::collections::{BTreeMap, BTreeSet};

use crate::window::NO_TIME;

/// What is committed for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitPoint {
    /// Next offset to read after a restart.
    pub offset: i64,
    /// Largest event time before `offset` (`NO_TIME` if none).
    pub max_event_time: i64,
    /// Every window ending at or before this was emitted and acknowledged
    /// (`NO_TIME` if none yet).
    pub settled: i64,
}

#[derive(Debug, Clone, Copy)]
struct Hold {
    count: u32,
    max_event_time_before: i64,
}

/// Tracks what keeps the frontier back: unacknowledged dead letters and
/// windows that are not settled yet.
#[derive(Debug)]
pub struct Frontier {
    /// Next offset to process and the largest event time before it.
    position: Option<(i64, i64)>,
    dead_letters: BTreeMap<i64, Hold>,
    /// Unsettled windows by (end, first offset) and by first offset.
    windows_by_end: BTreeSet<(i64, i64)>,
    windows_by_first: BTreeMap<i64, (i64, i64)>,
    /// Ends of emitted windows whose output is not acknowledged yet.
    unacknowledged: BTreeMap<i64, u32>,
    /// Every window ending at or before this has been emitted.
    closed: i64,
    settled: i64,
    last: Option<CommitPoint>,
}

impl Frontier {
    /// A frontier resuming after `settled` (from a commit), or `NO_TIME`.
    pub fn new(settled: i64) -> Self {
        Self {
            position: None,
            dead_letters: BTreeMap::new(),
            windows_by_end: BTreeSet::new(),
            windows_by_first: BTreeMap::new(),
            unacknowledged: BTreeMap::new(),
            closed: settled,
            settled,
            last: None,
        }
    }

    /// Windows ending at or before this are settled: a record for one of
    /// them that is not late was already reflected in acknowledged output.
    pub fn settled(&self) -> i64 {
        self.settled
    }

    /// Records have been processed up to `next_offset - 1`; `max_event_time`
    /// is the largest event time among all records before `next_offset`.
    pub fn advance(&mut self, next_offset: i64, max_event_time: i64) {
        self.position = Some((next_offset, max_event_time));
    }

    /// A dead letter for record `offset` was sent and is not acknowledged.
    pub fn hold(&mut self, offset: i64, max_event_time_before: i64) {
        self.dead_letters
            .entry(offset)
            .and_modify(|h| h.count += 1)
            .or_insert(Hold {
                count: 1,
                max_event_time_before,
            });
    }

    /// The dead letter for record `offset` was acknowledged.
    pub fn release(&mut self, offset: i64) {
        if let Some(h) = self.dead_letters.get_mut(&offset) {
            h.count -= 1;
            if h.count == 0 {
                self.dead_letters.remove(&offset);
            }
        } else {
            debug_assert!(false, "release of offset {offset} that holds nothing");
        }
    }

    /// A window ending at `end` was opened by the record at `first`.
    ///
    /// Tracked even when `end` is already settled (a replay after a
    /// restart): a session rebuilt from part of its records can still grow
    /// past the settled bound by merging, and then holds the frontier.
    /// Windows that close settled are dropped with [`Frontier::window_dropped`].
    pub fn window_opened(&mut self, end: i64, first: i64, max_event_time_before_first: i64) {
        self.windows_by_end.insert((end, first));
        self.windows_by_first
            .insert(first, (end, max_event_time_before_first));
    }

    /// A window (a session that merged into another, or one dropped as
    /// settled) is no longer tracked under `(end, first)`.
    pub fn window_dropped(&mut self, end: i64, first: i64) {
        if self.windows_by_end.remove(&(end, first)) {
            self.windows_by_first.remove(&first);
        }
    }

    /// A window ending at `end` was handed to the producer.
    pub fn window_emitted(&mut self, end: i64) {
        *self.unacknowledged.entry(end).or_insert(0) += 1;
    }

    /// The output of a window ending at `end` was acknowledged.
    pub fn window_acknowledged(&mut self, end: i64) {
        match self.unacknowledged.get_mut(&end) {
            Some(n) if *n > 1 => *n -= 1,
            Some(_) => {
                self.unacknowledged.remove(&end);
            }
            None => debug_assert!(false, "acknowledgement of a window never emitted"),
        }
    }

    /// Every window ending at or before `watermark` has been emitted.
    pub fn windows_closed(&mut self, watermark: i64) {
        self.closed = self.closed.max(watermark);
    }

    /// The point that may be committed now, if anything was processed.
    /// Never moves backwards.
    pub fn commit_point(&mut self) -> Option<CommitPoint> {
        let (position, position_met) = self.position?;
        let settled = match self.unacknowledged.first_key_value() {
            Some((&end, _)) => self.closed.min(end - 1),
            None => self.closed,
        };
        if settled > self.settled {
            self.settled = settled;
            while let Some(&(end, first)) = self.windows_by_end.first() {
                if end > settled {
                    break;
                }
                self.windows_by_end.pop_first();
                self.windows_by_first.remove(&first);
            }
        }
        let mut point = CommitPoint {
            offset: position,
            max_event_time: position_met,
            settled: self.settled,
        };
        if let Some((&offset, &(_, met))) = self.windows_by_first.first_key_value()
            && offset < point.offset
        {
            point.offset = offset;
            point.max_event_time = met;
        }
        if let Some((&offset, h)) = self.dead_letters.first_key_value()
            && offset < point.offset
        {
            point.offset = offset;
            point.max_event_time = h.max_event_time_before;
        }
        if let Some(last) = self.last
            && last.offset > point.offset
        {
            debug_assert!(false, "frontier moved back from {last:?} to {point:?}");
            return Some(last);
        }
        self.last = Some(point);
        Some(point)
    }

    /// Number of unsettled windows plus unacknowledged dead letters.
    pub fn holds(&self) -> usize {
        self.windows_by_first.len()
            + self
                .dead_letters
                .values()
                .map(|h| h.count as usize)
                .sum::<usize>()
    }
}

fn time(t: i64) -> String {
    if t == NO_TIME {
        "-".into()
    } else {
        t.to_string()
    }
}

/// Commit metadata: `streamfold/1 met=<largest event time before offset> settled=<bound>`.
pub fn encode_metadata(p: &CommitPoint) -> String {
    format!(
        "streamfold/1 met={} settled={}",
        time(p.max_event_time),
        time(p.settled)
    )
}

/// Reads commit metadata written by [`encode_metadata`]: `(max event time,
/// settled)`. `None` when the metadata is absent or not ours (the broker
/// dropped it, or another tool committed).
pub fn decode_metadata(s: &str) -> Option<(i64, i64)> {
    let rest = s.strip_prefix("streamfold/1 ")?;
    let mut met = None;
    let mut settled = None;
    for part in rest.split(' ') {
        let (k, v) = part.split_once('=')?;
        let v = if v == "-" { NO_TIME } else { v.parse().ok()? };
        match k {
            "met" => met = Some(v),
            "settled" => settled = Some(v),
            _ => {}
        }
    }
    Some((met?, settled?))
}

/// A whole commit point as one string, for the resume-state topic:
/// `streamfold/1 met=<..> settled=<..> offset=<offset>`.
pub fn encode_state(p: &CommitPoint) -> String {
    format!("{} offset={}", encode_metadata(p), p.offset)
}

/// Reads a commit point written by [`encode_state`].
pub fn decode_state(s: &str) -> Option<CommitPoint> {
    let (max_event_time, settled) = decode_metadata(s)?;
    let offset = s
        .split(' ')
        .find_map(|part| part.strip_prefix("offset="))?
        .parse()
        .ok()?;
    Some(CommitPoint {
        offset,
        max_event_time,
        settled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn state_round_trips() {
        let p = CommitPoint {
            offset: 42,
            max_event_time: 1_700_000_000_000,
            settled: NO_TIME,
        };
        assert_eq!(decode_state(&encode_state(&p)), Some(p));
        assert_eq!(decode_state(&encode_metadata(&p)), None, "no offset");
    }

    #[test]
    fn metadata_round_trips() {
        for (m, e) in [
            (NO_TIME, NO_TIME),
            (0, -5),
            (1_700_000_000_000, 1_699_999_990_000),
        ] {
            let p = CommitPoint {
                offset: 3,
                max_event_time: m,
                settled: e,
            };
            assert_eq!(decode_metadata(&encode_metadata(&p)), Some((m, e)));
        }
        assert_eq!(decode_metadata(""), None);
        assert_eq!(decode_metadata("streamfold/1 met=5"), None);
        assert_eq!(decode_metadata("something else"), None);
    }

    /// Window W (end 60) has records at offsets 0 and 2 and is emitted and
    /// acknowledged; window V (end 120) opened at offset 1 is still open.
    /// Committing offset 1 is safe because W is settled: a restart skips
    /// W's record at 2 instead of emitting W from it alone. Out-of-order
    /// streams interleave windows like this all the time, so the frontier
    /// must not step back to W's first record.
    #[test]
    fn an_emitted_window_straddling_the_offset_is_settled_not_waited_for() {
        let mut f = Frontier::new(NO_TIME);
        f.window_opened(60, 0, NO_TIME);
        f.window_opened(120, 1, 30);
        f.advance(4, 95);
        f.window_emitted(60);
        f.windows_closed(65);
        let p = f.commit_point().unwrap();
        assert_eq!((p.offset, p.settled), (0, 59), "W not acknowledged yet");
        f.window_acknowledged(60);
        let p = f.commit_point().unwrap();
        assert_eq!((p.offset, p.max_event_time, p.settled), (1, 30, 65));
        f.window_emitted(120);
        f.windows_closed(130);
        f.window_acknowledged(120);
        let p = f.commit_point().unwrap();
        assert_eq!((p.offset, p.max_event_time, p.settled), (4, 95, 130));
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// A record for window (key, end index) with event time t.
        Record(u8, u8, i64),
        /// Close every window ending at or before end index.
        Close(u8),
        /// Acknowledge the n-th pending output.
        Ack(prop::sample::Index),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            5 => (0u8..3, 0u8..8, 0i64..1000).prop_map(|(k, e, t)| Step::Record(k, e, t)),
            1 => (0u8..8).prop_map(Step::Close),
            2 => any::<prop::sample::Index>().prop_map(Step::Ack),
        ]
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum State {
        Open,
        Emitted,
        Acknowledged,
    }

    #[derive(Debug)]
    struct ModelWindow {
        end: i64,
        first: i64,
        state: State,
    }

    enum Pending {
        DeadLetter(usize),
        Window(usize),
    }

    proptest! {
        /// For arbitrary record orders, window closings and acknowledgement
        /// orders, the commit point never passes an unacknowledged output or
        /// a record that an unsettled window needs, and everything it
        /// declares settled is emitted and acknowledged.
        #[test]
        fn never_commits_past_an_unacknowledged_output_or_a_needed_record(
            steps in prop::collection::vec(step(), 1..250)
        ) {
            let mut f = Frontier::new(NO_TIME);
            let base = 100i64;
            let mut next = base;
            let mut max_before: Vec<i64> = Vec::new();
            let mut m = NO_TIME;
            let mut closed = NO_TIME;
            let mut windows: Vec<ModelWindow> = Vec::new();
            let mut open: BTreeMap<(u8, i64), usize> = BTreeMap::new();
            let mut pending: Vec<Pending> = Vec::new();
            let mut dead: Vec<(i64, bool)> = Vec::new();
            let mut previous: Option<CommitPoint> = None;
            for s in steps {
                match s {
                    Step::Record(key, e, t) => {
                        let end = (i64::from(e) + 1) * 60;
                        let offset = next;
                        max_before.push(m);
                        if end <= closed {
                            f.hold(offset, m);
                            pending.push(Pending::DeadLetter(dead.len()));
                            dead.push((offset, false));
                        } else if let std::collections::btree_map::Entry::Vacant(v) = open.entry((key, end)) {
                            f.window_opened(end, offset, m);
                            v.insert(windows.len());
                            windows.push(ModelWindow { end, first: offset, state: State::Open });
                        }
                        m = m.max(t);
                        next += 1;
                        f.advance(next, m);
                    }
                    Step::Close(e) => {
                        let upto = (i64::from(e) + 1) * 60;
                        if upto > closed {
                            let ends: Vec<_> = open.keys().filter(|(_, end)| *end <= upto).cloned().collect();
                            for k in ends {
                                let i = open.remove(&k).unwrap();
                                windows[i].state = State::Emitted;
                                f.window_emitted(windows[i].end);
                                pending.push(Pending::Window(i));
                            }
                            closed = upto;
                            f.windows_closed(upto);
                        }
                    }
                    Step::Ack(i) => {
                        if !pending.is_empty() {
                            match pending.remove(i.index(pending.len())) {
                                Pending::DeadLetter(d) => {
                                    dead[d].1 = true;
                                    f.release(dead[d].0);
                                }
                                Pending::Window(w) => {
                                    windows[w].state = State::Acknowledged;
                                    f.window_acknowledged(windows[w].end);
                                }
                            }
                        }
                    }
                }
                let Some(p) = f.commit_point() else { continue };
                prop_assert!(p.offset <= next);
                if let Some(prev) = previous {
                    prop_assert!(p.offset >= prev.offset, "offset moved back");
                    prop_assert!(p.settled >= prev.settled, "settled moved back");
                }
                previous = Some(p);
                for (offset, acked) in &dead {
                    prop_assert!(*acked || p.offset <= *offset, "passed unacked dead letter {offset}: {p:?}");
                }
                for w in &windows {
                    if w.end <= p.settled {
                        prop_assert_eq!(w.state, State::Acknowledged, "settled but not acknowledged: {:?} {:?}", w, p);
                    } else {
                        prop_assert!(p.offset <= w.first, "passed a record of unsettled {w:?}: {p:?}");
                    }
                }
                let expected_m = if p.offset == next { m } else { max_before[(p.offset - base) as usize] };
                prop_assert_eq!(p.max_event_time, expected_m);
            }
        }
    }
}

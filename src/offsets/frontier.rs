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
//!
//! With checkpoints ([`Frontier::with_checkpoints`]) the windows open at O
//! are in the checkpoint of the state at O, so rule 2 gives way: the
//! commit point is the newest checkpoint whose chunks, whose window results
//! (those ending at or before the watermark it was taken at, which is its
//! E) and whose earlier dead letters are all acknowledged.

use std::collections::{BTreeMap, BTreeSet};

use super::holds::Holds;
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
    /// The checkpoint that holds the state at `offset`, when the pipeline
    /// keeps checkpoints: then the open windows come from it, not from
    /// reading their records again.
    pub checkpoint: Option<u64>,
}

/// A checkpoint written and not yet a commit point.
#[derive(Debug, Clone, Copy)]
struct Written {
    point: CommitPoint,
    /// Which write of the checkpoint (one checkpoint may be written again).
    attempt: u64,
    /// Chunks not acknowledged yet.
    chunks_left: u32,
}

/// Tracks what keeps the frontier back: unacknowledged dead letters and
/// windows that are not settled yet.
#[derive(Debug)]
pub struct Frontier {
    /// Next offset to process and the largest event time before it.
    position: Option<(i64, i64)>,
    /// Records whose outputs (dead letters, a stateless pipeline's
    /// records, forwarded records) are not acknowledged yet.
    dead_letters: Holds,
    /// Unsettled windows by (end, first offset) and by first offset.
    windows_by_end: BTreeSet<(i64, i64)>,
    windows_by_first: BTreeMap<i64, (i64, i64)>,
    /// Ends of emitted windows whose output is not acknowledged yet.
    unacknowledged: BTreeMap<i64, u32>,
    /// Every window ending at or before this has been emitted.
    closed: i64,
    settled: i64,
    last: Option<CommitPoint>,
    /// With checkpoints, commit points are those of checkpoints; `None`
    /// without.
    checkpoints: Option<std::collections::VecDeque<Written>>,
}

impl Frontier {
    /// A frontier resuming after `settled` (from a commit), or `NO_TIME`.
    pub fn new(settled: i64) -> Self {
        Self {
            position: None,
            dead_letters: Holds::default(),
            windows_by_end: BTreeSet::new(),
            windows_by_first: BTreeMap::new(),
            unacknowledged: BTreeMap::new(),
            closed: settled,
            settled,
            last: None,
            checkpoints: None,
        }
    }

    /// A frontier whose commit points are checkpoints: the state at an
    /// offset is in a checkpoint, so the point need not wait for open
    /// windows. `resume` is the checkpoint restored, if any.
    pub fn with_checkpoints(settled: i64, resume: Option<CommitPoint>) -> Self {
        Self {
            last: resume,
            checkpoints: Some(std::collections::VecDeque::new()),
            ..Self::new(settled)
        }
    }

    /// Checkpoint `point.checkpoint` of the state at `point.offset` was
    /// handed to the producer in `chunks` records; `point.settled` is the
    /// watermark its windows were closed up to. It becomes the commit point
    /// once its chunks, every window result it reflects (those ending at or
    /// before that watermark) and every dead letter of a record before its
    /// offset are acknowledged.
    pub fn checkpoint_written(&mut self, point: CommitPoint, attempt: u64, chunks: u32) {
        if let Some(c) = &mut self.checkpoints {
            c.push_back(Written {
                point,
                attempt,
                chunks_left: chunks,
            });
        }
    }

    /// One chunk of write `attempt` of a checkpoint was acknowledged.
    pub fn checkpoint_acknowledged(&mut self, attempt: u64) {
        if let Some(w) = self
            .checkpoints
            .iter_mut()
            .flatten()
            .find(|w| w.attempt == attempt)
        {
            w.chunks_left = w.chunks_left.saturating_sub(1);
        }
    }

    /// Write `attempt` of a checkpoint will not be acknowledged (a chunk
    /// was refused).
    pub fn checkpoint_lost(&mut self, attempt: u64) {
        if let Some(c) = &mut self.checkpoints {
            c.retain(|w| w.attempt != attempt);
        }
    }

    /// Every window ending at or before this has been emitted.
    pub fn closed(&self) -> i64 {
        self.closed
    }

    /// Whether a checkpoint is written and not yet a commit point.
    pub fn checkpoint_pending(&self) -> bool {
        self.checkpoints.as_ref().is_some_and(|c| !c.is_empty())
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
        self.dead_letters.hold(offset, max_event_time_before);
    }

    /// The dead letter for record `offset` was acknowledged.
    pub fn release(&mut self, offset: i64) {
        let held = self.dead_letters.release(offset);
        debug_assert!(held, "release of offset {offset} that holds nothing");
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
        if let Some(pending) = &mut self.checkpoints {
            let held_from = self.dead_letters.first().map(|(o, _)| o);
            while let Some(w) = pending.front() {
                let ready = w.chunks_left == 0
                    && w.point.settled <= self.settled
                    && held_from.is_none_or(|o| o >= w.point.offset);
                if !ready {
                    break;
                }
                self.last = Some(w.point);
                pending.pop_front();
            }
            return self.last;
        }
        let mut point = CommitPoint {
            offset: position,
            max_event_time: position_met,
            settled: self.settled,
            checkpoint: None,
        };
        if let Some((&offset, &(_, met))) = self.windows_by_first.first_key_value()
            && offset < point.offset
        {
            point.offset = offset;
            point.max_event_time = met;
        }
        if let Some((offset, met)) = self.dead_letters.first()
            && offset < point.offset
        {
            point.offset = offset;
            point.max_event_time = met;
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
        self.windows_by_first.len() + self.dead_letters.len()
    }
}

fn time(t: i64) -> String {
    if t == NO_TIME {
        "-".into()
    } else {
        t.to_string()
    }
}

/// Commit metadata: `streamfold/1 met=<largest event time before offset>
/// settled=<bound>`, and ` ckpt=<n>` when checkpoint `n` holds the state
/// at the offset.
pub fn encode_metadata(p: &CommitPoint) -> String {
    let mut s = format!(
        "streamfold/1 met={} settled={}",
        time(p.max_event_time),
        time(p.settled)
    );
    if let Some(n) = p.checkpoint {
        s.push_str(&format!(" ckpt={n}"));
    }
    s
}

/// Reads commit metadata written by [`encode_metadata`], for a commit at
/// `offset`. `None` when the metadata is absent or not ours (the broker
/// dropped it, or another tool committed).
pub fn decode_metadata(offset: i64, s: &str) -> Option<CommitPoint> {
    let rest = s.strip_prefix("streamfold/1 ")?;
    let mut met = None;
    let mut settled = None;
    let mut checkpoint = None;
    for part in rest.split(' ') {
        let (k, v) = part.split_once('=')?;
        match k {
            "ckpt" => checkpoint = Some(v.parse().ok()?),
            "met" | "settled" => {
                let v = if v == "-" { NO_TIME } else { v.parse().ok()? };
                if k == "met" {
                    met = Some(v);
                } else {
                    settled = Some(v);
                }
            }
            _ => {}
        }
    }
    Some(CommitPoint {
        offset,
        max_event_time: met?,
        settled: settled?,
        checkpoint,
    })
}

/// A whole commit point as one string, for the resume-state topic:
/// the metadata and ` offset=<offset>`.
pub fn encode_state(p: &CommitPoint) -> String {
    format!("{} offset={}", encode_metadata(p), p.offset)
}

/// Reads a commit point written by [`encode_state`].
pub fn decode_state(s: &str) -> Option<CommitPoint> {
    let offset = s
        .split(' ')
        .find_map(|part| part.strip_prefix("offset="))?
        .parse()
        .ok()?;
    decode_metadata(offset, s)
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
            checkpoint: None,
        };
        assert_eq!(decode_state(&encode_state(&p)), Some(p));
        assert_eq!(decode_state(&encode_metadata(&p)), None, "no offset");
        let with = CommitPoint {
            checkpoint: Some(7),
            ..p
        };
        assert_eq!(
            encode_state(&with),
            "streamfold/1 met=1700000000000 settled=- ckpt=7 offset=42"
        );
        assert_eq!(decode_state(&encode_state(&with)), Some(with));
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
                checkpoint: None,
            };
            assert_eq!(decode_metadata(3, &encode_metadata(&p)), Some(p));
        }
        assert_eq!(decode_metadata(0, ""), None);
        assert_eq!(decode_metadata(0, "streamfold/1 met=5"), None);
        assert_eq!(decode_metadata(0, "something else"), None);
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

    #[test]
    fn with_checkpoints_the_commit_is_a_checkpoint_whose_outputs_are_acknowledged() {
        let mut f = Frontier::with_checkpoints(NO_TIME, None);
        // An open window does not hold a checkpointed partition back.
        f.window_opened(60, 0, NO_TIME);
        f.advance(10, 50);
        f.hold(3, 20);
        f.window_emitted(40);
        f.windows_closed(45);
        let c = CommitPoint {
            offset: 10,
            max_event_time: 50,
            settled: 45,
            checkpoint: Some(0),
        };
        f.checkpoint_written(c, 10, 2);
        assert!(f.checkpoint_pending());
        assert_eq!(f.commit_point(), None);
        f.checkpoint_acknowledged(10);
        assert_eq!(f.commit_point(), None, "one chunk of two");
        f.checkpoint_acknowledged(10);
        assert_eq!(
            f.commit_point(),
            None,
            "the result of [.., 40) is not acknowledged"
        );
        f.window_acknowledged(40);
        assert_eq!(f.commit_point(), None, "the dead letter of offset 3 is not");
        f.release(3);
        assert_eq!(f.commit_point(), Some(c));
        assert!(!f.checkpoint_pending());
        // A lost checkpoint never becomes the point; the last one stays.
        let d = CommitPoint {
            offset: 20,
            checkpoint: Some(1),
            ..c
        };
        f.checkpoint_written(d, 11, 1);
        f.checkpoint_lost(11);
        assert!(!f.checkpoint_pending());
        assert_eq!(f.commit_point(), Some(c));
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

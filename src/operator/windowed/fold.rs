//! The windowed aggregation on the partition task: it folds each batch's
//! partials (or in-order records) into the partition's open windows in
//! offset order, emits the windows the watermark closes, and, with
//! `emit = "on-update"`, the windows that changed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use super::per_window::Folding;
use super::step::{Panes, WindowStep};
use crate::aggregate::Aggregates;
use crate::checkpoint::CheckpointError;
use crate::codec::WindowOutput;
use crate::operator::batch::Batch;
use crate::operator::{Context, Operator, OperatorError};
use crate::pipeline::{Late, Plan};
use crate::sink::EncodedWindow;
use crate::telemetry::{Outcome, PipelineMetrics};
use crate::window::{Closed, NO_TIME, OpenWindows, SavedWindows, format_millis};

/// What a checkpoint holds of the aggregation.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct WindowedState {
    windows: SavedWindows,
    /// Records were lost before it: see [`Windowed`].
    incomplete_until: Option<i64>,
    /// The upstream results seen: see [`Windowed`].
    seen: Vec<(u64, i64)>,
}

/// A checkpoint written before upstream results were deduplicated (it
/// has no `seen`).
#[derive(Debug, serde::Deserialize)]
struct WindowedStateV1 {
    windows: SavedWindows,
    incomplete_until: Option<i64>,
}

/// Keyed, windowed aggregation of one partition.
pub struct Windowed {
    plan: Arc<Plan>,
    step: Arc<WindowStep>,
    windows: Box<dyn OpenWindows>,
    /// `emit = on-update`: windows changed since their last update, by
    /// (key, start), and when each was last updated.
    dirty: BTreeSet<(String, i64)>,
    last_update: HashMap<(String, i64), tokio::time::Instant>,
    /// Largest event time seen in this partition (from the resumed commit
    /// on), advanced by the wall clock while the partition is idle.
    max_event_time: i64,
    /// After records were lost: windows starting at or before this may
    /// miss some (`Some(NO_TIME)` until the first batch after the loss).
    incomplete_until: Option<i64>,
    /// Reading another pipeline's window results: the identity of each
    /// result folded, with the end of the first window it joined. A copy
    /// read again (the upstream wrote it twice) is skipped; an identity is
    /// forgotten once the watermark passes that end, when a copy would be
    /// late anyway.
    seen: HashMap<u64, i64>,
    /// The windows one close emits, kept from one close to the next (a
    /// close can emit thousands).
    closed: Vec<Closed>,
}

impl Windowed {
    /// The aggregation of `plan` for one partition, resuming after a
    /// commit whose largest event time was `max_event_time` (`NO_TIME`
    /// when starting afresh).
    pub fn new(plan: Arc<Plan>, max_event_time: i64) -> Self {
        Self {
            step: Arc::new(WindowStep::new(Arc::clone(&plan))),
            windows: plan.windowing().window.open(),
            plan,
            dirty: BTreeSet::new(),
            last_update: HashMap::new(),
            max_event_time,
            incomplete_until: None,
            seen: HashMap::new(),
            closed: Vec::new(),
        }
    }

    /// Whether the upstream result `identity` (ending its first window at
    /// `first_end`) was folded before; notes it if not.
    fn seen_before(&mut self, identity: Option<u64>, first_end: i64) -> bool {
        let Some(id) = identity else {
            return false;
        };
        if self.seen.contains_key(&id) {
            return true;
        }
        self.seen.insert(id, first_end);
        false
    }

    /// Open panes or sessions, and keys holding them.
    fn open_state(&self) -> (usize, usize) {
        (self.windows.len(), self.windows.keys())
    }

    /// Reports the change in open state since `before`, and the watermark.
    fn report_change(&self, before: (usize, usize), cx: &Context<'_>) {
        let (windows, keys) = self.open_state();
        cx.metrics.open_state(
            windows as i64 - before.0 as i64,
            keys as i64 - before.1 as i64,
        );
        self.report(cx.metrics, cx.partition);
    }

    /// Folds pane partials, and records of kinds that fold in order;
    /// returns the indexes of the records found late.
    fn fold(
        &mut self,
        batch: &mut Batch<Panes>,
        before: i64,
        cx: &mut Context<'_>,
    ) -> Result<(Vec<u32>, u64, u64), OperatorError> {
        let plan = Arc::clone(&self.plan);
        let mut late = std::mem::take(&mut batch.collected.late);
        let (mut ok, mut duplicates) = (0u64, 0u64);
        // Window kinds that pre-aggregate: one partial per (key, pane).
        for p in std::mem::take(&mut batch.collected.partials) {
            if plan.windowing().lateness.is_closed(p.first_end, before) {
                late.extend_from_slice(&p.members);
                continue;
            }
            if self.seen_before(p.identity, p.first_end) {
                duplicates += p.members.len() as u64;
                continue;
            }
            let Some(&first) = p.members.first() else {
                continue;
            };
            ok += p.members.len() as u64;
            if p.last_end <= cx.frontier.settled() {
                // Replayed after a restart: every window of this pane was
                // emitted and acknowledged with these records before the
                // commit.
                continue;
            }
            let opened = self
                .windows
                .merge_pane(&p.key, p.pane_start, p.last_end, p.aggregates);
            if plan.windowing().update_interval.is_some() {
                for start in self.windows.windows_of_pane(&p.key, p.pane_start) {
                    self.dirty.insert((p.key.clone(), start));
                }
            }
            if opened {
                let first_offset = batch.record(first).offset();
                cx.frontier.window_opened(
                    p.last_end,
                    first_offset,
                    batch.max_before(before, first),
                );
            }
        }
        // Window kinds that fold in order (sessions merge, so a record's
        // session depends on every earlier record of its key): added here,
        // one by one.
        let mut m = before;
        for s in std::mem::take(&mut batch.collected.in_order) {
            if plan.windowing().lateness.is_closed(s.first_end, m) {
                late.push(s.index);
                continue;
            }
            if self.seen_before(s.identity, s.first_end) {
                duplicates += 1;
                continue;
            }
            ok += 1;
            let offset = batch.record(s.index).offset();
            let change = self
                .windows
                .add_record(
                    &plan.windowing().aggregates,
                    &s.key,
                    s.event_time,
                    &s.record,
                    offset,
                    m,
                )
                .map_err(|reason| OperatorError::Aggregate { offset, reason })?;
            for (end, first) in change.removed {
                cx.frontier.window_dropped(end, first);
            }
            let (end, first, met) = change.added;
            cx.frontier.window_opened(end, first, met);
            if plan.windowing().update_interval.is_some() {
                self.dirty.insert((s.key.clone(), change.start));
            }
            if s.event_time > m {
                m = s.event_time;
                self.close_until(plan.windowing().lateness.watermark(m), cx)?;
            }
        }
        Ok((late, ok, duplicates))
    }

    /// Emits every window the watermark has passed.
    fn close_windows(&mut self, cx: &mut Context<'_>) -> Result<(), OperatorError> {
        if self.max_event_time == NO_TIME {
            return Ok(());
        }
        let watermark = self
            .plan
            .windowing()
            .lateness
            .watermark(self.max_event_time);
        self.close_until(watermark, cx)?;
        cx.frontier.windows_closed(watermark);
        if !self.seen.is_empty() {
            self.seen.retain(|_, first_end| *first_end > watermark);
        }
        Ok(())
    }

    /// Emits the windows the watermark `watermark` has reached. A session
    /// rebuilt in a replay that ends at or before the settled bound was
    /// already emitted and acknowledged: it is dropped instead.
    fn close_until(&mut self, watermark: i64, cx: &mut Context<'_>) -> Result<(), OperatorError> {
        let mut closed = std::mem::take(&mut self.closed);
        self.windows.close_until(
            &self.plan.windowing().aggregates,
            watermark,
            cx.frontier.settled(),
            &mut closed,
        );
        let emitted = closed.len();
        let per_window = self.plan.windowing().per_window.as_deref();
        let mut folding: Option<Folding> = None;
        for c in closed.drain(..) {
            // `first_offset` identifies a session to the frontier; -1 for
            // pane-based windows, which the store already filters.
            if c.first_offset >= 0 && c.end <= cx.frontier.settled() {
                cx.frontier.window_dropped(c.end, c.first_offset);
                continue;
            }
            let complete = self.complete(c.start);
            let result = self.result(c.key, c.start, c.end, c.aggregates);
            let Some(per) = per_window else {
                self.write(result, complete, cx)?;
                continue;
            };
            // Windows close in order of their end, each one's results in
            // group-key order, all in one close.
            if let Some(f) = folding.take_if(|f| f.end != result.end) {
                let (window, complete) = f.finish(per);
                self.write(window, complete, cx)?;
            }
            folding
                .get_or_insert_with(|| Folding::new(per, result.start, result.end))
                .add(per, &result, complete);
        }
        if let (Some(f), Some(per)) = (folding, per_window) {
            let (window, complete) = f.finish(per);
            self.write(window, complete, cx)?;
        }
        // One large close (a backlog, a restart) leaves room that later
        // closes four times smaller give back.
        let keep = emitted.max(1024);
        if closed.capacity() > 4 * keep {
            closed.shrink_to(keep);
        }
        self.closed = closed;
        Ok(())
    }

    /// The result of window `[start, end)` of `key`.
    fn result(&self, key: String, start: i64, end: i64, aggregates: Aggregates) -> WindowOutput {
        WindowOutput {
            key,
            start,
            end,
            values: aggregates.finish(&self.plan.windowing().aggregates),
        }
    }

    /// Whether a window starting at `start` holds every record of it (no
    /// records were lost before it).
    fn complete(&self, start: i64) -> bool {
        match self.incomplete_until {
            None => true,
            // Lost before any record was read again: all of it.
            Some(NO_TIME) => false,
            Some(t) => start > t,
        }
    }

    /// Writes the final result `window`.
    fn write(
        &self,
        window: WindowOutput,
        complete: bool,
        cx: &mut Context<'_>,
    ) -> Result<(), OperatorError> {
        let payload = self.plan.encoder.encode(&window)?;
        if !complete {
            cx.metrics.incomplete_window();
        }
        cx.final_result(EncodedWindow {
            window,
            payload,
            complete,
        });
        Ok(())
    }

    /// `emit = on-update`: writes the current value of every open window
    /// that changed, unless it was updated less than `min_interval` ago
    /// (it stays pending for a later batch).
    fn emit_updates(&mut self, cx: &mut Context<'_>) -> Result<(), OperatorError> {
        let Some(interval) = self.plan.windowing().update_interval else {
            return Ok(());
        };
        let plan = Arc::clone(&self.plan);
        let watermark = plan.windowing().lateness.watermark(self.max_event_time);
        let now = tokio::time::Instant::now();
        for (key, start) in std::mem::take(&mut self.dirty) {
            let snapshot = self
                .windows
                .snapshot(&plan.windowing().aggregates, &key, start)
                .filter(|(end, _)| *end > watermark);
            let id = (key, start);
            let Some((end, aggregates)) = snapshot else {
                self.last_update.remove(&id);
                continue;
            };
            // A replay after a restart does not repeat updates of windows
            // whose final result was already acknowledged.
            if end <= cx.frontier.settled() {
                continue;
            }
            if self
                .last_update
                .get(&id)
                .is_some_and(|t| now.duration_since(*t) < interval)
            {
                self.dirty.insert(id);
                continue;
            }
            self.last_update.insert(id.clone(), now);
            let window = self.result(id.0, start, end, aggregates);
            let payload = self.plan.encoder.encode(&window)?;
            cx.update(EncodedWindow {
                complete: self.complete(start),
                window,
                payload,
            });
        }
        // Forget windows that closed.
        let windows = &self.windows;
        self.last_update
            .retain(|(key, start), _| windows.is_open(key, *start, watermark));
        Ok(())
    }
}

impl Operator for Windowed {
    type Step = WindowStep;

    fn step(&self) -> Arc<WindowStep> {
        Arc::clone(&self.step)
    }

    fn on_batch(
        &mut self,
        mut batch: Batch<Panes>,
        cx: &mut Context<'_>,
    ) -> Result<(), OperatorError> {
        let before = self.max_event_time;
        let open_before = self.open_state();
        if self.incomplete_until == Some(NO_TIME) {
            // The first records after the loss: windows starting up to
            // them may lack lost records (those open now among them).
            self.incomplete_until = Some(before.max(batch.collected.max_event_time));
        }
        batch.dead_letter_failures(before, cx);
        let (mut late, ok, duplicates) = self.fold(&mut batch, before, cx)?;
        let metrics = cx.metrics;
        metrics.processed(Outcome::Ok, ok);
        metrics.processed(Outcome::Duplicate, duplicates);
        metrics.processed(Outcome::Filtered, batch.filtered);
        late.sort_unstable();
        metrics.processed(Outcome::Late, late.len() as u64);
        if self.plan.windowing().late != Late::Drop {
            for &i in &late {
                let m = batch.max_before(before, i);
                let reason = format!(
                    "late: its window had already been emitted (watermark {})",
                    format_millis(self.plan.windowing().lateness.watermark(m))
                );
                cx.late(batch.record(i).to_record(), reason, m);
            }
        }
        self.max_event_time = before.max(batch.collected.max_event_time);
        self.close_windows(cx)?;
        self.emit_updates(cx)?;
        self.report_change(open_before, cx);
        Ok(())
    }

    fn event_time(&self) -> i64 {
        self.max_event_time
    }

    /// Moves event time on with the wall clock so this partition's windows
    /// still close.
    fn on_idle(&mut self, idle: Duration, cx: &mut Context<'_>) -> Result<(), OperatorError> {
        let open_before = self.open_state();
        self.max_event_time = self.max_event_time.saturating_add(idle.as_millis() as i64);
        self.close_windows(cx)?;
        tracing::debug!(
            partition = cx.partition,
            max_event_time = self.max_event_time,
            "idle: event time advanced with the wall clock"
        );
        self.report_change(open_before, cx);
        Ok(())
    }

    fn report(&self, metrics: &PipelineMetrics, partition: i32) {
        if self.max_event_time != NO_TIME {
            let wm = self
                .plan
                .windowing()
                .lateness
                .watermark(self.max_event_time);
            metrics.watermark(partition, wm);
        }
    }

    fn held(&self) -> usize {
        self.windows.len()
    }

    fn stop(&mut self, metrics: &PipelineMetrics) {
        let (windows, keys) = self.open_state();
        metrics.open_state(-(windows as i64), -(keys as i64));
    }

    fn records_lost(&mut self) {
        self.incomplete_until = Some(NO_TIME);
    }

    fn save(&self) -> Option<Vec<u8>> {
        let mut seen: Vec<(u64, i64)> = self.seen.iter().map(|(k, v)| (*k, *v)).collect();
        seen.sort_unstable();
        let state = WindowedState {
            windows: self.windows.save(),
            incomplete_until: self.incomplete_until,
            seen,
        };
        Some(postcard::to_allocvec(&state).expect("window state serialises into memory"))
    }

    fn restore(&mut self, state: &[u8], metrics: &PipelineMetrics) -> Result<(), CheckpointError> {
        let saved: WindowedState = match postcard::from_bytes(state) {
            Ok(s) => s,
            Err(e) => match postcard::from_bytes::<WindowedStateV1>(state) {
                Ok(v1) => WindowedState {
                    windows: v1.windows,
                    incomplete_until: v1.incomplete_until,
                    seen: Vec::new(),
                },
                Err(_) => {
                    return Err(CheckpointError::Corrupt {
                        reason: format!("its windows: {e}"),
                    });
                }
            },
        };
        self.seen = saved.seen.iter().copied().collect();
        let before = self.open_state();
        self.windows.restore(saved.windows)?;
        // Records lost since the checkpoint (a mark already set) win.
        self.incomplete_until = self.incomplete_until.or(saved.incomplete_until);
        let (windows, keys) = self.open_state();
        metrics.open_state(
            windows as i64 - before.0 as i64,
            keys as i64 - before.1 as i64,
        );
        Ok(())
    }
}

//! The windowed aggregation's rayon step: each record goes where its
//! window kind assigns it, and records of one (key, pane) are
//! pre-aggregated into one partial.
//!
//! Whether a record is late depends on the largest event time seen before
//! it, which is the largest of (a) everything before this batch, known only
//! to the partition task, and (b) the records before it in this batch.
//! This step decides (b) and leaves (a) to the partition task, which needs
//! one comparison per partial instead of one per record. Several batches of
//! one partition can therefore be on the pool at once.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use hashbrown::HashTable;
use rustc_hash::FxHasher;

use crate::aggregate::Aggregates;
use crate::operator::Step;
use crate::operator::batch::{Batch, Collect, Keyed, process};
use crate::pipeline::Plan;
use crate::record::{RawBatch, Record, Stage};
use crate::window::{Assignment, NO_TIME, Pane};

/// The pre-aggregate of one (key, pane) in a batch.
#[derive(Debug, Clone)]
pub struct WindowPartial {
    /// Group key.
    pub key: String,
    /// Pane start.
    pub pane_start: i64,
    /// End of the first window covering the pane: once the watermark
    /// reaches it, records for this pane are late.
    pub first_end: i64,
    /// End of the last window covering the pane.
    pub last_end: i64,
    /// The aggregates of `members`.
    pub aggregates: Aggregates,
    /// Indexes of the records in it, ascending.
    pub members: Vec<u32>,
    /// Reading an upstream pipeline's window results: the identity of
    /// its one record (see [`identity`]).
    pub identity: Option<u64>,
}

/// A decoded record for a window kind that folds in order (sessions),
/// ready to be added on the partition task.
#[derive(Debug)]
pub struct InOrderRecord {
    /// Index in the batch.
    pub index: u32,
    /// Group key.
    pub key: String,
    /// Event time.
    pub event_time: i64,
    /// End of the first window it would join (lateness is decided by it).
    pub first_end: i64,
    /// The transformed record (read by the aggregates).
    pub record: Record,
    /// As [`WindowPartial::identity`].
    pub identity: Option<u64>,
}

/// The identity of an upstream window result: the first 8 bytes of
/// BLAKE3 over its key, its window start and end (little-endian) and,
/// where its header names it, the partition it was computed on (windows
/// are per partition: an upstream grouping every partition's records
/// under one key writes one result per partition). A result written
/// twice upstream is byte-identical, headers too, so both copies have the
/// same identity.
pub fn identity(
    plan: &Plan,
    record: &Record,
    window_partition: Option<&Result<i32, bytes::Bytes>>,
) -> Result<Option<u64>, (Stage, String)> {
    let Some(d) = plan.windowing().dedupe else {
        return Ok(None);
    };
    let wrong = |e: crate::record::FieldError| (Stage::Extract, format!("upstream result: {e:?}"));
    let mut h = blake3::Hasher::new();
    h.update(record.str(d.key).map_err(wrong)?.as_bytes());
    h.update(&record.i64(d.start).map_err(wrong)?.to_le_bytes());
    h.update(&record.i64(d.end).map_err(wrong)?.to_le_bytes());
    if let Some(p) = origin(window_partition)? {
        h.update(&p.to_le_bytes());
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.finalize().as_bytes()[..8]);
    Ok(Some(u64::from_le_bytes(first)))
}

/// The partition an upstream result was computed on, from its header.
///
/// # Errors
/// Stage `decode`, naming the header and what it holds, when that is not
/// a partition number: without it, results of one key and window computed
/// on different partitions would be taken for copies of one another.
fn origin(header: Option<&Result<i32, bytes::Bytes>>) -> Result<Option<i32>, (Stage, String)> {
    match header {
        None => Ok(None),
        Some(Ok(p)) => Ok(Some(*p)),
        Some(Err(bytes)) => Err((
            Stage::Decode,
            format!(
                "upstream result: header {} holds {:?}{}, not a partition number",
                crate::sink::WINDOW_PARTITION_HEADER,
                String::from_utf8_lossy(&bytes[..bytes.len().min(64)]),
                if bytes.len() > 64 {
                    format!(" (first 64 of {} bytes)", bytes.len())
                } else {
                    String::new()
                }
            ),
        )),
    }
}

/// What the step gathered from one batch.
#[derive(Debug, Default)]
pub struct Panes {
    /// Largest event time in the batch (`NO_TIME` if none).
    pub max_event_time: i64,
    /// Partials in order of first appearance.
    pub partials: Vec<WindowPartial>,
    /// Records already late within this batch (indexes, ascending).
    pub late: Vec<u32>,
    /// Window kinds that fold in order (sessions) only: every extracted
    /// record, in order; the partition task adds them one by one.
    pub in_order: Vec<InOrderRecord>,
    /// Partials by (key, pane start): positions in `partials`, which hold
    /// the keys (no second copy of a key).
    index: HashTable<usize>,
    /// The pane of the last record: the next is most often in it too, and
    /// then needs no assignment (a few divisions each).
    last_pane: Option<Pane>,
}

impl Panes {
    /// Nothing gathered yet.
    pub fn new() -> Self {
        Self {
            max_event_time: NO_TIME,
            ..Self::default()
        }
    }
}

/// The hash under which the batch index files the partial of (key, pane
/// start).
fn slot_hash(key: &str, pane_start: i64) -> u64 {
    let mut h = FxHasher::default();
    key.hash(&mut h);
    pane_start.hash(&mut h);
    h.finish()
}

impl Collect for Panes {
    fn max_event_time(&self) -> i64 {
        self.max_event_time
    }

    fn collect(&mut self, plan: &Plan, k: Keyed<'_>) -> Result<(), (Stage, String)> {
        let mut buf = itoa::Buffer::new();
        let (key, event_time) = k.key_and_time(plan, &mut buf)?;
        let identity = identity(plan, k.record, k.raw.window_partition())?;
        let cached = self
            .last_pane
            .filter(|p| p.start <= event_time && event_time < p.end);
        let assigned = match cached {
            Some(pane) => Ok(Assignment::Pane(pane)),
            None => plan.windowing().window.assign(event_time),
        };
        let pane = match assigned {
            Ok(Assignment::Pane(pane)) => {
                self.last_pane = Some(pane);
                pane
            }
            Ok(Assignment::InOrder { first_end }) => {
                // Late records never raise the largest event time, so this
                // prefix is right whichever records turn out late.
                self.max_event_time = self.max_event_time.max(event_time);
                let key = key.into_owned();
                self.in_order.push(InOrderRecord {
                    index: k.index,
                    key,
                    event_time,
                    first_end,
                    record: k.record.clone(),
                    identity,
                });
                return Ok(());
            }
            Err(e) => return Err((Stage::Extract, e.to_string())),
        };
        if plan
            .windowing()
            .lateness
            .is_closed(pane.first_end, self.max_event_time)
        {
            self.late.push(k.index);
            return Ok(());
        }
        self.max_event_time = self.max_event_time.max(event_time);
        let new_partial = |key: Cow<'_, str>| WindowPartial {
            key: key.into_owned(),
            pane_start: pane.start,
            first_end: pane.first_end,
            last_end: pane.last_end,
            aggregates: Aggregates::new(&plan.windowing().aggregates),
            members: Vec::new(),
            identity,
        };
        let slot = if identity.is_some() {
            // An upstream result is a partial of its own, never looked up
            // (so not indexed): the partition task decides, in offset
            // order, whether it was seen before.
            self.partials.push(new_partial(key));
            self.partials.len() - 1
        } else {
            let hash = slot_hash(&key, pane.start);
            let partials = &self.partials;
            let found = self
                .index
                .find(hash, |&s| {
                    partials[s].pane_start == pane.start && partials[s].key == key
                })
                .copied();
            match found {
                Some(slot) => slot,
                None => {
                    self.partials.push(new_partial(key));
                    let slot = self.partials.len() - 1;
                    let partials = &self.partials;
                    self.index.insert_unique(hash, slot, |&s| {
                        slot_hash(&partials[s].key, partials[s].pane_start)
                    });
                    slot
                }
            }
        };
        let p = &mut self.partials[slot];
        // `check` accepted the record, so this cannot fail; should it, the
        // record is dead-lettered rather than lost.
        p.aggregates
            .add(
                &plan.windowing().aggregates,
                k.record,
                event_time,
                k.raw.offset(),
            )
            .map_err(|e| (Stage::Extract, e))?;
        p.members.push(k.index);
        Ok(())
    }
}

/// The windowed aggregation's step over a plan.
#[derive(Debug)]
pub struct WindowStep {
    plan: Arc<Plan>,
}

impl WindowStep {
    /// The step of `plan`.
    pub fn new(plan: Arc<Plan>) -> Self {
        Self { plan }
    }
}

impl Step for WindowStep {
    type Output = Batch<Panes>;

    fn run(&self, records: RawBatch) -> Batch<Panes> {
        process(&self.plan, records, Panes::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WindowConfig;
    use crate::record::RawRecord;

    #[test]
    fn each_record_joins_the_pane_of_its_own_event_time() {
        // Hopping windows, whose panes are the advance: records of a batch
        // move between panes, back and forth, and across window ends.
        let plan = Arc::new(crate::pipeline::clickstream_plan(|p| {
            p.window = Some(WindowConfig::Hopping {
                size: std::time::Duration::from_secs(10),
                advance: std::time::Duration::from_secs(2),
            });
            p.allowed_lateness = std::time::Duration::from_secs(60);
        }));
        let times = [
            1_000, 1_999, 2_000, 1_500, 9_999, 10_000, 3_999, 4_000, 2_000, 0, 12_345,
        ];
        let records: Vec<RawRecord> = times
            .iter()
            .enumerate()
            .map(|(i, t)| RawRecord {
                offset: i as i64,
                timestamp: Some(*t),
                key: None,
                payload: Some(bytes::Bytes::from(format!(
                    r#"{{"event_id":"e{i}","user_id":"u","page":"/p","dwell_ms":1,"event_time":{t}}}"#
                ))),
                schema_header: None,
                window_partition: None,
            })
            .collect();
        let out = WindowStep::new(Arc::clone(&plan)).run(records.into());
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        let mut seen = 0;
        for p in &out.collected.partials {
            for &i in &p.members {
                let t = times[i as usize];
                let Ok(Assignment::Pane(want)) = plan.windowing().window.assign(t) else {
                    panic!("hopping windows assign panes");
                };
                assert_eq!(
                    (p.pane_start, p.first_end, p.last_end),
                    (want.start, want.first_end, want.last_end),
                    "the record at {t} ms"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, times.len());
    }

    #[test]
    fn a_result_whose_partition_header_is_not_a_number_is_a_decode_dead_letter() {
        assert_eq!(origin(None), Ok(None));
        assert_eq!(origin(Some(&Ok(3))), Ok(Some(3)));
        let bad = Err(bytes::Bytes::from_static(b"three"));
        assert_eq!(
            origin(Some(&bad)),
            Err((
                Stage::Decode,
                "upstream result: header streamfold.window.partition holds \"three\", \
                 not a partition number"
                    .to_string()
            ))
        );
    }
}

//! The work of one batch on the rayon pool: decode, transform, assign
//! windows, and pre-aggregate into one partial per (key, window).
//!
//! Whether a record is late depends on the largest event time seen before
//! it, which is the largest of (a) everything before this batch, known only
//! to the partition task, and (b) the records before it in this batch.
//! This step decides (b) and leaves (a) to the partition task, which needs
//! one comparison per partial instead of one per record. Several batches of
//! one partition can therefore be on the pool at once.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use hashbrown::HashTable;
use rustc_hash::FxHasher;

use crate::aggregate::Aggregates;
use crate::codec::push_key_part;
use crate::record::{FieldError, RawRecord, Record, Stage};
use crate::window::{NO_TIME, format_millis};

use super::plan::{EventTime, Plan};
use crate::window::Assignment;

/// A record that failed, by index in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Index in the batch.
    pub index: u32,
    /// Where it failed.
    pub stage: Stage,
    /// Why, for the dead-letter header.
    pub reason: String,
}

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
}

/// What a batch produced.
#[derive(Debug)]
pub struct BatchOutput {
    /// The records, handed back for the dead-letter path.
    pub records: Vec<RawRecord>,
    /// For each record, the largest event time before it within this batch.
    pub max_event_time_before: Vec<i64>,
    /// Largest event time in the batch (`NO_TIME` if none).
    pub max_event_time: i64,
    /// Partials in order of first appearance.
    pub partials: Vec<WindowPartial>,
    /// Records already late within this batch (indexes, ascending).
    pub late: Vec<u32>,
    /// Records that failed.
    pub failures: Vec<Failure>,
    /// Records the `where` filter dropped.
    pub filtered: u64,
    /// Window kinds that fold in order (sessions) only: every extracted
    /// record, in order; the partition task adds them one by one.
    pub in_order: Vec<InOrderRecord>,
    /// Repartitioning only: (index, group key) of every record to forward.
    pub forward: Vec<(u32, String)>,
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
}

struct Extracted<'a> {
    key: Cow<'a, str>,
    event_time: i64,
}

/// The group key and event time of a record. A key of one string field
/// borrows it and one of one integer field is written into `buf`, so
/// that a record whose (key, pane) the batch already has allocates
/// nothing.
fn extract<'a>(
    plan: &Plan,
    r: &RawRecord,
    rec: &'a Record,
    now: i64,
    buf: &'a mut itoa::Buffer,
) -> Result<Extracted<'a>, String> {
    let name = |i: usize| plan.field_names.get(i).map_or("?", String::as_str);
    let wrong = |i: usize| move |e: FieldError| format!("group key: {}", e.in_field(name(i)));
    let key = match plan.key_indexes.as_slice() {
        [one] => Cow::Borrowed(rec.key_part(*one, buf).map_err(wrong(*one))?),
        many => {
            let mut key = String::new();
            for (n, i) in many.iter().enumerate() {
                let mut buf = itoa::Buffer::new();
                let part = rec.key_part(*i, &mut buf).map_err(wrong(*i))?;
                push_key_part(&mut key, n, part);
            }
            Cow::Owned(key)
        }
    };
    Aggregates::check(&plan.aggregates, rec, &plan.field_names)?;
    let event_time = match plan.event_time {
        EventTime::Field(i) => rec
            .i64(i)
            .map_err(|e| format!("event time: {}", e.in_field(name(i))))?,
        EventTime::KafkaTimestamp => r
            .timestamp
            .ok_or_else(|| "event time: the record has no Kafka timestamp".to_string())?,
        EventTime::ProcessingTime => now,
    };
    check_event_time(event_time, now, plan.max_ahead_ms)?;
    Ok(Extracted { key, event_time })
}

/// Refuses an event time before the epoch (Kafka refuses such timestamps
/// too), or more than `max_ahead_ms` past the wall clock `now`: that one
/// would move the watermark (which the committed resume state keeps) so
/// far that every later record of the partition is late.
fn check_event_time(event_time: i64, now: i64, max_ahead_ms: i64) -> Result<(), String> {
    if event_time < 0 {
        return Err(format!(
            "event time {event_time} ms is before the epoch (1970-01-01T00:00:00Z)"
        ));
    }
    let ahead = event_time.saturating_sub(now);
    if ahead <= max_ahead_ms {
        return Ok(());
    }
    let rounded = |ms: i64| humantime::format_duration(Duration::from_secs(ms as u64 / 1000));
    Err(format!(
        "event time {} is {} ahead of the wall clock ({}); pipeline.max_event_time_ahead allows {}",
        format_millis(event_time),
        rounded(ahead),
        format_millis(now),
        humantime::format_duration(Duration::from_millis(max_ahead_ms as u64)),
    ))
}

/// The hash under which the batch index files the partial of (key, pane
/// start). The index holds positions in the batch's partials, which hold
/// the keys: no second copy of a key.
fn slot_hash(key: &str, pane_start: i64) -> u64 {
    let mut h = FxHasher::default();
    key.hash(&mut h);
    pane_start.hash(&mut h);
    h.finish()
}

/// Processes one batch. Runs on a rayon worker; never panics on bad input.
/// With `forward`, records are only keyed (for repartitioning), not
/// assigned to windows.
pub fn process(plan: &Plan, records: Vec<RawRecord>, forward: bool) -> BatchOutput {
    let n = records.len();
    let mut out = BatchOutput {
        records: Vec::new(),
        max_event_time_before: Vec::with_capacity(n),
        max_event_time: NO_TIME,
        partials: Vec::new(),
        late: Vec::new(),
        failures: Vec::new(),
        filtered: 0,
        in_order: Vec::new(),
        forward: Vec::new(),
    };
    let mut index: HashTable<usize> = HashTable::new();
    // Processing time: one reading per batch, so a batch is one instant.
    let now = crate::telemetry::now_ms();
    let decoder = match plan.decoder.batch() {
        Ok(d) => Some(d),
        Err(e) => {
            // Cannot happen for a schema that loaded; fail every record
            // rather than lose them.
            for i in 0..n {
                out.max_event_time_before.push(NO_TIME);
                out.failures.push(Failure {
                    index: i as u32,
                    stage: Stage::Decode,
                    reason: e.to_string(),
                });
            }
            None
        }
    };
    let Some(decoder) = decoder else {
        out.records = records;
        return out;
    };

    for (i, r) in records.iter().enumerate() {
        let i32 = i as u32;
        out.max_event_time_before.push(out.max_event_time);
        let fail = |stage, reason| Failure {
            index: i32,
            stage,
            reason,
        };
        let mut rec = match decoder.decode(r.payload.as_deref()) {
            Ok(rec) => rec,
            Err(e) => {
                out.failures.push(fail(Stage::Decode, e.to_string()));
                continue;
            }
        };
        if let Some(e) = plan.transforms.iter().find_map(|t| {
            crate::transform::guard::apply(t.as_ref(), &mut rec)
                .err()
                .map(|e| (t.name(), e))
        }) {
            out.failures
                .push(fail(Stage::Transform, format!("{}: {}", e.0, e.1)));
            continue;
        }
        if let Some(f) = &plan.filter {
            match f.keep(&rec) {
                Ok(true) => {}
                Ok(false) => {
                    out.filtered += 1;
                    continue;
                }
                Err(e) => {
                    out.failures
                        .push(fail(Stage::Transform, format!("where: {e}")));
                    continue;
                }
            }
        }
        let mut key_buf = itoa::Buffer::new();
        let x = match extract(plan, r, &rec, now, &mut key_buf) {
            Ok(x) => x,
            Err(e) => {
                out.failures.push(fail(Stage::Extract, e));
                continue;
            }
        };
        if forward {
            out.forward.push((i32, x.key.into_owned()));
            continue;
        }
        let pane = match plan.window.assign(x.event_time) {
            Ok(Assignment::Pane(pane)) => pane,
            Ok(Assignment::InOrder { first_end }) => {
                // Late records never raise the largest event time, so this
                // prefix is right whichever records turn out late.
                out.max_event_time = out.max_event_time.max(x.event_time);
                out.in_order.push(InOrderRecord {
                    index: i32,
                    key: x.key.into_owned(),
                    event_time: x.event_time,
                    first_end,
                    record: rec,
                });
                continue;
            }
            Err(e) => {
                out.failures.push(fail(Stage::Extract, e.to_string()));
                continue;
            }
        };
        if plan.lateness.is_closed(pane.first_end, out.max_event_time) {
            out.late.push(i32);
            continue;
        }
        out.max_event_time = out.max_event_time.max(x.event_time);
        let hash = slot_hash(&x.key, pane.start);
        let partials = &out.partials;
        let found = index
            .find(hash, |&s| {
                partials[s].pane_start == pane.start && partials[s].key == x.key
            })
            .copied();
        let slot = match found {
            Some(slot) => slot,
            None => {
                out.partials.push(WindowPartial {
                    key: x.key.into_owned(),
                    pane_start: pane.start,
                    first_end: pane.first_end,
                    last_end: pane.last_end,
                    aggregates: Aggregates::new(&plan.aggregates),
                    members: Vec::new(),
                });
                let slot = out.partials.len() - 1;
                let partials = &out.partials;
                index.insert_unique(hash, slot, |&s| {
                    slot_hash(&partials[s].key, partials[s].pane_start)
                });
                slot
            }
        };
        let p = &mut out.partials[slot];
        if let Err(e) = p
            .aggregates
            .add(&plan.aggregates, &rec, x.event_time, r.offset)
        {
            // `check` accepted the record, so this cannot happen; keep the
            // record rather than lose it.
            out.failures.push(fail(Stage::Extract, e));
            continue;
        }
        p.members.push(i32);
    }
    out.records = records;
    out
}

#[cfg(test)]
mod tests {
    use super::check_event_time;

    const NOW: i64 = 1_796_169_600_000; // 2026-12-02T00:00:00Z
    const HOUR: i64 = 3_600_000;

    #[test]
    fn event_times_up_to_the_bound_ahead_of_the_clock_pass() {
        assert_eq!(check_event_time(NOW, NOW, HOUR), Ok(()));
        assert_eq!(check_event_time(NOW + HOUR, NOW, HOUR), Ok(()));
        assert_eq!(check_event_time(0, NOW, HOUR), Ok(()));
    }

    #[test]
    fn an_event_time_too_far_ahead_says_how_far_and_names_the_setting() {
        let e = check_event_time(NOW + HOUR + 1_000, NOW, HOUR).unwrap_err();
        assert_eq!(
            e,
            "event time 2026-12-02T01:00:01.000Z is 1h 1s ahead of the wall clock \
             (2026-12-02T00:00:00.000Z); pipeline.max_event_time_ahead allows 1h"
        );
        // Year 9999 and beyond RFC 3339's range are refused, never panic.
        let year_9999 = 253_370_764_800_000;
        assert!(
            check_event_time(year_9999, NOW, HOUR)
                .unwrap_err()
                .contains("9999-01-01")
        );
        assert!(
            check_event_time(i64::MAX, NOW, HOUR)
                .unwrap_err()
                .contains(" ms is ")
        );
    }

    #[test]
    fn event_times_before_the_epoch_are_refused() {
        // i64::MIN is also the watermark's "no event time yet".
        for t in [-1, -86_400_000, i64::MIN] {
            let e = check_event_time(t, NOW, HOUR).unwrap_err();
            assert_eq!(
                e,
                format!("event time {t} ms is before the epoch (1970-01-01T00:00:00Z)")
            );
        }
    }
}

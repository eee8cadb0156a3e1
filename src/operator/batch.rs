//! The common part of every operator's batch step on the rayon pool:
//! decode, transform, filter, and the group key and event time of each
//! record. What then happens to a keyed record is the operator's
//! [`Collect`]: the windowed aggregation pre-aggregates it per (key,
//! pane), the repartition forwarder keeps its key.

use std::borrow::Cow;
use std::time::Duration;

use super::Context;
use crate::aggregate::Aggregates;
use crate::codec::push_key_part;
use crate::pipeline::{EventTime, Plan};
use crate::record::{FieldError, RawBatch, RawRef, Record, Stage};
use crate::window::{NO_TIME, format_millis};

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

/// A record that passed decoding, the transforms and the filter.
#[derive(Debug)]
pub struct Keyed<'a> {
    /// Index in the batch.
    pub index: u32,
    /// The record as read.
    pub raw: RawRef<'a>,
    /// The transformed record (the batch's one record buffer: a
    /// [`Collect`] that keeps it clones it).
    pub record: &'a Record,
    /// The batch's processing time.
    now: i64,
}

impl Keyed<'_> {
    /// The record's group key and event time. A key of one string field
    /// borrows it and one of one integer field is written into `buf`, so
    /// that a record whose (key, pane) the batch already has allocates
    /// nothing.
    ///
    /// # Errors
    /// Stage `extract`, naming the field that is missing, null or of the
    /// wrong type, or the event time out of bounds.
    pub fn key_and_time<'b>(
        &'b self,
        plan: &Plan,
        buf: &'b mut itoa::Buffer,
    ) -> Result<(Cow<'b, str>, i64), (Stage, String)> {
        extract(plan, self.raw, self.record, self.now, buf)
            .map(|x| (x.key, x.event_time))
            .map_err(|e| (Stage::Extract, e))
    }

    /// The record's event time alone, for a stateless pipeline's output
    /// timestamp: no group key, and no bound ahead of the clock (no
    /// watermark it could move).
    ///
    /// # Errors
    /// Stage `extract`: the field missing, null or of the wrong type, or
    /// the time before the epoch (Kafka refuses such timestamps).
    pub fn timestamp(&self, plan: &Plan) -> Result<i64, (Stage, String)> {
        event_time(plan, self.raw, self.record, self.now, i64::MAX).map_err(|e| (Stage::Extract, e))
    }
}

/// What an operator's step does with each keyed record of a batch.
pub trait Collect {
    /// The largest event time among the records collected so far
    /// (`NO_TIME` if none): each record's "largest event time before it"
    /// within the batch, which its resume point and lateness need.
    fn max_event_time(&self) -> i64;

    /// Takes one record (its key and event time from
    /// [`Keyed::key_and_time`]).
    ///
    /// # Errors
    /// Why the record cannot be taken (it is dead-lettered at that stage).
    fn collect(&mut self, plan: &Plan, record: Keyed<'_>) -> Result<(), (Stage, String)>;
}

/// What a batch produced: what every operator has, and what its
/// [`Collect`] gathered.
#[derive(Debug)]
pub struct Batch<C> {
    /// The records, handed back for dead letters and forwarding.
    pub records: RawBatch,
    /// For each record, the largest event time before it within this batch.
    pub max_event_time_before: Vec<i64>,
    /// Records that failed.
    pub failures: Vec<Failure>,
    /// Records the `where` filter dropped.
    pub filtered: u64,
    /// What the operator's step gathered.
    pub collected: C,
}

impl<C> Batch<C> {
    /// The largest event time before record `index`: before the batch
    /// (`before`, known to the partition task) or within it.
    pub fn max_before(&self, before: i64, index: u32) -> i64 {
        before.max(self.max_event_time_before[index as usize])
    }

    /// The record at `index`.
    pub fn record(&self, index: u32) -> RawRef<'_> {
        self.records.get(index as usize)
    }

    /// Writes every failed record to the dead-letter topic, `before` being
    /// the largest event time before the batch.
    pub fn dead_letter_failures(&self, before: i64, cx: &mut Context<'_>) {
        for f in &self.failures {
            cx.dead_letter(
                self.record(f.index).to_record(),
                f.stage,
                f.reason.clone(),
                self.max_before(before, f.index),
            );
        }
    }
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
    r: RawRef<'_>,
    rec: &'a Record,
    now: i64,
    buf: &'a mut itoa::Buffer,
) -> Result<Extracted<'a>, String> {
    let name = |i: usize| plan.field_names.get(i).map_or("?", String::as_str);
    let wrong = |i: usize| move |e: FieldError| format!("group key: {}", e.in_field(name(i)));
    let key = match plan.windowing().key_indexes.as_slice() {
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
    Aggregates::check(&plan.windowing().aggregates, rec, &plan.field_names)?;
    let event_time = event_time(plan, r, rec, now, plan.max_ahead_ms)?;
    Ok(Extracted { key, event_time })
}

/// The event time of a record, checked against the wall clock `now`
/// (at most `max_ahead_ms` ahead of it, never before the epoch).
fn event_time(
    plan: &Plan,
    r: RawRef<'_>,
    rec: &Record,
    now: i64,
    max_ahead_ms: i64,
) -> Result<i64, String> {
    let event_time = match plan.event_time {
        EventTime::Field(i) => rec.i64(i).map_err(|e| {
            let name = plan.field_names.get(i).map_or("?", String::as_str);
            format!("event time: {}", e.in_field(name))
        })?,
        EventTime::KafkaTimestamp => r
            .timestamp()
            .ok_or_else(|| "event time: the record has no Kafka timestamp".to_string())?,
        EventTime::ProcessingTime => now,
    };
    check_event_time(event_time, now, max_ahead_ms)?;
    Ok(event_time)
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

/// Runs the common part of one batch and hands each keyed record to
/// `collect`. Runs on a rayon worker; never panics on bad input (a
/// transform's panic is caught per record).
pub fn process<C: Collect>(plan: &Plan, records: RawBatch, mut collect: C) -> Batch<C> {
    let n = records.len();
    let mut max_event_time_before = Vec::with_capacity(n);
    let mut failures = Vec::new();
    let mut filtered = 0;
    // Processing time: one reading per batch, so a batch is one instant.
    let now = crate::telemetry::now_ms();
    match plan.decoder.batch() {
        Ok(decoder) => {
            // One record for the batch, decoded into again for each
            // input record: its strings keep their allocations.
            let mut rec = Record { values: Vec::new() };
            for (i, r) in records.iter().enumerate() {
                let index = i as u32;
                max_event_time_before.push(collect.max_event_time());
                let fail = |stage, reason| Failure {
                    index,
                    stage,
                    reason,
                };
                if let Err(e) = decoder.decode_record_into(r.payload(), r.schema_header(), &mut rec)
                {
                    failures.push(fail(Stage::Decode, e.to_string()));
                    continue;
                }
                if let Some((name, e)) = plan.transforms.iter().find_map(|t| {
                    crate::transform::guard::apply(t.as_ref(), &mut rec)
                        .err()
                        .map(|e| (t.name(), e))
                }) {
                    failures.push(fail(Stage::Transform, format!("{name}: {e}")));
                    continue;
                }
                if let Some(f) = &plan.filter {
                    match f.keep(&rec) {
                        Ok(true) => {}
                        Ok(false) => {
                            filtered += 1;
                            continue;
                        }
                        Err(e) => {
                            failures.push(fail(Stage::Transform, format!("where: {e}")));
                            continue;
                        }
                    }
                }
                let keyed = Keyed {
                    index,
                    raw: r,
                    record: &rec,
                    now,
                };
                if let Err((stage, reason)) = collect.collect(plan, keyed) {
                    failures.push(fail(stage, reason));
                }
            }
        }
        Err(e) => {
            // Cannot happen for a schema that loaded; fail every record
            // rather than lose them.
            for i in 0..n {
                max_event_time_before.push(NO_TIME);
                failures.push(Failure {
                    index: i as u32,
                    stage: Stage::Decode,
                    reason: e.to_string(),
                });
            }
        }
    }
    Batch {
        records,
        max_event_time_before,
        failures,
        filtered,
        collected: collect,
    }
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

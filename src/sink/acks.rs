//! Delivery reports: what each written record releases once the broker
//! has it, routed to the mailbox of the partition task that wrote it.

use std::sync::{Arc, Mutex};

use rdkafka::error::KafkaError;
use tokio::sync::Notify;

use crate::record::Stage;

/// What an acknowledgement releases.
#[derive(Debug, Clone, Copy)]
pub enum Tag {
    /// An update of a still-open window (`emit = on-update`): nothing
    /// depends on it for commits; the final result follows.
    Update(WindowSpan),
    /// A dead letter or a late record.
    DeadLetter {
        offset: i64,
        stage: Stage,
        /// Which dead letter of the partition task (one offset can be
        /// dead-lettered twice, should the consumer read it again).
        letter: u64,
    },
    /// A record forwarded to the internal topic of a repartitioning
    /// pipeline.
    Forward { offset: i64 },
    /// A stateless pipeline's output record, by input offset.
    Record { offset: i64 },
    /// The final result of a window.
    Window(WindowSpan),
    /// A chunk of a checkpoint, by write attempt.
    Checkpoint { attempt: u64 },
}

/// The bounds of a window result.
#[derive(Debug, Clone, Copy)]
pub struct WindowSpan {
    pub start: i64,
    pub end: i64,
}

/// A delivery report: the record's tag, and the error if the record was
/// not delivered.
pub type Report = (Tag, Result<(), KafkaError>);

/// The delivery reports of one partition's records: filled by the
/// producer's delivery thread (`polled.rs`), taken by the partition's
/// task.
#[derive(Debug, Default)]
pub struct Acks {
    reports: Mutex<Vec<Report>>,
    ready: Notify,
}

impl Acks {
    fn reports(&self) -> std::sync::MutexGuard<'_, Vec<Report>> {
        self.reports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn report(&self, report: Report) {
        let mut reports = self.reports();
        reports.push(report);
        // Only the first report wakes the task: it takes every report
        // there is once it runs, and checks before it waits again.
        let first = reports.len() == 1;
        drop(reports);
        if first {
            self.ready.notify_one();
        }
    }

    /// Waits for at least one report, then takes every report there is.
    /// Cancel-safe: reports are taken only when it completes.
    pub async fn next(&self) -> Vec<Report> {
        loop {
            {
                let mut reports = self.reports();
                if !reports.is_empty() {
                    return std::mem::take(&mut *reports);
                }
            }
            self.ready.notified().await;
        }
    }

    /// What rides with a record to its delivery report.
    pub fn delivery(self: &Arc<Self>, tag: Tag) -> Box<Delivery> {
        Box::new(Delivery {
            acks: Arc::clone(self),
            tag,
        })
    }
}

/// A record's tag and where its delivery report goes.
#[derive(Debug)]
pub struct Delivery {
    acks: Arc<Acks>,
    tag: Tag,
}

impl Delivery {
    /// Reports the outcome of writing the record to its partition task.
    pub fn report(self, result: Result<(), KafkaError>) {
        self.acks.report((self.tag, result));
    }
}

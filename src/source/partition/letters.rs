//! Dead letters of one partition task: written cut to fit, kept until
//! acknowledged, and written again when the broker refuses one in a way
//! another attempt can mend.

use std::sync::Arc;

use rdkafka::error::KafkaError;

use super::{PartitionError, PartitionTask};
use crate::record::{RawRecord, Stage as ErrorStage};
use crate::sink::{DeadLetter, Tag, Undelivered};

/// A dead letter awaiting its acknowledgement.
#[derive(Debug, Clone)]
pub(super) struct Letter {
    record: RawRecord,
    stage: ErrorStage,
    reason: String,
    /// Times the broker refused it as too large. The first time it is
    /// written again as it was (the broker refuses a whole batch, small
    /// dead letters in it too); after that with headers only.
    refused: u8,
    /// Written with headers only.
    headers_only: bool,
}

impl PartitionTask {
    pub(super) async fn dead_letter(
        &mut self,
        record: &RawRecord,
        stage: ErrorStage,
        reason: &str,
        max_event_time_before: i64,
    ) -> Result<(), PartitionError> {
        self.frontier.hold(record.offset, max_event_time_before);
        let letter = Letter {
            record: record.clone(),
            stage,
            reason: reason.to_string(),
            refused: 0,
            headers_only: false,
        };
        let number = self.next_letter;
        self.next_letter += 1;
        self.letters.insert(number, letter.clone());
        self.write_letter(number, letter).await
    }

    /// Hands a dead letter to the producer, cut to fit its message size.
    async fn write_letter(&mut self, number: u64, letter: Letter) -> Result<(), PartitionError> {
        let shared = Arc::clone(&self.shared);
        let d = DeadLetter {
            pipeline: &shared.plan.name,
            topic: &shared.input_topic,
            partition: self.partition,
            record: &letter.record,
            stage: letter.stage,
            reason: &letter.reason,
        };
        let tag = Tag::DeadLetter {
            offset: letter.record.offset,
            stage: letter.stage,
            letter: number,
        };
        let mut cut = false;
        self.send(tag, |delivery| {
            cut = shared
                .sink
                .send_dead_letter(&d, letter.headers_only, delivery)?;
            Ok(())
        })
        .await?;
        if cut {
            tracing::warn!(
                partition = self.partition,
                offset = letter.record.offset,
                value_bytes = letter.record.payload.as_ref().map_or(0, |v| v.len()),
                headers_only = letter.headers_only,
                "dead letter too large for one message: written cut to fit (headers give its size and hash)"
            );
        }
        Ok(())
    }

    /// Writes again the dead letters whose delivery failed in a way
    /// another attempt can mend.
    pub(super) async fn resend_letters(&mut self) -> Result<(), PartitionError> {
        for number in std::mem::take(&mut self.resend) {
            if let Some(letter) = self.letters.get(&number).cloned() {
                self.write_letter(number, letter).await?;
            }
        }
        Ok(())
    }

    /// The broker did not take dead letter `number` (of `offset`): whether
    /// it is written again (too large: once as it was, then headers-only;
    /// transient: as it was). `false` means the failure is fatal.
    pub(super) fn retry_letter(&mut self, number: u64, offset: i64, source: &KafkaError) -> bool {
        let Some(letter) = self.letters.get_mut(&number) else {
            return false;
        };
        let again = match Undelivered::of(source) {
            Undelivered::TooLarge if !letter.headers_only => {
                letter.refused += 1;
                letter.headers_only = letter.refused > 1;
                true
            }
            Undelivered::Transient => true,
            _ => false,
        };
        if again {
            tracing::warn!(
                partition = self.partition,
                offset,
                error = %source,
                headers_only = letter.headers_only,
                "dead letter not delivered; writing it again"
            );
            self.resend.push(number);
        }
        again
    }
}

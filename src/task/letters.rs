//! Dead letters of one partition task: written cut to fit, kept until
//! acknowledged, and written again when the broker refuses one in a way
//! another attempt can mend.

use rdkafka::error::KafkaError;

use std::sync::Arc;

use super::partition::PartitionTask;
use super::{Env, PartitionError};
use crate::operator::Operator;
use crate::record::Stage;
use crate::sink::{Output, Tag, Undelivered};

/// A dead letter (or late record) awaiting its acknowledgement.
#[derive(Debug, Clone)]
pub(super) struct Letter {
    output: Output,
    /// The offset of the record.
    offset: i64,
    /// The stage it failed at (`late` for late records).
    stage: Stage,
    /// Times the broker refused it as too large. The first time it is
    /// written again as it was (the broker refuses a whole batch, small
    /// dead letters in it too); after that with headers only.
    refused: u8,
    /// Written with headers only.
    headers_only: bool,
}

impl<O: Operator> PartitionTask<O> {
    /// Writes a dead letter or late record (the operator held the frontier
    /// for it), keeping it until it is acknowledged.
    pub(super) async fn dead_letter(
        &mut self,
        env: &Env,
        output: Output,
        offset: i64,
        stage: Stage,
    ) -> Result<(), PartitionError> {
        let letter = Letter {
            output,
            offset,
            stage,
            refused: 0,
            headers_only: false,
        };
        let number = self.next_letter;
        self.next_letter += 1;
        self.letters.insert(number, letter.clone());
        self.write_letter(env, number, letter).await
    }

    /// Hands a dead letter to the sink, cut to fit its message size.
    async fn write_letter(
        &mut self,
        env: &Env,
        number: u64,
        letter: Letter,
    ) -> Result<(), PartitionError> {
        let tag = Tag::DeadLetter {
            offset: letter.offset,
            stage: letter.stage,
            letter: number,
        };
        let cut = self
            .send(env, tag, &letter.output, letter.headers_only)
            .await?;
        if cut {
            tracing::warn!(
                partition = self.partition,
                offset = letter.offset,
                headers_only = letter.headers_only,
                "dead letter too large for one message: written cut to fit (headers give its size and hash)"
            );
        }
        Ok(())
    }

    /// Writes again the dead letters whose delivery failed in a way
    /// another attempt can mend.
    pub(super) async fn resend_letters(&mut self) -> Result<(), PartitionError> {
        let env = Arc::clone(&self.env);
        for number in std::mem::take(&mut self.resend) {
            if let Some(letter) = self.letters.get(&number).cloned() {
                self.write_letter(&env, number, letter).await?;
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

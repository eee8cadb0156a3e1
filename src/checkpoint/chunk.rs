//! Checkpoints as records of a compacted topic, cut into chunks that fit
//! the broker's record size.
//!
//! A partition's checkpoints alternate between two *slots*, so that
//! writing one never overwrites the last committed one: checkpoint `seq`
//! goes to slot `seq % 2`, and the next is written only once this one is
//! committed. Chunk `i` of a slot is keyed
//! `<group>/<topic>/<partition>/<slot>/<i>` (compaction keeps the newest of
//! each key; the consumer group and input topic, the *scope*, keep
//! pipelines sharing a checkpoint topic apart). Its value is `SFCH`, the
//! format version (`u16`), `seq` (`u64`), `i` and the number of chunks
//! (`u32` each), the BLAKE3 hash of the whole checkpoint (32 bytes), all
//! little-endian, then the chunk's bytes. A slot holds checkpoint `seq`
//! when it has every chunk of `seq` and their bytes hash as they should.

use std::collections::{BTreeMap, HashMap};

use super::FORMAT_VERSION;

const MAGIC: &[u8; 4] = b"SFCH";
const HEADER: usize = 4 + 2 + 8 + 4 + 4 + 32;

/// One record of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Its key in the checkpoint topic.
    pub key: String,
    /// Its value.
    pub value: Vec<u8>,
}

/// The scope of the checkpoints of consumer group `group` reading
/// `topic`.
pub fn scope(group: &str, topic: &str) -> String {
    format!("{group}/{topic}")
}

/// The key prefix of partition `partition` in `scope`.
fn prefix(scope: &str, partition: i32) -> String {
    format!("{scope}/{partition}/")
}

/// Cuts checkpoint `seq` of `partition` in `scope` (its bytes
/// `checkpoint`) into records of at most `max_record` bytes of value.
pub fn split(
    scope: &str,
    partition: i32,
    seq: u64,
    checkpoint: &[u8],
    max_record: usize,
) -> Vec<Chunk> {
    let room = max_record.saturating_sub(HEADER).max(1024);
    let pieces: Vec<&[u8]> = if checkpoint.is_empty() {
        vec![&[]]
    } else {
        checkpoint.chunks(room).collect()
    };
    let count = pieces.len() as u32;
    let hash = blake3::hash(checkpoint);
    let slot = seq % 2;
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut value = Vec::with_capacity(HEADER + piece.len());
            value.extend_from_slice(MAGIC);
            value.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
            value.extend_from_slice(&seq.to_le_bytes());
            value.extend_from_slice(&(i as u32).to_le_bytes());
            value.extend_from_slice(&count.to_le_bytes());
            value.extend_from_slice(hash.as_bytes());
            value.extend_from_slice(piece);
            Chunk {
                key: format!("{}{slot}/{i}", prefix(scope, partition)),
                value,
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Piece {
    seq: u64,
    count: u32,
    hash: [u8; 32],
    bytes: Vec<u8>,
}

/// What reading a checkpoint topic found for the partitions asked for.
#[derive(Debug, Default)]
pub struct Assembler {
    /// The newest record of each key: (partition, slot) → index → piece.
    slots: HashMap<(i32, u64), BTreeMap<u32, Piece>>,
    /// Records of another format version, by partition: (version, key).
    foreign: HashMap<i32, u16>,
    scope: String,
}

impl Assembler {
    /// Collects the checkpoints in `scope` (see [`scope`]).
    pub fn new(scope: &str) -> Self {
        Self {
            scope: scope.to_string(),
            ..Self::default()
        }
    }

    /// Takes one record of the checkpoint topic (in offset order); records
    /// of other scopes and keys that are not ours are skipped.
    pub fn add(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Some(rest) = std::str::from_utf8(key)
            .ok()
            .and_then(|k| k.strip_prefix(&self.scope))
            .and_then(|k| k.strip_prefix('/'))
        else {
            return;
        };
        let mut parts = rest.split('/');
        let (Some(Ok(partition)), Some(Ok(slot)), Some(Ok(index)), None) = (
            parts.next().map(str::parse::<i32>),
            parts.next().map(str::parse::<u64>),
            parts.next().map(str::parse::<u32>),
            parts.next(),
        ) else {
            return;
        };
        let slot_map = self.slots.entry((partition, slot)).or_default();
        let Some(value) = value else {
            // A tombstone.
            slot_map.remove(&index);
            return;
        };
        let Some(body) = value.strip_prefix(MAGIC) else {
            slot_map.remove(&index);
            return;
        };
        let Some((version, body)) = body.split_first_chunk::<2>() else {
            slot_map.remove(&index);
            return;
        };
        let version = u16::from_le_bytes(*version);
        if version != FORMAT_VERSION {
            self.foreign.insert(partition, version);
            slot_map.remove(&index);
            return;
        }
        let read = || -> Option<Piece> {
            let (seq, body) = body.split_first_chunk::<8>()?;
            let (i, body) = body.split_first_chunk::<4>()?;
            let (count, body) = body.split_first_chunk::<4>()?;
            let (hash, bytes) = body.split_first_chunk::<32>()?;
            (u32::from_le_bytes(*i) == index).then(|| Piece {
                seq: u64::from_le_bytes(*seq),
                count: u32::from_le_bytes(*count),
                hash: *hash,
                bytes: bytes.to_vec(),
            })
        };
        match read() {
            Some(piece) => {
                slot_map.insert(index, piece);
            }
            None => {
                slot_map.remove(&index);
            }
        }
    }

    /// The complete checkpoints of `partition`, as (seq, bytes), newest
    /// first (at most one per slot).
    pub fn complete(&self, partition: i32) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        for slot in 0..2 {
            let Some(pieces) = self.slots.get(&(partition, slot)) else {
                continue;
            };
            let Some(first) = pieces.get(&0) else {
                continue;
            };
            let mut bytes = Vec::new();
            let whole = (0..first.count).all(|i| match pieces.get(&i) {
                Some(p) if p.seq == first.seq && p.count == first.count && p.hash == first.hash => {
                    bytes.extend_from_slice(&p.bytes);
                    true
                }
                _ => false,
            });
            if whole && blake3::hash(&bytes).as_bytes() == &first.hash {
                out.push((first.seq, bytes));
            }
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.0));
        out
    }

    /// The format version of records of `partition` this build cannot
    /// read, if any were found.
    pub fn foreign_version(&self, partition: i32) -> Option<u16> {
        self.foreign.get(&partition).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assemble(chunks: &[Chunk]) -> Assembler {
        let mut a = Assembler::new("g/clicks");
        for c in chunks {
            a.add(c.key.as_bytes(), Some(&c.value));
        }
        a
    }

    #[test]
    fn a_checkpoint_cut_into_chunks_reads_back_whole() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let chunks = split("g/clicks", 3, 7, &bytes, 4096);
        assert_eq!(chunks.len(), 3, "4096-byte records hold 4036 bytes each");
        assert!(chunks.iter().all(|c| c.value.len() <= 4096));
        assert_eq!(chunks[0].key, "g/clicks/3/1/0");
        assert_eq!(assemble(&chunks).complete(3), vec![(7, bytes)]);
        assert!(assemble(&chunks).complete(2).is_empty());
    }

    #[test]
    fn a_slot_missing_a_chunk_or_mixing_checkpoints_is_not_complete() {
        let old: Vec<u8> = vec![1; 9_000];
        let new: Vec<u8> = vec![2; 9_000];
        let mut chunks = split("g/clicks", 0, 2, &old, 4096);
        // Checkpoint 4 goes to the same slot; its writer stopped after the
        // first chunk.
        chunks.push(split("g/clicks", 0, 4, &new, 4096).remove(0));
        // Checkpoint 3, in the other slot, is whole.
        chunks.extend(split("g/clicks", 0, 3, &new, 4096));
        let a = assemble(&chunks);
        assert_eq!(a.complete(0), vec![(3, new.clone())]);
        // Chunk 1 of checkpoint 3 lost: nothing complete is left.
        let mut lost = chunks.clone();
        lost.retain(|c| c.key != "g/clicks/0/1/1");
        assert!(assemble(&lost).complete(0).is_empty());
        // A flipped bit is caught by the hash.
        let mut flipped = split("g/clicks", 0, 3, &new, 4096);
        let last = flipped[2].value.len() - 1;
        flipped[2].value[last] ^= 1;
        assert!(assemble(&flipped).complete(0).is_empty());
    }

    #[test]
    fn records_of_another_format_version_are_named_not_misread() {
        let mut chunks = split("g/clicks", 5, 1, b"state", 4096);
        chunks[0].value[4] = 9;
        let a = assemble(&chunks);
        assert!(a.complete(5).is_empty());
        assert_eq!(a.foreign_version(5), Some(9));
    }
}

//! Operators: what runs on a partition's records, between the consumer
//! and the sink. Each has a step run on the rayon pool per batch (the
//! common part in `batch`) and a fold on the partition task; the partition
//! driver (`task`) runs any of them.

pub mod batch;
mod interface;
mod repartition;
mod stateless;
mod windowed;

pub use batch::{Batch, Collect, Failure, Keyed, process};
pub use interface::{Context, Operator, OperatorError, Step};
pub use repartition::{Keys, Repartition, RepartitionStep};
pub use stateless::{Projected, Projections, Stateless, StatelessStep};
pub use windowed::{InOrderRecord, Panes, WindowPartial, WindowStep, Windowed};

//! Transforms: CPU-heavy per-record steps that run on the rayon pool.
//!
//! Library users add their own by implementing [`Transform`]; it runs in
//! the same batches as the built-in ones.

mod currency;
mod expr;
pub(crate) mod guard;
mod parse;
mod pseudonymise;

pub use currency::ConvertCurrency;
pub use expr::{Derive, Filter};
pub use pseudonymise::Pseudonymise;

use crate::config::{Problem, TransformConfig};
use crate::record::{Layout, Record};

/// Why a transform rejected a record; the record goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransformError(pub String);

/// A per-record step of a pipeline.
///
/// `bind` runs once at start-up against the record layout, so `apply` works
/// with field positions and never looks fields up by name. `apply` runs on
/// rayon worker threads, many batches at once: it must not block.
pub trait Transform: Send + Sync + 'static {
    /// Short name used in logs and dead-letter headers.
    fn name(&self) -> &str;

    /// Resolves the fields this transform reads and adds those it writes.
    ///
    /// # Errors
    /// A message naming the field, what type was expected and what was found.
    fn bind(&mut self, layout: &mut Layout) -> Result<(), String>;

    /// Transforms one record in place.
    ///
    /// # Errors
    /// A [`TransformError`] when this record cannot be transformed.
    fn apply(&self, record: &mut Record) -> Result<(), TransformError>;
}

/// Builds the configured transforms and binds them to `layout` in order.
///
/// # Errors
/// Every problem found, naming the config key of the transform.
pub fn build(
    configs: &[TransformConfig],
    layout: &mut Layout,
    file: &str,
) -> Result<Vec<Box<dyn Transform>>, Vec<Problem>> {
    let mut out: Vec<Box<dyn Transform>> = Vec::new();
    let mut problems = Vec::new();
    for (i, c) in configs.iter().enumerate() {
        let key = format!("pipeline.transforms[{i}]");
        let made: Result<Box<dyn Transform>, String> = match c {
            TransformConfig::Pseudonymise { field, key_env } => {
                Pseudonymise::from_env(field, key_env).map(|t| Box::new(t) as _)
            }
            TransformConfig::ConvertCurrency {
                amount_field,
                currency_field,
                output_field,
                base_currency,
                rates,
                minor_units,
            } => ConvertCurrency::new(
                amount_field,
                currency_field,
                output_field,
                base_currency,
                rates,
                minor_units,
            )
            .map(|t| Box::new(t) as _),
        };
        match made {
            Ok(mut t) => match t.bind(layout) {
                Ok(()) => out.push(t),
                Err(msg) => problems.push(Problem::new(file, key, msg)),
            },
            Err(msg) => problems.push(Problem::new(file, key, msg)),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Resolves `name` in `layout` and checks its type.
pub(crate) fn bind_field(
    layout: &Layout,
    name: &str,
    accepts: &[crate::record::FieldType],
    expected: &str,
) -> Result<usize, String> {
    let i = layout.index_of(name).ok_or_else(|| {
        format!("field {name:?}: expected a {expected} field, found no such field")
    })?;
    let ty = layout.field(i).ty;
    if accepts.contains(&ty) {
        Ok(i)
    } else {
        Err(format!(
            "field {name:?}: expected {expected}, found {}",
            ty.describe()
        ))
    }
}

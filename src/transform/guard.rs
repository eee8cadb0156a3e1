//! Panics caught where they must not stop the process: a transform that
//! panics on one record (the record goes to the dead-letter topic with the
//! panic message), and the CEL parser on broken input.
//!
//! The panic hook stays silent for a panic caught here (the message goes
//! into the error instead) and prints as before for every other panic.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

use super::{Transform, TransformError};
use crate::record::Record;

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// The message of a panic payload (`panic!` gives a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Runs `f`, returning the message of a panic instead of unwinding, and
/// without the panic hook printing it.
///
/// # Errors
/// The panic message, when `f` panicked.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result.map_err(|payload| panic_message(payload.as_ref()))
}

/// Applies `t` to `record`; a panic becomes the record's transform error,
/// so that one bad record of a library user's transform is a dead letter,
/// not a crashed process.
///
/// # Errors
/// The transform's error, or `panicked: <message>`.
pub(crate) fn apply(t: &dyn Transform, record: &mut Record) -> Result<(), TransformError> {
    match quietly(|| t.apply(record)) {
        Ok(r) => r,
        Err(message) => {
            tracing::warn!(transform = t.name(), %message, "transform panicked; the record goes to the dead-letter topic");
            Err(TransformError(format!("panicked: {message}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Layout;

    struct Picky;

    impl Transform for Picky {
        fn name(&self) -> &str {
            "picky"
        }
        fn bind(&mut self, _: &mut Layout) -> Result<(), String> {
            Ok(())
        }
        fn apply(&self, record: &mut Record) -> Result<(), TransformError> {
            if record.values.is_empty() {
                panic!("no fields at all");
            }
            Ok(())
        }
    }

    #[test]
    fn a_panicking_transform_is_an_error_of_that_record() {
        let mut empty = Record { values: vec![] };
        assert_eq!(
            apply(&Picky, &mut empty),
            Err(TransformError("panicked: no fields at all".into()))
        );
        let mut one = Record {
            values: vec![apache_avro::types::Value::Long(1)],
        };
        assert_eq!(apply(&Picky, &mut one), Ok(()));
        let n = 7;
        assert_eq!(quietly(|| -> u8 { panic!("n = {n}") }), Err("n = 7".into()));
    }
}

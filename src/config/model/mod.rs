//! The configuration tree, as written in TOML. Defaults live in
//! `defaults`, once.

mod connection;
mod defaults;
mod file;
mod pipeline;
mod process;
mod window;

pub use connection::*;
pub use file::*;
pub use pipeline::*;
pub use process::*;
pub use window::*;

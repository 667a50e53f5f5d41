//! jobworks (crate docs are written below).
#![cfg_attr(docsrs, feature(doc_cfg))]

mod artifact;
mod engine;
mod error;
mod executor;
mod job;
mod memory;
mod retry;
mod store;

pub use artifact::*;
pub use engine::{Engine, EngineBuilder, ExecutorOptions, Submitted};
pub use error::{BoxError, Error, Result};
pub use executor::{ArtifactSpec, Executor, FnExecutor, JobContext, JobError, JobErrorKind, from_fn};
pub use job::*;
pub use memory::MemoryStore;
pub use retry::RetryPolicy;
pub use store::*;

#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

//! Executors: the code that runs a job type, and the [`JobContext`] it runs with.

mod context;
mod error;

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use context::{ArtifactSpec, JobContext, ParentOutcome};
pub use error::{JobError, JobErrorKind};

/// Runs jobs of one type.
///
/// Return the job's result, or a [`JobError`] that says whether to retry. Write
/// [`from_fn`] for the common case of a typed async function.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs one attempt.
    ///
    /// # Cancel safety
    /// The future may be dropped at any await point: when the job's lease is lost, when
    /// its timeout passes, or when a shutdown's grace period ends. Anything it wrote
    /// through `ctx` until then stays written; the attempt's result is not recorded.
    async fn execute(&self, ctx: JobContext) -> Result<Value, JobError>;
}

/// An executor made from an async function of the typed input; see [`from_fn`].
pub struct FnExecutor<F, I, O> {
    f: F,
    _types: PhantomData<fn(I) -> O>,
}

impl<F, I, O> fmt::Debug for FnExecutor<F, I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnExecutor")
            .field("input", &std::any::type_name::<I>())
            .field("output", &std::any::type_name::<O>())
            .finish()
    }
}

/// Makes an executor from `async fn(JobContext, I) -> Result<O, JobError>`.
///
/// The input is deserialised into `I` (a mismatch fails the job permanently, with the
/// reason) and the output serialised from `O`.
///
/// ```
/// use jobworks::{from_fn, JobContext, JobError};
/// #[derive(serde::Deserialize)]
/// struct Resize { width: u32 }
/// let executor = from_fn(|ctx: JobContext, input: Resize| async move {
///     ctx.stage("resizing").await?;
///     Ok::<_, JobError>(serde_json::json!({ "width": input.width }))
/// });
/// let engine = jobworks::Engine::builder().executor("RESIZE", executor).build()?;
/// # drop(engine);
/// # Ok::<(), jobworks::Error>(())
/// ```
pub fn from_fn<F, Fut, I, O>(f: F) -> FnExecutor<F, I, O>
where
    F: Fn(JobContext, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, JobError>> + Send,
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
{
    FnExecutor {
        f,
        _types: PhantomData,
    }
}

#[async_trait]
impl<F, Fut, I, O> Executor for FnExecutor<F, I, O>
where
    F: Fn(JobContext, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, JobError>> + Send,
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
{
    async fn execute(&self, ctx: JobContext) -> Result<Value, JobError> {
        let input = ctx.input::<I>()?;
        let output = (self.f)(ctx, input).await?;
        serde_json::to_value(output)
            .map_err(|e| JobError::fail(format!("the result does not serialise: {e}")))
    }
}

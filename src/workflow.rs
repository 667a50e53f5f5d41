//! Workflows: jobs submitted together with dependencies between them.
//!
//! A [`NewWorkflow`] is a set of keyed jobs, each naming the keys it depends on, checked
//! at submit for unknown and duplicate keys and for cycles. A job whose parents have not
//! all completed is `waiting`; the store's state machine unblocks it in the same step as
//! its last parent's completion, and cancels it when a parent fails or is cancelled
//! (unless it [runs anyway](WorkflowJob::run_if_parents_fail)). An optional finalizer runs
//! once every other job is terminal. A [`Workflow`] is read back from its jobs.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::job::{Job, JobId, JobStatus, NewJob, TenantId, WorkflowId, WorkflowLink};
use crate::{Error, Result};

/// Most jobs in one workflow, its finalizer aside.
pub const MAX_WORKFLOW_JOBS: usize = 1000;

/// Longest key of a workflow's job, in bytes.
pub const MAX_WORKFLOW_KEY_LEN: usize = 64;

/// The key a workflow's finalizer has.
pub const FINALIZER_KEY: &str = "finalizer";

/// One job of a [`NewWorkflow`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WorkflowJob {
    /// Unique in the workflow, 1 to 64 bytes without control characters.
    pub key: String,
    /// The job.
    pub job: NewJob,
    /// The keys of the jobs that must complete before it runs.
    pub depends_on: Vec<String>,
    /// Runs once its parents are terminal even when one failed or was cancelled.
    pub run_if_parents_fail: bool,
}

impl WorkflowJob {
    /// The job `job` under `key`, depending on nothing yet.
    pub fn new(key: impl Into<String>, job: NewJob) -> Self {
        WorkflowJob {
            key: key.into(),
            job,
            depends_on: Vec::new(),
            run_if_parents_fail: false,
        }
    }

    /// Adds parents by key.
    pub fn depends_on<I, K>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        self.depends_on.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Runs it once its parents are terminal, whatever their outcome.
    pub fn run_if_parents_fail(mut self) -> Self {
        self.run_if_parents_fail = true;
        self
    }
}

/// A workflow to submit with [`Engine::submit_workflow`](crate::Engine::submit_workflow).
///
/// ```
/// use jobworks::{JobType, NewJob, NewWorkflow, WorkflowJob};
/// let echo = JobType::new("ECHO")?;
/// let job = || NewJob::new(echo.clone(), serde_json::json!({}));
/// let flow = NewWorkflow::new()
///     .name("ingest")
///     .job(WorkflowJob::new("fetch", job()))
///     .job(WorkflowJob::new("parse", job()).depends_on(["fetch"]))
///     .job(WorkflowJob::new("score", job()).depends_on(["fetch"]))
///     .finalizer(job());
/// assert!(flow.validate().is_ok());
/// # Ok::<(), jobworks::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct NewWorkflow {
    /// A name for people, at most 128 bytes.
    pub name: Option<String>,
    /// Its jobs, 1 to [`MAX_WORKFLOW_JOBS`].
    pub jobs: Vec<WorkflowJob>,
    /// A job that runs once every other job is terminal.
    pub finalizer: Option<NewJob>,
}

impl NewWorkflow {
    /// An empty workflow.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names it.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Adds a job.
    pub fn job(mut self, job: WorkflowJob) -> Self {
        self.jobs.push(job);
        self
    }

    /// Sets the finalizer.
    pub fn finalizer(mut self, job: NewJob) -> Self {
        self.finalizer = Some(job);
        self
    }

    /// Continues the trace `cx` in every job (and the finalizer) that names no trace of
    /// its own.
    pub fn trace(mut self, cx: &crate::TraceContext) -> Self {
        let jobs = self.jobs.iter_mut().map(|j| &mut j.job);
        for job in jobs.chain(self.finalizer.as_mut()) {
            job.trace.get_or_insert_with(|| cx.clone());
        }
        self
    }

    /// Checks the graph: 1 to 1,000 jobs, keys unique and well formed, every parent
    /// known, no job its own ancestor, and every job's own fields.
    ///
    /// # Errors
    /// [`Error::InvalidAt`] with the path to the offending `key` or `depends_on` entry
    /// (`["jobs", "2", "depends_on", "0"]`), or to the job's field.
    pub fn validate(&self) -> Result<()> {
        let at = |path: &[&dyn ToString], message: String| Error::at(path, message);
        if self.jobs.is_empty() || self.jobs.len() > MAX_WORKFLOW_JOBS {
            return Err(at(
                &[&"jobs"],
                format!("a workflow has 1 to {MAX_WORKFLOW_JOBS} jobs"),
            ));
        }
        if let Some(name) = &self.name
            && (name.is_empty() || name.len() > 128 || name.chars().any(char::is_control))
        {
            return Err(at(
                &[&"name"],
                "must be 1 to 128 bytes without control characters".into(),
            ));
        }
        let mut index: HashMap<&str, usize> = HashMap::with_capacity(self.jobs.len());
        for (i, job) in self.jobs.iter().enumerate() {
            let key = job.key.as_str();
            if key.is_empty()
                || key.len() > MAX_WORKFLOW_KEY_LEN
                || key.chars().any(char::is_control)
            {
                return Err(at(
                    &[&"jobs", &i, &"key"],
                    "must be 1 to 64 bytes without control characters".into(),
                ));
            }
            if index.insert(key, i).is_some() {
                return Err(at(
                    &[&"jobs", &i, &"key"],
                    format!("the key {key:?} is used twice"),
                ));
            }
            job.job.validate().map_err(|e| e.within(&[&"jobs", &i]))?;
        }
        if let Some(finalizer) = &self.finalizer {
            finalizer
                .validate()
                .map_err(|e| e.within(&[&"finalizer"]))?;
        }
        let mut parents: Vec<Vec<usize>> = Vec::with_capacity(self.jobs.len());
        for (i, job) in self.jobs.iter().enumerate() {
            let mut mine = Vec::with_capacity(job.depends_on.len());
            for (j, key) in job.depends_on.iter().enumerate() {
                let loc = [&"jobs" as &dyn ToString, &i, &"depends_on", &j];
                match index.get(key.as_str()) {
                    None => {
                        return Err(at(
                            &loc,
                            format!("no job of the workflow has the key {key:?}"),
                        ));
                    }
                    Some(&p) if p == i => {
                        return Err(at(&loc, "a job cannot depend on itself".into()));
                    }
                    Some(&p) if mine.contains(&p) => {
                        return Err(at(&loc, format!("{key:?} is listed twice")));
                    }
                    Some(&p) => mine.push(p),
                }
            }
            parents.push(mine);
        }
        if let Some((i, j)) = cycle(&parents) {
            let key = &self.jobs[i].depends_on[j];
            return Err(at(
                &[&"jobs", &i, &"depends_on", &j],
                format!("depending on {key:?} makes a cycle"),
            ));
        }
        Ok(())
    }

    /// The jobs to insert, parents before children, the finalizer last: roots queued,
    /// the others waiting, each with its link. `queued` makes a queued job of the tenant
    /// (the engine's defaults applied).
    pub(crate) fn into_jobs(
        self,
        id: WorkflowId,
        mut queued: impl FnMut(NewJob) -> Job,
    ) -> Vec<Job> {
        let count = self.jobs.len() + usize::from(self.finalizer.is_some());
        let mut jobs: Vec<Job> = Vec::with_capacity(count);
        let mut ids: HashMap<String, JobId> = HashMap::with_capacity(count);
        let specs: Vec<(String, Vec<String>, bool)> = self
            .jobs
            .iter()
            .map(|j| (j.key.clone(), j.depends_on.clone(), j.run_if_parents_fail))
            .collect();
        for job in self.jobs {
            let made = queued(job.job);
            ids.insert(job.key, made.id);
            jobs.push(made);
        }
        let finalizer = self.finalizer.map(&mut queued);
        let finalizer_id = finalizer.as_ref().map(|f| f.id);
        for (job, (key, depends_on, run_anyway)) in jobs.iter_mut().zip(&specs) {
            job.parents = depends_on.iter().map(|k| ids[k]).collect();
            job.workflow = Some(Box::new(WorkflowLink {
                id,
                name: self.name.clone(),
                key: key.clone(),
                dependents: finalizer_id.into_iter().collect(),
                pending: job.parents.len() as u32,
                failed: 0,
                run_if_parents_fail: *run_anyway,
                finalizer: false,
                skipped: false,
                cancelled: false,
            }));
        }
        let position: HashMap<JobId, usize> =
            jobs.iter().enumerate().map(|(i, j)| (j.id, i)).collect();
        for i in 0..jobs.len() {
            let child = jobs[i].id;
            for p in 0..jobs[i].parents.len() {
                let parent = position[&jobs[i].parents[p]];
                if let Some(link) = jobs[parent].workflow.as_mut() {
                    // Before the finalizer, so that children hear first.
                    let at = link.dependents.len() - usize::from(finalizer_id.is_some());
                    link.dependents.insert(at, child);
                }
            }
        }
        if let Some(mut finalizer) = finalizer {
            finalizer.parents = jobs.iter().map(|j| j.id).collect();
            finalizer.workflow = Some(Box::new(WorkflowLink {
                id,
                name: self.name.clone(),
                key: FINALIZER_KEY.to_owned(),
                dependents: Vec::new(),
                pending: finalizer.parents.len() as u32,
                failed: 0,
                run_if_parents_fail: true,
                finalizer: true,
                skipped: false,
                cancelled: false,
            }));
            jobs.push(finalizer);
        }
        for job in &mut jobs {
            if !job.parents.is_empty() {
                job.status = JobStatus::Waiting;
            }
        }
        order(jobs)
    }
}

/// The first `depends_on` entry (job, position) that closes a cycle, if any (a depth-first
/// search over the parents).
fn cycle(parents: &[Vec<usize>]) -> Option<(usize, usize)> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks = vec![Mark::New; parents.len()];
    for start in 0..parents.len() {
        if marks[start] != Mark::New {
            continue;
        }
        // (job, next parent to look at)
        let mut stack = vec![(start, 0usize)];
        marks[start] = Mark::Open;
        while let Some(&mut (job, ref mut next)) = stack.last_mut() {
            if let Some(&parent) = parents[job].get(*next) {
                let at = *next;
                *next += 1;
                match marks[parent] {
                    Mark::Open => return Some((job, at)),
                    Mark::New => {
                        marks[parent] = Mark::Open;
                        stack.push((parent, 0));
                    }
                    Mark::Done => {}
                }
            } else {
                marks[job] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}

/// Parents before children, each job as early as its parents let it be (the order of
/// submission otherwise kept). The graph has no cycle.
fn order(jobs: Vec<Job>) -> Vec<Job> {
    let position: HashMap<JobId, usize> = jobs.iter().enumerate().map(|(i, j)| (j.id, i)).collect();
    let mut placed = vec![false; jobs.len()];
    let mut sequence = Vec::with_capacity(jobs.len());
    for start in 0..jobs.len() {
        // Depth first: a job is placed once all its parents are.
        let mut stack = vec![start];
        while let Some(&i) = stack.last() {
            if placed[i] {
                stack.pop();
                continue;
            }
            let unplaced = jobs[i]
                .parents
                .iter()
                .map(|p| position[p])
                .find(|&p| !placed[p]);
            match unplaced {
                Some(p) => stack.push(p),
                None => {
                    placed[i] = true;
                    sequence.push(i);
                    stack.pop();
                }
            }
        }
    }
    let mut slots: Vec<Option<Job>> = jobs.into_iter().map(Some).collect();
    sequence
        .into_iter()
        .map(|i| slots[i].take().expect("placed once"))
        .collect()
}

/// Where a workflow stands, derived from its jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkflowStatus {
    /// Some job is not terminal.
    Running,
    /// Every job, the finalizer too, completed.
    Completed,
    /// Every job is terminal and one failed (or was cancelled without a cancel of the
    /// workflow).
    Failed,
    /// A cancel of the workflow was asked and every job is terminal.
    Cancelled,
}

impl WorkflowStatus {
    /// The lowercase name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Running => "running",
            WorkflowStatus::Completed => "completed",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Cancelled => "cancelled",
        }
    }
}

/// One job of a [`Workflow`]: its key, id, status and parents' keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowNode {
    /// Its key.
    pub key: String,
    /// Its id.
    pub id: JobId,
    /// Its status.
    pub status: JobStatus,
    /// The keys of its parents.
    pub depends_on: Vec<String>,
}

/// A workflow as its jobs tell it: status, graph, times.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// Its id.
    pub id: WorkflowId,
    /// The tenant that owns it.
    pub tenant: TenantId,
    /// Its name.
    pub name: Option<String>,
    /// Derived from its jobs.
    pub status: WorkflowStatus,
    /// Its jobs in submit order, parents before children, the finalizer left out.
    pub jobs: Vec<WorkflowNode>,
    /// The finalizer, if it has one.
    pub finalizer: Option<WorkflowNode>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When one of its jobs last changed.
    pub updated_at: DateTime<Utc>,
}

impl Workflow {
    /// The workflow of `jobs` (all the jobs of one workflow, in any order); `None` when
    /// there are none.
    pub fn of(jobs: &[Job]) -> Option<Workflow> {
        let first = jobs.iter().find_map(|j| j.workflow.as_ref())?;
        let keys: HashMap<JobId, &str> = jobs
            .iter()
            .filter_map(|j| Some((j.id, j.workflow.as_ref()?.key.as_str())))
            .collect();
        let mut sorted: Vec<&Job> = jobs.iter().filter(|j| j.workflow.is_some()).collect();
        sorted.sort_by_key(|j| j.id);
        let node = |j: &Job, finalizer: bool| WorkflowNode {
            key: keys[&j.id].to_owned(),
            id: j.id,
            status: j.status,
            depends_on: if finalizer {
                Vec::new()
            } else {
                j.parents
                    .iter()
                    .filter_map(|p| keys.get(p).map(|k| (*k).to_owned()))
                    .collect()
            },
        };
        let is_finalizer = |j: &Job| j.workflow.as_ref().is_some_and(|l| l.finalizer);
        let nodes: Vec<WorkflowNode> = sorted
            .iter()
            .filter(|j| !is_finalizer(j))
            .map(|j| node(j, false))
            .collect();
        let finalizer = sorted
            .iter()
            .find(|j| is_finalizer(j))
            .map(|j| node(j, true));
        let all = || sorted.iter().copied();
        let status = if !all().all(|j| j.status.is_terminal()) {
            WorkflowStatus::Running
        } else if all().any(|j| j.workflow.as_ref().is_some_and(|l| l.cancelled)) {
            WorkflowStatus::Cancelled
        } else if all().all(|j| j.status == JobStatus::Completed) {
            WorkflowStatus::Completed
        } else {
            WorkflowStatus::Failed
        };
        Some(Workflow {
            id: first.id,
            tenant: sorted[0].tenant.clone(),
            name: first.name.clone(),
            status,
            jobs: nodes,
            finalizer,
            created_at: all().map(|j| j.created_at).min()?,
            updated_at: all().map(|j| j.updated_at).max()?,
        })
    }

    /// Whether every job is terminal.
    pub fn is_finished(&self) -> bool {
        self.status != WorkflowStatus::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobType;

    fn job(key: &str) -> WorkflowJob {
        WorkflowJob::new(
            key,
            NewJob::new(JobType::new("T").unwrap(), serde_json::json!({})),
        )
    }

    fn path(flow: &NewWorkflow) -> Vec<String> {
        match flow.validate() {
            Err(Error::InvalidAt { path, .. }) => path,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_graphs_are_refused_at_the_offending_entry() {
        let p = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(path(&NewWorkflow::new()), p(&["jobs"]));
        let dup = NewWorkflow::new().job(job("a")).job(job("a"));
        assert_eq!(path(&dup), p(&["jobs", "1", "key"]));
        let unknown = NewWorkflow::new().job(job("a").depends_on(["b"]));
        assert_eq!(path(&unknown), p(&["jobs", "0", "depends_on", "0"]));
        let own = NewWorkflow::new().job(job("a").depends_on(["a"]));
        assert_eq!(path(&own), p(&["jobs", "0", "depends_on", "0"]));
        // a → c → b → a: the search from a closes the cycle at b's entry for a.
        let cyc = NewWorkflow::new()
            .job(job("a").depends_on(["c"]))
            .job(job("b").depends_on(["a"]))
            .job(job("c").depends_on(["x", "b"]))
            .job(job("x"));
        assert_eq!(path(&cyc), p(&["jobs", "1", "depends_on", "0"]));
        let field = NewWorkflow::new().job(WorkflowJob {
            job: NewJob::new(JobType::new("T").unwrap(), serde_json::json!({})).priority(5000),
            ..job("a")
        });
        assert_eq!(path(&field), p(&["jobs", "0", "priority"]));
        let too_many =
            (0..=MAX_WORKFLOW_JOBS).fold(NewWorkflow::new(), |f, i| f.job(job(&i.to_string())));
        assert_eq!(path(&too_many), p(&["jobs"]));
    }

    #[test]
    fn jobs_come_out_parents_first_with_their_links() {
        let flow = NewWorkflow::new()
            .job(job("c").depends_on(["a", "b"]))
            .job(job("a"))
            .job(job("b").depends_on(["a"]))
            .finalizer(NewJob::new(
                JobType::new("F").unwrap(),
                serde_json::json!({}),
            ));
        flow.validate().unwrap();
        let tenant = TenantId::new("t").unwrap();
        let jobs = flow.into_jobs(WorkflowId::new(), |new| {
            Job::new_queued(tenant.clone(), new, 3)
        });
        let keys: Vec<&str> = jobs
            .iter()
            .map(|j| j.workflow.as_ref().unwrap().key.as_str())
            .collect();
        assert_eq!(keys, ["a", "b", "c", FINALIZER_KEY]);
        let [a, b, c, f] = [&jobs[0], &jobs[1], &jobs[2], &jobs[3]];
        assert_eq!(a.status, JobStatus::Queued);
        assert_eq!(b.status, JobStatus::Waiting);
        assert_eq!(c.parents, [a.id, b.id]);
        assert_eq!(a.workflow.as_ref().unwrap().dependents, [c.id, b.id, f.id]);
        assert_eq!(f.parents.len(), 3);
        assert_eq!(f.workflow.as_ref().unwrap().pending, 3);
        assert!(f.workflow.as_ref().unwrap().run_if_parents_fail);
        let view = Workflow::of(&jobs).unwrap();
        assert_eq!(view.status, WorkflowStatus::Running);
        assert_eq!(view.jobs.len(), 3);
        assert_eq!(view.finalizer.unwrap().key, FINALIZER_KEY);
    }
}

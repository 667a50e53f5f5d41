//! What the storage primitives move: records as loaded, and guarded writes.

use chrono::{DateTime, Utc};

use super::Lease;
use crate::job::{Artifact, Event, Job, JobId, NewEvent, Visibility};

/// A job as stored, with what a guarded write about it needs: the answer of
/// [`JobStore::load`](super::JobStore::load).
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The job, with its artifacts and latest public event. Boxed, so that records move
    /// cheaply through the protocol's steps.
    pub job: Box<Job>,
    /// The lease of its current attempt, while it runs.
    pub lease: Option<Lease>,
    /// The sequence number its next event takes (one more than its last event's).
    pub next_seq: u64,
}

impl Stored {
    /// Starts a write that expects this record exactly as it is (same revision, same
    /// lease), taking the record over. It changes nothing until the caller changes it.
    pub fn write(self) -> Write {
        Write {
            revision: self.job.revision,
            lease_id: self.lease.map(|l| l.lease_id),
            from: self.job.status,
            held: self.lease,
            job: self.job,
            lease: LeaseChange::Keep,
            events: Vec::new(),
            artifacts: Vec::new(),
            next_seq: self.next_seq,
        }
    }
}

/// What a rule made of a record: a write to commit, or the record as it was (nothing to
/// write).
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Commit this.
    Write(Write),
    /// Nothing changes.
    Unchanged(Stored),
}

/// What a write does to the job's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseChange {
    /// Leaves it as the store has it (an event or a progress report).
    Keep,
    /// Sets it (a claim, a heartbeat).
    Set(Lease),
    /// Ends it (a finish, a reap).
    Clear,
}

/// A guarded write about one job: applied whole, or refused as a conflict when the job's
/// revision or lease is no longer what the writer read.
///
/// Made by [`Stored::write`] and changed by the protocol's rules; a backend stores it as
/// it is (see [`JobStore::commit`](super::JobStore::commit)).
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    /// The revision the job must still have.
    pub revision: u64,
    /// The lease the job must still hold (`None`: no lease).
    pub lease_id: Option<u128>,
    /// The new record. Its `artifacts` is the full list after the write (for a store that
    /// keeps them in the record); `latest_event` is for the caller and need not be stored.
    pub job: Box<Job>,
    /// What happens to the lease.
    pub lease: LeaseChange,
    /// New timeline events, numbered on from the job's last one.
    pub events: Vec<Event>,
    /// Artifact records added or replaced (by name), for a store that keeps them apart.
    pub artifacts: Vec<Artifact>,
    /// The status the job had when it was read.
    from: crate::job::JobStatus,
    /// The lease the job had when it was read.
    held: Option<Lease>,
    next_seq: u64,
}

impl Write {
    /// The job it is about.
    pub fn id(&self) -> JobId {
        self.job.id
    }

    /// The sequence number of the job's last event after this write.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// The status the job had when it was read.
    pub fn from_status(&self) -> crate::job::JobStatus {
        self.from
    }

    /// The record as it is once this write was committed; its events go with the write
    /// (take them first if they are needed).
    pub fn into_stored(self) -> Stored {
        let lease = match self.lease {
            LeaseChange::Keep => self.held,
            LeaseChange::Set(lease) => Some(lease),
            LeaseChange::Clear => None,
        };
        Stored {
            job: self.job,
            lease,
            next_seq: self.next_seq,
        }
    }

    /// Numbers `event`, records it on the job (one more revision, updated now) and
    /// returns it.
    pub fn push(&mut self, event: NewEvent, now: DateTime<Utc>) -> &Event {
        let event = event.into_event(self.next_seq, now);
        self.next_seq += 1;
        self.job.revision += 1;
        self.job.updated_at = now;
        if event.visibility == Visibility::Public {
            self.job.latest_event = Some(event.clone());
        }
        self.events.push(event);
        self.events.last().expect("just pushed")
    }

    /// Records an artifact, replacing one of the same name.
    pub fn put_artifact(&mut self, artifact: Artifact) {
        self.job.artifacts.retain(|a| a.name != artifact.name);
        self.job.artifacts.push(artifact.clone());
        self.artifacts.retain(|a| a.name != artifact.name);
        self.artifacts.push(artifact);
    }
}

/// A new job and the first event of its timeline, for
/// [`JobStore::insert`](super::JobStore::insert).
#[derive(Debug, Clone, PartialEq)]
pub struct NewRecord {
    /// The job, as it is stored.
    pub job: Job,
    /// Its first event (seq 1).
    pub event: Event,
}

impl NewRecord {
    /// The record a store keeps for the new job (no lease; its next event is 2), and its
    /// first event.
    pub fn into_parts(self) -> (Stored, Event) {
        let next_seq = self.event.seq + 1;
        let stored = Stored {
            job: Box::new(self.job),
            lease: None,
            next_seq,
        };
        (stored, self.event)
    }
}

/// An idempotency key that [`JobStore::insert`](super::JobStore::insert) found taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// The position of the refused job in the call.
    pub index: usize,
    /// The job that holds the key.
    pub by: JobId,
}

/// The answer to one write of [`JobStore::commit`](super::JobStore::commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The write was stored.
    Applied,
    /// The job changed (or went) since it was read; nothing was stored.
    Conflict,
}

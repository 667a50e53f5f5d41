//! What one render may cost: pages, output bytes and time. Templates are bounded when they
//! are saved; the budget bounds what the data makes of them.

use std::time::{Duration, Instant};

/// The most a render may produce and take. A build over it fails for good, saying which
/// limit it passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderBudget {
    /// Most pages of a PDF (2,000 by default).
    pub max_pages: usize,
    /// Most bytes of output (64 MiB by default).
    pub max_bytes: usize,
    /// Longest rendering time (60 s by default).
    pub max_time: Duration,
}

impl Default for RenderBudget {
    fn default() -> Self {
        RenderBudget {
            max_pages: 2_000,
            max_bytes: 64 << 20,
            max_time: Duration::from_secs(60),
        }
    }
}

/// The limit of a [`RenderBudget`] that a render passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetExceeded {
    /// More pages than `max_pages`.
    #[error("the report would pass the limit of {0} pages")]
    Pages(usize),
    /// More output than `max_bytes`.
    #[error("the report would pass the limit of {} MiB", .0 >> 20)]
    Bytes(usize),
    /// Longer than `max_time`.
    #[error("rendering the report would take more than {} s", .0.as_secs())]
    Time(Duration),
}

/// A render's spending against its budget.
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    budget: RenderBudget,
    deadline: Option<Instant>,
    bytes: usize,
    held: usize,
}

impl Meter {
    /// Starts the clock.
    pub(crate) fn start(budget: RenderBudget) -> Self {
        Meter {
            budget,
            deadline: Instant::now().checked_add(budget.max_time),
            bytes: 0,
            held: 0,
        }
    }

    /// Counts `n` more bytes of layout held in memory before output is written.
    pub(crate) fn held(&mut self, n: usize) {
        self.held = self.held.saturating_add(n);
    }

    /// `Err` once the layout holds more than four times the output budget: whatever its
    /// template, a render's memory stays a bounded multiple of its output limit.
    pub(crate) fn memory(&self) -> Result<(), BudgetExceeded> {
        if self.held > self.budget.max_bytes.saturating_mul(4) {
            return Err(BudgetExceeded::Bytes(self.budget.max_bytes));
        }
        Ok(())
    }

    /// `Err` once `pages` pages would be too many, or the time is up.
    pub(crate) fn pages(&self, pages: usize) -> Result<(), BudgetExceeded> {
        if pages > self.budget.max_pages {
            return Err(BudgetExceeded::Pages(self.budget.max_pages));
        }
        self.time()
    }

    /// `Err` once the time is up.
    pub(crate) fn time(&self) -> Result<(), BudgetExceeded> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => {
                Err(BudgetExceeded::Time(self.budget.max_time))
            }
            _ => Ok(()),
        }
    }

    /// Counts `n` more bytes of output: `Err` once they are too many, or the time is up.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<(), BudgetExceeded> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.budget.max_bytes {
            return Err(BudgetExceeded::Bytes(self.budget.max_bytes));
        }
        self.time()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_says_which_it_is() {
        let budget = RenderBudget::default();
        let mut meter = Meter::start(budget);
        assert!(meter.pages(2_000).is_ok());
        let pages = meter.pages(2_001).unwrap_err();
        assert_eq!(
            pages.to_string(),
            "the report would pass the limit of 2000 pages"
        );
        assert!(meter.bytes(64 << 20).is_ok());
        let bytes = meter.bytes(1).unwrap_err();
        assert_eq!(
            bytes.to_string(),
            "the report would pass the limit of 64 MiB"
        );
        let late = Meter::start(RenderBudget {
            max_time: Duration::ZERO,
            ..budget
        });
        assert_eq!(
            late.time().unwrap_err().to_string(),
            "rendering the report would take more than 0 s"
        );
    }
}

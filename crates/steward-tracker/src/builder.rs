//! [`TrackerBuilder`], the one way to configure a [`Tracker`].

use std::time::Duration;

use crate::clock::TimeSource;
use crate::{Budget, Error, ManualClock, Tracker, TrackerConfig};

/// Builds a [`Tracker`] from a [`TrackerConfig`] and an optional clock:
/// start from [`Tracker::builder`], set what you need, then
/// [`TrackerBuilder::build`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct TrackerBuilder {
    config: TrackerConfig,
    clock: Option<ManualClock>,
}

impl Tracker {
    /// Starts configuring a tracker, from [`TrackerConfig::default`] and the
    /// process's monotonic clock.
    pub fn builder() -> TrackerBuilder {
        TrackerBuilder {
            config: TrackerConfig::default(),
            clock: None,
        }
    }
}

impl TrackerBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: TrackerConfig) -> Self {
        self.config = config;
        self
    }

    /// How many of the largest and oldest resources snapshots list.
    pub fn top_n(mut self, n: usize) -> Self {
        self.config.top_n = n;
        self
    }

    /// Reports resources alive for at least `age` as leaks (once each).
    pub fn leak_after(mut self, age: Duration) -> Self {
        self.config.leak_after = Some(age);
        self
    }

    /// Sets the budget of one kind.
    pub fn budget(mut self, kind: &str, budget: Budget) -> Self {
        self.config.budgets.insert(kind.to_string(), budget);
        self
    }

    /// Uses a manual clock instead of the process's monotonic clock.
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Checks the budgets and builds the tracker.
    ///
    /// # Errors
    /// [`Error::InvalidBudget`] for a budget that makes no sense,
    /// [`Error::TooManyKinds`] for more budgets than a tracker holds kinds.
    pub fn build(self) -> Result<Tracker, Error> {
        let clock = match self.clock {
            Some(manual) => TimeSource::Manual(manual),
            None => TimeSource::coarse(),
        };
        let tracker = Tracker::with_parts(&self.config, clock);
        for (kind, budget) in &self.config.budgets {
            tracker.set_budget(kind, *budget)?;
        }
        Ok(tracker)
    }
}

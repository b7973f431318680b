//! Single flight: within an isolate, one lookup of a value at a time, however many requests
//! need it at once.
//!
//! The request that starts a lookup (the leader) awaits it; the others (followers) poll isolate
//! memory for the outcome on their own timers. They never await the leader's future: workerd
//! cancels a request that is woken by I/O belonging to another request. Outcomes are kept by
//! flight, so a newer flight never hides an older one's from its followers; a leader that goes
//! away without an outcome (its request cancelled) lets a follower lead.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;

use crate::runtime::Clock;

/// How often a follower looks for the leader's outcome.
pub const FOLLOW_POLL_MS: u64 = 5;
/// Outcomes kept for followers (flights are sequential, so a handful is plenty).
const OUTCOMES_KEPT: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Flight {
    generation: u64,
    started_ms: u64,
}

/// The flights of one value in one isolate.
#[derive(Debug)]
pub struct SingleFlight<T> {
    flight: Cell<Option<Flight>>,
    generation: Cell<u64>,
    outcomes: RefCell<VecDeque<(u64, T)>>,
    /// A flight older than this is presumed lost: its followers give up and the next caller leads.
    limit_ms: u64,
}

impl<T> SingleFlight<T> {
    /// Flights presumed lost after `limit_ms`.
    pub const fn new(limit_ms: u64) -> Self {
        SingleFlight {
            flight: Cell::new(None),
            generation: Cell::new(0),
            outcomes: RefCell::new(VecDeque::new()),
            limit_ms,
        }
    }

    /// Whether a flight is under way at `now_ms`.
    pub fn in_flight(&self, now_ms: u64) -> bool {
        self.flight.get().is_some_and(|f| now_ms.saturating_sub(f.started_ms) < self.limit_ms)
    }
}

enum Followed<T> {
    Done(T),
    LeaderGone,
}

/// Clears the flight if its leader goes away without an outcome, so that followers stop
/// waiting and one of them leads.
struct Guard<'a, T> {
    flights: &'a SingleFlight<T>,
    generation: u64,
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        if self.flights.flight.get().is_some_and(|f| f.generation == self.generation) {
            self.flights.flight.set(None);
        }
    }
}

impl<T: Clone> SingleFlight<T> {
    /// The outcome of the flight under way, or of a new one led with `lead`. Before leading,
    /// `settle` may answer instead (a back-off, a value another flight just stored); a follower
    /// whose flight outlives the limit gets `lost()`.
    pub async fn run<C, Fut>(
        &self,
        clock: &C,
        mut settle: impl FnMut() -> Option<T>,
        lead: impl FnOnce() -> Fut,
        lost: impl Fn() -> T,
    ) -> T
    where
        C: Clock,
        Fut: Future<Output = T>,
    {
        loop {
            if let Some(flight) = self.flight.get().filter(|_| self.in_flight(clock.now_ms())) {
                match self.follow(clock, flight, &lost).await {
                    Followed::Done(outcome) => return outcome,
                    Followed::LeaderGone => continue,
                }
            }
            if let Some(outcome) = settle() {
                return outcome;
            }
            let generation = self.generation.get() + 1;
            self.generation.set(generation);
            self.flight.set(Some(Flight { generation, started_ms: clock.now_ms() }));
            let _guard = Guard { flights: self, generation };
            let outcome = lead().await;
            self.record(generation, outcome.clone());
            return outcome;
        }
    }

    fn record(&self, generation: u64, outcome: T) {
        let mut outcomes = self.outcomes.borrow_mut();
        if outcomes.len() == OUTCOMES_KEPT {
            outcomes.pop_front();
        }
        outcomes.push_back((generation, outcome));
    }

    fn outcome(&self, generation: u64) -> Option<T> {
        self.outcomes.borrow().iter().find(|(g, _)| *g == generation).map(|(_, o)| o.clone())
    }

    /// Waits, on this caller's own timer, for `flight`'s outcome.
    async fn follow<C: Clock>(&self, clock: &C, flight: Flight, lost: &impl Fn() -> T) -> Followed<T> {
        loop {
            clock.sleep(FOLLOW_POLL_MS).await;
            if let Some(outcome) = self.outcome(flight.generation) {
                return Followed::Done(outcome);
            }
            if self.flight.get() != Some(flight) {
                return Followed::LeaderGone;
            }
            if clock.now_ms().saturating_sub(flight.started_ms) >= self.limit_ms {
                return Followed::Done(lost());
            }
        }
    }
}

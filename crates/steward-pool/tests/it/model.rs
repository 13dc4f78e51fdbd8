//! Model-based property test: random get / return / take / discard / cancel
//! / resize / add / advance-time operations on a real pool (Tokio paused
//! time) against a simple model of what the pool must contain.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use steward_pool::{ClosedCounts, Error, Pool, Pooled};
use tokio::time::Instant;

use crate::common::Counting;

const LIFETIME: Duration = Duration::from_secs(20);
const IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum Op {
    TryGet,
    /// A `get` polled once and dropped (completes at once when it can).
    CancelGet,
    /// A checkout whose create hangs, cancelled.
    CancelCreate,
    Return(usize),
    Take(usize),
    Discard(usize),
    Resize(usize),
    Add,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::TryGet),
        1 => Just(Op::CancelGet),
        1 => Just(Op::CancelCreate),
        4 => (0..8usize).prop_map(Op::Return),
        1 => (0..8usize).prop_map(Op::Take),
        1 => (0..8usize).prop_map(Op::Discard),
        1 => (1..5usize).prop_map(Op::Resize),
        2 => Just(Op::Add),
        2 => (0..15u64).prop_map(Op::Advance),
    ]
}

#[derive(Debug, Clone, Copy)]
struct MObj {
    id: u64,
    created: Instant,
    last_used: Instant,
}

/// What the pool must hold: deadpool's queue (LIFO), the staged objects
/// (added from outside), the objects held, and the counters.
#[derive(Debug, Default)]
struct Model {
    cap: usize,
    queue: VecDeque<MObj>,
    staged: VecDeque<MObj>,
    held: Vec<MObj>,
    next_id: u64,
    closed: ClosedCounts,
    created: u64,
    taken: u64,
    added: u64,
    wait_count: u64,
}

impl Model {
    fn live(&self) -> usize {
        self.queue.len() + self.staged.len() + self.held.len()
    }

    fn expired(o: &MObj, now: Instant) -> bool {
        now.duration_since(o.created) >= LIFETIME
    }

    /// The object a successful checkout hands out, closing expired ones on
    /// the way; `None` means it creates one.
    fn next_idle(&mut self, now: Instant) -> Option<MObj> {
        while let Some(o) = self.queue.pop_back() {
            if Self::expired(&o, now) {
                self.closed.lifetime += 1;
            } else {
                return Some(o);
            }
        }
        while let Some(o) = self.staged.pop_back() {
            if Self::expired(&o, now) {
                self.closed.lifetime += 1;
            } else {
                return Some(o);
            }
        }
        None
    }

    fn create(&mut self, now: Instant) -> MObj {
        let o = MObj {
            id: self.next_id,
            created: now,
            last_used: now,
        };
        self.next_id += 1;
        self.created += 1;
        o
    }

    fn give_back(&mut self, mut o: MObj, now: Instant) {
        if self.live() + 1 > self.cap {
            self.closed.shrink += 1;
        } else if Self::expired(&o, now) {
            self.closed.lifetime += 1;
        } else {
            o.last_used = now;
            self.queue.push_back(o);
        }
    }

    /// Closes idle objects `pick` selects, staged first, oldest first.
    fn close_idle(&mut self, limit: usize, pick: impl Fn(&MObj) -> bool) -> usize {
        let mut n = 0;
        for list in [&mut self.staged, &mut self.queue] {
            let mut keep = VecDeque::new();
            while let Some(o) = list.pop_front() {
                if n < limit && pick(&o) {
                    n += 1;
                } else {
                    keep.push_back(o);
                }
            }
            *list = keep;
        }
        n
    }

    fn reap(&mut self, now: Instant) {
        let l = self.close_idle(usize::MAX, |o| Self::expired(o, now));
        self.closed.lifetime += l as u64;
        let budget = self.queue.len() + self.staged.len();
        let i = self.close_idle(budget, |o| now.duration_since(o.last_used) >= IDLE);
        self.closed.idle += i as u64;
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let m = Counting::new();
    let p = Pool::builder(m.clone())
        .max_size(3)
        .max_lifetime(Some(LIFETIME))
        .idle_timeout(Some(IDLE))
        .wait_timeout(None)
        .reaper_interval(None)
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut model = Model {
        cap: 3,
        ..Model::default()
    };
    let mut guards: Vec<Pooled<Counting>> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        let now = Instant::now();
        match op {
            Op::TryGet => {
                let got = p.try_get().await;
                if model.held.len() >= model.cap {
                    prop_assert!(
                        matches!(got, Err(Error::Full { .. })),
                        "step {}: expected Full",
                        step
                    );
                } else {
                    let o = got.map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
                    let want = match model.next_idle(now) {
                        Some(o) => o,
                        None => model.create(now),
                    };
                    prop_assert_eq!(o.id, want.id, "step {}: wrong object", step);
                    prop_assert!(Pooled::info(&o).age < LIFETIME);
                    model.held.push(want);
                    guards.push(o);
                }
            }
            Op::CancelGet => {
                let r = tokio::time::timeout(Duration::ZERO, p.get()).await;
                if model.held.len() >= model.cap {
                    prop_assert!(r.is_err(), "step {step}: a full pool cannot serve");
                    model.wait_count += 1;
                } else {
                    let o = r.map_err(|_| TestCaseError::fail("get did not finish at once"))?;
                    let o = o.map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let want = match model.next_idle(now) {
                        Some(o) => o,
                        None => model.create(now),
                    };
                    prop_assert_eq!(o.id, want.id);
                    drop(o);
                    model.give_back(want, now);
                }
            }
            Op::CancelCreate => {
                m.set_delay(Duration::from_secs(3600));
                let r = tokio::time::timeout(Duration::ZERO, p.try_get()).await;
                m.set_delay(Duration::ZERO);
                if model.held.len() >= model.cap {
                    prop_assert!(
                        matches!(r, Ok(Err(Error::Full { .. }))),
                        "step {}: expected Full",
                        step
                    );
                } else if let Some(want) = model.next_idle(now) {
                    let o = r
                        .map_err(|_| TestCaseError::fail("idle checkout did not finish"))?
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(o.id, want.id);
                    drop(o);
                    model.give_back(want, now);
                } else {
                    prop_assert!(r.is_err(), "step {step}: the create hangs");
                }
            }
            Op::Return(i) if i < guards.len() => {
                drop(guards.remove(i));
                let o = model.held.remove(i);
                model.give_back(o, now);
            }
            Op::Take(i) if i < guards.len() => {
                drop(Pooled::take(guards.remove(i)));
                model.held.remove(i);
                model.taken += 1;
            }
            Op::Discard(i) if i < guards.len() => {
                Pooled::discard(guards.remove(i));
                model.held.remove(i);
                model.closed.broken += 1;
            }
            Op::Return(_) | Op::Take(_) | Op::Discard(_) => {}
            Op::Resize(n) => {
                p.resize(n)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let old = model.cap;
                model.cap = n;
                if n < old {
                    let excess = model.live().saturating_sub(n);
                    let c = model.close_idle(excess, |_| true);
                    model.closed.shrink += c as u64;
                }
            }
            Op::Add => {
                let obj = m.make();
                let id = obj.id;
                model.next_id += 1;
                let r = p.add(obj);
                model.reap(now);
                if model.live() < model.cap {
                    prop_assert!(r.is_ok(), "step {step}: add refused");
                    model.added += 1;
                    model.staged.push_back(MObj {
                        id,
                        created: now,
                        last_used: now,
                    });
                } else {
                    prop_assert!(r.is_err(), "step {step}: add over the cap accepted");
                }
            }
            Op::Advance(secs) => {
                tokio::time::advance(Duration::from_secs(secs)).await;
                let closed = p.reap_idle();
                let before = model.closed.total();
                model.reap(Instant::now());
                prop_assert_eq!(closed as u64, model.closed.total() - before);
            }
        }
        let got = p.metrics();
        let idle = model.queue.len() + model.staged.len();
        prop_assert_eq!(
            (got.size, got.idle, got.in_use),
            (model.live(), idle, model.held.len()),
            "step {}: sizes",
            step
        );
        prop_assert_eq!(got.closed, model.closed, "step {}: closes", step);
        prop_assert_eq!(
            (got.created, got.taken, got.added, got.wait_count),
            (model.created, model.taken, model.added, model.wait_count),
            "step {}: counters",
            step
        );
        prop_assert_eq!(
            m.live(),
            model.live(),
            "step {}: the manager's own count",
            step
        );
        prop_assert!(got.size <= model.cap || model.held.len() > model.cap);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(200),
        ..ProptestConfig::default()
    })]

    #[test]
    fn prop_pool_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        rt.block_on(run(ops))?;
    }
}

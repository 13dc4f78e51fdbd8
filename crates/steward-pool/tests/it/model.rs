//! Model-based property test of the pool's contract: random checkouts,
//! waits, returns, takes, discards, resizes, adds, time steps and a close on
//! a real pool (Tokio paused time), each outcome checked against what the
//! documentation promises a user, not against how the pool does it.
//!
//! The model knows which objects are idle as a set. It does not copy the
//! pool's internal order (its queue of added objects, the order it visits
//! expired ones); it checks what the docs promise:
//! - never more live objects than `max_size` (counted by the manager's own
//!   objects, not the pool's counters), except objects in use after a
//!   shrink, which close when they come back;
//! - a checkout reuses an idle object that has not expired before it
//!   creates one, and with only returned objects idle it takes the one
//!   `QueueMode` names (LIFO: the most recently returned, FIFO: the least);
//! - a checkout never hands out an object past `max_lifetime`;
//! - a waiting `get` is served as soon as a place frees (a return, a take,
//!   a discard), with the returned object when it is still good;
//! - a full pool answers `try_get` with `Full` and a bounded `get` with
//!   `WaitTimeout`; a closed pool answers `Closed` and closes what it holds;
//! - every close the manager sees has a reason the docs allow for that
//!   object at that moment, and the closes the docs require happen (expired
//!   idle objects on `reap_idle` and `add`, idle objects over a shrunk
//!   limit, everything idle on `close`);
//! - the stats equal the counts of these events.
//!
//! The limits sit half a second off the whole seconds time moves in, so no
//! step lands on a boundary the docs leave open ("older than").

use std::pin::pin;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use proptest::prelude::*;
use steward_pool::{CloseReason, ClosedCounts, Error, Pool, Pooled, QueueMode};
use tokio::time::Instant;

use crate::common::Counting;

const LIFETIME: Duration = Duration::from_millis(20_500);
const IDLE: Duration = Duration::from_millis(10_500);
/// How long a bounded `get` waits on a full pool.
const WAIT: Duration = Duration::from_secs(1);

/// How a `Wait` step frees the place its waiter needs.
#[derive(Debug, Clone, Copy)]
enum Free {
    Return,
    Take,
    Discard,
}

#[derive(Debug, Clone)]
enum Op {
    TryGet,
    /// A `get` polled once and dropped (completes at once when it can).
    CancelGet,
    /// A checkout whose create hangs, cancelled.
    CancelCreate,
    /// On a full pool: a `get` that waits, then a held object freed.
    Wait(usize, Free),
    /// `get` bounded by [`WAIT`].
    GetTimeout,
    Return(usize),
    Take(usize),
    Discard(usize),
    Resize(usize),
    Add,
    Advance(u64),
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    let free = prop_oneof![Just(Free::Return), Just(Free::Take), Just(Free::Discard)];
    prop_oneof![
        8 => Just(Op::TryGet),
        2 => Just(Op::CancelGet),
        2 => Just(Op::CancelCreate),
        3 => (0..8usize, free).prop_map(|(i, f)| Op::Wait(i, f)),
        2 => Just(Op::GetTimeout),
        8 => (0..8usize).prop_map(Op::Return),
        2 => (0..8usize).prop_map(Op::Take),
        2 => (0..8usize).prop_map(Op::Discard),
        2 => (1..5usize).prop_map(Op::Resize),
        4 => Just(Op::Add),
        4 => (0..15u64).prop_map(Op::Advance),
        1 => Just(Op::Close),
    ]
}

/// What a user can know of one object.
#[derive(Debug, Clone, Copy)]
struct MObj {
    id: u64,
    created: Instant,
    /// When it was last returned (or added).
    last_used: Instant,
    /// The order of its last return; `None` for an object added and not
    /// used since.
    returned: Option<u64>,
}

impl MObj {
    fn new(id: u64, now: Instant) -> Self {
        Self {
            id,
            created: now,
            last_used: now,
            returned: None,
        }
    }

    fn too_old(&self, now: Instant) -> bool {
        now.duration_since(self.created) > LIFETIME
    }

    fn too_idle(&self, now: Instant) -> bool {
        now.duration_since(self.last_used) > IDLE
    }
}

/// The contract's view of the pool: sets of idle and held objects, the
/// limit, and the counts of events the stats must equal.
#[derive(Debug, Default)]
struct Model {
    mode: QueueMode,
    cap: usize,
    closed: bool,
    idle: Vec<MObj>,
    held: Vec<MObj>,
    returns: u64,
    closes: ClosedCounts,
    created: u64,
    recycled: u64,
    taken: u64,
    added: u64,
    wait_count: u64,
    wait_timeouts: u64,
}

type TestCaseResult = Result<(), TestCaseError>;

fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

/// Counts one close in the counts the stats keep.
fn count(c: &mut ClosedCounts, reason: CloseReason) {
    match reason {
        CloseReason::Broken => c.broken += 1,
        CloseReason::IdleTimeout => c.idle += 1,
        CloseReason::Lifetime => c.lifetime += 1,
        CloseReason::Shrink => c.shrink += 1,
        CloseReason::Closed => c.closed += 1,
        CloseReason::Evicted => c.evicted += 1,
        CloseReason::Removed => c.removed += 1,
        // A reason added later: left uncounted, the stats comparison
        // then fails and names it.
        _ => {}
    }
}

impl Model {
    fn live(&self) -> usize {
        self.idle.len() + self.held.len()
    }

    /// Whether a checkout must succeed now.
    fn can_serve(&self) -> bool {
        !self.closed && self.held.len() < self.cap
    }

    /// Closes of idle objects, each checked against the reasons `allowed`
    /// gives for it (`None`: no close of that object is allowed now).
    fn idle_closes(
        &mut self,
        events: &[(u64, CloseReason)],
        what: &str,
        allowed: impl Fn(&MObj) -> Vec<CloseReason>,
    ) -> TestCaseResult {
        for &(id, reason) in events {
            let Some(at) = self.idle.iter().position(|o| o.id == id) else {
                return Err(fail(format!(
                    "{what}: closed {id} ({reason:?}), not an idle object"
                )));
            };
            if !allowed(&self.idle[at]).contains(&reason) {
                return Err(fail(format!(
                    "{what}: closed {:?} for {reason:?}, which the docs do not allow",
                    self.idle[at]
                )));
            }
            self.idle.swap_remove(at);
            count(&mut self.closes, reason);
        }
        Ok(())
    }

    /// A successful checkout handed out `id`: closes on the way may only be
    /// of expired idle objects; a good idle object is reused before any is
    /// created, the one the queue mode names when it names one.
    fn checked_out(
        &mut self,
        id: u64,
        events: &[(u64, CloseReason)],
        now: Instant,
    ) -> TestCaseResult {
        let good: Vec<MObj> = self
            .idle
            .iter()
            .filter(|o| !o.too_old(now))
            .copied()
            .collect();
        let named = good
            .iter()
            .map(|o| o.returned.map(|r| (r, o.id)))
            .collect::<Option<Vec<_>>>()
            .and_then(|order| match self.mode {
                QueueMode::Lifo => order.into_iter().max(),
                QueueMode::Fifo => order.into_iter().min(),
            });
        self.idle_closes(events, "checkout", |o| {
            if o.too_old(now) {
                vec![CloseReason::Lifetime]
            } else {
                vec![]
            }
        })?;
        if let Some(at) = self.idle.iter().position(|o| o.id == id) {
            let o = self.idle.swap_remove(at);
            prop_assert!(!o.too_old(now), "handed out {:?}, past its lifetime", o);
            if let Some((_, want)) = named {
                prop_assert_eq!(id, want, "{:?} names another object", self.mode);
            }
            self.recycled += 1;
            self.held.push(o);
        } else {
            prop_assert!(
                good.is_empty(),
                "created {} while idle objects were good: {:?}",
                id,
                good
            );
            self.created += 1;
            self.held.push(MObj::new(id, now));
        }
        Ok(())
    }

    /// Held object `at` comes back: closed when the pool is closed, over
    /// its limit or the object too old; idle otherwise.
    fn give_back(
        &mut self,
        at: usize,
        events: &[(u64, CloseReason)],
        now: Instant,
    ) -> TestCaseResult {
        let mut o = self.held.remove(at);
        let mut must = Vec::new();
        if self.closed {
            must.push(CloseReason::Closed);
        } else {
            if self.live() + 1 > self.cap {
                must.push(CloseReason::Shrink);
            }
            if o.too_old(now) {
                must.push(CloseReason::Lifetime);
            }
        }
        match (events, must.is_empty()) {
            ([], true) => {
                self.returns += 1;
                o.last_used = now;
                o.returned = Some(self.returns);
                self.idle.push(o);
            }
            ([(id, reason)], false) if *id == o.id && must.contains(reason) => {
                count(&mut self.closes, *reason);
            }
            _ => {
                return Err(fail(format!(
                    "return of {o:?}: closes {events:?}, the docs ask for one of {must:?}"
                )));
            }
        }
        Ok(())
    }

    /// Held object `at` freed without coming back.
    fn free(
        &mut self,
        at: usize,
        how: Free,
        events: &[(u64, CloseReason)],
        now: Instant,
    ) -> TestCaseResult {
        match how {
            Free::Return => return self.give_back(at, events, now),
            Free::Take => {
                prop_assert!(events.is_empty(), "take closed {:?}", events);
                self.taken += 1;
            }
            Free::Discard => {
                let id = self.held[at].id;
                prop_assert_eq!(events, &[(id, CloseReason::Broken)][..]);
                self.closes.broken += 1;
            }
        }
        self.held.remove(at);
        Ok(())
    }

    /// A reaper pass (`reap_idle`, and the one `add` runs): idle objects
    /// past either limit close, and only those.
    fn reaped(&mut self, events: &[(u64, CloseReason)], now: Instant) -> TestCaseResult {
        self.idle_closes(events, "reap", |o| {
            let mut ok = Vec::new();
            if o.too_old(now) {
                ok.push(CloseReason::Lifetime);
            }
            if o.too_idle(now) {
                ok.push(CloseReason::IdleTimeout);
            }
            ok
        })?;
        let left: Vec<_> = self
            .idle
            .iter()
            .filter(|o| o.too_old(now) || o.too_idle(now))
            .collect();
        prop_assert!(left.is_empty(), "expired objects stayed idle: {:?}", left);
        Ok(())
    }
}

/// The test's side: the real pool, its manager and the held guards, in the
/// same order as the model's `held`.
struct Real {
    m: Counting,
    p: Pool<Counting>,
    guards: Vec<Pooled<Counting>>,
}

/// A checkout's outcome, checked against what the model says it must be.
fn expect_refusal<T>(model: &Model, r: Result<T, Error<crate::common::Broke>>) -> TestCaseResult {
    match r {
        Err(Error::Closed { .. }) if model.closed => Ok(()),
        Err(Error::Full { .. }) if !model.closed => Ok(()),
        Err(e) => Err(fail(format!("refused with {e}"))),
        Ok(_) => Err(fail("a full or closed pool served a checkout")),
    }
}

async fn step(model: &mut Model, real: &mut Real, op: Op) -> TestCaseResult {
    let now = Instant::now();
    let Real { m, p, guards } = real;
    match op {
        Op::TryGet => {
            let r = p.try_get().await;
            if model.can_serve() {
                let o = r.map_err(|e| fail(format!("try_get: {e}")))?;
                prop_assert!(Pooled::info(&o).age <= LIFETIME);
                model.checked_out(o.id, &m.take_closes(), now)?;
                guards.push(o);
            } else {
                expect_refusal(model, r)?;
            }
        }
        Op::CancelGet => {
            let r = tokio::time::timeout(Duration::ZERO, p.get()).await;
            if model.can_serve() {
                let o = r
                    .map_err(|_| fail("a get that can be served did not finish"))?
                    .map_err(|e| fail(format!("get: {e}")))?;
                model.checked_out(o.id, &m.take_closes(), now)?;
                drop(o);
                let at = model.held.len() - 1;
                model.give_back(at, &m.take_closes(), now)?;
            } else if model.closed {
                let r = r.map_err(|_| fail("a closed pool's get waited"))?;
                prop_assert!(matches!(r, Err(Error::Closed { .. })), "another error");
            } else {
                prop_assert!(r.is_err(), "a full pool served a get");
                model.wait_count += 1;
            }
        }
        Op::CancelCreate => {
            m.set_delay(Duration::from_secs(3600));
            let r = tokio::time::timeout(Duration::ZERO, p.try_get()).await;
            m.set_delay(Duration::ZERO);
            let events = m.take_closes();
            if !model.can_serve() {
                let r = r.map_err(|_| fail("a refused try_get did not finish"))?;
                expect_refusal(model, r)?;
            } else if let Ok(r) = r {
                let o = r.map_err(|e| fail(format!("try_get: {e}")))?;
                model.checked_out(o.id, &events, now)?;
                drop(o);
                let at = model.held.len() - 1;
                model.give_back(at, &m.take_closes(), now)?;
            } else {
                // Cancelled inside the create: only expired objects closed
                // on the way, none reused (a good one would have been).
                model.idle_closes(&events, "cancelled checkout", |o| {
                    if o.too_old(now) {
                        vec![CloseReason::Lifetime]
                    } else {
                        vec![]
                    }
                })?;
                let good: Vec<_> = model.idle.iter().filter(|o| !o.too_old(now)).collect();
                prop_assert!(good.is_empty(), "created while {:?} were good", good);
            }
        }
        Op::Wait(i, how) => {
            if model.closed || model.held.len() != model.cap || i >= model.held.len() {
                return Ok(());
            }
            let mut waiter = pin!(p.get());
            let first = tokio::time::timeout(Duration::ZERO, &mut waiter).await;
            prop_assert!(first.is_err(), "a full pool served a get");
            model.wait_count += 1;
            let guard = guards.remove(i);
            match how {
                Free::Return => drop(guard),
                Free::Take => drop(Pooled::take(guard)),
                Free::Discard => Pooled::discard(guard),
            }
            model.free(i, how, &m.take_closes(), now)?;
            let o = tokio::time::timeout(Duration::ZERO, &mut waiter)
                .await
                .map_err(|_| fail(format!("the waiter was not served after a {how:?}")))?
                .map_err(|e| fail(format!("waiter: {e}")))?;
            model.checked_out(o.id, &m.take_closes(), now)?;
            guards.push(o);
        }
        Op::GetTimeout => {
            let r = p.get_timeout(Some(WAIT)).await;
            if model.can_serve() {
                let o = r.map_err(|e| fail(format!("get: {e}")))?;
                model.checked_out(o.id, &m.take_closes(), now)?;
                guards.push(o);
            } else if model.closed {
                prop_assert!(matches!(r, Err(Error::Closed { .. })), "another error");
            } else {
                prop_assert!(
                    matches!(r, Err(Error::WaitTimeout { .. })),
                    "a bounded get on a full pool: {:?}",
                    r.err().map(|e| e.to_string())
                );
                model.wait_count += 1;
                model.wait_timeouts += 1;
                // Time moved: a reaper pass, as after any time step.
                let n = p.reap_idle();
                let events = m.take_closes();
                prop_assert_eq!(n, events.len());
                model.reaped(&events, Instant::now())?;
            }
        }
        Op::Return(i) | Op::Take(i) | Op::Discard(i) if i < guards.len() => {
            let guard = guards.remove(i);
            let how = match op {
                Op::Return(_) => Free::Return,
                Op::Take(_) => Free::Take,
                _ => Free::Discard,
            };
            match how {
                Free::Return => drop(guard),
                Free::Take => drop(Pooled::take(guard)),
                Free::Discard => Pooled::discard(guard),
            }
            model.free(i, how, &m.take_closes(), now)?;
        }
        Op::Return(_) | Op::Take(_) | Op::Discard(_) => {}
        Op::Resize(n) => {
            let r = p.resize(n);
            if model.closed {
                prop_assert!(matches!(r, Err(Error::Closed { .. })), "another error");
                return Ok(());
            }
            r.map_err(|e| fail(format!("resize: {e}")))?;
            let over = model.live().saturating_sub(n).min(model.idle.len());
            let events = m.take_closes();
            let shrink = n < model.cap;
            model.idle_closes(&events, "resize", |_| {
                if shrink {
                    vec![CloseReason::Shrink]
                } else {
                    vec![]
                }
            })?;
            prop_assert_eq!(events.len(), if shrink { over } else { 0 });
            model.cap = n;
            m.tally.cap_view.store(n, SeqCst);
        }
        Op::Add => {
            // An object made outside the pool is not the pool's to count.
            m.tally.cap_view.store(0, SeqCst);
            let obj = m.make();
            m.tally.cap_view.store(model.cap, SeqCst);
            let id = obj.id;
            let r = p.add(obj);
            if model.closed {
                prop_assert!(m.take_closes().is_empty());
                let refused = r.err().ok_or_else(|| fail("a closed pool took an add"))?;
                prop_assert!(
                    matches!(refused.error, Error::Closed { .. }),
                    "another error"
                );
                return Ok(());
            }
            model.reaped(&m.take_closes(), now)?;
            if model.live() < model.cap {
                prop_assert!(r.is_ok(), "add refused with room");
                model.added += 1;
                model.idle.push(MObj::new(id, now));
            } else {
                let refused = r.err().ok_or_else(|| fail("add over the limit taken"))?;
                prop_assert!(matches!(refused.error, Error::Full { .. }), "another error");
            }
        }
        Op::Advance(secs) => {
            tokio::time::advance(Duration::from_secs(secs)).await;
            let n = p.reap_idle();
            let events = m.take_closes();
            prop_assert_eq!(n, events.len());
            model.reaped(&events, Instant::now())?;
        }
        Op::Close => {
            p.close();
            model.closed = true;
            let events = m.take_closes();
            model.idle_closes(&events, "close", |_| vec![CloseReason::Closed])?;
            prop_assert!(model.idle.is_empty(), "close left {:?} idle", model.idle);
        }
    }
    Ok(())
}

/// What holds after every step: sizes, the limit by the manager's own
/// count, and stats equal to the counts of events.
fn check(model: &Model, real: &Real) -> TestCaseResult {
    let got = real.p.stats();
    prop_assert_eq!(
        (got.size, got.idle, got.in_use),
        (model.live(), model.idle.len(), model.held.len()),
        "sizes"
    );
    if !model.closed {
        prop_assert_eq!(got.max_size, model.cap, "max_size");
    }
    prop_assert_eq!(real.m.live(), model.live(), "the manager's own count");
    prop_assert!(
        real.m.live() <= model.cap.max(model.held.len()),
        "{} live objects over the limit {}",
        real.m.live(),
        model.cap
    );
    prop_assert!(
        !real.m.tally.overflow.load(SeqCst),
        "an object was created over the limit"
    );
    prop_assert_eq!(&got.closed, &model.closes, "closes by reason");
    prop_assert_eq!(
        (got.created, got.recycled, got.taken, got.added),
        (model.created, model.recycled, model.taken, model.added),
        "created, recycled, taken, added"
    );
    prop_assert_eq!(
        (got.wait_count, got.wait_timeouts),
        (model.wait_count, model.wait_timeouts),
        "waits"
    );
    Ok(())
}

async fn run(mode: QueueMode, ops: Vec<Op>) -> TestCaseResult {
    let m = Counting::new();
    m.tally.cap_view.store(3, SeqCst);
    let p = Pool::builder(m.clone())
        .max_size(3)
        .max_lifetime(Some(LIFETIME))
        .idle_timeout(Some(IDLE))
        .wait_timeout(None)
        .reaper_interval(None)
        .queue_mode(mode)
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let mut model = Model {
        mode,
        cap: 3,
        ..Model::default()
    };
    let mut real = Real {
        m,
        p,
        guards: Vec::new(),
    };
    for (n, op) in ops.into_iter().enumerate() {
        let what = format!("step {n} ({op:?})");
        step(&mut model, &mut real, op)
            .await
            .and_then(|()| check(&model, &real))
            .map_err(|e| fail(format!("{what}: {e}")))?;
        let ids: Vec<u64> = real.guards.iter().map(|g| g.id).collect();
        let want: Vec<u64> = model.held.iter().map(|o| o.id).collect();
        prop_assert_eq!(ids, want, "{}: held objects", what);
    }
    Ok(())
}

fn mode() -> impl Strategy<Value = QueueMode> {
    prop_oneof![Just(QueueMode::Lifo), Just(QueueMode::Fifo)]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(200),
        ..ProptestConfig::default()
    })]

    #[test]
    fn prop_pool_keeps_its_contract(mode in mode(), ops in proptest::collection::vec(op(), 1..80)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| fail(e.to_string()))?;
        rt.block_on(run(mode, ops))?;
    }
}

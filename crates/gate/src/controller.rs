//! Deciding the mode: taking and releasing holds, noticing expiries and holds set elsewhere,
//! following a drain to its end, cancelling what outlasts the drain timeout, and recording every
//! change in the audit trail.
//!
//! A drain is over when, on this replica, no admitted write is in flight, and, in the database,
//! no upload session opened before the hold is still active (it received bytes within
//! `push_grace` before the hold, or since), and `push_grace` has passed since the last such upload
//! finished (its client may still put the manifest that completes its push). Uploads idle since
//! before that are abandoned, not waited for. At the drain timeout, the writes still running are
//! cancelled (each stops before its commit point) and the transition records how many.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::events::{Event, EventKind, ModeEvent};
use super::holds::{Hold, HoldName, HoldSource, MAX_REASON_LEN};
use super::mode::{Mode, ModeSnapshot, Transition, reasons};
use super::store::StoreError;
use super::{ControlWrite, DrainCounts, Inner, WriteGate, duration_millis};
use wharf_core::time::{Millis, now_millis};

/// Where a drain's pushes stand.
#[derive(Debug, Clone, Copy, Default)]
struct PushTally {
    /// Completed during the drain (a manifest put by tag after the hold).
    completed: u64,
    /// Paused past the grace without completing.
    cut_off: u64,
    /// Still going: the drain waits for them.
    going: u64,
    /// When the first of the going pushes would pause past the grace, if none writes again.
    next_pause: Option<Millis>,
    /// Upload sessions open (at the end of a drain, they can no longer continue).
    open_uploads: u64,
}

/// A request to take (or renew) a hold.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    /// The hold's name.
    pub name: HoldName,
    /// Why, for everyone who sees the registry read-only.
    pub reason: String,
    /// How long until it ends by itself, if it should.
    pub ttl: Option<Duration>,
    /// Who asks.
    pub actor: String,
    /// Where from.
    pub source: HoldSource,
}

/// Why a hold cannot be taken or released.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    /// The reason is empty, too long, or has control characters.
    #[error("a hold needs a reason of 1 to {MAX_REASON_LEN} characters, on one line")]
    Reason,
    /// The TTL is zero.
    #[error("a hold's ttl must be longer than 0s")]
    Ttl,
    /// The hold belongs to the configuration file.
    #[error(
        "the hold `config` follows the configuration file's read_only section; change the file instead"
    )]
    ManagedByConfig,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl WriteGate {
    /// Takes (or renews) a hold. The registry is draining when this returns, if it was
    /// read-write. Returns the hold and whether it is new.
    pub async fn set_hold(&self, request: HoldRequest) -> Result<(Hold, bool), HoldError> {
        let reason = request.reason.trim();
        if !super::holds::is_valid_reason(reason) {
            return Err(HoldError::Reason);
        }
        if request.ttl.is_some_and(|ttl| ttl.is_zero()) {
            return Err(HoldError::Ttl);
        }
        if request.name.is_config() != (request.source == HoldSource::Config) {
            return Err(HoldError::ManagedByConfig);
        }
        let now = now_millis();
        let hold = Hold {
            name: request.name,
            reason: reason.to_owned(),
            set_by: request.actor.clone(),
            source: request.source,
            created_at: now,
            updated_at: now,
            expires_at: request
                .ttl
                .map(|ttl| now.saturating_add(duration_millis(ttl))),
        };
        let event = self.stamp(Event::hold(
            EventKind::HoldSet,
            Some(&hold),
            &request.actor,
            request.source,
        ));
        let (stored, created) = self
            .shared
            .store
            .put_hold(&ControlWrite(()), &hold, &event)
            .await?;
        tracing::warn!(
            hold = %stored.name, reason = %stored.reason, by = %request.actor, source = request.source.as_str(),
            expires = ?stored.expires_at.map(wharf_core::time::format_time),
            "read-only hold {}", if created { "taken" } else { "renewed" }
        );
        self.evaluate().await?;
        Ok((stored, created))
    }

    /// Releases a hold; the registry is read-write when this returns if it was the last.
    /// Returns the released hold, or `None` if there was none of that name.
    pub async fn release_hold(
        &self,
        name: &HoldName,
        actor: &str,
        source: HoldSource,
    ) -> Result<Option<Hold>, HoldError> {
        if name.is_config() != (source == HoldSource::Config) {
            return Err(HoldError::ManagedByConfig);
        }
        let event = self.stamp(Event::hold(EventKind::HoldReleased, None, actor, source));
        let released = self
            .shared
            .store
            .delete_hold(&ControlWrite(()), name, &event)
            .await?;
        if let Some(hold) = &released {
            tracing::warn!(hold = %hold.name, by = %actor, source = source.as_str(), "read-only hold released");
        }
        self.evaluate().await?;
        Ok(released)
    }

    /// The audit trail, newest first.
    pub async fn events(&self, limit: u32) -> Result<Vec<ModeEvent>, StoreError> {
        self.shared.store.mode_events(limit).await
    }

    /// Follows holds and drains until `stop` is cancelled: re-evaluates the mode when a hold
    /// changes, a draining write ends, a deadline passes, and every few seconds (holds set by
    /// another process).
    pub async fn run(&self, stop: CancellationToken) {
        let snapshot = self.snapshot();
        if snapshot.mode == Mode::ReadOnly {
            let reason = format!("started read-only: {}", snapshot.reasons());
            tracing::warn!(holds = %snapshot.reasons(), "the registry starts read-only");
            self.record_event(Event::state(Mode::ReadOnly, Mode::ReadOnly, &reason, None))
                .await;
        }
        // Holds changed through another replica wake the controller at once; the periodic look
        // below remains the guarantee when notifications are lost.
        let wake = || self.shared.wake.notify_one();
        let follow =
            self.shared
                .store
                .follow_hold_changes(&self.shared.replica, &wake, stop.clone());
        let control = async {
            loop {
                if let Err(error) = self.evaluate().await {
                    tracing::error!(%error, "cannot evaluate the read-only state; keeping the current one");
                }
                let wait = self.next_wait();
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = self.shared.wake.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        };
        tokio::join!(follow, control);
    }

    /// How long until something may change by itself: a hold expiring, a drain deadline.
    fn next_wait(&self) -> Duration {
        let now = now_millis();
        let inner = self.lock();
        let mut next = now + duration_millis(inner.cluster.reread_holds);
        for hold in &inner.snapshot.holds {
            if let Some(expires) = hold.expires_at {
                next = next.min(expires);
            }
        }
        if let Some(started) = inner.drain_started {
            next = next.min(started + duration_millis(inner.settings.timeout));
            // A push pausing past its grace is a time, not an event; a write ending wakes the
            // controller by itself, and so does every write on this replica. Writes through
            // other replicas are seen at the next look, soon.
            next = next
                .min(inner.next_pause.unwrap_or(now + 100))
                .min(now + 100);
        }
        Duration::from_millis(u64::try_from(next - now).unwrap_or(0).max(5))
    }

    /// Brings the mode up to date with the holds and the drain. One at a time.
    pub(super) async fn evaluate(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self.shared.evaluating.lock().await;
        let store = &self.shared.store;
        let now = now_millis();
        let expiry = self.stamp(Event::hold(
            EventKind::HoldExpired,
            None,
            "wharf",
            HoldSource::System,
        ));
        for hold in store
            .delete_expired_holds(&ControlWrite(()), now, &expiry)
            .await?
        {
            tracing::warn!(hold = %hold.name, reason = %hold.reason, "read-only hold expired");
        }
        // The version first: the holds read next are at least that change.
        let version = store.holds_version().await?;
        let holds = super::store::active_holds(store.as_ref(), now).await?;
        self.apply_holds(holds).await?;
        let changed = {
            let mut inner = self.lock();
            std::mem::replace(&mut inner.holds_applied, version) != version
        };
        if changed {
            self.shared.heartbeat.notify_one();
        }
        Ok(())
    }

    /// Brings the mode up to date with `holds`, the active holds.
    async fn apply_holds(&self, holds: Vec<Hold>) -> Result<(), StoreError> {
        let mode = self.lock().snapshot.mode;
        match (mode, holds.is_empty()) {
            (Mode::ReadWrite, true) => Ok(()),
            (Mode::ReadWrite, false) => {
                // Writes admitted until this very switch were admitted before the hold: the
                // switch, not the hold's creation, is the cutoff.
                let reason = format!("held read-only: {}", reasons(&holds));
                self.switch(Mode::Draining, holds, Some(now_millis()), &reason)
                    .await;
                self.follow_drain().await
            }
            (Mode::Draining | Mode::ReadOnly, true) => {
                self.switch(Mode::ReadWrite, holds, None, "the last hold was released")
                    .await;
                Ok(())
            }
            (Mode::Draining, false) => {
                self.update_holds(holds);
                self.follow_drain().await
            }
            (Mode::ReadOnly, false) => {
                self.update_holds(holds);
                Ok(())
            }
        }
    }

    /// While draining: ends the drain the moment every push that had begun before the hold is
    /// complete or has paused past the grace, or at the timeout.
    async fn follow_drain(&self) -> Result<(), StoreError> {
        let (started, settings, timed_out) = {
            let inner = self.lock();
            match inner.drain_started {
                Some(started) => (started, inner.settings, inner.timed_out),
                None => return Ok(()),
            }
        };
        // Timed out already: read-only once the cancelled writes have stopped.
        if let Some(counts) = timed_out {
            self.end_timed_out_drain(started, counts).await;
            return Ok(());
        }
        let grace = duration_millis(settings.push_grace);
        // The deadline comes first: neither a write that never ends nor a database that does
        // not answer may keep the drain going past it.
        if now_millis() >= started + duration_millis(settings.timeout) {
            let tally = match self.tally_pushes(grace).await {
                Ok(tally) => tally,
                Err(error) => {
                    tracing::error!(%error, "cannot count the pushes the drain cuts off");
                    PushTally::default()
                }
            };
            let counts = {
                let mut inner = self.lock();
                let counts = DrainCounts {
                    pushes_completed: tally.completed,
                    pushes_cut_off: tally.cut_off + tally.going,
                    cancelled_writes: inner.in_flight,
                    abandoned_uploads: tally.open_uploads,
                };
                inner.generation += 1;
                inner.epoch.cancel();
                inner.epoch = CancellationToken::new();
                inner.timed_out = Some(counts);
                counts
            };
            self.shared
                .metrics
                .writes_cancelled(counts.cancelled_writes);
            tracing::warn!(
                pushes_completed = counts.pushes_completed,
                pushes_cut_off = counts.pushes_cut_off,
                cancelled_writes = counts.cancelled_writes,
                abandoned_uploads = counts.abandoned_uploads,
                "drain timeout: cancelling the writes still under way"
            );
            self.end_timed_out_drain(started, counts).await;
            return Ok(());
        }
        let tally = self.tally_pushes(grace).await?;
        // The other replicas learn of this replica's pushes from its row, at every look.
        if let Err(error) = self.publish_state().await {
            tracing::warn!(%error, "cannot publish this replica's state while draining");
        }
        if tally.going == 0 {
            let counts = DrainCounts {
                pushes_completed: tally.completed,
                pushes_cut_off: tally.cut_off,
                cancelled_writes: 0,
                abandoned_uploads: tally.open_uploads,
            };
            self.enter_read_only_if_idle(started, counts, "drain complete")
                .await;
        } else {
            self.lock().next_pause = tally.next_pause;
        }
        Ok(())
    }

    /// After a drain timeout, read-only once the cancelled writes have stopped. The uploads left
    /// open are counted then: nothing has been admitted since the timeout, so the count is
    /// final.
    async fn end_timed_out_drain(&self, started: Millis, mut counts: DrainCounts) {
        // Counted only once nothing runs (a write ending wakes the controller): a write still
        // stopping could commit an upload session after the count.
        if self.lock().in_flight > 0 {
            return;
        }
        match self.shared.store.open_upload_count().await {
            Ok(open) => counts.abandoned_uploads = open,
            Err(error) => tracing::error!(%error, "cannot count the uploads the drain cut off"),
        }
        self.enter_read_only_if_idle(started, counts, "drain timeout")
            .await;
    }

    /// Where the pushes of a drain stand now, on every replica. The drain's cutoff is the
    /// latest switch to draining of every live replica, this one's included, and while one has
    /// not switched yet the drain waits for it (it may still admit new pushes).
    async fn tally_pushes(&self, grace: Millis) -> Result<PushTally, StoreError> {
        let others = self.live_others().await?;
        let cutoff = {
            let mut inner = self.lock();
            inner.others = others;
            inner.cluster_cutoff()
        };
        let Some(cutoff) = cutoff else {
            return Ok(PushTally {
                going: 1,
                ..PushTally::default()
            });
        };
        let pushes = self
            .shared
            .store
            .drain_pushes(cutoff, cutoff - grace)
            .await?;
        let open_uploads = self.shared.store.open_upload_count().await?;
        let now = now_millis();
        let inner = self.lock();
        let mut tally = PushTally {
            open_uploads,
            ..PushTally::default()
        };
        for push in &pushes {
            let running = inner.push_running(&push.repository, &push.client)
                || inner.push_running_elsewhere(&push.repository, &push.client);
            if push.is_complete() && !running {
                // Pushes that were complete before the hold were not waited for.
                if push.tagged_at.is_some_and(|tagged| tagged >= cutoff) {
                    tally.completed += 1;
                }
            } else if running || now - push.last_write <= grace {
                tally.going += 1;
                if !running {
                    let pause = push.last_write + grace + 1;
                    tally.next_pause = Some(tally.next_pause.map_or(pause, |p| p.min(pause)));
                }
            } else {
                tally.cut_off += 1;
            }
        }
        // A push running on another replica that the database knows nothing of yet (a layer
        // streamed in one request) keeps the drain going too.
        let unrecorded = inner
            .others
            .iter()
            .flat_map(|o| &o.pushes_running)
            .filter(|p| {
                !pushes
                    .iter()
                    .any(|q| q.repository == p.repository && q.client == p.client)
            })
            .count();
        tally.going += u64::try_from(unrecorded).unwrap_or(u64::MAX);
        Ok(tally)
    }

    /// Switches to read-only, if no write holds a permit: the check and the switch happen under
    /// the gate's lock, so nothing can be admitted in between, and a replica never reports
    /// read-only while something is being written.
    async fn enter_read_only_if_idle(&self, started: Millis, counts: DrainCounts, why: &str) {
        let switched = {
            let mut inner = self.lock();
            (inner.in_flight == 0).then(|| {
                let drain_ms = now_millis() - started;
                self.enter_read_only(&mut inner, drain_ms, counts, why)
            })
        };
        if let Some((snapshot, transition)) = switched {
            self.announce(Mode::Draining, snapshot, &transition).await;
        }
    }

    fn enter_read_only(
        &self,
        inner: &mut Inner,
        drain_ms: Millis,
        counts: DrainCounts,
        why: &str,
    ) -> (ModeSnapshot, Transition) {
        let now = now_millis();
        let drain_ms = u64::try_from(drain_ms).unwrap_or(0);
        let transition = Transition {
            from: Mode::Draining,
            to: Mode::ReadOnly,
            at: now,
            drain_ms: Some(drain_ms),
            pushes_completed: counts.pushes_completed,
            pushes_cut_off: counts.pushes_cut_off,
            cancelled_writes: counts.cancelled_writes,
            abandoned_uploads: counts.abandoned_uploads,
            reason: why.to_owned(),
        };
        inner.generation += 1;
        inner.snapshot.mode = Mode::ReadOnly;
        inner.snapshot.since = now;
        inner.snapshot.last_transition = Some(transition.clone());
        inner.drain_started = None;
        inner.timed_out = None;
        inner.next_pause = None;
        self.shared
            .metrics
            .drain_finished(Duration::from_millis(drain_ms));
        (inner.snapshot.clone(), transition)
    }

    /// Switches to `to` (read-write or draining) with the given holds.
    async fn switch(&self, to: Mode, holds: Vec<Hold>, hold_at: Option<Millis>, why: &str) {
        let (from, snapshot, transition) = {
            let mut inner = self.lock();
            let now = now_millis();
            let from = inner.snapshot.mode;
            let transition = Transition {
                from,
                to,
                at: now,
                drain_ms: None,
                pushes_completed: 0,
                pushes_cut_off: 0,
                cancelled_writes: 0,
                abandoned_uploads: 0,
                reason: why.to_owned(),
            };
            inner.generation += 1;
            inner.timed_out = None;
            inner.snapshot = ModeSnapshot {
                mode: to,
                since: now,
                hold_at,
                holds,
                last_transition: Some(transition.clone()),
            };
            inner.drain_started = (to == Mode::Draining).then_some(now);
            inner.others.clear();
            (from, inner.snapshot.clone(), transition)
        };
        self.announce(from, snapshot, &transition).await;
    }

    /// Publishes a new mode, logs it and records it in the audit trail.
    async fn announce(&self, from: Mode, snapshot: ModeSnapshot, transition: &Transition) {
        self.shared.metrics.set_mode(&snapshot);
        self.shared.metrics.transitioned();
        tracing::warn!(
            from = from.as_str(), to = snapshot.mode.as_str(), reason = %transition.reason,
            drain_ms = ?transition.drain_ms, pushes_completed = transition.pushes_completed,
            pushes_cut_off = transition.pushes_cut_off, cancelled_writes = transition.cancelled_writes,
            abandoned_uploads = transition.abandoned_uploads,
            "the registry is now {}", snapshot.mode.as_str()
        );
        let to = snapshot.mode;
        self.shared.published.send_replace(snapshot);
        self.shared.heartbeat.notify_one();
        self.record_event(Event::state(from, to, &transition.reason, Some(transition)))
            .await;
    }

    fn update_holds(&self, holds: Vec<Hold>) {
        let snapshot = {
            let mut inner = self.lock();
            if inner.snapshot.holds == holds {
                return;
            }
            inner.snapshot.holds = holds;
            inner.snapshot.clone()
        };
        self.shared.metrics.set_mode(&snapshot);
        self.shared.published.send_replace(snapshot);
    }

    /// The audit event, signed with this replica's name.
    fn stamp(&self, event: Event) -> ModeEvent {
        ModeEvent {
            replica: self.shared.replica.clone(),
            ..event.0
        }
    }

    /// Records an audit event of a change of mode; a failure is logged, never fatal (the change
    /// itself happened, and is logged).
    pub(super) async fn record_event(&self, event: Event) {
        let event = self.stamp(event);
        if let Err(error) = self
            .shared
            .store
            .record_mode_event(&ControlWrite(()), &event)
            .await
        {
            tracing::error!(%error, kind = event.kind.as_str(), "cannot record an audit event");
        }
    }
}

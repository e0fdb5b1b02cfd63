//! Marks the calling thread as a batch (throughput) thread for a while, so that its wake-ups do
//! not preempt the thread that bounds an upload's speed.
//!
//! An upload's bytes are hashed on one blocking thread and written to the staged file on
//! another. Writing to the page cache is several times faster than SHA-256, so the writer sleeps
//! between blocks and wakes for each new one; a normal thread that wakes is run at once,
//! preempting whatever has the CPU — on a small machine, often the hasher. Linux does not let a
//! waking `SCHED_BATCH` thread preempt a running normal one (it runs on an idle CPU, or at the
//! next tick), and otherwise schedules it as fairly as before. On two cores this made chunked
//! pushes 2-6% faster (`docs/benchmarks.md`, 18 interleaved rounds); nothing else changes.

/// The calling thread is a batch thread while this lives; dropping it restores the normal policy.
/// A thread that was not under the normal policy (an operator ran Wharf under `chrt`) is left
/// as it was. Failing to change the policy only costs the speed-up, so errors are ignored.
pub(super) struct BatchPolicy {
    entered: bool,
}

impl BatchPolicy {
    pub(super) fn enter() -> Self {
        BatchPolicy {
            entered: sys::policy() == Some(Policy::Other) && sys::set(Policy::Batch),
        }
    }
}

impl Drop for BatchPolicy {
    fn drop(&mut self) {
        if self.entered {
            sys::set(Policy::Other);
        }
    }
}

/// Whether the calling thread is a batch thread now.
#[cfg(all(test, target_os = "linux"))]
pub(super) fn current_is_batch() -> bool {
    sys::policy() == Some(Policy::Batch)
}

/// The scheduling policies this module moves a thread between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Other,
    Batch,
}

#[cfg(target_os = "linux")]
mod sys {
    use super::Policy;

    /// The calling thread's policy, if it is one of these.
    #[allow(unsafe_code)]
    pub(super) fn policy() -> Option<Policy> {
        // SAFETY: sched_getscheduler reads the calling thread's (pid 0) policy; no memory is
        // passed.
        match unsafe { libc::sched_getscheduler(0) } {
            libc::SCHED_OTHER => Some(Policy::Other),
            libc::SCHED_BATCH => Some(Policy::Batch),
            _ => None,
        }
    }

    /// Sets the calling thread's policy; whether it worked. Needs no privilege: any thread may
    /// move between these two (their priority is 0; the nice value is kept).
    #[allow(unsafe_code)]
    pub(super) fn set(policy: Policy) -> bool {
        let policy = match policy {
            Policy::Other => libc::SCHED_OTHER,
            Policy::Batch => libc::SCHED_BATCH,
        };
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is the calling
        // thread (Linux schedules threads, not processes).
        unsafe { libc::sched_setscheduler(0, policy, &param) == 0 }
    }
}

/// Elsewhere there is no such policy to use: a no-op.
#[cfg(not(target_os = "linux"))]
mod sys {
    use super::Policy;

    pub(super) fn policy() -> Option<Policy> {
        None
    }

    pub(super) fn set(_: Policy) -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn the_thread_is_batch_while_the_guard_lives_and_normal_again_after() {
        std::thread::spawn(|| {
            assert_eq!(sys::policy(), Some(Policy::Other));
            let guard = BatchPolicy::enter();
            assert!(guard.entered);
            assert_eq!(sys::policy(), Some(Policy::Batch));
            drop(guard);
            assert_eq!(sys::policy(), Some(Policy::Other));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_already_batch_is_left_batch() {
        std::thread::spawn(|| {
            assert!(sys::set(Policy::Batch));
            let guard = BatchPolicy::enter();
            assert!(!guard.entered);
            drop(guard);
            assert_eq!(sys::policy(), Some(Policy::Batch));
        })
        .join()
        .unwrap();
    }
}

//! Failed-login rate limiting, per account and per client address, in memory (a login writes
//! nothing, so it works while read-only). After too many failures in a window, further attempts
//! are refused — without checking the password — until the window ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many keys each table tracks at most: a flood of made-up names cannot exhaust memory.
const MAX_TRACKED: usize = 100_000;

/// The longest account name tracked as it is (longer ones are cut: they cannot exist anyway).
const MAX_ACCOUNT_KEY: usize = 128;

/// Limits on failed logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures allowed per account in a window.
    pub per_account: u32,
    /// Failures allowed per client address in a window.
    pub per_address: u32,
    /// The window.
    pub window: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

#[derive(Debug, Default)]
struct Tables {
    accounts: HashMap<String, Window>,
    addresses: HashMap<IpAddr, Window>,
}

/// Counts failed logins.
#[derive(Debug)]
pub struct LoginLimiter {
    limits: LoginLimits,
    tables: Mutex<Tables>,
}

fn account_key(account: &str) -> String {
    account.chars().take(MAX_ACCOUNT_KEY).collect()
}

impl LoginLimiter {
    /// A limiter with these limits.
    pub fn new(limits: LoginLimits) -> Self {
        LoginLimiter {
            limits,
            tables: Mutex::default(),
        }
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a login for `account` from `address` may be tried now; if not, how long until it
    /// may.
    pub fn check(&self, account: &str, address: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let tables = self.tables();
        let blocked = |window: Option<&Window>, limit: u32| {
            window
                .filter(|w| w.failures >= limit)
                .and_then(|w| (w.started + self.limits.window).checked_duration_since(now))
                .filter(|left| !left.is_zero())
        };
        let waits = [
            blocked(
                tables.accounts.get(&account_key(account)),
                self.limits.per_account,
            ),
            blocked(tables.addresses.get(&address), self.limits.per_address),
        ];
        match waits.into_iter().flatten().max() {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Records a failed login.
    pub fn failed(&self, account: &str, address: IpAddr) {
        let now = Instant::now();
        let window = self.limits.window;
        let mut tables = self.tables();
        count(&mut tables.accounts, account_key(account), now, window);
        count(&mut tables.addresses, address, now, window);
    }
}

fn count<K: std::hash::Hash + Eq>(
    table: &mut HashMap<K, Window>,
    key: K,
    now: Instant,
    window: Duration,
) {
    if table.len() >= MAX_TRACKED && !table.contains_key(&key) {
        table.retain(|_, w| now.duration_since(w.started) < window);
        if table.len() >= MAX_TRACKED {
            return;
        }
    }
    let entry = table.entry(key).or_insert(Window {
        started: now,
        failures: 0,
    });
    if now.duration_since(entry.started) >= window {
        *entry = Window {
            started: now,
            failures: 0,
        };
    }
    entry.failures = entry.failures.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_many_failures_block_the_account_and_the_address() {
        let limiter = LoginLimiter::new(LoginLimits {
            per_account: 3,
            per_address: 5,
            window: Duration::from_secs(60),
        });
        let (here, there) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        for _ in 0..3 {
            assert!(limiter.check("alice", here).is_ok());
            limiter.failed("alice", here);
        }
        let wait = limiter.check("alice", there).unwrap_err();
        assert!(
            wait <= Duration::from_secs(60) && wait > Duration::from_secs(50),
            "{wait:?}"
        );
        assert!(limiter.check("bob", here).is_ok(), "the address has 3 of 5");
        limiter.failed("bob", here);
        limiter.failed("carol", here);
        assert!(
            limiter.check("dave", here).is_err(),
            "the address is blocked now"
        );
        assert!(limiter.check("dave", there).is_ok());
    }

    #[test]
    fn a_window_ends() {
        let limiter = LoginLimiter::new(LoginLimits {
            per_account: 1,
            per_address: 100,
            window: Duration::from_millis(1),
        });
        let here = "10.0.0.1".parse().unwrap();
        limiter.failed("alice", here);
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.check("alice", here).is_ok());
    }
}

//! Failed-login rate limiting, in memory (a login writes nothing, so it works while read-only).
//!
//! Failures are counted twice, each count over a window that starts at its first failure:
//!
//! - **per account and client address**: past `per_account_and_address` failures, the account
//!   is refused from that address until the window ends — without checking the password, so the
//!   right one is refused too (otherwise guessing would go on, and the lucky guess get in). The
//!   account from other addresses, and other accounts from this one, are not affected: a
//!   mistyped password behind a shared NAT locks out only its own account there, and nobody can
//!   lock an account out of every address by failing its logins from one.
//! - **per client address**, whatever accounts the failures name: past `per_address`, every
//!   login from the address is refused until the window ends. Refused attempts are not counted
//!   (a failure can only be recorded for an [`Attempt`] the limiter admitted), so one account
//!   adds at most `per_account_and_address` failures to its address: only failures for several
//!   accounts reach this ceiling, which is what one address guessing across accounts looks like.
//!
//! A successful login clears its account's count at its address (the password was known there);
//! the address's count stays, so knowing one account's password does not reset a guesser's
//! ceiling.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many keys each table tracks at most: a flood of made-up names cannot exhaust memory.
/// Past it, new accounts at an address go uncounted until windows end, but their address is
/// still counted, so its ceiling still holds.
const MAX_TRACKED: usize = 100_000;

/// The longest account name tracked as it is (longer ones are cut: they cannot exist anyway).
const MAX_ACCOUNT_KEY: usize = 128;

/// Limits on failed logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failures allowed for one account from one client address in a window.
    pub per_account_and_address: u32,
    /// Failures allowed from one client address, for any accounts, in a window.
    pub per_address: u32,
    /// The window.
    pub window: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// An account's name (cut to [`MAX_ACCOUNT_KEY`]) at a client address.
type AccountAtAddress = (String, IpAddr);

#[derive(Debug, Default)]
struct Tables {
    accounts: HashMap<AccountAtAddress, Window>,
    addresses: HashMap<IpAddr, Window>,
}

/// Counts failed logins.
#[derive(Debug)]
pub struct LoginLimiter {
    limits: LoginLimits,
    tables: Mutex<Tables>,
}

/// A login the limiter let through: its outcome is recorded with [`Attempt::failed`] or
/// [`Attempt::succeeded`] (an attempt dropped without either, such as one the database could not
/// answer, counts for nothing).
#[derive(Debug)]
#[must_use = "record whether the login failed"]
pub struct Attempt<'a> {
    limiter: &'a LoginLimiter,
    key: AccountAtAddress,
    /// When it was let through: a failure counts from then, not from when its password check
    /// ended (the window it falls in is the one it was admitted in).
    at: Instant,
}

impl Attempt<'_> {
    /// The password (or token) was wrong, or the account does not exist.
    pub fn failed(self) {
        let window = self.limiter.limits.window;
        let mut tables = self.limiter.tables();
        let address = self.key.1;
        count(&mut tables.accounts, self.key, self.at, window);
        count(&mut tables.addresses, address, self.at, window);
    }

    /// The login succeeded: the account's failures at this address are forgotten.
    pub fn succeeded(self) {
        self.limiter.tables().accounts.remove(&self.key);
    }
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
    pub fn check(&self, account: &str, address: IpAddr) -> Result<Attempt<'_>, Duration> {
        self.check_at(account, address, Instant::now())
    }

    /// [`LoginLimiter::check`] at the instant `now` (tests choose it).
    fn check_at(
        &self,
        account: &str,
        address: IpAddr,
        now: Instant,
    ) -> Result<Attempt<'_>, Duration> {
        let key = (account.chars().take(MAX_ACCOUNT_KEY).collect(), address);
        let tables = self.tables();
        let blocked = |window: Option<&Window>, limit: u32| {
            window
                .filter(|w| w.failures >= limit)
                .and_then(|w| (w.started + self.limits.window).checked_duration_since(now))
                .filter(|left| !left.is_zero())
        };
        let waits = [
            blocked(
                tables.accounts.get(&key),
                self.limits.per_account_and_address,
            ),
            blocked(tables.addresses.get(&address), self.limits.per_address),
        ];
        match waits.into_iter().flatten().max() {
            Some(wait) => Err(wait),
            None => Ok(Attempt {
                limiter: self,
                key,
                at: now,
            }),
        }
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

    const MINUTE: Duration = Duration::from_secs(60);

    fn limiter(per_account_and_address: u32, per_address: u32) -> LoginLimiter {
        LoginLimiter::new(LoginLimits {
            per_account_and_address,
            per_address,
            window: MINUTE,
        })
    }

    fn address(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// Fails `account`'s login from `address` at `now`, `times` times (each admitted first).
    fn fail(limiter: &LoginLimiter, account: &str, address: IpAddr, now: Instant, times: u32) {
        for _ in 0..times {
            limiter.check_at(account, address, now).unwrap().failed();
        }
    }

    #[test]
    fn an_account_is_locked_out_of_one_address_only() {
        let limiter = limiter(3, 100);
        let (here, there) = (address("10.0.0.1"), address("10.0.0.2"));
        let start = Instant::now();
        fail(&limiter, "alice", here, start, 3);
        let later = start + Duration::from_secs(15);
        let wait = limiter.check_at("alice", here, later).unwrap_err();
        assert_eq!(wait, Duration::from_secs(45), "until the window ends");
        assert!(
            limiter.check_at("bob", here, later).is_ok(),
            "another account"
        );
        assert!(
            limiter.check_at("alice", there, later).is_ok(),
            "another address"
        );
        assert!(
            limiter.check_at("alice", here, start + MINUTE).is_ok(),
            "the window ended"
        );
    }

    #[test]
    fn the_address_ceiling_stops_guessing_across_accounts() {
        let limiter = limiter(3, 7);
        let (here, there) = (address("10.0.0.1"), address("10.0.0.2"));
        let start = Instant::now();
        fail(&limiter, "alice", here, start, 3);
        // Refused attempts are not counted: alice's lock adds nothing more to the address.
        for _ in 0..10 {
            assert!(limiter.check_at("alice", here, start).is_err());
        }
        fail(&limiter, "bob", here, start, 3);
        assert!(limiter.check_at("carol", here, start).is_ok(), "6 of 7");
        fail(&limiter, "carol", here, start, 1);
        let wait = limiter.check_at("dave", here, start).unwrap_err();
        assert_eq!(wait, MINUTE);
        assert!(limiter.check_at("dave", there, start).is_ok());
        assert!(limiter.check_at("dave", here, start + MINUTE).is_ok());
    }

    #[test]
    fn a_success_forgets_the_accounts_failures_at_its_address_only() {
        let limiter = limiter(3, 5);
        let here = address("10.0.0.1");
        let now = Instant::now();
        fail(&limiter, "alice", here, now, 2);
        limiter.check_at("alice", here, now).unwrap().succeeded();
        fail(&limiter, "alice", here, now, 2);
        assert!(limiter.check_at("alice", here, now).is_ok(), "2 of 3 again");
        // The address has 4 of 5 failures: a success does not take them back.
        fail(&limiter, "bob", here, now, 1);
        assert!(limiter.check_at("carol", here, now).is_err());
    }

    #[test]
    fn an_attempt_dropped_undecided_counts_nothing() {
        let limiter = limiter(1, 1);
        let here = address("10.0.0.1");
        let now = Instant::now();
        drop(limiter.check_at("alice", here, now).unwrap());
        assert!(limiter.check_at("alice", here, now).is_ok());
    }
}

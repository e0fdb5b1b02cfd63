//! Sessions: who a browser is signed in as, and the token its forms must carry (CSRF).
//!
//! A session id is 32 random bytes in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over
//! HTTPS); the server keeps the sessions, so signing out ends one for good. Anonymous visitors
//! get a session too, only to carry the token the sign-in form needs. Sessions live in this
//! process's memory: a restart signs everyone out.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use wharf_auth::Principal;
use wharf_auth::secrets::{constant_time_eq, random_bytes};

/// The cookie's name.
pub const COOKIE: &str = "wharf_session";

/// How long a session lasts.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The most anonymous sessions kept: past it, the oldest anonymous one is dropped. Anyone can
/// make one (a request without a cookie), so they must never crowd out a signed-in session nor
/// stop a new visitor from getting one: a flood of cookieless requests only ends other
/// anonymous sessions (their sign-in form asks to be reloaded).
const MAX_ANONYMOUS: usize = 50_000;

/// A browser's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Its id (the cookie's value).
    pub id: String,
    /// Who signed in (`Anonymous` until someone does).
    pub principal: Principal,
    /// The token every form of this session carries.
    pub csrf: String,
    expires: Instant,
}

/// The sessions of this process.
#[derive(Debug)]
pub struct Sessions {
    inner: Mutex<Inner>,
    max_anonymous: usize,
}

#[derive(Debug, Default)]
struct Inner {
    sessions: HashMap<String, Session>,
    /// The anonymous sessions' ids, oldest first (some may have ended since: a sign-in ends
    /// its anonymous session).
    anonymous: VecDeque<String>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::with_anonymous_limit(MAX_ANONYMOUS)
    }
}

fn random_hex() -> Option<String> {
    let bytes = random_bytes(32).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Sessions {
    /// Sessions keeping at most `max_anonymous` anonymous ones.
    fn with_anonymous_limit(max_anonymous: usize) -> Self {
        Sessions {
            inner: Mutex::default(),
            max_anonymous,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live session the request's cookie names.
    pub fn of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers)?;
        let mut inner = self.lock();
        match inner.sessions.get(&id) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                inner.sessions.remove(&id);
                None
            }
            None => None,
        }
    }

    /// A new session for `principal`; `None` only without randomness.
    pub fn create(&self, principal: Principal) -> Option<Session> {
        let session = Session {
            id: random_hex()?,
            csrf: random_hex()?,
            principal,
            expires: Instant::now() + LIFETIME,
        };
        let mut inner = self.lock();
        let now = Instant::now();
        if session.principal == Principal::Anonymous {
            while inner.anonymous.len() >= self.max_anonymous {
                if let Some(oldest) = inner.anonymous.pop_front()
                    && inner
                        .sessions
                        .get(&oldest)
                        .is_some_and(|s| s.principal == Principal::Anonymous)
                {
                    inner.sessions.remove(&oldest);
                }
            }
            inner.anonymous.push_back(session.id.clone());
        } else {
            // Signed-in sessions are as many as the login limits let through; the expired ones
            // go whenever one is made.
            inner.sessions.retain(|_, s| s.expires > now);
        }
        inner.sessions.insert(session.id.clone(), session.clone());
        Some(session)
    }

    /// Ends a session (signing out, or signing in, which starts a fresh one).
    pub fn end(&self, id: &str) {
        self.lock().sessions.remove(id);
    }
}

impl Session {
    /// Whether `token`, from a form, is this session's.
    pub fn csrf_matches(&self, token: &str) -> bool {
        constant_time_eq(&self.csrf, token)
    }

    /// The `Set-Cookie` value that gives the browser this session.
    pub fn cookie(&self, secure: bool) -> String {
        let secure = if secure { "; Secure" } else { "" };
        format!(
            "{COOKIE}={}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.id,
            LIFETIME.as_secs()
        )
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn cleared_cookie(secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_session_ends_for_good() {
        let sessions = Sessions::default();
        let session = sessions.create(Principal::User("al".into())).unwrap();
        let mut headers = HeaderMap::new();
        let value = format!("other=1; {COOKIE}={}", session.id);
        headers.insert(header::COOKIE, HeaderValue::from_str(&value).unwrap());
        assert_eq!(sessions.of(&headers).unwrap().id, session.id);
        assert!(session.csrf_matches(&session.csrf));
        assert!(!session.csrf_matches(""));
        sessions.end(&session.id);
        assert!(sessions.of(&headers).is_none());
    }

    fn headers_of(session: &Session) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let value = format!("{COOKIE}={}", session.id);
        headers.insert(header::COOKIE, HeaderValue::from_str(&value).unwrap());
        headers
    }

    #[test]
    fn a_flood_of_anonymous_sessions_ends_only_the_oldest_anonymous_ones() {
        let sessions = Sessions::with_anonymous_limit(3);
        let signed_in = sessions.create(Principal::User("al".into())).unwrap();
        let first = sessions.create(Principal::Anonymous).unwrap();
        let flood: Vec<Session> = (0..10)
            .map(|_| {
                sessions
                    .create(Principal::Anonymous)
                    .expect("always a session")
            })
            .collect();
        assert!(
            sessions.of(&headers_of(&first)).is_none(),
            "the oldest went"
        );
        for session in &flood[7..] {
            assert!(sessions.of(&headers_of(session)).is_some());
        }
        for session in &flood[..7] {
            assert!(sessions.of(&headers_of(session)).is_none());
        }
        assert_eq!(
            sessions.of(&headers_of(&signed_in)).unwrap().principal,
            Principal::User("al".into()),
            "a signed-in session is never crowded out"
        );
    }
}

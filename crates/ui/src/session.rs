//! Sessions: who a browser is signed in as, and the token its forms must carry (CSRF).
//!
//! A session id is 32 random bytes in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over
//! HTTPS); the server keeps the sessions, so signing out ends one for good. Anonymous visitors
//! get a session too, only to carry the token the sign-in form needs. Sessions live in this
//! process's memory: a restart signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use wharf_auth::Principal;
use wharf_auth::secrets::{constant_time_eq, random_bytes};

/// The cookie's name.
pub const COOKIE: &str = "wharf_session";

/// How long a session lasts.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// The most sessions kept: past it, expired ones are dropped, then new anonymous ones refused.
const MAX_SESSIONS: usize = 100_000;

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
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> Option<String> {
    let bytes = random_bytes(32).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Sessions {
    /// The live session the request's cookie names.
    pub fn of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get(&id) {
            Some(session) if session.expires > Instant::now() => Some(session.clone()),
            Some(_) => {
                sessions.remove(&id);
                None
            }
            None => None,
        }
    }

    /// A new session for `principal`; `None` when full (or without randomness).
    pub fn create(&self, principal: Principal) -> Option<Session> {
        let session = Session {
            id: random_hex()?,
            csrf: random_hex()?,
            principal,
            expires: Instant::now() + LIFETIME,
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            let now = Instant::now();
            sessions.retain(|_, s| s.expires > now);
            if sessions.len() >= MAX_SESSIONS && session.principal == Principal::Anonymous {
                return None;
            }
        }
        sessions.insert(session.id.clone(), session.clone());
        Some(session)
    }

    /// Ends a session (signing out, or signing in, which starts a fresh one).
    pub fn end(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
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
}

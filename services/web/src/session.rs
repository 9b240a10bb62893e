//! Sessions: a token exchanged for a cookie.
//!
//! Signing in checks the token exactly as the gRPC layer does (unknown, expired and revoked
//! tokens get one answer) and opens a session: a random id in an HttpOnly, SameSite=Strict cookie
//! (Secure outside loopback), of which the server keeps only the SHA-256, with the token's id and
//! the session's CSRF secret. Every request looks the token up again, so that a revocation or
//! an expiry ends the session at once; a session also ends after its idle time and its lifetime,
//! never later than its token. Sessions are kept in memory, bounded: a restart signs everyone
//! out (nothing else is lost).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use chrono::{DateTime, Utc};
use observatory_domain::access::Principal;
use sha2::{Digest, Sha256};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "obs_session";
/// Name of the cookie that carries the sign-in form's CSRF secret (before there is a session).
pub const SIGN_IN_COOKIE: &str = "obs_sign_in";
/// Name of the language cookie.
pub const LANG_COOKIE: &str = "obs_lang";

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// Longest life of a session, whatever its use.
    pub lifetime: Duration,
    /// A session unused this long ends.
    pub idle: Duration,
    /// Most sessions open at once: the oldest is closed to make room.
    pub max_sessions: usize,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            lifetime: Duration::from_secs(12 * 3600),
            idle: Duration::from_secs(2 * 3600),
            max_sessions: 10_000,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    token_id: String,
    csrf: String,
    opened: Instant,
    last_seen: Instant,
    /// The token's own expiry, when it has one.
    token_expires: Option<DateTime<Utc>>,
}

/// An open session, as a request finds it.
#[derive(Debug, Clone)]
pub struct Open {
    pub token_id: String,
    pub csrf: String,
    /// The SHA-256 of the cookie (how the session is closed).
    pub key: String,
}

/// The sessions of this server.
#[derive(Debug)]
pub struct Sessions {
    policy: SessionPolicy,
    open: Mutex<HashMap<String, Entry>>,
}

/// A fresh random secret: 32 bytes in hexadecimal.
pub fn secret() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn digest(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    pub fn new(policy: SessionPolicy) -> Self {
        Self {
            policy,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Opens a session for the token of `principal`; returns the cookie's value.
    pub fn open(&self, principal: &Principal, token_expires: Option<DateTime<Utc>>) -> String {
        let cookie = secret();
        let now = Instant::now();
        let entry = Entry {
            token_id: principal.token_id.clone(),
            csrf: secret(),
            opened: now,
            last_seen: now,
            token_expires,
        };
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        self.sweep(&mut open, now);
        if open.len() >= self.policy.max_sessions
            && let Some(oldest) = open.iter().min_by_key(|(_, e)| e.last_seen).map(|(k, _)| k.clone())
        {
            open.remove(&oldest);
        }
        open.insert(digest(&cookie), entry);
        cookie
    }

    /// The session of a cookie, when it is open and neither idle too long nor too old nor past
    /// its token's expiry; its use is noted.
    pub fn find(&self, cookie: &str) -> Option<Open> {
        let key = digest(cookie);
        let now = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let entry = open.get_mut(&key)?;
        let ended = now.duration_since(entry.opened) >= self.policy.lifetime
            || now.duration_since(entry.last_seen) >= self.policy.idle
            || entry.token_expires.is_some_and(|e| Utc::now() >= e);
        if ended {
            open.remove(&key);
            return None;
        }
        entry.last_seen = now;
        Some(Open {
            token_id: entry.token_id.clone(),
            csrf: entry.csrf.clone(),
            key,
        })
    }

    /// Closes a session (sign-out, or a token found revoked).
    pub fn close(&self, key: &str) {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Closes every session of a token (its revocation from the admin pages).
    pub fn close_token(&self, token_id: &str) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, e| e.token_id != token_id);
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sweep(&self, open: &mut HashMap<String, Entry>, now: Instant) {
        let policy = self.policy;
        open.retain(|_, e| {
            now.duration_since(e.opened) < policy.lifetime && now.duration_since(e.last_seen) < policy.idle
        });
    }
}

/// The value of cookie `name` in a request's headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, path `/`, Secure when `secure`; `max_age`
/// seconds (0 clears it), or for the browser's session when `None`.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use observatory_domain::{
        access::{Role, Scope},
        codes::Finess,
    };

    fn principal(id: &str) -> Principal {
        Principal {
            token_id: id.to_owned(),
            role: Role::Prescriber,
            scope: Scope::new(Role::Prescriber, vec![Finess::parse("750100125").unwrap()], vec![]).unwrap(),
        }
    }

    #[test]
    fn sessions_end_when_idle_when_old_and_with_their_token() {
        let sessions = Sessions::new(SessionPolicy {
            lifetime: Duration::from_secs(3600),
            idle: Duration::from_millis(50),
            max_sessions: 2,
        });
        let a = sessions.open(&principal("a"), None);
        let found = sessions.find(&a).expect("open");
        assert_eq!(found.token_id, "a");
        assert!(sessions.find("not-a-cookie").is_none());
        std::thread::sleep(Duration::from_millis(60));
        assert!(sessions.find(&a).is_none(), "idle too long");

        let expired = sessions.open(&principal("b"), Some(Utc::now() - chrono::Duration::seconds(1)));
        assert!(sessions.find(&expired).is_none(), "past the token's expiry");

        let c = sessions.open(&principal("c"), None);
        let d = sessions.open(&principal("d"), None);
        let e = sessions.open(&principal("e"), None);
        assert!(sessions.len() <= 2, "bounded");
        assert!(sessions.find(&e).is_some());
        assert!(sessions.find(&c).is_none() || sessions.find(&d).is_none());
        sessions.close_token("e");
        assert!(sessions.find(&e).is_none(), "closed with its token");
    }

    #[test]
    fn cookies_are_read_by_name_and_set_strict() {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::COOKIE, "a=1; obs_session=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
        let c = set_cookie(SESSION_COOKIE, "v", true, None);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie(SESSION_COOKIE, "v", false, Some(0)).contains("Secure"));
        assert!(same_secret("abc", "abc") && !same_secret("abc", "abd") && !same_secret("abc", "ab"));
    }
}

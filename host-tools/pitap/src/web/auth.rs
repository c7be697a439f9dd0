//! The password and sessions of a web UI on a non-loopback address: the
//! password is kept as an Argon2id hash (PHC string); a login makes a
//! random session token, sent back as an HttpOnly, SameSite=Strict cookie,
//! valid for the configured hours.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tiny_http::{Method, Request, Response};

use super::{header, html, respond};

const COOKIE: &str = "pitap_session";
/// Sessions kept at most: a flood of logins cannot grow memory.
const MAX_SESSIONS: usize = 1024;

/// The PHC string for `password` (`pitap web-password`).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt_bytes = crate::keygen::random_bytes::<16>()?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("hashing the password: {e}"))
}

pub struct Sessions {
    hash: String,
    lifetime: Duration,
    live: Mutex<HashMap<String, Instant>>,
}

impl Sessions {
    pub fn new(hash: String, lifetime: Duration) -> Sessions {
        Sessions {
            hash,
            lifetime,
            live: Mutex::new(HashMap::new()),
        }
    }

    fn token_of(req: &Request) -> Option<String> {
        req.headers()
            .iter()
            .filter(|h| h.field.equiv("Cookie"))
            .flat_map(|h| h.value.as_str().split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(&format!("{COOKIE}="))
                    .map(str::to_string)
            })
    }

    pub fn valid(&self, req: &Request) -> bool {
        let Some(token) = Self::token_of(req) else {
            return false;
        };
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        match live.get(&token) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                live.remove(&token);
                false
            }
            None => false,
        }
    }

    fn verify(&self, password: &str) -> bool {
        PasswordHash::new(&self.hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    }

    /// GET: the form; POST: checks the password and starts a session.
    pub fn login(&self, mut req: Request) {
        let url = req.url().to_string();
        let query = url.split_once('?').map_or("", |(_, q)| q);
        let to = html::parse_query(query)
            .into_iter()
            .find(|(k, _)| k == "to")
            .map(|(_, v)| v)
            // Only a path of this site: no open redirect.
            .filter(|t| t.starts_with('/') && !t.starts_with("//"))
            .unwrap_or_else(|| "/".into());
        let mut failed = false;
        if *req.method() == Method::Post {
            let mut body = String::new();
            let _ = req.as_reader().take(4096).read_to_string(&mut body);
            let password = html::parse_query(&body)
                .into_iter()
                .find(|(k, _)| k == "password")
                .map(|(_, v)| v)
                .unwrap_or_default();
            if self.verify(&password) {
                let token = match crate::keygen::random_bytes::<32>() {
                    Ok(b) => b.iter().map(|x| format!("{x:02x}")).collect::<String>(),
                    Err(_) => {
                        return respond(
                            req,
                            Response::from_string("no randomness").with_status_code(500),
                        )
                    }
                };
                let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                live.retain(|_, until| *until > now);
                if live.len() >= MAX_SESSIONS {
                    if let Some(oldest) =
                        live.iter().min_by_key(|(_, u)| **u).map(|(k, _)| k.clone())
                    {
                        live.remove(&oldest);
                    }
                }
                live.insert(token.clone(), now + self.lifetime);
                drop(live);
                let cookie = format!(
                    "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
                    self.lifetime.as_secs()
                );
                return respond(
                    req,
                    Response::from_string("")
                        .with_status_code(303)
                        .with_header(header("Set-Cookie", &cookie))
                        .with_header(header("Location", &to)),
                );
            }
            failed = true;
        }
        let body = format!(
            "<h1>Log in</h1>{}<form method=\"post\" action=\"/login?to={}\">\
             <label>Password <input type=\"password\" name=\"password\" id=\"password\" autofocus></label> \
             <button>Log in</button></form>",
            if failed { "<p class=\"error\" id=\"login-failed\">Wrong password.</p>" } else { "" },
            html::esc(&html::url(&to))
        );
        respond(
            req,
            super::html(
                if failed { 403 } else { 200 },
                html::page("Log in", "", &body, false),
            ),
        );
    }
}

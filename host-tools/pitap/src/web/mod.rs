//! `pitap serve` (and `pitap collect --web`): the web UI over the flow
//! store. tiny_http serves it from a few threads of its own; every page is
//! built on the server from the store (html.rs escapes, svg.rs draws,
//! pages.rs asks the store), the assets are compiled in, and a page
//! refreshes itself from server-sent events when the store changes.
//!
//! Safe by default: it listens on 127.0.0.1; any other address needs
//! `[web] password_hash` (from `pitap web-password`), and then every page
//! asks for a session, made by the login form and expiring. Every response
//! carries a CSP that allows only this server's own script and styles, and
//! forbids framing.

mod auth;
mod html;
pub mod pages;
mod svg;

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tiny_http::{Header, Method, Request, Response, Server};

pub use auth::hash_password;
use auth::Sessions;
use pages::{Params, Site};

/// `[web]` in collector.toml.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    /// Where `pitap serve` listens (default 127.0.0.1:8080).
    pub listen: Option<String>,
    /// An Argon2 PHC string from `pitap web-password`; needed for any
    /// address but loopback.
    pub password_hash: Option<String>,
    /// A session lasts this long after login (default 12).
    pub session_hours: Option<f64>,
}

pub struct Options {
    pub listen: SocketAddr,
    pub site: Site,
    pub password_hash: Option<String>,
    pub session: Duration,
}

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// Handler threads: pages are quick; each live page holds one for its
/// event stream.
const THREADS: usize = 16;

const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");

fn header(k: &str, v: &str) -> Header {
    // Names and values here are ASCII constants or our own ASCII text.
    Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap_or_else(|()| {
        Header::from_bytes(&b"X-Invalid"[..], &b"1"[..]).expect("a valid header")
    })
}

fn respond<R: Read>(req: Request, mut resp: Response<R>) {
    for (k, v) in [
        ("Content-Security-Policy", CSP),
        ("X-Frame-Options", "DENY"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("Cache-Control", "no-store"),
    ] {
        resp.add_header(header(k, v));
    }
    // A client that went away is not an error of ours.
    let _ = req.respond(resp);
}

fn html(status: u16, body: String) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(status)
        .with_header(header("Content-Type", "text/html; charset=utf-8"))
}

fn error_page(e: &str) -> String {
    html::page(
        "Error",
        "",
        &format!("<h1>Error</h1><pre class=\"error\">{}</pre>", html::esc(e)),
        false,
    )
}

/// Refuses what would expose the store: a non-loopback address without a
/// password.
pub fn check_bind(listen: &SocketAddr, password_hash: Option<&str>) -> Result<(), String> {
    if !listen.ip().is_loopback() && password_hash.is_none() {
        return Err(format!(
            "web: listening on {listen} (not loopback) needs a password: put the line \
             `pitap web-password` prints into collector.toml's [web] section, or listen on 127.0.0.1"
        ));
    }
    Ok(())
}

/// Binds and serves on threads of its own; returns the bound address.
pub fn start(opts: Options) -> Result<SocketAddr, String> {
    check_bind(&opts.listen, opts.password_hash.as_deref())?;
    let server =
        Server::http(opts.listen).map_err(|e| format!("web: listening on {}: {e}", opts.listen))?;
    let addr = server
        .server_addr()
        .to_ip()
        .ok_or("web: not an IP listener")?;
    let server = Arc::new(server);
    let state = Arc::new(State {
        site: opts.site,
        sessions: opts.password_hash.map(|h| Sessions::new(h, opts.session)),
    });
    for _ in 0..THREADS {
        let server = Arc::clone(&server);
        let state = Arc::clone(&state);
        std::thread::spawn(move || {
            while let Ok(req) = server.recv() {
                state.handle(req);
            }
        });
    }
    Ok(addr)
}

/// `pitap serve`: serves until killed.
pub fn serve(opts: Options) -> Result<(), String> {
    let addr = start(opts)?;
    eprintln!("pitap: serving the web UI on http://{addr}/");
    loop {
        std::thread::park();
    }
}

struct State {
    site: Site,
    sessions: Option<Sessions>,
}

impl State {
    fn handle(&self, mut req: Request) {
        let url = req.url().to_string();
        let (path, query) = url.split_once('?').unwrap_or((&url, ""));
        let path = path.to_string();
        let mut params: HashMap<String, String> = html::parse_query(query).into_iter().collect();
        match (req.method(), path.as_str()) {
            (Method::Get, "/static/app.css") => {
                return respond(
                    req,
                    Response::from_string(APP_CSS)
                        .with_header(header("Content-Type", "text/css; charset=utf-8")),
                )
            }
            (Method::Get, "/static/app.js") => {
                return respond(
                    req,
                    Response::from_string(APP_JS)
                        .with_header(header("Content-Type", "text/javascript; charset=utf-8")),
                )
            }
            (Method::Get, "/favicon.ico") => {
                return respond(req, Response::from_string("").with_status_code(204))
            }
            _ => {}
        }
        if let Some(sessions) = &self.sessions {
            if path == "/login" {
                return sessions.login(req);
            }
            if !sessions.valid(&req) {
                let to = format!("/login?to={}", html::url(&url));
                return respond(
                    req,
                    Response::from_string("")
                        .with_status_code(303)
                        .with_header(header("Location", &to)),
                );
            }
        }
        if *req.method() == Method::Post {
            // Forms here are GET; a POST body is read only by the login.
            let mut body = String::new();
            let _ = req.as_reader().take(1 << 16).read_to_string(&mut body);
            params.extend(html::parse_query(&body));
        }
        if path == "/events" {
            return self.events(req);
        }
        let p = Params(params);
        let site = &self.site;
        let page = match path.as_str() {
            "/" => pages::overview(site, &p),
            "/search" => pages::search(site, &p),
            "/reports" => pages::reports(site, &p),
            "/devices" => pages::devices(site, &p),
            "/device" => pages::device(site, &p),
            "/flow" => pages::flow(site, &p),
            _ => {
                return respond(
                    req,
                    html(
                        404,
                        html::page("Not found", "", "<h1>Not found</h1>", false),
                    ),
                )
            }
        };
        match page {
            Ok(body) => respond(req, html(200, body)),
            Err(e) => respond(req, html(400, error_page(&e))),
        }
    }

    /// Server-sent events: `flows` whenever the store took a commit,
    /// checked every second; a comment every 15 s keeps proxies open. Ends
    /// after an hour (the page's EventSource reconnects).
    fn events(&self, req: Request) {
        let stream = Events {
            store: self.site.store.clone(),
            last: None,
            pending: Vec::new(),
            started: Instant::now(),
            last_beat: Instant::now(),
        };
        let resp = Response::new(
            200.into(),
            vec![
                header("Content-Type", "text/event-stream"),
                header("X-Accel-Buffering", "no"),
            ],
            stream,
            None,
            None,
        );
        respond(req, resp);
    }
}

/// tiny_http sends a streamed body in chunks of 8 KiB, each once the
/// next byte arrives: an event padded past that (with a comment line,
/// which the browser ignores) goes out at once.
const CHUNK: usize = 8192;

fn padded(event: &str) -> Vec<u8> {
    let mut v = event.as_bytes().to_vec();
    v.push(b':');
    v.resize(CHUNK, b' ');
    v.push(b'\n');
    v
}

/// The body of an event stream: blocks between events.
struct Events {
    store: PathBuf,
    last: Option<(i64, u64)>,
    pending: Vec<u8>,
    started: Instant,
    last_beat: Instant,
}

impl Read for Events {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            if self.started.elapsed() > Duration::from_secs(3600) {
                return Ok(0);
            }
            let now = crate::store::Store::open_existing(&self.store)
                .and_then(|s| s.change_mark())
                .ok();
            match (self.last, now) {
                (None, Some(n)) => {
                    self.last = Some(n);
                    self.pending = padded("retry: 3000\n\n");
                }
                (Some(old), Some(n)) if old != n => {
                    self.last = Some(n);
                    self.pending = padded(&format!("event: flows\ndata: {}\n\n", n.1));
                }
                _ if self.last_beat.elapsed() > Duration::from_secs(15) => {
                    self.last_beat = Instant::now();
                    self.pending = padded(": still here\n\n");
                }
                _ => std::thread::sleep(Duration::from_secs(1)),
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

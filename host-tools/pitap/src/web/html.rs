//! HTML out of values from the wire: every text goes through [`esc`]
//! (element text and quoted attributes alike), every query-string part
//! through [`url`]. Pages are built on the server; the one script only
//! refreshes them, so no value is ever handed to a script as code.

use std::fmt::Write;

/// `text` safe in element content and in a double- or single-quoted
/// attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encoding of a query-string part (RFC 3986 unreserved kept).
pub fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// A query string from pairs, each part encoded.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", url(k), url(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Decodes `a=b&c=d` (`+` is a space).
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unurl(k), unurl(v))
        })
        .collect()
}

fn unurl(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(s.get(i + 1..i + 3).unwrap_or(""), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `field:value` as the query language reads it back: quoted, with `"`
/// and `\` escaped, unless the value is a plain word.
pub fn term(field: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if plain {
        format!("{field}:{value}")
    } else {
        let quoted: String = value
            .chars()
            .flat_map(|c| match c {
                '"' | '\\' | '*' | '?' => vec!['\\', c],
                c => vec![c],
            })
            .collect();
        format!("{field}:\"{quoted}\"")
    }
}

/// The page around `body`: the navigation, the style sheet and the script
/// (all served by us: the CSP allows nothing else).
pub fn page(title: &str, active: &str, body: &str, live: bool) -> String {
    let nav = [
        ("overview", "/", "Overview"),
        ("search", "/search", "Search"),
        ("reports", "/reports", "Reports"),
        ("devices", "/devices", "Devices"),
    ]
    .iter()
    .map(|(id, href, label)| {
        let class = if *id == active { " class=\"on\"" } else { "" };
        format!("<a href=\"{href}\"{class}>{label}</a>")
    })
    .collect::<String>();
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · PiTap</title><link rel=\"stylesheet\" href=\"/static/app.css\">\
         <script src=\"/static/app.js\" defer></script></head>\
         <body data-live=\"{}\"><header><span class=\"brand\">PiTap</span><nav>{nav}</nav>\
         <span id=\"live\"></span></header><main id=\"main\">{body}</main></body></html>\n",
        esc(title),
        if live { "1" } else { "0" }
    )
}

/// A number with thousands separators.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as B, kB, MB, GB (powers of 1000, as NetFlow tools print them).
pub fn bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < units.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_stays_text() {
        let s = "\"><img src=x onerror=alert(1)><script>alert('x')</script>&";
        let e = esc(s);
        assert!(!e.contains('<') && !e.contains('>') && !e.contains('"') && !e.contains('\''));
        assert_eq!(unurl(&url(s)), s);
        assert_eq!(
            parse_query("q=a%20b+c&x=%ZZ"),
            vec![("q".into(), "a b c".into()), ("x".into(), "%ZZ".into())]
        );
    }

    #[test]
    fn terms_parse_back_to_the_value() {
        for v in [
            "10.0.0.1",
            "a b",
            "x\"y",
            "back\\slash",
            "<script>",
            "*.evil",
        ] {
            let t = term("sni", v);
            let e = crate::query::parse(&t).unwrap_or_else(|e| panic!("{t}: {e}"));
            let mut f = crate::store::segment::blank();
            f.record.names.sni = pitap_wire::Text::from_bytes(v.as_bytes());
            assert!(e.matches(&f), "{t} should match {v:?}");
        }
    }
}

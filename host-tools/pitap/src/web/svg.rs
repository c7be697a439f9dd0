//! Charts drawn on the server as SVG: bars of quick values (each bar a
//! link that narrows the search) and time series. No charting script: the
//! pages work without JavaScript, and the CSP allows none but ours.

use std::fmt::Write;

use super::html::esc;

/// Horizontal bars: (label, value, link). `fmt` prints a value.
pub fn bars(rows: &[(String, u64, String)], fmt: fn(u64) -> String) -> String {
    if rows.is_empty() {
        return "<p class=\"empty\">No flows.</p>".into();
    }
    let max = rows.iter().map(|r| r.1).max().unwrap_or(1).max(1);
    let (row_h, label_w, bar_w) = (22, 260, 360);
    let h = rows.len() * row_h + 4;
    // Drawn at its own size (a page shrinks it to fit, never grows it).
    let w = label_w + bar_w + 120;
    let mut s = format!(
        "<svg class=\"bars\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\">"
    );
    for (i, (label, v, href)) in rows.iter().enumerate() {
        let y = i * row_h + 2;
        let w = ((*v as f64 / max as f64) * bar_w as f64).max(1.0);
        let shown: String = if label.chars().count() > 36 {
            label.chars().take(35).chain(['…']).collect()
        } else {
            label.clone()
        };
        let _ = write!(
            s,
            "<a href=\"{}\"><title>{}</title><text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"label\">{}</text>\
             <rect x=\"{}\" y=\"{}\" width=\"{w:.1}\" height=\"{}\" class=\"bar\"/>\
             <text x=\"{}\" y=\"{}\" class=\"value\">{}</text></a>",
            esc(href),
            esc(label),
            label_w - 6,
            y + 15,
            esc(&shown),
            label_w,
            y + 3,
            row_h - 6,
            label_w as f64 + w + 6.0,
            y + 15,
            esc(&fmt(*v)),
        );
    }
    s.push_str("</svg>");
    s
}

/// A time series as columns: `values[i]` for the bucket starting at
/// `origin_ms + i * width_ms`.
pub fn series(values: &[u64], origin_ms: u64, width_ms: u64, fmt: fn(u64) -> String) -> String {
    let (w, h, pad_l, pad_b) = (900.0, 160.0, 70.0, 22.0);
    let max = values.iter().copied().max().unwrap_or(0).max(1);
    let n = values.len().max(1) as f64;
    let col = (w - pad_l) / n;
    let mut s = format!(
        "<svg class=\"series\" viewBox=\"0 0 {w} {h}\" width=\"100%\" role=\"img\">\
         <text x=\"{}\" y=\"12\" text-anchor=\"end\" class=\"axis\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"axis\">0</text>\
         <line x1=\"{pad_l}\" y1=\"{}\" x2=\"{w}\" y2=\"{}\" class=\"base\"/>",
        pad_l - 6.0,
        esc(&fmt(max)),
        pad_l - 6.0,
        h - pad_b,
        h - pad_b,
        h - pad_b
    );
    for (i, v) in values.iter().enumerate() {
        if *v == 0 {
            continue;
        }
        let bh = (*v as f64 / max as f64) * (h - pad_b - 14.0);
        let x = pad_l + i as f64 * col;
        let t = origin_ms + i as u64 * width_ms;
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" class=\"col\">\
             <title>{}: {}</title></rect>",
            h - pad_b - bh,
            (col - 1.0).max(0.5),
            esc(&pitap_wire::format::time_text(t, ' ')),
            esc(&fmt(*v))
        );
    }
    // First and last bucket times under the axis.
    let last = origin_ms + (values.len() as u64) * width_ms;
    let _ = write!(
        s,
        "<text x=\"{pad_l}\" y=\"{h}\" class=\"axis\">{}</text>\
         <text x=\"{w}\" y=\"{h}\" text-anchor=\"end\" class=\"axis\">{}</text></svg>",
        esc(&pitap_wire::format::time_text(origin_ms, ' ')),
        esc(&pitap_wire::format::time_text(last, ' '))
    );
    s
}

/// Natural Earth's countries on a 1000x500 equirectangular canvas (made by
/// scripts/world-map.mjs): "code TAB name TAB path" lines.
const WORLD: &str = include_str!("assets/world.txt");

/// A world map with each country shaded by its value (five steps of the
/// largest); a country with a value links to `href(code)`.
pub fn world(
    values: &std::collections::HashMap<String, u64>,
    href: &dyn Fn(&str) -> String,
    fmt: fn(u64) -> String,
) -> String {
    let max = values.values().copied().max().unwrap_or(0).max(1);
    let mut s = String::from(
        "<svg class=\"world\" viewBox=\"0 0 1000 500\" width=\"1000\" height=\"500\" role=\"img\">\
         <rect width=\"1000\" height=\"500\" class=\"sea\"/>",
    );
    for line in WORLD.lines() {
        let mut parts = line.splitn(3, '\t');
        let (Some(code), Some(name), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        match values.get(code).copied().filter(|v| *v > 0) {
            Some(v) => {
                // 1..=5: a share of the largest, on a square-root scale so
                // small countries of traffic still show.
                let step = 1 + ((v as f64 / max as f64).sqrt() * 4.0).round() as u8;
                let _ = write!(
                    s,
                    "<a href=\"{}\"><path d=\"{d}\" class=\"c{step}\" data-country=\"{}\"><title>{}: {}</title></path></a>",
                    esc(&href(code)),
                    esc(code),
                    esc(name),
                    esc(&fmt(v))
                );
            }
            None => {
                let _ = write!(
                    s,
                    "<path d=\"{d}\" class=\"c0\"><title>{}</title></path>",
                    esc(name)
                );
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// A tap's LEDs as it reported them: (name, pattern) from its health
/// (`off`, `on`, `blinkN`, `heartbeat`), drawn as dots that blink the way
/// the LEDs do (CSS classes: the CSP allows no inline style).
pub fn leds(leds: &[(String, String)]) -> String {
    if leds.is_empty() {
        return "-".into();
    }
    let mut s = format!(
        "<svg class=\"leds\" viewBox=\"0 0 {} 16\" width=\"{}\" height=\"16\" role=\"img\">",
        leds.len() * 18,
        leds.len() * 18
    );
    for (i, (name, pattern)) in leds.iter().enumerate() {
        let class = match pattern.as_str() {
            "on" => "on",
            "heartbeat" => "heartbeat",
            p => match p
                .strip_prefix("blink")
                .and_then(|ms| ms.parse::<u32>().ok())
            {
                Some(ms) if ms < 300 => "blink-fast",
                Some(ms) if ms < 1000 => "blink",
                Some(_) => "blink-slow",
                None => "off",
            },
        };
        let _ = write!(
            s,
            "<circle cx=\"{}\" cy=\"8\" r=\"6\" class=\"led {class}\"><title>{}: {}</title></circle>",
            i * 18 + 8,
            esc(name),
            esc(pattern)
        );
    }
    s.push_str("</svg>");
    s
}

//! Small, careful HTML building: every value from the ledger is untrusted, so it goes through
//! [`esc`] (text and attribute values) or [`seg`] (URL path segments) before it is written.

use std::fmt::Write;

/// Escape text for an HTML text node or a quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
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

/// Percent-encode one URL path segment (unreserved characters pass).
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `owner/name` ids as two encoded segments (`a/b` → `a/b`, each part encoded).
pub fn id_path(id: &str) -> String {
    id.split('/').map(seg).collect::<Vec<_>>().join("/")
}

pub fn model_href(id: &str) -> String {
    format!("/models/{}", id_path(id))
}

pub fn dataset_href(id: &str) -> String {
    format!("/datasets/{}", id_path(id))
}

pub fn actor_href(handle: &str) -> String {
    format!("/actors/{}", seg(handle))
}

pub fn record_href(index: u64) -> String {
    format!("/records/{index}")
}

/// A link with escaped text; `href` must already be built from [`seg`]/[`id_path`].
pub fn link(href: &str, text: &str) -> String {
    format!("<a href=\"{}\">{}</a>", esc(href), esc(text))
}

/// An actor link, or the plain name of a system account (`@protocol`, ...).
pub fn holder_link(holder: &str) -> String {
    if holder.starts_with('@') {
        format!("<code>{}</code>", esc(holder))
    } else {
        link(&actor_href(holder), holder)
    }
}

/// Micro-units as a decimal amount: `1234567` → `1.234567`.
pub fn micros(v: i128) -> String {
    let sign = if v < 0 { "-" } else { "" };
    let a = v.unsigned_abs();
    format!("{sign}{}.{:06}", a / 1_000_000, a % 1_000_000)
}

pub fn money(v: i128, currency: &str) -> String {
    format!("{} {}", micros(v), esc(currency))
}

/// UTC time of a millisecond timestamp, `YYYY-MM-DD HH:MM:SS` (civil-from-days, no time zone
/// database needed).
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// The page frame: navigation, title, body; the CSS and JS are served by this binary.
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{t} · shoulders</title><link rel=\"stylesheet\" href=\"/static/explorer.css\">\
<script src=\"/static/explorer.js\" defer></script></head><body>\
<header><a class=\"brand\" href=\"/\">shoulders</a> <span class=\"tag\">a public ledger for AI models</span>\
<nav><a href=\"/\">home</a> <a href=\"/#models\">models</a> <a href=\"/#datasets\">datasets</a> \
<a href=\"/#actors\">people</a> <a href=\"/#try\">try it</a> <a href=\"/openapi.json\">API</a></nav></header>\
<main><h1>{t}</h1>\n{body}</main></body></html>\n",
        t = esc(title),
    )
}

/// A table from a header row and pre-rendered (already escaped) cells.
pub fn table(class: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table class=\"{}\"><thead><tr>", esc(class));
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            let _ = write!(out, "<td>{c}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(seg("a b/c\"<"), "a%20b%2Fc%22%3C");
        assert_eq!(id_path("alice/my model"), "alice/my%20model");
    }

    #[test]
    fn formats_money_and_time() {
        assert_eq!(micros(1_234_567), "1.234567");
        assert_eq!(micros(-5), "-0.000005");
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_767_225_600_000), "2026-01-01 00:00:00");
        assert_eq!(time(951_782_400_000 + 3_723_000), "2000-02-29 01:02:03");
    }
}

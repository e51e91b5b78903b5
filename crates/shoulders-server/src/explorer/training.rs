//! "How it was trained" on a model page and "Credited on" on an actor page: a model's training
//! run (framework, code, compute, credited people) and its configuration, read from the content
//! store and shown as a key/value table. Every value is the ledger's or the document's, so
//! untrusted: it goes through [`esc`] only.

use std::fmt::Write;

use serde_json::{Map, Value};
use shoulders_ledger::{ContentStore, LedgerError};
use shoulders_record::{kwh_text as kwh, CreditRole};
use shoulders_state::{Model, State as Ledger};

use super::html::{esc, holder_link, link, model_href, table};

/// Most configuration rows shown (the rest are counted; the API has the whole document).
pub const MAX_CONFIG_ROWS: usize = 200;
/// Longest value shown in a configuration row, in characters.
pub const MAX_CONFIG_VALUE_CHARS: usize = 300;
/// How deep nested objects are unfolded into dotted keys; deeper ones are shown as JSON text.
const MAX_CONFIG_DEPTH: usize = 8;
/// Most credits listed on an actor page (the total is always shown).
pub const MAX_CREDITS_LISTED: usize = 100;

/// A role in words.
pub fn role_words(role: CreditRole) -> &'static str {
    match role {
        CreditRole::FrameworkAuthor => "framework author",
        CreditRole::DataEngineer => "data engineer",
        CreditRole::Trainer => "trainer",
        CreditRole::Evaluator => "evaluator",
    }
}

/// `text` cut to `max` characters, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The configuration as rows of (dotted key, value as text): objects unfold into their keys,
/// strings show as they are, everything else as compact JSON. Stops after `max` rows; returns
/// the rows and how many leaves there were in all.
fn config_rows(config: &Map<String, Value>, max: usize) -> (Vec<(String, String)>, usize) {
    fn walk(
        prefix: &str,
        map: &Map<String, Value>,
        depth: usize,
        max: usize,
        out: &mut Vec<(String, String)>,
        total: &mut usize,
    ) {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        for k in keys {
            let v = &map[k];
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Object(inner) if depth < MAX_CONFIG_DEPTH && !inner.is_empty() => {
                    walk(&key, inner, depth + 1, max, out, total)
                }
                _ => {
                    *total += 1;
                    if out.len() < max {
                        let text = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        out.push((key, text));
                    }
                }
            }
        }
    }
    let (mut out, mut total) = (Vec::new(), 0);
    walk("", config, 0, max, &mut out, &mut total);
    (out, total)
}

/// The model page's "How it was trained" section; empty when the model records no run.
pub fn training_section(content: &ContentStore, m: &Model) -> String {
    let Some(t) = &m.training else {
        return String::new();
    };
    let mut facts: Vec<Vec<String>> = Vec::new();
    if let Some(f) = &t.framework {
        facts.push(vec![
            "framework".into(),
            format!(
                "<span data-testid=\"training-framework\">{} {}</span>",
                esc(&f.name),
                esc(&f.version)
            ),
        ]);
    }
    if let Some(c) = &t.code {
        // The URL was checked to be http(s) when the record was admitted; still escaped.
        facts.push(vec![
            "code".into(),
            format!(
                "<a data-testid=\"training-code\" href=\"{r}\" rel=\"nofollow noopener noreferrer\">{r}</a> at commit <code>{}</code>",
                esc(&c.commit),
                r = esc(&c.repository)
            ),
        ]);
    }
    if let Some(c) = &t.compute {
        let mut parts = Vec::new();
        if let Some(h) = &c.hardware {
            parts.push(esc(h));
        }
        if let Some(h) = c.accelerator_hours {
            parts.push(format!("{h} accelerator hours"));
        }
        if let Some(wh) = c.energy_wh {
            parts.push(format!("{} kWh", kwh(wh)));
        }
        if let Some(r) = &c.region {
            parts.push(format!("region {}", esc(r)));
        }
        facts.push(vec![
            "compute".into(),
            format!(
                "<span data-testid=\"training-compute\">{}</span>",
                parts.join(" · ")
            ),
        ]);
    }
    if let Some(h) = &t.config_hash {
        facts.push(vec![
            "configuration".into(),
            format!("<code>{}</code>", esc(h)),
        ]);
    }
    let mut out = String::from(
        "<section id=\"training\" data-testid=\"training\"><h2>How it was trained</h2>\
<p class=\"note\">As the owner registered it: signed claims in the model's record. Credits are recognition, not payment.</p>",
    );
    if !facts.is_empty() {
        out.push_str(&table("training-facts", &["what", "recorded"], &facts));
    }
    if !t.credits.is_empty() {
        out.push_str("<h3>Credited</h3><ul data-testid=\"training-credits\">");
        for c in &t.credits {
            let _ = write!(
                out,
                "<li>{} — {}</li>",
                holder_link(&c.actor),
                esc(role_words(c.role))
            );
        }
        out.push_str("</ul>");
    }
    if let Some(h) = &t.config_hash {
        out.push_str("<h3>Configuration</h3>");
        match content.training_config(h) {
            Ok(config) => {
                let (rows, total) = config_rows(&config, MAX_CONFIG_ROWS);
                let rows: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|(k, v)| {
                        vec![
                            format!("<code>{}</code>", esc(&k)),
                            esc(&cut(&v, MAX_CONFIG_VALUE_CHARS)),
                        ]
                    })
                    .collect();
                if rows.is_empty() {
                    out.push_str("<p data-testid=\"training-config\">The configuration is empty.</p>");
                } else {
                    let _ = write!(
                        out,
                        "<div data-testid=\"training-config\">{}</div>",
                        table("training-config", &["setting", "value"], &rows)
                    );
                }
                if total > rows.len() {
                    let _ = write!(
                        out,
                        "<p class=\"note\">{} of {total} settings shown; the whole document is at <code>/api/models/{}/training</code>.</p>",
                        rows.len(),
                        esc(&m.model_id)
                    );
                }
            }
            Err(LedgerError::TrainingConfigMissing(_)) => out.push_str(
                "<p class=\"note\" data-testid=\"training-config\">This node does not hold the configuration document (it is kept in the writer's content store).</p>",
            ),
            Err(e) => {
                let _ = write!(
                    out,
                    "<p class=\"error\" data-testid=\"training-config\">The configuration cannot be shown: {}: {}</p>",
                    esc(e.code()),
                    esc(&e.to_string())
                );
            }
        }
    }
    out.push_str("</section>");
    out
}

/// The actor page's "Credited on" section: the models whose training runs credit `handle`,
/// with the roles; empty when there are none.
pub fn credits_section(s: &Ledger, handle: &str) -> String {
    let credits = s.credits_of(handle);
    if credits.is_empty() {
        return String::new();
    }
    let rows: Vec<Vec<String>> = credits
        .iter()
        .take(MAX_CREDITS_LISTED)
        .map(|c| {
            let owner = s
                .model(&c.model_id)
                .map(|m| holder_link(&m.owner))
                .unwrap_or_default();
            vec![
                link(&model_href(&c.model_id), &c.model_id),
                esc(role_words(c.role)),
                owner,
            ]
        })
        .collect();
    format!(
        "<section id=\"credits\" data-testid=\"credits\"><h2>Credited on</h2>\
<p class=\"note\">{} training credit{}{}: recognition for the work behind these models, not payment.</p>{}</section>",
        credits.len(),
        if credits.len() == 1 { "" } else { "s" },
        if credits.len() > rows.len() {
            format!(" (the first {} listed)", rows.len())
        } else {
            String::new()
        },
        table("credits", &["model", "role", "owner"], &rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations_unfold_into_dotted_keys() {
        let config: Map<String, Value> = serde_json::from_str(
            r#"{"lr": 0.0002, "opt": {"name": "adamw", "betas": [0.9, 0.95]}, "empty": {}, "note": "<b>"}"#,
        )
        .unwrap();
        let (rows, total) = config_rows(&config, 10);
        assert_eq!(total, 5);
        assert_eq!(
            rows,
            vec![
                ("empty".to_string(), "{}".to_string()),
                ("lr".to_string(), "0.0002".to_string()),
                ("note".to_string(), "<b>".to_string()),
                ("opt.betas".to_string(), "[0.9,0.95]".to_string()),
                ("opt.name".to_string(), "adamw".to_string()),
            ]
        );
        let (rows, total) = config_rows(&config, 2);
        assert_eq!((rows.len(), total), (2, 5));
        assert_eq!(cut("abcdef", 3), "abc…");
        assert_eq!(cut("abc", 3), "abc");
    }
}

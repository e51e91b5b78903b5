//! The model page's "What this model changed from its parent" section and the summaries that
//! label the family tree's edges, both from [`shoulders_state::model_diff`].
//!
//! Tables are bounded ([`MAX_DIFF_ROWS`] rows each, the rest counted): a record may list tens
//! of thousands of tensors, and the JSON API (`/api/models/{owner}/{name}/diff`) has them all.

use std::fmt::Write;

use shoulders_state::diff::{human_count, percent};
use shoulders_state::diff::{Change, ModelDiff, StatusCounts, TensorSide, TensorStatus};
use shoulders_state::{Model, State as Ledger};

use super::html::{esc, link, model_href, table};

/// Most rows in each table of the diff section.
pub const MAX_DIFF_ROWS: usize = 200;

/// The summary of the edge `child` → `parent`, when both are on the ledger.
pub fn edge_summary(s: &Ledger, child: &str, parent: &str) -> Option<String> {
    Some(shoulders_state::model_diff(s.model(parent)?, s.model(child)?).summary)
}

fn more(shown: usize, total: usize, what: &str) -> String {
    if total > shown {
        format!(
            "<p class=\"note\" data-testid=\"diff-more\">{} more {what} not listed (the API has them all).</p>",
            total - shown
        )
    } else {
        String::new()
    }
}

fn shape(s: &TensorSide) -> String {
    let dims: Vec<String> = s.shape.iter().map(u64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// `a → b`, or just `a` when both sides agree; a side that is missing shows as `—`.
fn from_to(parent: Option<String>, child: Option<String>) -> String {
    match (parent, child) {
        (Some(p), Some(c)) if p == c => esc(&p),
        (p, c) => format!(
            "{} → {}",
            esc(p.as_deref().unwrap_or("—")),
            esc(c.as_deref().unwrap_or("—"))
        ),
    }
}

fn status_word(s: TensorStatus) -> &'static str {
    match s {
        TensorStatus::Identical => "identical",
        TensorStatus::Changed => "changed",
        TensorStatus::Added => "added",
        TensorStatus::Removed => "removed",
        TensorStatus::Inherited => "inherited",
    }
}

fn change_words(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| match c {
            Change::Hash => "values",
            Change::Dtype => "dtype",
            Change::Shape => "shape",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn totals_rows(tensors: &StatusCounts<u64>, params: &StatusCounts<u128>) -> Vec<Vec<String>> {
    [
        ("identical", tensors.identical, params.identical),
        ("changed", tensors.changed, params.changed),
        ("added", tensors.added, params.added),
        ("removed", tensors.removed, params.removed),
        ("inherited", tensors.inherited, params.inherited),
    ]
    .into_iter()
    .filter(|(_, t, _)| *t > 0)
    .map(|(word, t, p)| {
        vec![
            format!("<span data-status=\"{word}\">{word}</span>"),
            t.to_string(),
            format!("{} ({})", p, human_count(p)),
        ]
    })
    .collect()
}

fn details(d: &ModelDiff) -> String {
    let t = &d.totals;
    let mut out = String::new();
    if !d.comparable {
        out.push_str(
            "<p class=\"note\">Nothing to compare tensor by tensor: a per-tensor hash list is recorded for only one side, or neither.</p>",
        );
    } else {
        // An adapter changes none of the base's tensors; its own paragraph below says what it adds.
        if d.adapter.is_none() {
            let _ = write!(
                out,
                "<p><strong data-testid=\"diff-changed\" data-ppm=\"{}\">{}</strong> of the parent's parameters changed: {} of {} ({} of {} tensors).</p>",
                t.changed_ppm,
                esc(&t.changed_percent),
                t.changed_params,
                t.parent_params,
                t.tensors.changed,
                t.parent_tensors,
            );
        }
        out.push_str(&table(
            "diff-totals",
            &["status", "tensors", "parameters"],
            &totals_rows(&t.tensors, &t.params),
        ));
    }
    if let Some(q) = &d.quantization {
        let dtypes = q
            .dtypes
            .iter()
            .map(|(n, c)| format!("{} × {c}", esc(n)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(
            out,
            "<p data-testid=\"diff-quantization\">Quantisation: {} of {} matched tensors re-typed{}, {} changed shape.</p>",
            q.dtype_changed,
            q.matched,
            if dtypes.is_empty() { String::new() } else { format!(" ({dtypes})") },
            q.shape_changed
        );
    }
    if let Some(a) = &d.adapter {
        let _ = write!(
            out,
            "<p data-testid=\"diff-adapter\">The adapter adds {} tensors ({} parameters) beside the base's, on {} base modules holding {} of the base's parameters ({}).",
            a.tensors,
            human_count(a.params),
            a.modules.len(),
            human_count(a.targeted_parent_params),
            esc(&a.targeted_percent)
        );
        if let Some(c) = &a.config {
            let mut declared = Vec::new();
            if let Some(p) = &c.peft_type {
                declared.push(esc(p));
            }
            if let Some(r) = c.r {
                declared.push(format!("rank {r}"));
            }
            if let Some(alpha) = c.lora_alpha {
                declared.push(format!("alpha {alpha}"));
            }
            if !c.target_modules.is_empty() {
                declared.push(format!(
                    "targets {}",
                    c.target_modules
                        .iter()
                        .map(|m| format!("<code>{}</code>", esc(m)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            let _ = write!(
                out,
                " Declared in adapter_config.json: {}.",
                declared.join(", ")
            );
        }
        out.push_str("</p>");
        let rows: Vec<Vec<String>> = a
            .modules
            .iter()
            .take(MAX_DIFF_ROWS)
            .map(|m| {
                vec![
                    format!("<code>{}</code>", esc(&m.module)),
                    m.parent_tensor.as_deref().map_or_else(
                        || "not in the parent".to_string(),
                        |p| format!("<code>{}</code>", esc(p)),
                    ),
                    m.parent_params.to_string(),
                    m.adapter_tensors.to_string(),
                    m.adapter_params.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(
            "diff-modules",
            &[
                "base module",
                "parent tensor",
                "its parameters",
                "adapter tensors",
                "adapter parameters",
            ],
            &rows,
        ));
        out.push_str(&more(rows.len(), a.modules.len(), "modules"));
    }
    if d.comparable {
        let rows: Vec<Vec<String>> = d
            .layers
            .iter()
            .take(MAX_DIFF_ROWS)
            .map(|g| {
                vec![
                    g.layer.map_or_else(
                        || "other (not in a layer)".to_string(),
                        |l| format!("layer {l}"),
                    ),
                    g.tensors.identical.to_string(),
                    g.tensors.changed.to_string(),
                    g.tensors.added.to_string(),
                    g.tensors.removed.to_string(),
                    g.params.changed.to_string(),
                    esc(&percent(g.params.changed, g.parent_params)),
                ]
            })
            .collect();
        out.push_str("<h3>By layer</h3>");
        out.push_str(&table(
            "diff-layers",
            &[
                "layer",
                "identical",
                "changed",
                "added",
                "removed",
                "parameters changed",
                "of the layer",
            ],
            &rows,
        ));
        out.push_str(&more(rows.len(), d.layers.len(), "layers"));
        let listed: Vec<_> = d
            .tensors
            .iter()
            .filter(|t| !matches!(t.status, TensorStatus::Identical | TensorStatus::Inherited))
            .collect();
        let rows: Vec<Vec<String>> = listed
            .iter()
            .take(MAX_DIFF_ROWS)
            .map(|t| {
                let p = t.parent.as_ref();
                let c = t.child.as_ref();
                let mut name = format!("<code>{}</code>", esc(&t.name));
                if let Some(c) = c.filter(|c| c.name != t.name) {
                    let _ = write!(name, " ↔ <code>{}</code>", esc(&c.name));
                }
                vec![
                    name,
                    status_word(t.status).to_string(),
                    match (t.status, &t.adapts) {
                        (_, Some(m)) => format!("adapts <code>{}</code>", esc(m)),
                        (TensorStatus::Changed, None) => change_words(&t.changes),
                        _ => String::new(),
                    },
                    from_to(p.map(|s| s.dtype.clone()), c.map(|s| s.dtype.clone())),
                    from_to(p.map(shape), c.map(shape)),
                    p.or(c).map_or(0, |s| s.params).to_string(),
                ]
            })
            .collect();
        out.push_str("<h3>Tensors that differ</h3>");
        if rows.is_empty() {
            out.push_str("<p>None: every tensor is identical.</p>");
        } else {
            out.push_str(&table(
                "diff-tensors",
                &[
                    "tensor",
                    "status",
                    "what changed",
                    "dtype",
                    "shape (outermost first)",
                    "parameters",
                ],
                &rows,
            ));
            out.push_str(&more(rows.len(), listed.len(), "tensors"));
        }
    }
    out
}

/// The section for `m`, diffed against its first parent (the others get their summary); empty
/// for a model without parents.
pub fn diff_section(s: &Ledger, m: &Model) -> String {
    let Some(first) = m.parents.first() else {
        return String::new();
    };
    let mut out = String::from(
        "<section id=\"diff\" data-testid=\"diff\"><h2>What this model changed from its parent</h2>",
    );
    match s.model(&first.model_id) {
        Some(parent) => {
            let d = shoulders_state::model_diff(parent, m);
            let _ = write!(
                out,
                "<p class=\"note\">Compared with {} tensor by tensor, from the hashes both records list (llama.cpp names are matched to Hugging Face names; shapes are read outermost-first).</p>\
                 <p class=\"lead\" data-testid=\"diff-summary\">{}</p>",
                link(&model_href(&parent.model_id), &parent.model_id),
                esc(&d.summary)
            );
            out.push_str(&details(&d));
        }
        None => {
            let _ = write!(
                out,
                "<p>The parent {} is not on this ledger.</p>",
                esc(&first.model_id)
            );
        }
    }
    let others: Vec<String> = m
        .parents
        .iter()
        .skip(1)
        .filter_map(|p| {
            let summary = edge_summary(s, &m.model_id, &p.model_id)?;
            Some(format!(
                "<li>{}: {}</li>",
                link(&model_href(&p.model_id), &p.model_id),
                esc(&summary)
            ))
        })
        .collect();
    if !others.is_empty() {
        let _ = write!(
            out,
            "<p>Against the other parents:</p><ul>{}</ul>",
            others.concat()
        );
    }
    out.push_str("</section>");
    out
}

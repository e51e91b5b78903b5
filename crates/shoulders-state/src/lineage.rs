//! Lineage queries: where a model comes from (its ancestry, the datasets every model in it was
//! trained on, and who contributed to them) and what was built on it.
//!
//! Every walk here starts at one model and follows `parents` (or `children`) links, looking each
//! neighbour up by id, so its cost is proportional to the part of the graph it returns, never to
//! the number of models in the ledger. Nothing is cloned from the state except what the answer
//! holds. Output order depends only on the state (breadth-first from the model, neighbours in
//! record order), so the same log always gives the same bytes.

use crate::{Dataset, Model, State};
use serde::Serialize;
use shoulders_record::{Parent, Relation};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

/// A model's provenance: the model, its whole upstream graph with the datasets every model in it
/// used, and the models derived from it. Serialises to the JSON `shoulders lineage` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// The model asked about.
    pub model: LineageModel,
    /// Every ancestor once, breadth-first (nearest first; parents in record order).
    pub ancestors: Vec<Ancestor>,
    /// Every model derived from this one, directly or not, once, breadth-first (nearest first;
    /// children in log order).
    pub descendants: Vec<Descendant>,
    /// Every `child -> parent` edge among the model and its ancestors, once: grouped by child in
    /// the order model, then `ancestors`; each child's parents in record order.
    pub edges: Vec<Edge>,
    /// Every dataset the model or any ancestor was trained on, once, in order of first use when
    /// walking model, then `ancestors`, each model's datasets in record order.
    pub datasets: Vec<DatasetUse>,
}

/// The model a provenance is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineageModel {
    pub model_id: String,
    pub owner: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_id: Option<String>,
    /// Its direct parents and how it derives from each, in record order.
    pub parents: Vec<Parent>,
}

/// One model upstream of the one asked about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ancestor {
    pub model_id: String,
    pub owner: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license_id: Option<String>,
    /// Length of the shortest parent path from the model asked about (1 = a direct parent).
    pub depth: u32,
    /// This ancestor's own parents and relations (its edges in `Provenance::edges`).
    pub parents: Vec<Parent>,
}

/// One model downstream of the one asked about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Descendant {
    pub model_id: String,
    /// Length of the shortest child path from the model asked about (1 = a direct child).
    pub depth: u32,
}

/// `child` derives from `parent` by `relation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Edge {
    pub child: String,
    pub parent: String,
    pub relation: Relation,
}

/// A dataset used somewhere in the upstream graph, with its contribution totals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DatasetUse {
    pub dataset_id: String,
    pub owner: String,
    pub name: String,
    /// The models of the graph (the model asked about and its ancestors) that list this
    /// dataset, in the same order as `Provenance::ancestors` with the model first.
    pub used_by: Vec<String>,
    /// Number of contributions to the dataset.
    pub contributions: u64,
    /// Every contributor with their number of contributions, by handle.
    pub contributors: Vec<Contributor>,
    pub total_bytes: u64,
    pub total_tokens: u64,
}

/// One contributor to a dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Contributor {
    pub handle: String,
    pub contributions: u64,
}

/// Breadth-first walk from `start` along `next`: every model reached (not `start` itself), once,
/// with its shortest distance from `start`, nearest first. Costs O(models and links reached).
pub(crate) fn walk<'a, I>(
    state: &'a State,
    start: &'a Model,
    next: impl Fn(&'a Model) -> I,
) -> Vec<(&'a Model, u32)>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut out = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    seen.insert(&start.model_id);
    let mut queue = VecDeque::new();
    queue.push_back((start, 0u32));
    while let Some((model, depth)) = queue.pop_front() {
        for id in next(model) {
            if !seen.insert(id) {
                continue;
            }
            // Parents and children always exist (the fold checks references); skip defensively.
            if let Some(m) = state.model(id) {
                out.push((m, depth + 1));
                queue.push_back((m, depth + 1));
            }
        }
    }
    out
}

pub(crate) fn parent_ids(model: &Model) -> impl Iterator<Item = &str> {
    model.parents.iter().map(|p| p.model_id.as_str())
}

pub(crate) fn child_ids(model: &Model) -> impl Iterator<Item = &str> {
    model.children.iter().map(String::as_str)
}

/// The provenance of `model_id`, or `None` if there is no such model.
///
/// Cost is proportional to the size of the model's ancestry and descendants (plus the
/// contributor lists of the datasets it reports), not to the size of the ledger.
pub fn provenance(state: &State, model_id: &str) -> Option<Provenance> {
    let model = state.model(model_id)?;
    let upstream = walk(state, model, parent_ids);
    let downstream = walk(state, model, child_ids);

    // The graph's models: the model itself, then its ancestors nearest first. Each appears once
    // and a record's parents are unique, so every edge below appears exactly once.
    let graph = std::iter::once(model).chain(upstream.iter().map(|(m, _)| *m));

    let mut edges = Vec::new();
    let mut datasets: Vec<(&Dataset, Vec<String>)> = Vec::new();
    let mut dataset_slot: HashMap<&str, usize> = HashMap::new();
    for m in graph {
        for p in &m.parents {
            edges.push(Edge {
                child: m.model_id.clone(),
                parent: p.model_id.clone(),
                relation: p.relation,
            });
        }
        for d in &m.datasets {
            let slot = match dataset_slot.get(d.as_str()) {
                Some(&slot) => slot,
                None => {
                    // Datasets a model names always exist (the fold checks references).
                    let Some(dataset) = state.dataset(d) else {
                        continue;
                    };
                    dataset_slot.insert(d, datasets.len());
                    datasets.push((dataset, Vec::new()));
                    datasets.len() - 1
                }
            };
            datasets[slot].1.push(m.model_id.clone());
        }
    }

    Some(Provenance {
        model: LineageModel {
            model_id: model.model_id.clone(),
            owner: model.owner.clone(),
            name: model.name.clone(),
            license_id: model.license_id.clone(),
            parents: model.parents.clone(),
        },
        ancestors: upstream
            .iter()
            .map(|&(m, depth)| Ancestor {
                model_id: m.model_id.clone(),
                owner: m.owner.clone(),
                name: m.name.clone(),
                license_id: m.license_id.clone(),
                depth,
                parents: m.parents.clone(),
            })
            .collect(),
        descendants: downstream
            .iter()
            .map(|&(m, depth)| Descendant {
                model_id: m.model_id.clone(),
                depth,
            })
            .collect(),
        edges,
        datasets: datasets
            .into_iter()
            .map(|(d, used_by)| DatasetUse {
                dataset_id: d.dataset_id.clone(),
                owner: d.owner.clone(),
                name: d.name.clone(),
                used_by,
                contributions: d.contributions.len() as u64,
                contributors: d
                    .contributors
                    .iter()
                    .map(|(handle, &contributions)| Contributor {
                        handle: handle.clone(),
                        contributions,
                    })
                    .collect(),
                total_bytes: d.total_bytes,
                total_tokens: d.total_tokens,
            })
            .collect(),
    })
}

/// The models of the upstream graph: the model itself, then its ancestors.
fn graph_models(p: &Provenance) -> impl Iterator<Item = &str> {
    std::iter::once(p.model.model_id.as_str())
        .chain(p.ancestors.iter().map(|a| a.model_id.as_str()))
}

/// Graphviz DOT for the upstream graph: one box per model (the model asked about drawn bold),
/// one cylinder per dataset, `child -> parent` edges labelled with the relation and dashed
/// `model -> dataset` edges labelled "trained on"; parents are drawn above children. Node ids
/// are `"model:<id>"` and `"dataset:<id>"`, quoted and escaped, so no id can break the syntax or
/// clash with another. Descendants are not drawn.
pub fn to_dot(p: &Provenance) -> String {
    let mut out = String::new();
    out.push_str("digraph lineage {\n");
    out.push_str("  rankdir=BT;\n");
    out.push_str("  node [shape=box];\n");
    for (i, id) in graph_models(p).enumerate() {
        let bold = if i == 0 { ", penwidth=2" } else { "" };
        let _ = writeln!(
            out,
            "  {} [label={}{bold}];",
            dot_string(&format!("model:{id}")),
            dot_string(id)
        );
    }
    for d in &p.datasets {
        let _ = writeln!(
            out,
            "  {} [label={}, shape=cylinder];",
            dot_string(&format!("dataset:{}", d.dataset_id)),
            dot_string(&d.dataset_id)
        );
    }
    for e in &p.edges {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            dot_string(&format!("model:{}", e.child)),
            dot_string(&format!("model:{}", e.parent)),
            dot_string(e.relation.as_str())
        );
    }
    for d in &p.datasets {
        for m in &d.used_by {
            let _ = writeln!(
                out,
                "  {} -> {} [label=\"trained on\", style=dashed];",
                dot_string(&format!("model:{m}")),
                dot_string(&format!("dataset:{}", d.dataset_id))
            );
        }
    }
    out.push_str("}\n");
    out
}

/// A DOT quoted string: `"` and `\` are escaped, and a line break becomes `\n`.
fn dot_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Mermaid flowchart (`flowchart BT`, parents above children) of the upstream graph. Node ids
/// are generated (`m0` is the model asked about, `m1`… its ancestors in order, `d0`… the
/// datasets) and the real ids are quoted labels, so ids need no escaping beyond the label's.
/// Edges as in [`to_dot`]; datasets are cylinders, "trained on" edges dotted. Descendants are
/// not drawn.
pub fn to_mermaid(p: &Provenance) -> String {
    let models: HashMap<&str, usize> = graph_models(p).enumerate().map(|(i, id)| (id, i)).collect();
    let mut out = String::new();
    out.push_str("flowchart BT\n");
    for (i, id) in graph_models(p).enumerate() {
        let _ = writeln!(out, "    m{i}[\"{}\"]", mermaid_text(id));
    }
    for (i, d) in p.datasets.iter().enumerate() {
        let _ = writeln!(out, "    d{i}[(\"{}\")]", mermaid_text(&d.dataset_id));
    }
    for e in &p.edges {
        // Edges of a `Provenance` built by `provenance` only join models of the graph.
        if let (Some(c), Some(pa)) = (models.get(e.child.as_str()), models.get(e.parent.as_str())) {
            let _ = writeln!(out, "    m{c} -->|{}| m{pa}", e.relation.as_str());
        }
    }
    for (i, d) in p.datasets.iter().enumerate() {
        for m in &d.used_by {
            if let Some(c) = models.get(m.as_str()) {
                let _ = writeln!(out, "    m{c} -.->|trained on| d{i}");
            }
        }
    }
    out.push_str("    classDef subject stroke-width:3px\n");
    out.push_str("    class m0 subject\n");
    out
}

/// Text for inside a Mermaid `"…"` label: characters with a meaning there become entity codes
/// (`"` is `#quot;`), and a line break becomes a space.
fn mermaid_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '#' => out.push_str("#35;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '&' => out.push_str("#amp;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

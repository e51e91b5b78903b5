//! Inline SVG computed on the server: the family tree of a model (layered: ancestors above,
//! descendants below, edges labelled with the relation and what the child changed, every node
//! a link) and an earnings chart. No script is needed to draw either.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::html::{esc, micros, model_href, time};

/// Most nodes drawn in one family tree (the rest are counted in a note).
pub const MAX_TREE_NODES: usize = 60;

const NODE_W: i64 = 190;
const NODE_H: i64 = 38;
const GAP_X: i64 = 30;
const GAP_Y: i64 = 70;
/// Narrowest tree drawn when edges carry summaries, so a one-column tree has room for them.
const MIN_LABELLED_W: i64 = 760;
/// Room added on each side for the summaries of the outermost edges.
const LABEL_PAD: i64 = 120;
/// Longest edge summary drawn (characters); the whole line is the edge's tooltip.
const MAX_SUMMARY_CHARS: usize = 64;

/// One model in the tree: its id, its layer (negative: ancestors, 0: the model, positive:
/// descendants) and whether it is the model the page is about.
pub struct TreeNode {
    pub model_id: String,
    pub layer: i64,
    pub focus: bool,
}

/// `child` derives from `parent` by `relation`.
pub struct TreeEdge {
    pub child: String,
    pub parent: String,
    pub relation: String,
    /// What the child changed from the parent, in one line (the parameter diff's summary).
    pub summary: Option<String>,
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Draw the tree; nodes with the same layer sit on one row, in the given order.
pub fn family_tree(nodes: &[TreeNode], edges: &[TreeEdge]) -> String {
    let mut layers: BTreeMap<i64, Vec<&TreeNode>> = BTreeMap::new();
    for n in nodes.iter().take(MAX_TREE_NODES) {
        layers.entry(n.layer).or_default().push(n);
    }
    let widest = layers.values().map(Vec::len).max().unwrap_or(1) as i64;
    let mut width = widest * (NODE_W + GAP_X) + GAP_X;
    if edges.iter().any(|e| e.summary.is_some()) {
        width = (width + 2 * LABEL_PAD).max(MIN_LABELLED_W);
    }
    let height = layers.len() as i64 * (NODE_H + GAP_Y) - GAP_Y + 2 * 20;
    // Centre of each node.
    let mut pos: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for (row, (_, ns)) in layers.iter().enumerate() {
        let row_w = ns.len() as i64 * (NODE_W + GAP_X) - GAP_X;
        let x0 = (width - row_w) / 2;
        for (i, n) in ns.iter().enumerate() {
            let cx = x0 + i as i64 * (NODE_W + GAP_X) + NODE_W / 2;
            let cy = 20 + row as i64 * (NODE_H + GAP_Y) + NODE_H / 2;
            pos.insert(&n.model_id, (cx, cy));
        }
    }
    let mut out = format!(
        "<svg class=\"tree\" data-testid=\"family-tree\" role=\"img\" aria-label=\"family tree\" \
         viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto-start-reverse\">\
         <path d=\"M 0 0 L 10 5 L 0 10 z\" class=\"arrowhead\"/></marker></defs>"
    );
    for e in edges {
        let (Some(&(px, py)), Some(&(cx, cy))) =
            (pos.get(e.parent.as_str()), pos.get(e.child.as_str()))
        else {
            continue;
        };
        // Parent above child: from the parent's bottom edge to the child's top edge.
        let (y1, y2) = (py + NODE_H / 2, cy - NODE_H / 2);
        let _ = write!(
            out,
            "<g class=\"edge\" data-child=\"{}\" data-parent=\"{}\">",
            esc(&e.child),
            esc(&e.parent)
        );
        if let Some(summary) = &e.summary {
            let _ = write!(out, "<title>{}</title>", esc(summary));
        }
        let _ = write!(
            out,
            "<line x1=\"{px}\" y1=\"{y1}\" x2=\"{cx}\" y2=\"{y2}\" marker-end=\"url(#arrow)\"/>\
             <text x=\"{}\" y=\"{}\" class=\"relation\">{}</text>",
            (px + cx) / 2 + 6,
            (y1 + y2) / 2 + 4,
            esc(&e.relation)
        );
        if let Some(summary) = &e.summary {
            // The part after the relation, which is already drawn; it runs away from the edge
            // (leftwards for a child on the left) so siblings' labels do not overlap.
            let rest = summary
                .split_once(" · ")
                .map_or(summary.as_str(), |(_, r)| r);
            let (x, anchor) = if cx < px {
                ((px + cx) / 2 - 6, "end")
            } else {
                ((px + cx) / 2 + 6, "start")
            };
            let _ = write!(
                out,
                "<text x=\"{x}\" y=\"{}\" text-anchor=\"{anchor}\" class=\"summary\">{}</text>",
                (y1 + y2) / 2 + 18,
                esc(&short(rest, MAX_SUMMARY_CHARS))
            );
        }
        out.push_str("</g>");
    }
    for n in layers.values().flatten() {
        let (cx, cy) = pos[n.model_id.as_str()];
        let class = if n.focus { "node focus" } else { "node" };
        let _ = write!(
            out,
            "<a href=\"{href}\" class=\"{class}\" data-model=\"{id}\"><title>{id}</title>\
             <rect x=\"{}\" y=\"{}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"8\"/>\
             <text x=\"{cx}\" y=\"{}\" text-anchor=\"middle\">{}</text></a>",
            cx - NODE_W / 2,
            cy - NODE_H / 2,
            cy + 5,
            esc(&short(&n.model_id, 26)),
            href = esc(&model_href(&n.model_id)),
            id = esc(&n.model_id),
        );
    }
    out.push_str("</svg>");
    if nodes.len() > MAX_TREE_NODES {
        let _ = write!(
            out,
            "<p class=\"note\">{} more relatives are not drawn.</p>",
            nodes.len() - MAX_TREE_NODES
        );
    }
    out
}

/// Number of time buckets in the earnings chart.
pub const CHART_BUCKETS: usize = 24;

/// Earnings over time: bars per time bucket and a cumulative line. `points` are
/// `(ts_ms, amount_micros)` credits of one currency.
pub fn earnings_chart(points: &[(u64, i128)], currency: &str) -> String {
    if points.is_empty() {
        return "<p class=\"note\" data-testid=\"earnings-chart-empty\">No earnings yet.</p>"
            .to_string();
    }
    let t0 = points.iter().map(|p| p.0).min().unwrap_or(0);
    let t1 = points.iter().map(|p| p.0).max().unwrap_or(0).max(t0 + 1);
    let span = t1 - t0;
    let mut buckets = [0i128; CHART_BUCKETS];
    for &(ts, amount) in points {
        let b = (((ts - t0) as u128 * CHART_BUCKETS as u128) / (span as u128 + 1)) as usize;
        buckets[b.min(CHART_BUCKETS - 1)] += amount;
    }
    let total: i128 = buckets.iter().sum();
    let max_bar = buckets.iter().copied().max().unwrap_or(0).max(1);
    let (w, h, left, bottom, top) = (640i64, 220i64, 70i64, 40i64, 14i64);
    let plot_w = w - left - 10;
    let plot_h = h - bottom - top;
    let bw = plot_w / CHART_BUCKETS as i64;
    let mut out = format!(
        "<svg class=\"chart\" data-testid=\"earnings-chart\" role=\"img\" aria-label=\"earnings over time\" \
         viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <line class=\"axis\" x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\
         <line class=\"axis\" x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\"/>",
        top + plot_h,
        left + plot_w,
        top + plot_h,
        top + plot_h
    );
    let mut cumulative = 0i128;
    let mut line = String::new();
    for (i, &b) in buckets.iter().enumerate() {
        let bh = ((b.max(0) * plot_h as i128) / max_bar) as i64;
        let x = left + i as i64 * bw;
        let _ = write!(
            out,
            "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{bh}\"><title>{} {}</title></rect>",
            x + 1,
            top + plot_h - bh,
            (bw - 2).max(1),
            micros(b),
            esc(currency)
        );
        cumulative += b;
        let cy = top + plot_h - ((cumulative.max(0) * plot_h as i128) / total.max(1)) as i64;
        let _ = write!(line, "{},{} ", x + bw / 2, cy);
    }
    let _ = write!(
        out,
        "<polyline class=\"cumulative\" points=\"{}\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"label\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"label\">0</text>\
         <text x=\"{left}\" y=\"{}\" class=\"label\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"label\">{}</text>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"legend\">bars: per period (max {}) · line: cumulative (total {} {})</text></svg>",
        line.trim_end(),
        left - 4,
        top + 10,
        micros(max_bar),
        left - 4,
        top + plot_h,
        h - 22,
        esc(&time(t0)),
        left + plot_w,
        h - 22,
        esc(&time(t1)),
        left + plot_w,
        h - 6,
        micros(max_bar),
        micros(total),
        esc(currency)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_links_every_node_and_labels_edges() {
        let nodes = vec![
            TreeNode {
                model_id: "a/base".into(),
                layer: -1,
                focus: false,
            },
            TreeNode {
                model_id: "b/<tuned>".into(),
                layer: 0,
                focus: true,
            },
        ];
        let edges = vec![TreeEdge {
            child: "b/<tuned>".into(),
            parent: "a/base".into(),
            relation: "finetune".into(),
            summary: Some("finetune · 12% of <parameters> changed".into()),
        }];
        let svg = family_tree(&nodes, &edges);
        assert!(svg.contains("href=\"/models/a/base\""));
        assert!(svg.contains("href=\"/models/b/%3Ctuned%3E\""));
        assert!(svg.contains("&lt;tuned&gt;") && !svg.contains("<tuned>"));
        assert!(svg.contains(">finetune</text>"));
        assert!(svg.contains("<title>finetune · 12% of &lt;parameters&gt; changed</title>"));
        assert!(svg.contains("class=\"summary\">12% of &lt;parameters&gt; changed</text>"));
        assert!(!svg.contains("<parameters>"));
        assert_eq!(svg.matches("<line").count(), 1);
        // Long summaries are cut in the drawing (the tooltip has them whole).
        let long = TreeEdge {
            summary: Some(format!("finetune · {}", "x".repeat(100))),
            ..edges.into_iter().next().unwrap()
        };
        let svg = family_tree(&nodes, &[long]);
        assert!(svg.contains(&format!("{}…</text>", "x".repeat(MAX_SUMMARY_CHARS - 1))));
    }

    #[test]
    fn chart_buckets_sum_to_the_total() {
        let svg = earnings_chart(&[(1000, 2_000_000), (5000, 500_000), (9000, 250)], "USD");
        assert!(svg.contains("total 2.500250 USD"), "{svg}");
        assert_eq!(svg.matches("class=\"bar\"").count(), CHART_BUCKETS);
        assert!(earnings_chart(&[], "USD").contains("No earnings"));
    }
}

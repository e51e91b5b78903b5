//! Lineage query time on a generated graph of 100k models (target: < 10 ms for a 20-deep
//! ancestry). `cargo bench -p shoulders-bench --bench lineage`
//! (`SHOULDERS_BENCH_MODELS`, default 100000, sets the graph size).

use serde_json::json;
use shoulders_record::{sign_record, ActorKey, Body, Kind};
use shoulders_state::{provenance, State};
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let models: usize = std::env::var("SHOULDERS_BENCH_MODELS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    const DEPTH: usize = 20;
    let key = ActorKey::from_seed([7; 32]);
    let mut state = State::new();
    let mut n = 0u64;
    let mut apply = |state: &mut State, kind: Kind, body: serde_json::Value| {
        let rec = sign_record(
            &key,
            shoulders_bench::BENCH_LOG,
            &format!("r{n}"),
            1_767_225_600_000 + n,
            Body::from_value(kind, body).unwrap(),
        )
        .unwrap();
        state.apply(state.size(), [0; 32], &rec).unwrap();
        n += 1;
    };
    let build = Instant::now();
    apply(
        &mut state,
        Kind::ActorRegister,
        json!({"handle": "org", "name": "Org"}),
    );
    apply(
        &mut state,
        Kind::DatasetCreate,
        json!({"dataset_id": "org/data", "name": "d", "access": "open"}),
    );
    // Chains of DEPTH models; every model but a chain's root has one parent in its chain and,
    // every 7th, a second parent (distillation teacher) in the previous chain.
    for i in 0..models {
        let chain = i / DEPTH;
        let pos = i % DEPTH;
        let mut body = json!({"model_id": format!("org/m{i}"), "name": "m"});
        if pos > 0 {
            let mut parents =
                vec![json!({"model_id": format!("org/m{}", i - 1), "relation": "finetune"})];
            if chain > 0 && i % 7 == 0 {
                parents.push(
                    json!({"model_id": format!("org/m{}", i - DEPTH), "relation": "distilled"}),
                );
            }
            body["parents"] = json!(parents);
        } else {
            body["datasets"] = json!(["org/data"]);
        }
        apply(&mut state, Kind::ModelRegister, body);
    }
    let build_s = build.elapsed().as_secs_f64();
    // The deepest model of the last full chain.
    let leaf = format!("org/m{}", (models / DEPTH) * DEPTH - 1);
    let ancestors = state.ancestors(&leaf).len();
    let runs = 1000;
    let t = Instant::now();
    for _ in 0..runs {
        black_box(state.ancestors(&leaf));
    }
    let ancestors_us = t.elapsed().as_secs_f64() * 1e6 / runs as f64;
    let t = Instant::now();
    for _ in 0..runs {
        black_box(provenance(&state, &leaf).unwrap());
    }
    let provenance_us = t.elapsed().as_secs_f64() * 1e6 / runs as f64;
    println!(
        "\nlineage queries on {models} models (built by folding signed records in {build_s:.1} s)"
    );
    println!("{:<60} {:>12}", "measurement", "per query");
    println!(
        "{:<60} {:>9.1} µs",
        format!("ancestors of {leaf} ({ancestors} ancestors, {DEPTH} deep+)"),
        ancestors_us
    );
    println!(
        "{:<60} {:>9.1} µs   target < 10 ms: {}",
        "full provenance (ancestors, edges, datasets, descendants)",
        provenance_us,
        if provenance_us < 10_000.0 {
            "met"
        } else {
            "MISSED"
        }
    );
}

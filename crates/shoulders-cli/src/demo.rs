//! `shoulders demo`: builds a small but realistic ledger on the embedded defaults (SQLite, the
//! built-in texts below), shows a refused record and an idempotent resubmission, exports the
//! log and verifies the export from scratch, then (unless `--no-serve`) serves the web
//! explorer, API and gateway on it.

use anyhow::{bail, Context, Result};
use rand_core::OsRng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shoulders_ledger::{init_with, verify_export, Ledger, OperatorInit};
use shoulders_record::{sign_record, ActorKey, Body, Kind, SignedRecord};
use std::path::PathBuf;

/// Public-domain verse (Shakespeare, Dickinson, Blake, Keats, Whitman: long enough for the
/// gateway's ∞-gram model to continue a prompt for a while) and a few instruction examples
/// written for the demo; contributed as documents.
const POEMS: &[(&str, &str, &str)] = &[
    ("alice", "Sonnet 18", "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\nRough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date;\nSometime too hot the eye of heaven shines,\nAnd often is his gold complexion dimm'd;\nAnd every fair from fair sometime declines,\nBy chance or nature's changing course untrimm'd;\nBut thy eternal summer shall not fade,\nNor lose possession of that fair thou ow'st;\nNor shall Death brag thou wander'st in his shade,\nWhen in eternal lines to time thou grow'st:\nSo long as men can breathe or eyes can see,\nSo long lives this, and this gives life to thee.\n"),
    ("alice", "Hope", "Hope is the thing with feathers\nThat perches in the soul,\nAnd sings the tune without the words,\nAnd never stops at all.\nAnd sweetest in the gale is heard;\nAnd sore must be the storm\nThat could abash the little bird\nThat kept so many warm.\nI've heard it in the chillest land,\nAnd on the strangest sea;\nYet, never, in extremity,\nIt asked a crumb of me.\n"),
    ("bob", "The Tyger", "Tyger Tyger, burning bright,\nIn the forests of the night;\nWhat immortal hand or eye,\nCould frame thy fearful symmetry?\nIn what distant deeps or skies\nBurnt the fire of thine eyes?\nOn what wings dare he aspire?\nWhat the hand, dare seize the fire?\nAnd what shoulder, and what art,\nCould twist the sinews of thy heart?\nAnd when thy heart began to beat,\nWhat dread hand? and what dread feet?\n"),
    ("bob", "Endymion", "A thing of beauty is a joy for ever:\nIts loveliness increases; it will never\nPass into nothingness; but still will keep\nA bower quiet for us, and a sleep\nFull of sweet dreams, and health, and quiet breathing.\n"),
    ("carol-lab", "Song of Myself", "I celebrate myself, and sing myself,\nAnd what I assume you shall assume,\nFor every atom belonging to me as good belongs to you.\nI loafe and invite my soul,\nI lean and loafe at my ease observing a spear of summer grass.\n"),
];

const INSTRUCTIONS: &[&str] = &[
    "Instruction: write a couplet about the sea.\nResponse: The grey sea turns and folds its hands of foam;\nit keeps no count of ships that don't come home.\n",
    "Instruction: describe autumn in one line.\nResponse: The maples spend their gold and ask for nothing back.\n",
];

/// The hyperparameters of dave's fine-tune (a training configuration: a JSON object kept in
/// the content store, its hash in the model's record).
const TRAINING_CONFIG: &str = r#"{
  "base_model": "carol-lab/verse-base",
  "method": "full fine-tune",
  "runtime": "PyTorch 2.4.0",
  "learning_rate": 0.0002,
  "lr_scheduler": {"type": "cosine", "warmup_steps": 100},
  "epochs": 3,
  "batch_size": 16,
  "max_seq_len": 512,
  "optimizer": {"name": "adamw", "betas": [0.9, 0.95], "weight_decay": 0.01},
  "bf16": true,
  "seed": 1234
}
"#;

struct Demo {
    ledger: Ledger,
    keys: Vec<(&'static str, ActorKey)>,
    ts_ms: u64,
    seq: u32,
}

impl Demo {
    fn key(&self, handle: &str) -> &ActorKey {
        &self
            .keys
            .iter()
            .find(|(h, _)| *h == handle)
            .expect("demo actor")
            .1
    }

    fn sign(&mut self, handle: &str, kind: Kind, body: Value) -> Result<SignedRecord> {
        self.seq += 1;
        self.ts_ms += 1000;
        let body = Body::from_value(kind, body)?;
        Ok(sign_record(
            self.key(handle),
            self.ledger.origin(),
            &format!("demo-{}", self.seq),
            self.ts_ms,
            body,
        )?)
    }

    fn submit(&mut self, handle: &str, kind: Kind, body: Value, what: &str) -> Result<u64> {
        let record = self.sign(handle, kind, body)?;
        let appended = self.ledger.submit(record.bytes().to_vec())?;
        println!(
            "  #{:<3} {:<16} {handle:<10} {what}",
            appended.index,
            kind.as_str()
        );
        Ok(appended.index)
    }

    /// Contribute `text` to `dataset_id` as the engine's use case does: the document is stored
    /// in the content store first, then its `data.contribute` (measured sizes) is appended.
    fn contribute(
        &mut self,
        handle: &str,
        dataset_id: &str,
        text: &str,
        extra: Value,
    ) -> Result<u64> {
        let mut body = contribution_body(dataset_id, text);
        for (k, v) in extra.as_object().into_iter().flatten() {
            body[k] = v.clone();
        }
        let record = self.sign(handle, Kind::DataContribute, body)?;
        let done = self
            .ledger
            .contribute(record.bytes().to_vec(), text.as_bytes())?;
        let title = extra["title"].as_str().unwrap_or("");
        println!(
            "  #{:<3} {:<16} {handle:<10} {title}",
            done.appended.index, "data.contribute"
        );
        Ok(done.appended.index)
    }
}

/// A `data.contribute` body for `text`: its hash and measured sizes (tokens are bytes).
fn contribution_body(dataset_id: &str, text: &str) -> Value {
    let (hash, bytes) = content(text);
    json!({ "dataset_id": dataset_id, "content_hash": hash, "byte_size": bytes, "token_count": bytes })
}

/// A `license.define` body from a preset, with some terms overridden.
fn license_body(id: &str, preset: &str, overrides: Value) -> Result<Value> {
    let (name, spdx, terms) = shoulders_license::preset(preset).context("known preset")?;
    let mut terms = serde_json::to_value(terms)?;
    for (k, v) in overrides.as_object().into_iter().flatten() {
        terms[k] = v.clone();
    }
    Ok(json!({ "license_id": id, "name": name, "spdx_id": spdx, "terms": terms }))
}

fn content(text: &str) -> (String, u64) {
    (
        format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes()))),
        text.len() as u64,
    )
}

/// Layers of the demo's toy llama-style model, and its sizes (hidden, key/value, MLP, vocab).
const DEMO_LAYERS: u64 = 4;
const DEMO_DIMS: (u64, u64, u64, u64) = (512, 128, 1376, 32_000);

/// The demo base model's tensors in Hugging Face names with their shapes (outermost first):
/// embeddings, per layer the attention and MLP projections and two norms, the final norm and
/// the output head.
fn demo_tensor_shapes() -> Vec<(String, Vec<u64>)> {
    let (hidden, kv, mlp, vocab) = DEMO_DIMS;
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![vocab, hidden])];
    for l in 0..DEMO_LAYERS {
        for (part, shape) in [
            ("self_attn.q_proj.weight", vec![hidden, hidden]),
            ("self_attn.k_proj.weight", vec![kv, hidden]),
            ("self_attn.v_proj.weight", vec![kv, hidden]),
            ("self_attn.o_proj.weight", vec![hidden, hidden]),
            ("mlp.gate_proj.weight", vec![mlp, hidden]),
            ("mlp.up_proj.weight", vec![mlp, hidden]),
            ("mlp.down_proj.weight", vec![hidden, mlp]),
            ("input_layernorm.weight", vec![hidden]),
            ("post_attention_layernorm.weight", vec![hidden]),
        ] {
            out.push((format!("model.layers.{l}.{part}"), shape));
        }
    }
    out.push(("model.norm.weight".into(), vec![hidden]));
    out.push(("lm_head.weight".into(), vec![vocab, hidden]));
    out
}

/// A made-up but deterministic tensor hash: SHA-256 of the model that wrote it and its name.
fn demo_hash(model: &str, tensor: &str) -> String {
    content(&format!("{model}:{tensor}")).0
}

/// `model`'s `model.safetensors`: each tensor's hash comes from `owner(name)`, the model whose
/// weights it carries (so a fine-tune shares its base's hashes where it left the weights
/// alone). The file's size is what BF16 weights would take.
fn demo_artifact(model: &str, owner: &dyn Fn(&str) -> &'static str) -> Value {
    let shapes = demo_tensor_shapes();
    let params: u64 = shapes.iter().map(|(_, s)| s.iter().product::<u64>()).sum();
    let tensors: Vec<Value> = shapes
        .iter()
        .map(|(name, shape)| json!({ "name": name, "dtype": "BF16", "shape": shape, "sha256": demo_hash(owner(name), name) }))
        .collect();
    json!({ "path": "model.safetensors", "size_bytes": 2 * params + 8 + 4096,
            "sha256": content(&format!("demo weights {model}")).0, "tensors": tensors })
}

/// The same model quantised to GGUF as llama.cpp names and lays it out: llama.cpp tensor
/// names, dimensions innermost-first, Q4_K matrices, a Q6_K output head and F32 norms.
fn demo_gguf_artifact(model: &str) -> Value {
    let (hidden, _, _, _) = DEMO_DIMS;
    let mut tensors = Vec::new();
    let mut bytes = 0u64;
    for (name, shape) in demo_tensor_shapes() {
        let gguf = shoulders_state::diff::gguf_name(&name).unwrap_or(name);
        let n: u64 = shape.iter().product();
        let (dtype, size) = match (gguf.as_str(), shape.len()) {
            (_, 1) => ("F32", 4 * n),
            ("output.weight", _) => ("Q6_K", n / 256 * 210),
            _ => ("Q4_K", n / 256 * 144),
        };
        bytes += size;
        let dims: Vec<u64> = shape.iter().rev().copied().collect();
        tensors.push(json!({ "name": gguf, "dtype": dtype, "shape": dims, "sha256": demo_hash(model, &gguf) }));
    }
    json!({ "path": "verse-instruct-Q4_K_M.gguf", "size_bytes": bytes + 64 * hidden,
            "sha256": content(&format!("demo weights {model}")).0, "tensors": tensors })
}

/// A PEFT LoRA adapter (rank 16) on the query and value projections of every layer.
fn demo_adapter_artifact(model: &str) -> Value {
    let (hidden, kv, _, _) = DEMO_DIMS;
    let rank = 16u64;
    let mut tensors = Vec::new();
    let mut params = 0u64;
    for l in 0..DEMO_LAYERS {
        for (proj, out) in [("q_proj", hidden), ("v_proj", kv)] {
            let module = format!("base_model.model.model.layers.{l}.self_attn.{proj}");
            for (part, shape) in [("lora_A", [rank, hidden]), ("lora_B", [out, rank])] {
                let name = format!("{module}.{part}.weight");
                params += shape[0] * shape[1];
                tensors.push(json!({ "name": name, "dtype": "F32", "shape": shape, "sha256": demo_hash(model, &name) }));
            }
        }
    }
    json!({ "path": "adapter_model.safetensors", "size_bytes": 4 * params + 8 + 2048,
            "sha256": content(&format!("demo weights {model}")).0, "tensors": tensors })
}

/// Build the demo ledger in `data_dir` (a new temporary directory when `None`), then serve it
/// on `listen` when given.
pub fn run(data_dir: Option<PathBuf>, listen: Option<String>) -> Result<()> {
    let dir = match data_dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "shoulders-demo-{}-{}",
            std::process::id(),
            crate::random_id()
        )),
    };
    let data = crate::data_dir(&dir);
    let operator = OperatorInit {
        handle: "operator".into(),
        name: "Demo operator".into(),
        protocol_fee_bps: 250,
        ts_ms: crate::now_ms(),
    };
    let verifier_key = init_with(
        &data,
        &crate::unique_origin("demo.shoulders.local/log"),
        Some(&operator),
        &mut OsRng,
    )?;
    println!("ledger   {}", dir.display());
    println!("verifier {verifier_key}\n");
    let mut keys: Vec<(&'static str, ActorKey)> =
        ["alice", "bob", "carol-lab", "dave", "erin", "frank"]
            .into_iter()
            .map(|h| (h, ActorKey::generate(&mut OsRng)))
            .collect();
    keys.push(("operator", crate::load_key(&data.operator_key())?));
    let mut demo = Demo {
        ledger: Ledger::open(&data)?,
        keys,
        ts_ms: crate::now_ms(),
        seq: 0,
    };

    println!("appending records:");
    println!(
        "  #0   actor.register   operator   Demo operator (written by init, key in operator.key)"
    );
    println!("  #1   ledger.config    operator   protocol fee 250 bps");
    // bob gives no payout address: his earnings wait in the unclaimed pool.
    for (handle, name, payout) in [
        ("alice", "Alice Example", Some("iban:DE00-ALICE")),
        ("bob", "Bob Example", None),
        ("carol-lab", "Carol Lab", Some("iban:FR00-CAROL")),
        ("dave", "Dave Tuner", Some("iban:NL00-DAVE")),
        ("erin", "Erin Apps (pays for model calls)", None),
    ] {
        let mut body = json!({ "handle": handle, "name": name });
        if let Some(p) = payout {
            body["payout_address"] = p.into();
        }
        demo.submit(handle, Kind::ActorRegister, body, name)?;
    }
    for (owner, id, preset, overrides, what) in [
        (
            "carol-lab",
            "carol-lab/cc-by",
            "cc-by-4.0",
            json!({}),
            "CC-BY-4.0 for the verse dataset",
        ),
        (
            "carol-lab",
            "carol-lab/base-terms",
            "apache-2.0",
            json!({"royalty_bps": 500, "data_share_bps": 4000, "price_per_call_micros": "1000", "price_per_1k_output_tokens_micros": "20000"}),
            "Apache-2.0 terms with a 5% royalty, 40% to data, and a price",
        ),
        (
            "dave",
            "dave/nc",
            "cc-by-nc-4.0",
            json!({"data_share_bps": 3000, "price_per_call_micros": "20000", "price_per_1k_output_tokens_micros": "50000"}),
            "CC-BY-NC-4.0, 30% to data, priced",
        ),
        (
            "dave",
            "dave/commercial",
            "apache-2.0",
            json!({}),
            "Apache-2.0",
        ),
    ] {
        demo.submit(
            owner,
            Kind::LicenseDefine,
            license_body(id, preset, overrides)?,
            &format!("{id}: {what}"),
        )?;
    }
    demo.submit("carol-lab", Kind::DatasetCreate, json!({
        "dataset_id": "carol-lab/public-domain-verse", "name": "Public-domain verse",
        "description": "Poems whose copyright has expired, contributed line by line.", "access": "open",
        "license_id": "carol-lab/cc-by"
    }), "carol-lab/public-domain-verse (open, CC-BY-4.0)")?;
    demo.submit(
        "dave",
        Kind::DatasetCreate,
        json!({
            "dataset_id": "dave/instructions", "name": "Instruction pairs", "access": "owner",
            "license_id": "dave/nc"
        }),
        "dave/instructions (owner only, non-commercial)",
    )?;
    // Each document goes to the content store before its record; the ledger records its hash.
    for (handle, title, text) in POEMS {
        demo.contribute(
            handle,
            "carol-lab/public-domain-verse",
            text,
            json!({ "media_type": "text/plain", "title": title }),
        )?;
    }
    for (i, text) in INSTRUCTIONS.iter().enumerate() {
        demo.contribute(
            "dave",
            "dave/instructions",
            text,
            json!({ "title": format!("pair {}", i + 1) }),
        )?;
    }
    // Realistic tensor lists, so the explorer can show who changed what: the fine-tune
    // retrains layers 2-3 only, the 4-bit copy re-types every tensor, the adapter adds LoRA
    // weights beside the base's.
    demo.submit(
        "carol-lab",
        Kind::ModelRegister,
        json!({
            "model_id": "carol-lab/verse-base", "name": "Verse base",
            "datasets": ["carol-lab/public-domain-verse"], "license_id": "carol-lab/base-terms",
            "artifacts": [demo_artifact("carol-lab/verse-base", &|_| "carol-lab/verse-base")]
        }),
        "carol-lab/verse-base (base model)",
    )?;
    let instruct_owner = |name: &str| {
        if name.starts_with("model.layers.2.") || name.starts_with("model.layers.3.") {
            "dave/verse-instruct"
        } else {
            "carol-lab/verse-base"
        }
    };
    // How dave fine-tuned it: the hyperparameters go to the content store (the record signs
    // their hash); carol-lab is credited for verse-tune, the fine-tuning library it wrote (on
    // PyTorch), alice for the evaluation. Credits are recognition, not payment.
    let config_hash = demo
        .ledger
        .content()
        .put_training_config(TRAINING_CONFIG.as_bytes())?;
    demo.submit(
        "dave",
        Kind::ModelRegister,
        json!({
            "model_id": "dave/verse-instruct", "name": "Verse instruct",
            "parents": [{ "model_id": "carol-lab/verse-base", "relation": "finetune" }],
            "datasets": ["dave/instructions"], "license_id": "dave/nc",
            "artifacts": [demo_artifact("dave/verse-instruct", &instruct_owner)],
            "training": {
                "config_hash": config_hash,
                "code": { "repository": "https://git.example.org/dave/verse-instruct",
                          "commit": "3f9c2a7d1e8b4c6f0a5d9e2b7c1f4a8d6e3b0c9f" },
                "framework": { "name": "verse-tune", "version": "0.3.1" },
                "credits": [{ "actor": "carol-lab", "role": "framework_author" },
                            { "actor": "dave", "role": "trainer" },
                            { "actor": "alice", "role": "evaluator" }],
                "compute": { "hardware": "1x NVIDIA A100 80GB", "accelerator_hours": 6,
                             "energy_wh": 2400, "region": "eu-west-1" }
            }
        }),
        "dave/verse-instruct (finetune of carol-lab/verse-base, non-commercial; training run credits carol-lab and alice)",
    )?;
    demo.submit(
        "dave",
        Kind::ModelRegister,
        json!({
            "model_id": "dave/verse-instruct-q4", "name": "Verse instruct, 4-bit",
            "parents": [{ "model_id": "dave/verse-instruct", "relation": "quantized" }],
            "artifacts": [demo_gguf_artifact("dave/verse-instruct-q4")]
        }),
        "dave/verse-instruct-q4 (quantized)",
    )?;
    // A sibling branch with no licence of its own, so the family tree forks and the licence
    // card has an unlicensed source to flag.
    demo.submit(
        "alice",
        Kind::ModelRegister,
        json!({
            "model_id": "alice/verse-adapter", "name": "Verse LoRA adapter",
            "parents": [{ "model_id": "carol-lab/verse-base", "relation": "adapter" }],
            "artifacts": [demo_adapter_artifact("alice/verse-adapter")],
            "adapter": { "peft_type": "LORA", "target_modules": ["q_proj", "v_proj"], "r": 16, "lora_alpha": 32 }
        }),
        "alice/verse-adapter (adapter of carol-lab/verse-base, no licence)",
    )?;

    println!("\nchecks the ledger enforces:");
    let text = "bob tries to add to a closed dataset";
    let refused = demo.sign(
        "bob",
        Kind::DataContribute,
        contribution_body("dave/instructions", text),
    )?;
    let size_before = demo.ledger.size();
    match demo
        .ledger
        .contribute(refused.bytes().to_vec(), text.as_bytes())
    {
        Err(e) => println!("  refused  {}: {e}", e.code()),
        Ok(_) => {
            bail!("the demo expected bob's contribution to an owner-only dataset to be refused")
        }
    }
    // Content first: publishing the hash of a text without the text itself claims nothing.
    let unsent = demo.sign(
        "bob",
        Kind::DataContribute,
        contribution_body("carol-lab/public-domain-verse", "a text bob never uploads"),
    )?;
    match demo.ledger.submit(unsent.bytes().to_vec()) {
        Err(e) => println!("  refused  {}: {e}", e.code()),
        Ok(_) => bail!("the demo expected a contribution without its content to be refused"),
    }
    let commercial = demo.sign(
        "dave",
        Kind::ModelRegister,
        json!({
            "model_id": "dave/verse-pro", "name": "Verse pro",
            "parents": [{ "model_id": "dave/verse-instruct-q4", "relation": "finetune" }],
            "license_id": "dave/commercial"
        }),
    )?;
    match demo.ledger.submit(commercial.bytes().to_vec()) {
        Err(e) => println!("  refused  {}: {e}", e.code()),
        Ok(_) => {
            bail!("the demo expected a commercial licence below non-commercial data to be refused")
        }
    }
    let again = demo.sign(
        "alice",
        Kind::DatasetCreate,
        json!({
            "dataset_id": "alice/notes", "name": "Alice's notes", "access": "owner"
        }),
    )?;
    let first = demo.ledger.submit(again.bytes().to_vec())?;
    let second = demo.ledger.submit(again.bytes().to_vec())?;
    println!(
        "  resubmitting record #{} returned #{} (duplicate: {})",
        first.index, second.index, second.duplicate
    );
    if demo.ledger.size() != size_before + 1 {
        bail!("a refused or duplicate record changed the log size");
    }

    let ancestry = demo
        .ledger
        .with_state(|s| s.ancestors("dave/verse-instruct-q4"));
    println!(
        "\nlineage of dave/verse-instruct-q4: {}",
        ancestry.join(" <- ")
    );

    for use_tag in ["commercial", "research"] {
        let decision = demo
            .ledger
            .with_state(|s| {
                s.check_use(
                    "dave/verse-instruct-q4",
                    use_tag,
                    None,
                    crate::now_ms(),
                    None,
                )
            })
            .expect("the model exists");
        let verdict = if decision.allowed {
            "allowed".to_string()
        } else {
            format!("denied: {}", decision.reasons.join("; "))
        };
        println!("licence check, {use_tag} use of dave/verse-instruct-q4: {verdict}");
        if decision.allowed {
            let royalties: Vec<String> = decision
                .royalties
                .iter()
                .map(|r| format!("{} bps to {} ({})", r.bps, r.owner, r.model_id))
                .collect();
            println!(
                "  royalties owed upstream: {}; {}",
                royalties.join(", "),
                decision.notes.join("; ")
            );
        }
    }

    // No black box: index the verse dataset and trace a model output back to its sources.
    crate::attrib_cmd::build_index(&dir, "carol-lab/public-domain-verse")?;
    let output_path = dir.join("sample-output.txt");
    std::fs::write(
        &output_path,
        "Shall I compare thee to a summer's day? Thou art more lovely and more temperate, \
         said the model, and a thing of beauty is a joy for ever.",
    )?;
    let answer = crate::attrib_cmd::attribute_value(crate::attrib_cmd::AttributeArgs {
        data_dir: dir.clone(),
        dataset_id: "carol-lab/public-domain-verse".into(),
        text: output_path.clone(),
        max_spans: 64,
    })?;
    println!("\nattribution of a model output against carol-lab/public-domain-verse:");
    for span in answer["spans"].as_array().into_iter().flatten() {
        let who: Vec<&str> = span["contributions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["contributor"].as_str())
            .collect();
        println!(
            "  {:?} <- {}",
            span["text"].as_str().unwrap_or(""),
            who.join(", ")
        );
    }
    println!("  shares (ppm): {}", answer["shares"]["contributors_ppm"]);

    meter(&mut demo, &dir)?;
    governance(&mut demo, &dir)?;

    let export_path = dir.join("export.txt");
    let mut file = std::fs::File::create(&export_path).context("create export")?;
    demo.ledger.export(&mut file)?;
    file.sync_all()?;
    let checkpoint = demo.ledger.checkpoint()?;
    drop(demo);
    let bytes = std::fs::read(&export_path)?;
    let (report, _) = verify_export(&bytes, &verifier_key)?;
    print!("\ncheckpoint:\n{}", String::from_utf8_lossy(&checkpoint));
    println!("\nverified {} from scratch: {} records, root {}, {} actors, {} datasets, {} contributions, {} models, {} receipts ({} legs, balances conserved)",
        export_path.display(), report.tree_size, report.root_hash, report.actors, report.datasets, report.contributions, report.models, report.receipts, report.legs);
    println!(
        "\ntry:  shoulders show --data-dir {} model dave/verse-instruct-q4",
        dir.display()
    );
    println!(
        "      shoulders statement --data-dir {} alice --proofs",
        dir.display()
    );

    // The explorer's "try it" box calls the gateway as erin with this key. A demo-only
    // convenience: the page shows the key to anyone who can load it.
    let mut keys = shoulders_server::apikeys::open_store(&dir, None, true)?;
    let (token, _) = shoulders_server::apikeys::issue(
        &mut *keys,
        "erin",
        &shoulders_server::apikeys::KeyLimits::default(),
        crate::now_ms(),
        &mut OsRng,
    )?;
    drop(keys);
    std::fs::write(
        dir.join(shoulders_server::explorer::DEMO_API_KEY_FILE),
        format!("{token}\n"),
    )?;
    println!("      gateway API key for erin (demo only): {token}");
    let Some(listen) = listen else {
        return Ok(());
    };
    println!("\nserving the explorer, the API (/api, /openapi.json) and the gateway (/v1); Ctrl-C stops:");
    crate::serve_cmd::serve_unlogged(crate::serve_cmd::ServeArgs {
        config: None,
        data_dir: dir,
        listen,
        upstreams: Vec::new(),
        metering: "on".into(),
        max_body_bytes: shoulders_server::DEFAULT_MAX_BODY_BYTES,
        max_content_bytes: shoulders_server::DEFAULT_MAX_CONTENT_BYTES as u64,
        timeout_ms: shoulders_server::DEFAULT_REQUEST_TIMEOUT_MS,
        max_upstream_body_bytes: shoulders_server::DEFAULT_MAX_UPSTREAM_BODY_BYTES as u64,
        upstream_timeout_ms: shoulders_server::DEFAULT_UPSTREAM_TIMEOUT_MS,
        admission_window_ms: shoulders_server::DEFAULT_ADMISSION_WINDOW_MS,
        rate_limit_per_s: shoulders_server::DEFAULT_RATE_LIMIT_PER_S,
        rate_limit_loopback: false,
        attribute_rate_per_s: shoulders_server::ratelimit::DEFAULT_ATTRIBUTE_RATE_PER_S,
        read_only: false,
        follow_interval_ms: shoulders_server::DEFAULT_FOLLOW_INTERVAL_MS,
        index_follow: "on".into(),
        header_timeout_ms: shoulders_server::conn::DEFAULT_HEADER_TIMEOUT_MS,
        idle_timeout_ms: shoulders_server::conn::DEFAULT_IDLE_TIMEOUT_MS,
        max_connections: shoulders_server::conn::DEFAULT_MAX_CONNECTIONS as u64,
        quota_records: shoulders_server::quota::DEFAULT_QUOTA_RECORDS,
        quota_bytes: shoulders_server::quota::DEFAULT_QUOTA_BYTES,
        quota_window_ms: shoulders_server::quota::DEFAULT_QUOTA_WINDOW_MS,
        max_page_bytes: shoulders_server::api::MAX_PAGE_BYTES as u64,
        log_format: "text".into(),
        preload_indexes: Vec::new(),
        witness_policy: None,
        keep_outputs: Vec::new(),
    })
}

/// Metered use: erin pays for calls to two models; each output is attributed against the verse
/// index and its receipt carries the shares, so the fold pays the poets whose lines it quotes.
fn meter(demo: &mut Demo, dir: &std::path::Path) -> Result<()> {
    const CALLS: usize = 200;
    println!("\nmetered use: erin deposits 100 USD and pays for {CALLS} model calls:");
    demo.submit(
        "operator",
        Kind::FundsDeposit,
        json!({"account": "erin", "currency": "USD", "amount_micros": "100000000", "reference": "card payment"}),
        "100 USD for erin",
    )?;
    let lines: Vec<&str> = POEMS.iter().flat_map(|(_, _, t)| t.lines()).collect();
    let verse =
        shoulders_attrib::dataset::DatasetIndex::open(dir, "carol-lab/public-domain-verse")?;
    let mut receipts = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        // A stand-in model output: two quoted lines around a phrase of the model's own.
        let text = format!(
            "{} - as the model puts it - {}",
            lines[(i * 7) % lines.len()],
            lines[(i * 3 + 1) % lines.len()]
        );
        let answer = verse.attribute(&text, &Default::default())?;
        let attribution: Vec<Value> = answer
            .shares
            .contributions_ppm
            .iter()
            .map(|(c, ppm)| json!({"dataset_id": "carol-lab/public-domain-verse", "contribution": c, "ppm": ppm}))
            .collect();
        let (model, use_tag) = if i % 4 == 3 {
            ("carol-lab/verse-base", "commercial")
        } else {
            ("dave/verse-instruct", "research")
        };
        let body = json!({
            "usage_id": format!("demo-call-{i}"), "model_id": model, "payer": "erin",
            "use_category": use_tag, "input_tokens": 12, "output_tokens": text.len(),
            "output_hash": format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes()))),
            "attribution": attribution,
        });
        receipts.push(
            demo.sign("operator", Kind::UsageReceipt, body)?
                .bytes()
                .to_vec(),
        );
    }
    let settled = demo
        .ledger
        .submit_batch(receipts)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    println!(
        "  settled {} usage receipts in one batch (#{}..#{})",
        settled.len(),
        settled.first().map_or(0, |a| a.index),
        settled.last().map_or(0, |a| a.index)
    );
    let denied = demo.sign(
        "operator",
        Kind::UsageReceipt,
        json!({"usage_id": "demo-denied", "model_id": "dave/verse-instruct", "payer": "erin",
               "use_category": "commercial", "input_tokens": 1, "output_tokens": 1,
               "output_hash": format!("sha256:{}", "0".repeat(64))}),
    )?;
    match demo.ledger.submit(denied.bytes().to_vec()) {
        Err(e) => println!("  refused  {}: {e}", e.code()),
        Ok(_) => {
            bail!("the demo expected a commercial call to a non-commercial model to be refused")
        }
    }
    let usd = |micros: i128| format!("{}.{:06} USD", micros / 1_000_000, micros % 1_000_000);
    demo.ledger.with_state(|s| -> Result<()> {
        println!("  who earned what:");
        for holder in [
            "erin",
            "@protocol",
            "carol-lab",
            "dave",
            "alice",
            "bob",
            "@rounding",
        ] {
            let st = s.statement(holder, None, None);
            let Some(t) = st.totals.iter().find(|t| t.currency == "USD") else {
                continue;
            };
            let held = if t.unclaimed_micros > 0 {
                format!(
                    " (+ {} held in the unclaimed pool: no payout address yet)",
                    usd(t.unclaimed_micros)
                )
            } else {
                String::new()
            };
            println!("    {holder:<10} balance {}{held}", usd(t.balance_micros));
        }
        for c in s
            .dataset("carol-lab/public-domain-verse")
            .map(|d| d.contributions.clone())
            .unwrap_or_default()
        {
            let Some(contribution) = s.contribution(c) else {
                continue;
            };
            let st = s.statement(&contribution.contributor, None, None);
            let earned: i128 = st
                .by_source
                .iter()
                .filter(|g| g.contribution == Some(c))
                .map(|g| g.amount_micros)
                .sum();
            println!(
                "    contribution #{c} ({}, by {}) was used in {} outputs and earned {}",
                contribution.title.as_deref().unwrap_or("untitled"),
                contribution.contributor,
                s.contribution_uses(c),
                usd(earned)
            );
        }
        if !s.totals().iter().all(|t| t.conserved) {
            bail!("the books do not balance");
        }
        println!("  every balance sums to deposits minus withdrawals: conserved");
        Ok(())
    })
}

/// A poem frank uploads before its author does: prior possession the copy map cannot see.
const DISPUTED_POEM: &str = "I wandered lonely as a cloud\nThat floats on high o'er vales and hills,\nWhen all at once I saw a crowd,\nA host, of golden daffodils;\nBeside the lake, beneath the trees,\nFluttering and dancing in the breeze.\n";

/// Governance, start to finish: frank contributes a poem before its author, alice, does, so
/// the copy map credits him; alice disputes it, naming her contribution as the original; while
/// the dispute is open frank's earnings are held in escrow; the operator upholds it, the escrow
/// goes to alice and so does every later credit of frank's copy. Then a reviewed dataset: a
/// pending contribution earns nothing until accepted, and a do-not-train mark refuses a model.
fn governance(demo: &mut Demo, dir: &std::path::Path) -> Result<()> {
    const DATASET: &str = "carol-lab/public-domain-verse";
    println!("\ngovernance: a dispute from start to finish:");
    demo.submit(
        "frank",
        Kind::ActorRegister,
        json!({"handle": "frank", "name": "Frank Copier"}),
        "Frank Copier",
    )?;
    let copy = demo.contribute(
        "frank",
        DATASET,
        DISPUTED_POEM,
        json!({"title": "Daffodils (uploaded by frank)"}),
    )?;
    let original = demo.contribute(
        "alice",
        DATASET,
        DISPUTED_POEM,
        json!({"title": "Daffodils"}),
    )?;
    crate::attrib_cmd::build_index(dir, DATASET)?;
    let verse = shoulders_attrib::dataset::DatasetIndex::open(dir, DATASET)?;
    let text = "When all at once I saw a crowd, a host, of golden daffodils, beside the lake.";
    let mut calls = 0;
    let mut call = |demo: &mut Demo, n: usize| -> Result<()> {
        let excluded = demo.ledger.with_state(|s| s.attribution_excluded(DATASET));
        let opts = shoulders_attrib::dataset::AttributeOptions {
            excluded,
            ..Default::default()
        };
        let answer = verse.attribute(text, &opts)?;
        let attribution: Vec<Value> = answer
            .shares
            .contributions_ppm
            .iter()
            .map(|(c, ppm)| json!({"dataset_id": DATASET, "contribution": c, "ppm": ppm}))
            .collect();
        let mut batch = Vec::new();
        for _ in 0..n {
            calls += 1;
            let body = json!({
                "usage_id": format!("demo-daffodils-{calls}"), "model_id": "carol-lab/verse-base",
                "payer": "erin", "use_category": "commercial", "input_tokens": 8,
                "output_tokens": text.len(),
                "output_hash": format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes()))),
                "attribution": attribution,
            });
            batch.push(
                demo.sign("operator", Kind::UsageReceipt, body)?
                    .bytes()
                    .to_vec(),
            );
        }
        for r in demo.ledger.submit_batch(batch) {
            r?;
        }
        Ok(())
    };
    let usd = |micros: i128| format!("{}.{:06} USD", micros / 1_000_000, micros % 1_000_000);
    let earned = |demo: &Demo, who: &str| -> i128 {
        demo.ledger.with_state(|s| {
            s.statement(who, None, None)
                .totals
                .iter()
                .filter(|t| t.currency == "USD")
                .map(|t| t.balance_micros + t.unclaimed_micros)
                .sum()
        })
    };
    call(demo, 5)?;
    println!(
        "  5 calls quote the poem; the copy map credits frank's earlier upload #{copy}: frank holds {}",
        usd(earned(demo, "frank"))
    );
    let hash = content(DISPUTED_POEM).0;
    let dispute = demo.submit(
        "alice",
        Kind::DisputeOpen,
        json!({"contribution": copy, "original": original, "evidence": [hash],
               "statement": "Contribution #copy is my poem, which frank uploaded before I did."
                   .replace("#copy", &format!("#{copy}"))}),
        &format!("alice disputes #{copy}, naming her #{original} as the original"),
    )?;
    call(demo, 5)?;
    let escrow = shoulders_state::governance::escrow_account(dispute);
    let held = demo.ledger.with_state(|s| s.balance(&escrow, "USD"));
    println!(
        "  5 more calls while the dispute is open: {} held in {escrow}, frank still holds {}",
        usd(held),
        usd(earned(demo, "frank"))
    );
    let alice_before = earned(demo, "alice");
    demo.submit(
        "operator",
        Kind::DisputeRule,
        json!({"dispute": dispute, "verdict": "upheld",
               "reason": "alice's drafts predate frank's upload; the texts are identical"}),
        &format!("the operator upholds dispute #{dispute}"),
    )?;
    println!(
        "  ruling: the escrow and what frank's copy earned before the dispute ({} in all) go to alice; frank holds {}",
        usd(earned(demo, "alice") - alice_before),
        usd(earned(demo, "frank"))
    );
    let alice_before = earned(demo, "alice");
    let frank_before = earned(demo, "frank");
    call(demo, 5)?;
    println!(
        "  5 calls after the ruling: alice earns {}, frank {}",
        usd(earned(demo, "alice") - alice_before),
        usd(earned(demo, "frank") - frank_before)
    );
    if earned(demo, "frank") != frank_before || held == 0 {
        bail!("the demo expected the ruling to move frank's credit to alice");
    }

    println!("\ngovernance: a reviewed dataset and a do-not-train mark:");
    demo.submit(
        "dave",
        Kind::DatasetCreate,
        json!({"dataset_id": "dave/reviewed-notes", "name": "Reviewed notes", "access": "open",
               "review": true, "quota": {"window_ms": 86_400_000u64, "max_count": 10},
               "disputes": {"arbiter": "owner"}}),
        "dave/reviewed-notes (open, reviewed, 10 contributions a day each)",
    )?;
    let pending = demo.contribute(
        "alice",
        "dave/reviewed-notes",
        "A note on metre: the iamb is a short syllable followed by a long one.",
        json!({"title": "On metre"}),
    )?;
    let reserved = demo.contribute(
        "bob",
        "dave/reviewed-notes",
        "A note on rhyme, which bob does not want used to train models.",
        json!({"title": "On rhyme", "tdm_reservation": true}),
    )?;
    demo.submit(
        "dave",
        Kind::ContributionReview,
        json!({"contribution": pending, "decision": "accept", "quality": 80}),
        &format!("dave accepts #{pending} (quality 80); #{reserved} stays pending"),
    )?;
    let refused = demo.sign(
        "dave",
        Kind::ModelRegister,
        json!({"model_id": "dave/notes-model", "name": "Notes model",
               "datasets": ["dave/reviewed-notes"]}),
    )?;
    match demo.ledger.submit(refused.bytes().to_vec()) {
        Err(e) => println!("  refused  {}: {e}", e.code()),
        Ok(_) => bail!("the demo expected training on a reserved contribution to be refused"),
    }
    Ok(())
}

use yaml_rust2::{Yaml, YamlLoader};

/// The lineage-relevant fields of a Hugging Face model card's YAML front matter.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ModelCard {
    /// SPDX id or Hugging Face licence name (`license:`).
    pub license: Option<String>,
    /// `base_model:` (a string or a list).
    pub base_models: Vec<String>,
    /// `base_model_relation:` (`adapter`, `merge`, `quantized`, `finetune`).
    pub base_model_relation: Option<String>,
    /// `datasets:` (a string or a list).
    pub datasets: Vec<String>,
}

fn strings(y: &Yaml) -> Result<Vec<String>, String> {
    match y {
        Yaml::BadValue | Yaml::Null => Ok(Vec::new()),
        Yaml::String(s) => Ok(vec![s.clone()]),
        Yaml::Array(items) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "list entries must be strings".to_string())
            })
            .collect(),
        _ => Err("expected a string or a list of strings".into()),
    }
}

fn string(y: &Yaml, key: &str) -> Result<Option<String>, String> {
    match y {
        Yaml::BadValue | Yaml::Null => Ok(None),
        Yaml::String(s) => Ok(Some(s.clone())),
        _ => Err(format!("`{key}` must be a string")),
    }
}

/// Parse the front matter (between a leading `---` line and the next `---` line). A card
/// without front matter gives `Ok(None)`.
pub fn parse_front_matter(text: &str) -> Result<Option<ModelCard>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let Some(rest) = text
        .strip_prefix("---\n")
        .or_else(|| text.strip_prefix("---\r\n"))
    else {
        return Ok(None);
    };
    let end = rest
        .lines()
        .scan(0usize, |offset, line| {
            let at = *offset;
            *offset += line.len() + 1;
            Some((at, line))
        })
        .find(|(_, line)| line.trim_end() == "---")
        .map(|(at, _)| at)
        .ok_or("front matter has no closing `---` line")?;
    let docs = YamlLoader::load_from_str(&rest[..end])
        .map_err(|e| format!("front matter is not valid YAML: {e}"))?;
    let Some(doc) = docs.first() else {
        return Ok(Some(ModelCard::default()));
    };
    if !matches!(doc, Yaml::Hash(_)) {
        return Err("front matter must be a YAML mapping".into());
    }
    Ok(Some(ModelCard {
        license: string(&doc["license"], "license")?,
        base_models: strings(&doc["base_model"]).map_err(|e| format!("`base_model`: {e}"))?,
        base_model_relation: string(&doc["base_model_relation"], "base_model_relation")?,
        datasets: strings(&doc["datasets"]).map_err(|e| format!("`datasets`: {e}"))?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_and_flow_lists_and_scalars() {
        let card = parse_front_matter("---\nlicense: apache-2.0\nbase_model: acme/base\nbase_model_relation: finetune\ndatasets:\n  - acme/verse\n  - acme/prose\ntags: [x]\n---\n# Model\n")
            .unwrap()
            .unwrap();
        assert_eq!(card.license.as_deref(), Some("apache-2.0"));
        assert_eq!(card.base_models, vec!["acme/base"]);
        assert_eq!(card.base_model_relation.as_deref(), Some("finetune"));
        assert_eq!(card.datasets, vec!["acme/verse", "acme/prose"]);
        let merge =
            parse_front_matter("---\nbase_model: [a/x, b/y]\nbase_model_relation: merge\n---\n")
                .unwrap()
                .unwrap();
        assert_eq!(merge.base_models, vec!["a/x", "b/y"]);
    }

    #[test]
    fn no_front_matter_and_broken_front_matter() {
        assert_eq!(parse_front_matter("# Just a title\n").unwrap(), None);
        assert!(parse_front_matter("---\nlicense: mit\n").is_err());
        assert!(parse_front_matter("---\nlicense: [a\n---\n").is_err());
        assert!(parse_front_matter("---\n- a\n- b\n---\n").is_err());
        assert!(parse_front_matter("---\nlicense: {a: 1}\n---\n").is_err());
    }
}

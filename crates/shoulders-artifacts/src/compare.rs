use serde::Serialize;
use shoulders_record::Artifact;
use std::collections::BTreeMap;

/// One difference between registered artifacts and a directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Difference {
    MissingFile {
        path: String,
    },
    ExtraFile {
        path: String,
    },
    ChangedFile {
        path: String,
        registered: String,
        found: String,
    },
    ChangedTensor {
        path: String,
        tensor: String,
        registered: String,
        found: String,
    },
    MissingTensor {
        path: String,
        tensor: String,
    },
    ExtraTensor {
        path: String,
        tensor: String,
    },
    ChangedTensorShape {
        path: String,
        tensor: String,
    },
}

/// The outcome of [`compare`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub matches: bool,
    pub files_checked: usize,
    pub tensors_checked: usize,
    pub differences: Vec<Difference>,
}

/// Compare registered artifacts with freshly hashed ones. For files hashed per tensor, the
/// differing tensors are named; a file whose tensors all match but whose bytes differ (e.g. the
/// header metadata changed) is reported as a changed file.
pub fn compare(registered: &[Artifact], found: &[Artifact]) -> Report {
    let reg: BTreeMap<&str, &Artifact> = registered.iter().map(|a| (a.path.as_str(), a)).collect();
    let got: BTreeMap<&str, &Artifact> = found.iter().map(|a| (a.path.as_str(), a)).collect();
    let mut differences = Vec::new();
    let mut tensors_checked = 0;
    for (path, r) in &reg {
        let Some(f) = got.get(path) else {
            differences.push(Difference::MissingFile {
                path: path.to_string(),
            });
            continue;
        };
        let path = path.to_string();
        let mut tensor_diffs = Vec::new();
        if !r.tensors.is_empty() || !f.tensors.is_empty() {
            let rt: BTreeMap<&str, _> = r.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
            let ft: BTreeMap<&str, _> = f.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
            for (name, t) in &rt {
                tensors_checked += 1;
                match ft.get(name) {
                    None => tensor_diffs.push(Difference::MissingTensor {
                        path: path.clone(),
                        tensor: name.to_string(),
                    }),
                    Some(u) if u.sha256 != t.sha256 => {
                        tensor_diffs.push(Difference::ChangedTensor {
                            path: path.clone(),
                            tensor: name.to_string(),
                            registered: t.sha256.clone(),
                            found: u.sha256.clone(),
                        })
                    }
                    Some(u) if u.shape != t.shape || u.dtype != t.dtype => {
                        tensor_diffs.push(Difference::ChangedTensorShape {
                            path: path.clone(),
                            tensor: name.to_string(),
                        })
                    }
                    Some(_) => {}
                }
            }
            for name in ft.keys().filter(|n| !rt.contains_key(*n)) {
                tensor_diffs.push(Difference::ExtraTensor {
                    path: path.clone(),
                    tensor: name.to_string(),
                });
            }
        }
        if tensor_diffs.is_empty() && r.sha256 != f.sha256 {
            differences.push(Difference::ChangedFile {
                path,
                registered: r.sha256.clone(),
                found: f.sha256.clone(),
            });
        } else {
            differences.extend(tensor_diffs);
        }
    }
    for path in got.keys().filter(|p| !reg.contains_key(*p)) {
        differences.push(Difference::ExtraFile {
            path: path.to_string(),
        });
    }
    Report {
        matches: differences.is_empty(),
        files_checked: reg.len(),
        tensors_checked,
        differences,
    }
}

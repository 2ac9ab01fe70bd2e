//! The body of a preview or apply: `{"yaml": "<one object>", "file": "optional.yaml"}`,
//! checked before anything is planned so each problem gets its own clear message.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

use super::changes::ObjectKey;

/// A checked request body: one object's YAML and the file a new object goes to.
pub(super) struct Edit {
    pub yaml: String,
    pub file: PathBuf,
    pub key: ObjectKey,
    pub value: Yaml,
}

#[derive(Deserialize)]
struct Body {
    yaml: Option<Value>,
    file: Option<Value>,
}

pub(super) fn parse_body(body: &[u8]) -> Result<Edit, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the body is not JSON: {e}; send {{\"yaml\": \"<one object>\", \"file\": \"optional-new-file.yaml\"}}"))?;
    if !v.is_object() {
        return Err(
            "the body must be a JSON object with \"yaml\" (and optionally \"file\")".into(),
        );
    }
    let b: Body = serde_json::from_value(v).map_err(|e| format!("the body: {e}"))?;
    let yaml = match b.yaml {
        Some(Value::String(y)) if !y.trim().is_empty() => y,
        Some(Value::String(_)) => return Err("the body's \"yaml\" is empty".into()),
        Some(_) => return Err("the body's \"yaml\" must be a string of YAML".into()),
        None => return Err("the body has no \"yaml\": send the object's YAML text".into()),
    };
    let mut values = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&yaml) {
        match Yaml::deserialize(doc) {
            Ok(Yaml::Null) => {}
            Ok(v) => values.push(v),
            Err(e) => {
                return Err(match e.location() {
                    Some(l) => format!("the yaml does not parse at line {}: {e}", l.line()),
                    None => format!("the yaml does not parse: {e}"),
                })
            }
        }
    }
    let value = match values.len() {
        1 => values.remove(0),
        0 => return Err("the yaml holds no object".into()),
        n => {
            return Err(format!(
                "the yaml holds {n} objects; send one object at a time"
            ))
        }
    };
    let text = |v: Option<&Yaml>| v.and_then(Yaml::as_str).map(str::to_string);
    let (Some(kind), Some(name)) = (
        text(value.get("kind")),
        text(value.get("metadata").and_then(|m| m.get("name"))),
    ) else {
        return Err("the yaml's object needs a kind and a metadata.name".into());
    };
    let namespace = text(value.get("metadata").and_then(|m| m.get("namespace")))
        .unwrap_or_else(|| "default".into());
    let file = match b.file {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) if f.trim().is_empty() => None,
        Some(Value::String(f)) => Some(PathBuf::from(f)),
        Some(_) => {
            return Err(
                "the body's \"file\" must be a string (a path relative to the mesh directory)"
                    .into(),
            )
        }
    };
    let file = match file {
        Some(f) => {
            // Checked here too: an existing object ignores `file`, a bad one is still an error.
            let outside = f.is_absolute()
                || f.components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)));
            if outside {
                return Err(format!(
                    "file {:?} is outside the mesh directory: name a path relative to it",
                    f.display().to_string()
                ));
            }
            if !meshlens_mesh::load::is_config_file(&f) {
                return Err(format!(
                    "file {:?} must end in .yaml or .yml (or .json) to be read as mesh config",
                    f.display().to_string()
                ));
            }
            f
        }
        None => {
            let clean = |s: &str| -> String {
                s.chars()
                    .map(|c| match c {
                        'a'..='z' | '0'..='9' | '.' | '-' | '_' => c,
                        'A'..='Z' => c.to_ascii_lowercase(),
                        _ => '-',
                    })
                    .collect()
            };
            PathBuf::from(format!(
                "{}-{}-{}.yaml",
                clean(&kind),
                clean(&namespace),
                clean(&name)
            ))
        }
    };
    Ok(Edit {
        yaml,
        file,
        key: ObjectKey {
            kind,
            namespace,
            name,
        },
        value,
    })
}

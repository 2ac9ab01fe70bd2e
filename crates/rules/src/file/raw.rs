//! The rule file as YAML gives it, before validation. Unknown fields are refused here.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub groups: Option<Vec<RawGroup>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    #[serde(default)]
    pub name: Option<Scalar>,
    #[serde(default)]
    pub interval: Option<Scalar>,
    #[serde(default)]
    pub query_offset: Option<Scalar>,
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    pub rules: Option<Vec<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(default)]
    pub record: Option<Scalar>,
    #[serde(default)]
    pub alert: Option<Scalar>,
    #[serde(default)]
    pub expr: Option<Scalar>,
    #[serde(default, rename = "for")]
    pub for_: Option<Scalar>,
    #[serde(default)]
    pub keep_firing_for: Option<Scalar>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, Scalar>>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, Scalar>>,
}

/// Any YAML scalar read as text, as Go's YAML decoder does for string fields
/// (`severity: 1` is the label value "1"); null is the empty string.
#[derive(Debug, Default, Clone)]
pub(super) struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(meshlens_model::format_value(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// A map of scalars as plain strings.
pub(super) fn strings(m: Option<BTreeMap<String, Scalar>>) -> BTreeMap<String, String> {
    m.unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

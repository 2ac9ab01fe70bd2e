//! `--enable-feature`, as Prometheus 3 takes it (`meshlens server`, `meshlens test rules`):
//! repeatable, each value a comma-separated list of feature names. Features meshlens always
//! has are accepted and noted; an unknown name is reported and ignored, and the command
//! carries on, as Prometheus and promtool do.

/// Prometheus feature flags whose behaviour meshlens has without a flag.
pub const ALWAYS_ON: &[&str] = &[
    "exemplar-storage",
    "native-histograms",
    "promql-experimental-functions",
    "promql-duration-expr",
    "promql-extended-range-selectors",
];

/// `promql-delayed-name-removal`: see [`meshlens_promql::Engine::with_delayed_name_removal`].
pub const DELAYED_NAME_REMOVAL: &str = "promql-delayed-name-removal";

/// `created-timestamp-zero-ingestion`: see [`meshlens_ingest::created`].
pub const CREATED_TIMESTAMP_ZERO_INGESTION: &str = "created-timestamp-zero-ingestion";

/// The `--enable-feature` values, sorted out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// `promql-delayed-name-removal` was given.
    pub delayed_name_removal: bool,
    /// `created-timestamp-zero-ingestion` was given.
    pub created_timestamp_zero_ingestion: bool,
    /// Names from [`ALWAYS_ON`] that were given, in their first order, once each.
    pub always_on: Vec<&'static str>,
    /// Names meshlens does not know, in their first order, once each.
    pub unknown: Vec<String>,
}

impl Features {
    /// Every value of a repeated `--enable-feature`, each split at commas; blank names
    /// (`a,,b`, a trailing comma) are skipped and spaces around a name ignored.
    pub fn parse<S: AsRef<str>>(values: &[S]) -> Features {
        let mut f = Features::default();
        for name in values
            .iter()
            .flat_map(|v| v.as_ref().split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            if name == DELAYED_NAME_REMOVAL {
                f.delayed_name_removal = true;
            } else if name == CREATED_TIMESTAMP_ZERO_INGESTION {
                f.created_timestamp_zero_ingestion = true;
            } else if let Some(&known) = ALWAYS_ON.iter().find(|&&k| k == name) {
                if !f.always_on.contains(&known) {
                    f.always_on.push(known);
                }
            } else if !f.unknown.iter().any(|u| u == name) {
                f.unknown.push(name.to_string());
            }
        }
        f
    }

    /// Logs what the flag turned on, what is always on, and each unknown name (a warning).
    pub fn log(&self) {
        if self.delayed_name_removal {
            tracing::info!(
                feature = DELAYED_NAME_REMOVAL,
                "experimental PromQL delayed name removal enabled"
            );
        }
        if self.created_timestamp_zero_ingestion {
            tracing::info!(
                feature = CREATED_TIMESTAMP_ZERO_INGESTION,
                "created timestamps of remote write 2.0, OTLP metrics and scrapes stored as zero samples"
            );
        }
        for f in &self.always_on {
            tracing::info!(feature = f, "feature always enabled in meshlens");
        }
        for f in &self.unknown {
            tracing::warn!(feature = %f, "unknown option for --enable-feature, ignored");
        }
    }
}

/// The flag as given, for `/api/v1/status/flags`: the values joined with commas.
pub fn as_given<S: AsRef<str>>(values: &[S]) -> String {
    values
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_given_turns_nothing_on() {
        assert_eq!(Features::parse::<&str>(&[]), Features::default());
        assert_eq!(Features::parse(&["", " , ,"]), Features::default());
    }

    #[test]
    fn delayed_name_removal_from_a_list_or_a_repeat() {
        for values in [
            vec!["promql-delayed-name-removal"],
            vec!["native-histograms,promql-delayed-name-removal"],
            vec!["exemplar-storage", "promql-delayed-name-removal"],
            vec![" promql-delayed-name-removal ,"],
        ] {
            assert!(Features::parse(&values).delayed_name_removal, "{values:?}");
        }
        assert!(!Features::parse(&["promql-delayed-name-removal-x"]).delayed_name_removal);
    }

    #[test]
    fn always_on_and_unknown_names_are_sorted_out_once_each() {
        let f = Features::parse(&[
            "native-histograms,foo",
            "exemplar-storage,native-histograms",
            "foo,bar,promql-experimental-functions",
        ]);
        assert_eq!(
            f,
            Features {
                delayed_name_removal: false,
                created_timestamp_zero_ingestion: false,
                always_on: vec![
                    "native-histograms",
                    "exemplar-storage",
                    "promql-experimental-functions"
                ],
                unknown: vec!["foo".to_string(), "bar".to_string()],
            }
        );
    }

    #[test]
    fn created_timestamp_zero_ingestion_alone_or_among_others() {
        for values in [
            vec!["created-timestamp-zero-ingestion"],
            vec!["promql-delayed-name-removal,created-timestamp-zero-ingestion"],
            vec!["native-histograms", " created-timestamp-zero-ingestion,"],
        ] {
            let f = Features::parse(&values);
            assert!(f.created_timestamp_zero_ingestion, "{values:?}");
            assert!(f.unknown.is_empty(), "{values:?}");
        }
        let f = Features::parse(&["promql-delayed-name-removal"]);
        assert!(!f.created_timestamp_zero_ingestion);
        // Neither turns the other on.
        let f = Features::parse(&["created-timestamp-zero-ingestion"]);
        assert!(!f.delayed_name_removal);
        let f = Features::parse(&["created-timestamp-zero-ingestion-x"]);
        assert!(!f.created_timestamp_zero_ingestion);
        assert_eq!(f.unknown, ["created-timestamp-zero-ingestion-x"]);
    }

    #[test]
    fn names_are_case_sensitive_as_in_prometheus() {
        let f = Features::parse(&["PromQL-Delayed-Name-Removal"]);
        assert!(!f.delayed_name_removal);
        assert_eq!(f.unknown, ["PromQL-Delayed-Name-Removal"]);
    }

    #[test]
    fn the_flag_is_shown_as_given() {
        assert_eq!(as_given::<&str>(&[]), "");
        assert_eq!(
            as_given(&["promql-delayed-name-removal,foo", "native-histograms"]),
            "promql-delayed-name-removal,foo,native-histograms"
        );
    }
}

//! Exemplars: a sample of one event behind a metric value (typically a trace id and the
//! request's duration), kept beside a series so a chart can link a point to its trace.
//!
//! Stores keep them apart from samples, in a bounded ring (Prometheus's model): they are
//! evidence, not data to aggregate, so the oldest are dropped rather than retained.

use crate::{LabelMatcher, Labels, StorageError};

/// Prometheus's limit on an exemplar's label set: the runes of every name and value together
/// (what OpenMetrics allows), excluding quotes, `=` and commas.
pub const EXEMPLAR_MAX_LABEL_RUNES: usize = 128;

/// One exemplar: its own labels (e.g. `trace_id`), the observed value and when, in
/// milliseconds since the epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    pub labels: Labels,
    pub value: f64,
    pub t: i64,
}

impl Exemplar {
    /// Runes in every label name and value, as Prometheus counts against its limit.
    pub fn label_runes(&self) -> usize {
        self.labels
            .iter()
            .map(|l| l.name.chars().count() + l.value.chars().count())
            .sum()
    }

    /// Why a store refuses this exemplar's labels, if it does: over the rune limit, or a
    /// label name Prometheus would not accept.
    pub fn check_labels(&self) -> Result<(), String> {
        let runes = self.label_runes();
        if runes > EXEMPLAR_MAX_LABEL_RUNES {
            return Err(format!(
                "exemplar labels {} have {runes} runes, over the limit of {EXEMPLAR_MAX_LABEL_RUNES}",
                self.labels
            ));
        }
        if let Some(l) = self
            .labels
            .iter()
            .find(|l| !crate::labels::is_valid_label_name(&l.name))
        {
            return Err(format!("exemplar label name {:?} is invalid", l.name));
        }
        Ok(())
    }

    /// Same labels, timestamp and value (bit for bit, so NaN equals NaN): what a store
    /// ignores as a duplicate of the series' newest exemplar.
    pub fn same_as(&self, o: &Exemplar) -> bool {
        self.t == o.t && self.value.to_bits() == o.value.to_bits() && self.labels == o.labels
    }
}

/// A series and exemplars of it: what appends carry and what queries return (exemplars in
/// time order).
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesExemplars {
    pub series: Labels,
    pub exemplars: Vec<Exemplar>,
}

/// What an exemplar append did, per exemplar.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExemplarOutcome {
    pub accepted: u64,
    /// Equal to the series' newest stored exemplar: ignored, as Prometheus does.
    pub duplicate: u64,
    /// At or before the series' newest stored exemplar but not equal to it.
    pub out_of_order: u64,
    /// Labels over [`EXEMPLAR_MAX_LABEL_RUNES`] or with an invalid name.
    pub invalid_labels: u64,
    /// The store keeps no exemplars (`--storage.exemplars.max-exemplars=0`, or a writer
    /// with no exemplar store such as the agent's buffer).
    pub disabled: u64,
    /// The first invalid-labels refusal, for the sender's error message.
    pub first_invalid: Option<String>,
}

impl ExemplarOutcome {
    /// Refusals a sender should hear about (duplicates are expected, and not refusals).
    pub fn refused(&self) -> u64 {
        self.out_of_order + self.invalid_labels
    }

    pub fn merge(&mut self, o: &ExemplarOutcome) {
        self.accepted += o.accepted;
        self.duplicate += o.duplicate;
        self.out_of_order += o.out_of_order;
        self.invalid_labels += o.invalid_labels;
        self.disabled += o.disabled;
        if self.first_invalid.is_none() {
            self.first_invalid.clone_from(&o.first_invalid);
        }
    }
}

/// Reads exemplars (they are written through `MetricWriter::append_exemplars`, which stores
/// what it accepts, counts refusals in the outcome without failing the rest of the batch, and
/// returns `Ok` once the accepted ones are in the engine's WAL if it has one).
/// Implementations are internally synchronised.
pub trait ExemplarReader: Send + Sync {
    /// Exemplars in `[mint, maxt]` of the series matching any one matcher set (every matcher
    /// of the set), sorted by series labels; series without exemplars in range are left out.
    fn select_exemplars(
        &self,
        matcher_sets: &[Vec<LabelMatcher>],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesExemplars>, StorageError>;
}

/// An outcome that counts every exemplar of `batch` as dropped for want of a store.
pub fn exemplars_disabled(batch: &[SeriesExemplars]) -> ExemplarOutcome {
    ExemplarOutcome {
        disabled: batch.iter().map(|s| s.exemplars.len() as u64).sum(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_counts_runes_not_bytes() {
        let e = |v: &str| Exemplar {
            labels: Labels::from_pairs([("trace_id", v)]),
            value: 1.0,
            t: 0,
        };
        // "trace_id" is 8 runes: 120 more make exactly 128.
        assert!(e(&"é".repeat(120)).check_labels().is_ok());
        let err = e(&"é".repeat(121)).check_labels().unwrap_err();
        assert!(err.contains("129 runes"), "{err}");
    }

    #[test]
    fn duplicates_compare_nan_by_bits() {
        let a = Exemplar {
            labels: Labels::empty(),
            value: f64::NAN,
            t: 5,
        };
        assert!(a.same_as(&a.clone()));
        assert!(!a.same_as(&Exemplar { t: 6, ..a.clone() }));
    }
}

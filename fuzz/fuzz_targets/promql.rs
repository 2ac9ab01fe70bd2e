#![no_main]
//! PromQL strings as `/api/v1/query` and `/api/v1/query_range` receive them: parsed, then
//! evaluated over a few in-memory series with a small sample limit, so evaluation is fuzzed
//! as well as parsing.
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use meshlens_model::{
    LabelMatcher, Labels, MetricMetadata, MetricReader, Sample, SeriesSamples, StorageError,
};
use meshlens_promql::{Engine, EngineOptions};

/// Series sorted by labels, samples by time, as the storage contract requires.
struct Mem(BTreeMap<Labels, Vec<Sample>>);

impl Mem {
    fn matching<'a>(
        &'a self,
        m: &'a [LabelMatcher],
    ) -> impl Iterator<Item = (&'a Labels, &'a Vec<Sample>)> + 'a {
        self.0
            .iter()
            .filter(move |(l, _)| m.iter().all(|x| x.matches(l.get(&x.name).unwrap_or(""))))
    }
}

impl MetricReader for Mem {
    fn select(
        &self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        Ok(self
            .matching(m)
            .map(|(l, s)| SeriesSamples {
                labels: l.clone(),
                samples: s
                    .iter()
                    .filter(|x| x.t >= mint && x.t <= maxt)
                    .copied()
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect())
    }

    fn series(
        &self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .select(m, mint, maxt)?
            .into_iter()
            .map(|s| s.labels)
            .collect())
    }

    fn label_names(&self, m: &[LabelMatcher], _: i64, _: i64) -> Result<Vec<String>, StorageError> {
        let mut v: Vec<String> = self
            .matching(m)
            .flat_map(|(l, _)| l.iter().map(|x| x.name.clone()))
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    fn label_values(
        &self,
        name: &str,
        m: &[LabelMatcher],
        _: i64,
        _: i64,
    ) -> Result<Vec<String>, StorageError> {
        let mut v: Vec<String> = self
            .matching(m)
            .filter_map(|(l, _)| l.get(name).map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    fn metadata(&self, _: Option<&str>) -> Result<Vec<MetricMetadata>, StorageError> {
        Ok(Vec::new())
    }
}

/// A counter, a gauge with a stale marker and a NaN, and a classic histogram, one sample
/// every 15 s for 10 minutes from t = 0.
fn store() -> &'static Mem {
    static STORE: OnceLock<Mem> = OnceLock::new();
    STORE.get_or_init(|| {
        let mut m = BTreeMap::new();
        let mut add = |pairs: &[(&str, &str)], f: &dyn Fn(i64) -> f64| {
            let labels = Labels::from_pairs(pairs.iter().copied());
            let samples = (0..40).map(|i| Sample::new(i * 15_000, f(i))).collect();
            m.insert(labels, samples);
        };
        for (inst, k) in [("a:9090", 1.0), ("b:9090", 3.0)] {
            add(
                &[
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("instance", inst),
                    ("code", "200"),
                ],
                &|i| k * i as f64,
            );
            add(
                &[
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("instance", inst),
                    ("code", "500"),
                ],
                &|i| if i == 20 { 0.0 } else { k * (i / 3) as f64 },
            );
        }
        add(
            &[("__name__", "temperature"), ("job", "node")],
            &|i| match i {
                7 => f64::NAN,
                30 => meshlens_model::STALE_NAN,
                _ => 20.0 - i as f64 * 0.5,
            },
        );
        for le in ["0.1", "0.5", "1", "+Inf"] {
            let w = le.parse::<f64>().unwrap_or(2.0).min(2.0);
            add(
                &[
                    ("__name__", "latency_seconds_bucket"),
                    ("job", "api"),
                    ("le", le),
                ],
                &|i| (i as f64) * w * 10.0,
            );
        }
        Mem(m)
    })
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        Engine::new(EngineOptions {
            max_samples: 20_000,
            timeout: Duration::from_secs(2),
            ..EngineOptions::default()
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(query) = std::str::from_utf8(rest) else {
        return;
    };
    let _ = meshlens_promql::format_query(query);
    let _ = meshlens_promql::series_selector(query);
    // The API takes any float as a time, so the ends of i64 are evaluation times too.
    let at = match mode >> 6 {
        3 => i64::MAX,
        2 => i64::MIN,
        _ => 300_000 + i64::from(mode & 0x3f) * 1_000,
    };
    if mode & 1 == 0 {
        let _ = engine().instant_query(store(), query, at);
    } else {
        let step = 1_000 * (1 + i64::from((mode >> 1) & 0x1f));
        let _ = engine().range_query(store(), query, at.saturating_sub(400_000), at, step);
    }
});

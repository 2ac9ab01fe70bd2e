//! A store whose selects wait until the test lets them go, so queries can be held running.
//! Shared with meshlens-prom-api's tests through `#[path]`, so it needs only the model crate.
#![allow(dead_code)]

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meshlens_model::{LabelMatcher, Labels, MetricReader, SeriesSamples, StorageError};

pub struct Held<R> {
    inner: Arc<R>,
    entered: Mutex<Sender<()>>,
    release: Mutex<Receiver<()>>,
}

impl<R: MetricReader> Held<R> {
    /// The store over `inner`, a receiver that gets a message whenever a select reaches
    /// storage, and a sender whose every message lets one held select go.
    pub fn new(inner: Arc<R>) -> (Self, Receiver<()>, Sender<()>) {
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        let held = Held {
            inner,
            entered: Mutex::new(entered_tx),
            release: Mutex::new(release_rx),
        };
        (held, entered, release)
    }
}

impl<R: MetricReader> MetricReader for Held<R> {
    fn select(
        &self,
        m: &[LabelMatcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<SeriesSamples>, StorageError> {
        let _ = self.entered.lock().expect("lock").send(());
        // Bounded: a test that forgets to release fails instead of hanging.
        let _ = self
            .release
            .lock()
            .expect("lock")
            .recv_timeout(Duration::from_secs(60));
        self.inner.select(m, mint, maxt)
    }

    fn series(&self, m: &[LabelMatcher], a: i64, b: i64) -> Result<Vec<Labels>, StorageError> {
        self.inner.series(m, a, b)
    }

    fn label_names(&self, m: &[LabelMatcher], a: i64, b: i64) -> Result<Vec<String>, StorageError> {
        self.inner.label_names(m, a, b)
    }

    fn label_values(
        &self,
        n: &str,
        m: &[LabelMatcher],
        a: i64,
        b: i64,
    ) -> Result<Vec<String>, StorageError> {
        self.inner.label_values(n, m, a, b)
    }
}

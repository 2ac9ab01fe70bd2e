//! One selected series as cheap handles (the head series, and the blocks that hold it) whose
//! samples are decoded only when asked: chunks outside the range are skipped, and the usual
//! case (one source, or sources that do not overlap in time) is a straight decode in time
//! order with no sort.

use std::cmp::Ordering;
use std::sync::{Arc, OnceLock};

use meshlens_model::{HistogramSample, Labels, Sample, SeriesCursor, StorageError};

use crate::block::Block;
use crate::budget::SampleBudget;
use crate::head::{cmp_label_pairs, SeriesRef};

/// A series of one selection, as the head and block handles that hold its data.
pub(crate) struct TsdbCursor {
    labels: CursorLabels,
    /// The blocks overlapping the selection, shared by all its cursors.
    blocks: Arc<[Arc<Block>]>,
    head: Option<SeriesRef>,
    /// (index in `blocks`, series index in that block), in `blocks` order; the first kept
    /// apart so a series in at most one block needs no allocation.
    first_block: Option<(u32, u32)>,
    more_blocks: Vec<(u32, u32)>,
    mint: i64,
    maxt: i64,
    /// Whether the head series held native histograms in the range when the cursor was
    /// made: float-only series never lock the head again for histograms.
    head_hists: bool,
    /// The native-histogram samples in the range, once loaded
    /// ([`TsdbCursor::load_histograms`]); boxed, so float-only cursors stay one word larger.
    #[allow(clippy::box_collection)]
    hists: Option<Box<Vec<HistogramSample>>>,
}

enum CursorLabels {
    /// The head series' labels, built on first use: selections sort by the head's interned
    /// pairs, so the copy is made only when asked, by whichever thread decodes the series.
    Head(OnceLock<Labels>),
    /// Those of a block's series (block index, series index), borrowed from the block.
    InBlock(u32, u32),
}

/// One run of a series' samples, already sorted, with its time span in the range.
#[derive(Clone, Copy)]
struct Part {
    lo: i64,
    hi: i64,
    src: Source,
}

#[derive(Clone, Copy)]
enum Source {
    HeadInOrder,
    HeadLate,
    Block(u32, u32),
}

impl TsdbCursor {
    pub(crate) fn from_head(
        head: SeriesRef,
        blocks: Arc<[Arc<Block>]>,
        mint: i64,
        maxt: i64,
        head_hists: bool,
    ) -> Self {
        TsdbCursor {
            labels: CursorLabels::Head(OnceLock::new()),
            blocks,
            head: Some(head),
            first_block: None,
            more_blocks: Vec::new(),
            mint,
            maxt,
            head_hists,
            hists: None,
        }
    }

    pub(crate) fn from_block(
        block: u32,
        idx: u32,
        blocks: Arc<[Arc<Block>]>,
        mint: i64,
        maxt: i64,
    ) -> Self {
        TsdbCursor {
            labels: CursorLabels::InBlock(block, idx),
            blocks,
            head: None,
            first_block: Some((block, idx)),
            more_blocks: Vec::new(),
            mint,
            maxt,
            head_hists: false,
            hists: None,
        }
    }

    /// Reads the series' native-histogram samples in the range (head, then blocks in
    /// `blocks` order; where they share a timestamp the first wins, as for floats) and
    /// keeps them for [`SeriesCursor::histograms`], spending `budget` on them.
    pub(crate) fn load_histograms(&mut self, budget: &SampleBudget) -> Result<(), StorageError> {
        let (mint, maxt) = (self.mint, self.maxt);
        let mut out: Vec<HistogramSample> = Vec::new();
        let mut sources = 0;
        if self.head_hists {
            if let Some(h) = &self.head {
                let got = h.lock().histograms_in(mint, maxt);
                sources += usize::from(!got.is_empty());
                out = got;
            }
        }
        for (b, idx) in self.block_refs() {
            let block = &self.blocks[b as usize];
            if !block.has_histograms(idx) {
                continue;
            }
            let n = block
                .histograms_into(idx, mint, maxt, &mut out)
                .map_err(|e| StorageError::from(crate::TsdbError::Block(e)))?;
            sources += usize::from(n > 0);
        }
        if sources > 1 {
            out.sort_by_key(|s| s.t);
            out.dedup_by_key(|s| s.t);
        }
        budget.spend(out.len());
        self.hists = (!out.is_empty()).then(|| Box::new(out));
        Ok(())
    }

    /// The loaded histograms, moved out (the cursor is spent afterwards).
    pub(crate) fn take_histograms(&mut self) -> Vec<HistogramSample> {
        self.hists.take().map_or_else(Vec::new, |b| *b)
    }

    /// Adds a block holding the same series; blocks must be added in `blocks` order.
    pub(crate) fn add_block(&mut self, block: u32, idx: u32) {
        match self.first_block {
            None => self.first_block = Some((block, idx)),
            Some(_) => self.more_blocks.push((block, idx)),
        }
    }

    pub(crate) fn labels(&self) -> &Labels {
        match self.labels {
            CursorLabels::Head(ref cell) => cell.get_or_init(|| {
                self.head
                    .as_ref()
                    .map_or_else(Labels::empty, |h| h.labels())
            }),
            CursorLabels::InBlock(b, idx) => &self.blocks[b as usize].series[idx as usize].labels,
        }
    }

    /// The labels, moved out when owned (the cursor is spent afterwards).
    pub(crate) fn take_labels(&mut self) -> Labels {
        if let CursorLabels::Head(cell) = &mut self.labels {
            if let Some(l) = cell.take() {
                return l;
            }
        }
        match self.labels {
            CursorLabels::Head(_) => self
                .head
                .as_ref()
                .map_or_else(Labels::empty, |h| h.labels()),
            CursorLabels::InBlock(..) => self.labels().clone(),
        }
    }

    /// The label pairs the cursor sorts by, without building `Labels`.
    fn pairs(&self) -> Pairs<'_, impl Iterator<Item = (&str, &str)> + '_> {
        match (&self.labels, &self.head) {
            (CursorLabels::Head(_), Some(h)) => Pairs::Head(h.label_pairs()),
            _ => Pairs::Labels(self.labels().iter()),
        }
    }

    /// Orders this cursor against a label set.
    pub(crate) fn cmp_to(&self, labels: &Labels) -> Ordering {
        cmp_label_pairs(
            self.pairs(),
            Pairs::<std::iter::Empty<_>>::Labels(labels.iter()),
        )
    }

    fn block_refs(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.first_block
            .into_iter()
            .chain(self.more_blocks.iter().copied())
    }

    /// Appends the series' samples in the range to `buf`, in time order without duplicate
    /// timestamps, spending `budget` chunk by chunk; stops early, incomplete, once the
    /// budget is exceeded. Where sources overlap in time, in-order head data wins over late
    /// head data, which wins over blocks (in `blocks` order).
    pub(crate) fn decode_budgeted(
        &self,
        buf: &mut Vec<Sample>,
        budget: &SampleBudget,
    ) -> Result<usize, StorageError> {
        let (mint, maxt) = (self.mint, self.maxt);
        let head = self.head.as_ref().map(|h| h.lock());
        // Straight decodes for the common shapes: the head alone, without late samples,
        // or one block alone.
        match (&head, self.first_block, self.more_blocks.is_empty()) {
            (Some(h), None, _) if h.late_in(mint, maxt).is_empty() => {
                return h
                    .decode_in_order(mint, maxt, buf, budget)
                    .map_err(|e| self.head_corrupt(e));
            }
            (None, Some(b), true) => return self.decode_block(b, buf, budget),
            _ => {}
        }
        // Parts in priority order.
        let mut parts: Vec<Part> = Vec::with_capacity(2 + self.more_blocks.len() + 1);
        if let Some(h) = &head {
            if let Some((lo, hi)) = h.in_order_bounds(mint, maxt) {
                parts.push(Part {
                    lo,
                    hi,
                    src: Source::HeadInOrder,
                });
            }
            let late = h.late_in(mint, maxt);
            if let (Some(f), Some(l)) = (late.first(), late.last()) {
                parts.push(Part {
                    lo: f.t,
                    hi: l.t,
                    src: Source::HeadLate,
                });
            }
        }
        for (b, idx) in self.block_refs() {
            if let Some((lo, hi)) = self.blocks[b as usize].bounds_in(idx, mint, maxt) {
                parts.push(Part {
                    lo,
                    hi,
                    src: Source::Block(b, idx),
                });
            }
        }
        let mut by_time = parts.clone();
        by_time.sort_by_key(|p| p.lo);
        let disjoint = by_time.windows(2).all(|w| w[1].lo > w[0].hi);
        let order = if disjoint { &by_time } else { &parts };
        let start = buf.len();
        let mut n = 0;
        for p in order {
            n += match p.src {
                Source::HeadInOrder => head
                    .as_ref()
                    .map_or(Ok(0), |h| h.decode_in_order(mint, maxt, buf, budget))
                    .map_err(|e| self.head_corrupt(e))?,
                Source::HeadLate => {
                    let late = head.as_ref().map_or(&[][..], |h| h.late_in(mint, maxt));
                    buf.extend_from_slice(late);
                    budget.spend(late.len());
                    late.len()
                }
                Source::Block(b, idx) => self.decode_block((b, idx), buf, budget)?,
            };
            if budget.exceeded() {
                return Ok(n);
            }
        }
        if !disjoint {
            n = sort_dedup_tail(buf, start);
        }
        Ok(n)
    }

    fn decode_block(
        &self,
        (b, idx): (u32, u32),
        buf: &mut Vec<Sample>,
        budget: &SampleBudget,
    ) -> Result<usize, StorageError> {
        self.blocks[b as usize]
            .decode_into(idx, self.mint, self.maxt, buf, budget)
            .map_err(|e| crate::TsdbError::Block(e).into())
    }

    fn head_corrupt(&self, e: crate::ChunkError) -> StorageError {
        StorageError::Corruption {
            location: format!("head chunk of {}", self.labels()),
            reason: e.to_string(),
        }
    }
}

/// Label pairs from the head's symbol table or from a `Labels`.
enum Pairs<'x, H> {
    Head(H),
    Labels(std::slice::Iter<'x, meshlens_model::Label>),
}

impl<'x, H: Iterator<Item = (&'x str, &'x str)>> Iterator for Pairs<'x, H> {
    type Item = (&'x str, &'x str);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Pairs::Head(h) => h.next(),
            Pairs::Labels(l) => l.next().map(|l| (l.name.as_str(), l.value.as_str())),
        }
    }
}

/// Sorts `buf[start..]` by time, keeping the first of equal timestamps (the stable sort
/// keeps the priority order the parts were decoded in); returns the tail's new length.
fn sort_dedup_tail(buf: &mut Vec<Sample>, start: usize) -> usize {
    let tail = &mut buf[start..];
    tail.sort_by_key(|s| s.t);
    let mut kept = 0;
    for i in 0..tail.len() {
        if kept == 0 || tail[i].t != tail[kept - 1].t {
            tail[kept] = tail[i];
            kept += 1;
        }
    }
    buf.truncate(start + kept);
    kept
}

impl SeriesCursor for TsdbCursor {
    fn labels(&self) -> &Labels {
        TsdbCursor::labels(self)
    }

    /// Read from the head's interned pairs while the label set has not been built.
    fn label_value(&self, name: &str) -> Option<&str> {
        match (&self.labels, &self.head) {
            (CursorLabels::Head(cell), Some(h)) if cell.get().is_none() => {
                h.label_pairs().find(|(n, _)| *n == name).map(|(_, v)| v)
            }
            _ => TsdbCursor::labels(self).get(name),
        }
    }

    fn decode_into(&self, buf: &mut Vec<Sample>) -> Result<usize, StorageError> {
        self.decode_budgeted(buf, &SampleBudget::unlimited())
    }

    fn histograms(&self) -> &[HistogramSample] {
        self.hists.as_deref().map_or(&[], Vec::as_slice)
    }
}

// The Storage card: where the tenant's metrics and spans are kept and what that holds, from
// /api/v1/status/storage. Embedded: the TSDB's and the span store's own figures. ClickHouse:
// the address (never a password), the schema version and each shard's rows and bytes. It
// loads on its own, so a slow or failing ClickHouse never holds up the rest of the page, and
// it says "stored in ClickHouse" rather than showing the empty embedded stores' zeros.

import { h, clear, message, sortableTable } from './dom.js';
import * as api from './api.js';
import * as fmt from './format.js';

const kv = (label, rows) => h('table', { class: 'kv', 'aria-label': label },
  h('tbody', {}, rows.filter(Boolean).map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v)))));

const count = (v) => (v === null || v === undefined ? '–' : Number(v).toLocaleString('en-US'));
const when = (ms) => (ms === null || ms === undefined ? '–' : fmt.time(ms, true));

/** The section, filled in when its answer arrives; `data-state` says loading, ready or error. */
export function storageSection() {
  const body = h('div', {}, message('loading', 'Loading storage…'));
  const section = h('section', { class: 'storage', 'aria-label': 'Storage', dataset: { state: 'loading' } },
    h('h2', {}, 'Storage'), body);
  api.storageStatus().then((d) => {
    clear(body).append(...describe(d));
    section.dataset.backend = d.backend || '';
    section.dataset.state = 'ready';
  }, (e) => {
    clear(body).append(e.missing
      ? h('p', { class: 'muted small' }, 'This server does not report its storage.')
      : message('warn', `The storage status could not be read: ${e.message}`));
    section.dataset.state = 'error';
  });
  return section;
}

function describe(d) {
  const out = d.backend === 'clickhouse' && Array.isArray(d.shards) ? clickhouse(d)
    : d.backend === 'embedded' && d.metrics ? embedded(d)
      : [kv('Backend', [['Backend', d.backend || 'unknown']]), d.note ? h('p', { class: 'muted small' }, d.note) : null];
  if (d.write_buffer && typeof d.write_buffer === 'object') out.push(writeBuffer(d.write_buffer));
  return out;
}

function embedded(d) {
  const m = d.metrics || {};
  const s = d.spans || {};
  return [
    h('p', { class: 'small' }, 'Backend: ', h('strong', { class: 'storage-backend' }, 'embedded'), ' (TSDB and span store in the data directory)'),
    h('div', { class: 'storage-grid' },
      h('div', {}, h('h3', {}, 'Metrics'), kv('Metrics storage', [
        ['Head series', count(m.head_series)],
        ['Head chunks', count(m.head_chunks)],
        ['Blocks', count(m.blocks)],
        ['Block bytes', fmt.bytes(m.block_bytes)],
        ['WAL written', fmt.bytes(m.wal_bytes_written)],
        ['Oldest sample', when(m.oldest_sample_ms)],
        ['Newest sample', when(m.newest_sample_ms)],
        m.corruption_count ? ['Set aside as corrupt', count(m.corruption_count)] : null,
      ])),
      h('div', {}, h('h3', {}, 'Spans'), kv('Span storage', [
        ['Spans', count(s.spans)],
        ['Traces', count(s.traces)],
        ['Segments', count(s.segments)],
        ['Bytes on disk', fmt.bytes(s.bytes_on_disk)],
        ['Not yet in a segment', count(s.head_spans)],
        s.corrupt_segments ? ['Corrupt segments', count(s.corrupt_segments)] : null,
      ]))),
  ];
}

function clickhouse(d) {
  const failed = d.shards.some((r) => r.error);
  const t = d.totals || {};
  return [
    kv('ClickHouse storage', [
      ['Backend', h('strong', { class: 'storage-backend' }, 'ClickHouse')],
      ['URL', h('code', { class: 'storage-url' }, d.url || '–')],
      ['Cluster', d.cluster || h('span', { class: 'muted' }, 'none (one server)')],
      ['Schema version', h('span', { class: 'storage-schema' }, String(d.schema_version ?? '–'))],
      ['Totals', `${count(t.series_rows)} series rows · ${count(t.sample_rows)} sample rows · ${count(t.span_rows)} span rows · ${fmt.bytes(t.bytes_on_disk)}`],
    ]),
    h('p', { class: 'muted small' }, 'Metrics and spans are stored in ClickHouse; the embedded stores hold nothing.'),
    sortableTable([
      { key: 'shard', label: 'Shard', num: true },
      { key: 'replica', label: 'Replica', render: (r) => h('code', {}, r.replica) },
      { key: 'series_rows', label: 'Series rows', num: true, fmt: count },
      { key: 'sample_rows', label: 'Sample rows', num: true, fmt: count },
      { key: 'span_rows', label: 'Span rows', num: true, fmt: count },
      { key: 'bytes_on_disk', label: 'Bytes on disk', num: true, fmt: fmt.bytes },
      failed ? { key: 'error', label: 'Error', render: (r) => (r.error ? h('span', { class: 'stale-bad' }, r.error) : '') } : null,
    ].filter(Boolean), d.shards, {
      sortKey: 'shard', desc: false,
      caption: d.shards.length === 1 ? '1 shard' : `${d.shards.length} shards`,
      rowAttrs: (r) => ({ class: 'shard-row', dataset: { shard: String(r.shard), rows: String((r.series_rows || 0) + (r.sample_rows || 0) + (r.span_rows || 0)) } }),
    }),
  ];
}

/** The write-ahead buffer in front of ClickHouse, field by field as the server names them. */
function writeBuffer(b) {
  const label = (k) => k.replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());
  const value = (k, v) => (v === null || v === undefined ? '–'
    : /bytes/.test(k) ? fmt.bytes(v)
      : typeof v === 'object' ? JSON.stringify(v) : String(v));
  return h('div', { class: 'storage-buffer' }, h('h3', {}, 'Write buffer'),
    kv('Write buffer', Object.entries(b).map(([k, v]) => [label(k), value(k, v)])));
}

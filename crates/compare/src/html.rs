//! The HTML report: one self-contained file (inline CSS and JavaScript,
//! no network asset). The report's JSON is embedded and the page renders
//! it: a sortable endpoint table, differences by field path with their
//! counts, a side-by-side viewer of each path's example, the regression
//! groups, and latency CDFs recorded vs replayed per endpoint (on a log
//! axis: a recording and a replay of very different speeds both show).

use std::io::Write;

use crate::report::DiffReport;

const STYLE: &str = r#"
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1d2125; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
.summary span { display: inline-block; margin-right: 18px; }
.regressed { color: #b3261e; font-weight: 600; }
.ok { color: #1b6e34; }
.noise { color: #8a6d00; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #e3e6ea; vertical-align: top; }
th { cursor: pointer; background: #f4f6f8; user-select: none; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.pick { cursor: pointer; }
tr.pick:hover { background: #f0f5ff; }
.viewer { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; margin-top: 8px; }
.viewer pre { background: #f7f7f9; border: 1px solid #e3e6ea; padding: 8px; margin: 0; white-space: pre-wrap; word-break: break-all; min-height: 2em; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.chart { border: 1px solid #e3e6ea; padding: 8px; }
.chart h3 { font-size: 13px; margin: 0 0 4px; }
.legend span { margin-right: 12px; font-size: 12px; }
code { font-size: 13px; }
"#;

const SCRIPT: &str = r#"
const data = JSON.parse(document.getElementById('report-data').textContent);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids) e.append(k);
  return e;
};
const micros = us => us < 1000 ? us + 'µs' : us < 1e6 ? (us / 1000).toFixed(1) + 'ms' : (us / 1e6).toFixed(2) + 's';
const show = v => v === null || v === undefined ? '(absent)' : JSON.stringify(v, null, 2);
const notCompared = Object.values(data.not_compared).reduce((a, b) => a + b, 0);

const summary = document.getElementById('summary');
summary.append(
  el('span', {id: 'pairs'}, `${data.pairs} pairs`),
  el('span', {id: 'identical', class: 'ok'}, `${data.identical} identical`),
  el('span', {id: 'regressed', class: data.regressed ? 'regressed' : 'ok'}, `${data.regressed} regressed`),
  el('span', {id: 'noise-only', class: 'noise'}, `${data.noise_only} noise only`),
  el('span', {id: 'not-compared'}, `${notCompared} not compared`));
if (data.noise_guessed) summary.append(el('p', {class: 'noise'}, 'Noise was guessed by --auto-noise (timestamps, UUIDs, generated ids): a guess, not a baseline’s verdict.'));
for (const [reason, n] of Object.entries(data.not_compared)) summary.append(el('p', {}, `${n} not compared: ${reason}`));
if (data.downstream) {
  const d = data.downstream;
  summary.append(el('p', {id: 'downstream'},
    `downstream calls: ${d.recorded} recorded, ${d.made} made (${d.answered} answered by the mock, ${d.paired_after_miss} paired after a miss): ` +
    `${d.changed} changed, ${d.missing} missing, ${d.extra} new; ${d.mock_misses} mock misses; ` +
    `${d.pool_served} served by unlinked recorded calls (${d.unlinked_recorded} recorded, charged to no exchange)`));
}

const columns = [
  ['endpoint', 'endpoint', false], ['pairs', 'pairs', true], ['identical', 'identical', true],
  ['regressed', 'regressed', true], ['noise only', 'noise_only', true], ['not compared', 'not_compared', true],
  ['p50 recorded', e => e.latency.recorded_p50_us, true], ['p50 replayed', e => e.latency.replayed_p50_us, true],
  ['p99 recorded', e => e.latency.recorded_p99_us, true], ['p99 replayed', e => e.latency.replayed_p99_us, true],
];
const value = (e, key) => typeof key === 'function' ? key(e) : e[key];
let sortBy = 3, descending = true;
function drawEndpoints() {
  const rows = [...data.endpoints].sort((a, b) => {
    const x = value(a, columns[sortBy][1]), y = value(b, columns[sortBy][1]);
    const c = typeof x === 'string' ? x.localeCompare(y) : x - y;
    return descending ? -c : c;
  });
  const head = el('tr', {}, ...columns.map(([label, , numeric], i) => {
    const th = el('th', {class: numeric ? 'n' : ''}, label + (i === sortBy ? (descending ? ' ▾' : ' ▴') : ''));
    th.addEventListener('click', () => { descending = sortBy === i ? !descending : true; sortBy = i; drawEndpoints(); });
    return th;
  }));
  const body = rows.map(e => el('tr', {'data-endpoint': e.endpoint}, ...columns.map(([, key, numeric]) => {
    const v = value(e, key);
    const text = numeric && typeof key === 'function' ? micros(v) : String(v);
    return el('td', {class: numeric ? 'n' : ''}, text);
  })));
  const table = document.getElementById('endpoints');
  table.replaceChildren(el('thead', {}, head), el('tbody', {}, ...body));
}
drawEndpoints();

const paths = document.getElementById('paths');
const recordedView = document.getElementById('recorded-value');
const replayedView = document.getElementById('replayed-value');
const viewerTitle = document.getElementById('viewer-title');
const detailView = document.getElementById('detail');
function pick(e, p) {
  viewerTitle.textContent = `${e.endpoint} — ${p.example.path} (recorded exchange ${p.example.recorded_id})`;
  recordedView.textContent = show(p.example.recorded);
  replayedView.textContent = show(p.example.replayed);
  detailView.textContent = p.example.detail || '';
  detailView.style.display = p.example.detail ? 'block' : 'none';
}
const pathRows = [];
for (const e of data.endpoints) for (const p of e.paths) pathRows.push([e, p]);
pathRows.sort((a, b) => b[1].regressed - a[1].regressed || b[1].noise - a[1].noise);
paths.append(el('thead', {}, el('tr', {}, el('th', {}, 'endpoint'), el('th', {}, 'field path'), el('th', {}, 'change'),
  el('th', {class: 'n'}, 'regressed'), el('th', {class: 'n'}, 'noise'))));
const tbody = el('tbody', {});
for (const [e, p] of pathRows) {
  const tr = el('tr', {class: 'pick'}, el('td', {}, e.endpoint), el('td', {}, el('code', {}, p.pattern)), el('td', {}, p.kind),
    el('td', {class: 'n' + (p.regressed ? ' regressed' : '')}, String(p.regressed)), el('td', {class: 'n noise'}, String(p.noise)));
  tr.addEventListener('click', () => pick(e, p));
  tbody.append(tr);
}
paths.append(tbody);
if (pathRows.length) pick(pathRows[0][0], pathRows[0][1]);
else viewerTitle.textContent = 'No field differs.';

const groups = document.getElementById('groups');
for (const g of data.groups) groups.append(el('li', {}, `${g.count}× ${g.endpoint}: `, el('code', {}, g.differences.join(', ')), ` — e.g. ${g.examples.join(', ')}`));
if (!data.groups.length) groups.append(el('li', {}, 'No regression.'));

const NS = 'http://www.w3.org/2000/svg';
const svg = (tag, attrs) => { const e = document.createElementNS(NS, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };
const charts = document.getElementById('charts');
for (const e of data.endpoints) {
  const a = e.latency.recorded_cdf_us, b = e.latency.replayed_cdf_us;
  if (!a.length && !b.length) continue;
  // A log axis: a recording at 200µs and a replay at 80ms are both
  // curves, not a vertical line at zero beside a curve. It spans whole
  // decades around the values, a tick at each.
  const W = 320, H = 160, P = 28;
  const all = [...a, ...b].map(v => Math.max(1, v));
  const lo = Math.floor(Math.log10(Math.min(...all)));
  const hi = Math.max(lo + 1, Math.ceil(Math.log10(Math.max(...all))));
  const x = v => P + (W - P - 8) * (Math.log10(Math.max(1, v)) - lo) / (hi - lo);
  const box = svg('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, 'data-scale': 'log'});
  box.append(svg('line', {x1: P, y1: H - P, x2: W - 8, y2: H - P, stroke: '#999'}));
  box.append(svg('line', {x1: P, y1: 8, x2: P, y2: H - P, stroke: '#999'}));
  for (let d = lo; d <= hi; d++) {
    const at = x(10 ** d);
    box.append(svg('line', {x1: at, y1: H - P, x2: at, y2: H - P + 4, stroke: '#999'}));
    // The last label ends at the axis' end, inside the chart.
    const anchor = d === hi ? 'end' : 'middle';
    const tick = svg('text', {x: d === hi ? W - 2 : at, y: H - P + 13, 'text-anchor': anchor, 'font-size': 10, class: 'tick'});
    tick.textContent = micros(10 ** d);
    box.append(tick);
  }
  const line = (values, colour, name) => {
    const pts = values.map((v, i) => `${x(v).toFixed(1)},${H - P - (H - P - 8) * (i + 1) / values.length}`);
    box.append(svg('polyline', {points: pts.join(' '), fill: 'none', stroke: colour, 'stroke-width': 2, 'data-series': name}));
  };
  line(a, '#1f6feb', 'recorded');
  line(b, '#d1242f', 'replayed');
  const label = svg('text', {x: W - 2, y: H - 3, 'text-anchor': 'end', 'font-size': 10});
  label.textContent = 'latency, log scale';
  box.append(label);
  charts.append(el('div', {class: 'chart'}, el('h3', {}, e.endpoint),
    el('div', {class: 'legend'}, el('span', {style: 'color:#1f6feb'}, '— recorded'), el('span', {style: 'color:#d1242f'}, '— replayed')), box));
}
if (!charts.children.length) charts.append(el('p', {}, 'No latency to show.'));
document.body.setAttribute('data-rendered', 'yes');
"#;

impl DiffReport {
    /// The report as one self-contained HTML page.
    pub fn render_html(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let json = serde_json::to_string(self).map_err(std::io::Error::other)?;
        // The JSON sits in a <script> element: no recorded "</script>" may
        // end it early, nor "<!--" change how it is parsed. `<` only
        // occurs inside JSON strings, where `\u003c` means the same.
        let json = json.replace('<', "\\u003c");
        write!(
            out,
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>reprise diff</title>
<style>{STYLE}</style>
</head>
<body>
<h1>reprise diff</h1>
<div class="summary" id="summary"></div>
<h2>Endpoints</h2>
<table id="endpoints"></table>
<h2>Differences by field path</h2>
<table id="paths"></table>
<h2 id="viewer-title"></h2>
<div class="viewer">
  <div><strong>recorded</strong><pre id="recorded-value"></pre></div>
  <div><strong>replayed</strong><pre id="replayed-value"></pre></div>
</div>
<pre id="detail" style="display:none; background:#f7f7f9; border:1px solid #e3e6ea; padding:8px; margin-top:8px"></pre>
<h2>Regressions grouped by what differs</h2>
<ul id="groups"></ul>
<h2>Latency, recorded vs replayed (CDF)</h2>
<div class="charts" id="charts"></div>
<script type="application/json" id="report-data">{json}</script>
<script>{SCRIPT}</script>
</body>
</html>
"#
        )
    }
}

"""`convatlas atlas -o DIR`: a static HTML site of every registered network that works offline.

- ``index.html``: every network with family, year, parameters, MACs, receptive field and published
  top-1, sortable (click a column header) and filterable (type in the box);
- ``models/NAME.html``: the card and citation, the idea in two sentences, the per-layer table from
  the analysis, a block diagram (SVG) and the network's place on the accuracy-vs-MACs chart;
- ``charts.html``: the published chart and, with ``runs``, the charts of measured comparisons.

No external scripts, styles or fonts: the pages open from the file system.
"""

from __future__ import annotations

import html
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from convatlas._io import atomic_write_text
from convatlas.registry import list_models, model_card

__all__ = ["build_atlas", "AtlasEntry"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
a{color:#0645ad;text-decoration:none}a:hover{text-decoration:underline}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f4f4f4;position:sticky;top:0}
th.sortable{cursor:pointer}th.sortable:hover{background:#e6e6e6}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
#filter{padding:.4rem;width:20rem;margin:.5rem 0 1rem}
.card dt{font-weight:600;float:left;width:11rem;clear:left}.card dd{margin-left:12rem;margin-bottom:.3rem}
.idea{background:#f7f7ee;border-left:4px solid #cc9;padding:.6rem 1rem}
nav{margin-bottom:1rem}svg text{font-family:system-ui,sans-serif}
"""

_SORT_JS = """
(function(){
  const table=document.getElementById('zoo');if(!table)return;
  const tbody=table.tBodies[0];
  table.querySelectorAll('th.sortable').forEach((th,col)=>{
    th.addEventListener('click',()=>{
      const asc=th.getAttribute('aria-sort')!=='ascending';
      table.querySelectorAll('th').forEach(h=>h.removeAttribute('aria-sort'));
      th.setAttribute('aria-sort',asc?'ascending':'descending');
      const rows=Array.from(tbody.rows);
      const key=r=>{const c=r.cells[col];const v=c.dataset.value;
        if(v===undefined)return c.textContent.trim().toLowerCase();
        return v===''?(asc?Infinity:-Infinity):parseFloat(v);};
      rows.sort((a,b)=>{const x=key(a),y=key(b);return (x<y?-1:x>y?1:0)*(asc?1:-1);});
      rows.forEach(r=>tbody.appendChild(r));
    });
  });
  const box=document.getElementById('filter');
  box.addEventListener('input',()=>{const q=box.value.toLowerCase();
    Array.from(tbody.rows).forEach(r=>{r.style.display=r.textContent.toLowerCase().includes(q)?'':'none';});
    document.getElementById('shown').textContent=Array.from(tbody.rows).filter(r=>r.style.display!=='none').length;});
})();
"""


@dataclass(frozen=True)
class AtlasEntry:
    name: str
    family: str
    year: int
    params: int
    macs: int
    receptive_field: int | None
    top1: float | None
    input_size: tuple[int, int, int]


def _fmt(n: float | None, unit: str = "") -> str:
    if n is None:
        return "-"
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}{unit}"
    return f"{n:g}{unit}"


def _page(title: str, body: str, depth: int = 0) -> str:
    up = "../" * depth
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} · convatlas</title><style>{_CSS}</style></head><body>"
        f"<nav><a href='{up}index.html'>All networks</a> · <a href='{up}charts.html'>Charts</a></nav>"
        f"{body}</body></html>\n"
    )


def _chart_svg(entries: Sequence[AtlasEntry], highlight: str | None = None, width: int = 640, height: int = 400) -> str:
    """Accuracy vs GMACs (log x), circle area ∝ params, as inline SVG; ``highlight`` in red."""
    pts = [e for e in entries if e.top1 is not None and e.macs > 0]
    if not pts:
        return "<p>No published accuracy to chart.</p>"
    left, right, top, bottom = 55, 20, 20, 45
    xs = [math.log10(e.macs / 1e9) for e in pts]
    ys = [e.top1 for e in pts]
    x0, x1 = math.floor(min(xs)), math.ceil(max(xs))
    y0, y1 = math.floor(min(ys) - 2), math.ceil(max(ys) + 2)
    sx = lambda v: left + (v - x0) / max(x1 - x0, 1e-9) * (width - left - right)  # noqa: E731
    sy = lambda v: height - bottom - (v - y0) / max(y1 - y0, 1e-9) * (height - top - bottom)  # noqa: E731
    biggest = max(e.params for e in pts)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
             f"aria-label='top-1 accuracy against GMACs'>",
             f"<rect x='0' y='0' width='{width}' height='{height}' fill='white'/>"]
    for d in range(x0, x1 + 1):
        X = sx(d)
        parts.append(f"<line x1='{X:.1f}' y1='{top}' x2='{X:.1f}' y2='{height - bottom}' stroke='#eee'/>"
                     f"<text x='{X:.1f}' y='{height - bottom + 15}' font-size='10' text-anchor='middle'>{10.0 ** d:g}</text>")
    for v in range(int(y0), int(y1) + 1, max(1, (int(y1) - int(y0)) // 6)):
        Y = sy(v)
        parts.append(f"<line x1='{left}' y1='{Y:.1f}' x2='{width - right}' y2='{Y:.1f}' stroke='#eee'/>"
                     f"<text x='{left - 5}' y='{Y + 3:.1f}' font-size='10' text-anchor='end'>{v}</text>")
    parts.append(f"<text x='{(left + width - right) / 2}' y='{height - 8}' font-size='11' text-anchor='middle'>GMACs (log scale)</text>"
                 f"<text x='14' y='{(top + height - bottom) / 2}' font-size='11' text-anchor='middle' "
                 f"transform='rotate(-90 14 {(top + height - bottom) / 2})'>top-1 %</text>")
    for e, xv, yv in sorted(zip(pts, xs, ys), key=lambda t: -t[0].params):
        r = 3 + 22 * math.sqrt(e.params / biggest)
        hot = e.name == highlight
        parts.append(f"<circle cx='{sx(xv):.1f}' cy='{sy(yv):.1f}' r='{r:.1f}' fill='{'#d62728' if hot else '#1f77b4'}' "
                     f"fill-opacity='{0.85 if hot else 0.35}' stroke='black' stroke-width='{1.5 if hot else 0.4}'>"
                     f"<title>{html.escape(e.name)}: {e.top1:.1f}% top-1, {e.macs / 1e9:.2f} GMACs, {_fmt(e.params)} params</title></circle>")
        if hot or len(pts) <= 25:
            parts.append(f"<text x='{sx(xv):.1f}' y='{sy(yv) - r - 2:.1f}' font-size='9' text-anchor='middle'>{html.escape(e.name)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _block_diagram_svg(blocks: Sequence[tuple[str, str, str]]) -> str:
    """A vertical chain of boxes (name, kind, output shape) from input to output."""
    box_w, box_h, gap = 420, 34, 14
    height = 20 + len(blocks) * (box_h + gap)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{box_w + 40}' height='{height}' role='img' aria-label='block diagram'>",
             "<defs><marker id='arr' markerWidth='8' markerHeight='8' refX='4' refY='4' orient='auto'>"
             "<path d='M0,0 L8,4 L0,8 z' fill='#555'/></marker></defs>"]
    for i, (name, kind, shape) in enumerate(blocks):
        y = 10 + i * (box_h + gap)
        fill = "#e8f0fe" if "Conv" in kind else "#fdf2e9" if ("Pool" in kind or "pool" in name) else "#eef7ee"
        parts.append(f"<rect x='20' y='{y}' width='{box_w}' height='{box_h}' rx='6' fill='{fill}' stroke='#888'/>"
                     f"<text x='30' y='{y + 14}' font-size='11' font-weight='600'>{html.escape(name)}</text>"
                     f"<text x='30' y='{y + 27}' font-size='10'>{html.escape(kind)}</text>"
                     f"<text x='{box_w + 10}' y='{y + 21}' font-size='10' text-anchor='end'>{html.escape(shape)}</text>")
        if i + 1 < len(blocks):
            parts.append(f"<line x1='{20 + box_w / 2}' y1='{y + box_h}' x2='{20 + box_w / 2}' y2='{y + box_h + gap - 2}' "
                         "stroke='#555' marker-end='url(#arr)'/>")
    parts.append("</svg>")
    return "".join(parts)


def _analyse(name: str) -> tuple[AtlasEntry, list[dict[str, Any]], list[tuple[str, str, str]]]:
    from convatlas.analysis import build_on_meta, summary

    card = model_card(name)
    report = summary(build_on_meta(name), card.input_size, memory=False, name=name)
    rows = [{"name": r.name, "type": r.type, "depth": r.depth, "params": r.params, "macs": r.macs,
             "output_shape": "x".join(map(str, r.output_shape)) if r.output_shape else "",
             "receptive_field": r.field_text} for r in report.rows if r.kind != "function"]
    rf = max(report.receptive_field) if report.receptive_field else None
    entry = AtlasEntry(name=name, family=card.family, year=card.year, params=int(report.total_params),
                       macs=int(report.total_macs), receptive_field=None if rf is None else int(rf),
                       top1=float(card.top1.value) if card.top1 else None, input_size=card.input_size)
    blocks = [(r["name"], r["type"], r["output_shape"]) for r in rows if r["depth"] == 1]
    if len(blocks) < 5:  # a net made of a few big Sequentials (VGG, AlexNet): show one level more
        blocks = [(r["name"], r["type"], r["output_shape"]) for r in rows if r["depth"] == 2] or blocks
    return entry, rows, blocks


def _index(entries: Sequence[AtlasEntry]) -> str:
    head = ("<tr><th class='sortable'>network</th><th class='sortable'>family</th><th class='sortable n'>year</th>"
            "<th class='sortable n'>params</th><th class='sortable n'>MACs</th><th class='sortable n'>receptive field</th>"
            "<th class='sortable n'>published top-1 %</th><th class='sortable'>input</th></tr>")
    body = []
    for e in entries:
        rf = "" if e.receptive_field is None else e.receptive_field
        top1 = "" if e.top1 is None else e.top1
        body.append(
            f"<tr><td><a href='models/{e.name}.html'>{e.name}</a></td><td>{e.family}</td>"
            f"<td class='n' data-value='{e.year}'>{e.year}</td>"
            f"<td class='n' data-value='{e.params}'>{_fmt(e.params)}</td>"
            f"<td class='n' data-value='{e.macs}'>{_fmt(e.macs)}</td>"
            f"<td class='n' data-value='{rf}'>{rf if rf != '' else '-'}</td>"
            f"<td class='n' data-value='{top1}'>{'-' if top1 == '' else f'{top1:.1f}'}</td>"
            f"<td>{'×'.join(map(str, e.input_size))}</td></tr>")
    return _page("convatlas", (
        "<h1>convatlas: the classic CNNs</h1>"
        f"<p><span id='shown'>{len(entries)}</span> of {len(entries)} networks. Parameters, MACs (conv + linear "
        "multiply-accumulates at the native input size) and receptive fields are measured by "
        "<code>convatlas summary</code>; accuracies are the published ones (see each card for the source).</p>"
        "<input id='filter' type='search' placeholder='filter: name, family, year…' aria-label='filter'>"
        f"<table id='zoo'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
        f"<script>{_SORT_JS}</script>"))


def _model_page(entry: AtlasEntry, rows: list[dict[str, Any]], blocks, entries) -> str:
    card = model_card(entry.name)
    dl = [("paper", html.escape(card.citation)), ("family", card.family), ("year", str(card.year)),
          ("input", "×".join(map(str, card.input_size)) + f" ({card.dataset}, {card.default_num_classes} classes)"),
          ("parameters (measured)", f"{entry.params:,}"), ("MACs (measured)", f"{entry.macs:,}"),
          ("receptive field", "-" if entry.receptive_field is None else f"{entry.receptive_field} px")]
    for label, pub in (("published params", card.params), ("published MACs", card.macs),
                       ("published top-1", card.top1), ("published top-5", card.top5)):
        if pub is not None:
            value = f"{pub.value:,}" if "params" in label else (_fmt(pub.value) if "MACs" in label else f"{pub.value}%")
            dl.append((label, f"{value} <small>({html.escape(pub.source)})</small>"))
    if card.torchvision or card.timm:
        dl.append(("same architecture", f"torchvision <code>{card.torchvision or '-'}</code>, timm <code>{card.timm or '-'}</code>"))
    if card.arxiv:
        dl.append(("arXiv", f"{card.arxiv}"))
    table_rows = "".join(
        f"<tr><td>{'&nbsp;' * 2 * (r['depth'] - 1)}{html.escape(r['name'])}</td><td>{html.escape(r['type'])}</td>"
        f"<td>{html.escape(r['output_shape'])}</td><td class='n'>{r['params']:,}</td><td class='n'>{r['macs']:,}</td>"
        f"<td class='n'>{r['receptive_field'] if r['receptive_field'] is not None else '-'}</td></tr>"
        for r in rows)
    return _page(entry.name, (
        f"<h1>{html.escape(entry.name)}</h1><p class='idea'>{html.escape(card.idea)}</p>"
        f"<dl class='card'>{''.join(f'<dt>{k}</dt><dd>{v}</dd>' for k, v in dl)}</dl>"
        + (f"<p><em>{html.escape(card.notes)}</em></p>" if card.notes else "")
        + "<h2>Structure</h2>" + _block_diagram_svg(blocks)
        + "<h2>Place on the chart</h2>" + _chart_svg(entries, highlight=entry.name)
        + "<h2>Layers</h2><table><thead><tr><th>layer</th><th>type</th><th>output</th><th class='n'>params</th>"
        f"<th class='n'>MACs</th><th class='n'>RF</th></tr></thead><tbody>{table_rows}</tbody></table>"), depth=1)


def _runs_section(runs: Path | None, out: Path) -> str:
    if runs is None:
        return ""
    parts = ["<h2>Measured comparisons</h2>"]
    found = sorted(runs.rglob("comparison.json"))
    if not found:
        return parts[0] + f"<p>No comparison.json under {html.escape(str(runs))}.</p>"
    for i, path in enumerate(found):
        rows = json.loads(path.read_text())
        for png in sorted(path.parent.glob("*chart*.png")):
            target = out / "charts" / f"run{i}_{png.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, target)
            parts.append(f"<p><img src='charts/{target.name}' alt='{html.escape(png.stem)}' style='max-width:100%'></p>")
        metric = rows[0].get("metric", "test top-1 %") if rows else "test top-1 %"
        parts.append(f"<h3>{html.escape(str(path.parent))}</h3><table><thead><tr><th>network</th>"
                     f"<th class='n'>{html.escape(metric)}</th>"
                     "<th class='n'>params</th><th class='n'>MACs</th><th class='n'>latency ms</th></tr></thead><tbody>")
        for r in rows:
            acc = "-" if r.get("accuracy") is None else f"{r['accuracy']:.2f}"
            lat = "-" if r.get("latency_ms") is None else f"{r['latency_ms']:.2f}"
            parts.append(f"<tr><td>{html.escape(r['name'])}</td><td class='n'>{acc}</td><td class='n'>{_fmt(r['params'])}</td>"
                         f"<td class='n'>{_fmt(r['macs'])}</td><td class='n'>{lat}</td></tr>")
        parts.append("</tbody></table>")
    return "".join(parts)


def build_atlas(out_dir: str | Path, *, names: Sequence[str] | None = None, runs: str | Path | None = None) -> Path:
    """Write the atlas into ``out_dir`` and return the path of its ``index.html``."""
    out = Path(out_dir)
    runs_path = Path(runs) if runs is not None else None
    if runs_path is not None and not runs_path.is_dir():
        raise FileNotFoundError(f"--runs {runs_path}: no such directory (expected a folder of `convatlas compare` results)")
    names = list(names) if names is not None else list_models()
    analysed = [_analyse(n) for n in names]
    entries = [a[0] for a in analysed]
    for entry, rows, blocks in analysed:
        atomic_write_text(out / "models" / f"{entry.name}.html", _model_page(entry, rows, blocks, entries))
    charts = _page("charts", "<h1>Charts</h1><h2>Published ImageNet top-1 against measured MACs</h2>"
                   + _chart_svg(entries, width=960, height=560) + _runs_section(runs_path, out))
    atomic_write_text(out / "charts.html", charts)
    return atomic_write_text(out / "index.html", _index(entries))

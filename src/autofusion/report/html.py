"""`report.html`: one self-contained page (inline CSS, figures as base64 PNG, no network) per run.

It lays out `ReportData`, its tables (`tables.py`) and figures (`figures.py`); the winner's code is
highlighted with pygments when installed and shown as escaped text otherwise. A small inline script
records in `#report-status` how many figures decoded and whether any script or resource error
occurred, so a headless browser (tests/report) can check that the page really renders.
"""

from __future__ import annotations

import base64
import html
from typing import Iterable

from autofusion.report import tables as T
from autofusion.report.data import ReportData, config_json

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:72em;margin:1.5em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{padding:.25em .6em;border-bottom:1px solid #e4e4e4;text-align:left;vertical-align:top}
th{background:#f3f5f7}td[data-value]{text-align:right;font-variant-numeric:tabular-nums}
tr.winner td{background:#fff6d6;font-weight:600}.note{color:#555;font-size:.85em;max-width:60em}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.85em}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.85em;border-radius:4px}dl.facts{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}#report-status{color:#999;font-size:.75em;margin-top:3em}
.empty{color:#777;font-style:italic}
"""

HEAD_SCRIPT = """<script>
window.__reportErrors = [];
window.addEventListener('error', function (e) {
  window.__reportErrors.push(e.message || ((e.target && (e.target.alt || e.target.tagName)) + ' failed to load'));
}, true);
</script>"""

TAIL_SCRIPT = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var broken = imgs.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  var s = document.getElementById('report-status');
  s.setAttribute('data-figures', String(imgs.length));
  s.setAttribute('data-broken', String(broken.length));
  s.setAttribute('data-tables', String(document.querySelectorAll('table').length));
  s.setAttribute('data-errors', String(window.__reportErrors.length));
  s.setAttribute('data-state', broken.length || window.__reportErrors.length ? 'problems' : 'ok');
  s.textContent = 'rendered ' + (imgs.length - broken.length) + '/' + imgs.length + ' figures, ' +
    document.querySelectorAll('table').length + ' tables' +
    (window.__reportErrors.length ? '; errors: ' + window.__reportErrors.join('; ') : '');
});
</script>"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def table_html(t: T.Table) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in t.headers)
    body = []
    for key, row in zip(t.row_keys, t.rows):
        cls = ' class="winner"' if any(c.text.startswith("winner") for c in row[:2]) else ""
        cells = "".join(_cell(c) for c in row)
        body.append(f'<tr data-key="{esc(key)}"{cls}>{cells}</tr>')
    note = f'<p class="note">{esc(t.note)}</p>' if t.note else ""
    rows = "".join(body) or f'<tr><td colspan="{len(t.headers)}" class="empty">no rows</td></tr>'
    return f'<table id="table-{esc(t.key)}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>{note}'


def _cell(c: T.Cell) -> str:
    if c.value is None:
        return f"<td>{esc(c.text)}</td>"
    std = f' data-std="{esc(repr(c.std))}"' if c.std is not None else ""
    return f'<td data-value="{esc(repr(c.value))}"{std}>{esc(c.text)}</td>'


def figure_html(name: str, caption: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure id="fig-{esc(name)}"><img alt="{esc(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def highlight(code: str) -> tuple[str, str]:
    """(HTML of the code, CSS it needs): pygments when installed, escaped plain text otherwise."""
    try:
        from pygments import highlight as pyg_highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer
    except ImportError:
        return f'<pre class="code">{esc(code)}</pre>', ""
    formatter = HtmlFormatter(cssclass="code", linenos=False)
    return pyg_highlight(code, PythonLexer(), formatter), formatter.get_style_defs(".code")


def section(title: str, *parts: str, anchor: str = "") -> str:
    ident = f' id="{esc(anchor)}"' if anchor else ""
    return f"<h2{ident}>{esc(title)}</h2>" + "".join(parts)


def page(title: str, body: Iterable[str], extra_css: str = "") -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<style>{CSS}{extra_css}</style>{HEAD_SCRIPT}</head><body>{''.join(body)}"
            f'<p id="report-status" data-state="pending">rendering…</p>{TAIL_SCRIPT}</body></html>')


def render_run(data: ReportData, figures: dict[str, tuple[str, bytes]], code: str) -> str:
    fig = lambda name: figure_html(name, *figures[name]) if name in figures else ""  # noqa: E731
    facts = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in T.run_facts(data))
    w = data.winner
    parts = [f"<h1>AutoFusion run on {esc(data.task.get('name'))}</h1>",
             f'<p class="note">{esc(data.run_dir)}</p><dl class="facts">{facts}</dl>']
    parts.append(section("Winner vs. the zoo", table_html(T.models_table(data)), anchor="models"))
    full = T.full_table(data)
    if full is not None:
        parts.append(section("Full training", table_html(full),
                             *(fig(n) for n in figures if n.startswith("full_")), anchor="full"))
    parts.append(section("Search progress", fig("best_so_far") or '<p class="empty">no candidate finished training</p>',
                         anchor="progress"))
    parts.append(section("Training curves", fig("curves") or '<p class="empty">no curves were recorded</p>', anchor="curves"))
    parts.append(section("Accuracy vs. cost", fig("acc_params"), fig("acc_flops"), anchor="pareto"))
    if data.breakdown:
        parts.append(section("Per-category accuracy", *(table_html(t) + fig(f"breakdown_{t.key[10:]}")
                                                        for t in T.breakdown_tables(data)), anchor="breakdown"))
    css = ""
    if w is not None:
        code_html, css = highlight(code or w.code)
        title = f"Winner: candidate #{w.id} ({w.origin})"
        parts.append(section(title, code_html, anchor="code"))
        parts.append(section("Lineage", table_html(T.lineage_table(data)), anchor="lineage"))
    llm = T.llm_table(data)
    if llm is not None:
        parts.append(section("LLM usage", table_html(llm), anchor="llm"))
    parts.append(section("Reproduce", f"<pre>{esc(T.command_line(data))}</pre>",
                         f"<details><summary>resolved config</summary><pre>{esc(config_json(data))}</pre></details>",
                         anchor="reproduce"))
    return page(f"AutoFusion report — {data.task.get('name')}", parts, css)

"""Self-contained HTML reports with inline SVG charts, using only the standard library.

Reports must open offline and be diffable, so nothing here references the network
(no scripts, CDNs, fonts or even the SVG namespace URL, which inline SVG in HTML5
does not need) and every output is a pure function of its input.  All builders
return HTML fragments as strings; user text is always escaped, while the ``parts``
passed to ``section``/``page`` are trusted fragments made by these builders.
"""
from __future__ import annotations

import html
import math
import numbers
import pathlib
from typing import Mapping, Sequence

# Okabe-Ito palette: distinguishable for colour-blind readers and in greyscale-ish print.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
_DASHES = ("", "6 3", "2 3")  # cycled after the palette runs out so series stay distinct
_CHAR_W = 6.5  # rough width of one 12px sans-serif glyph, for layout without font metrics
MISSING = "—"

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 color:#1d232a;background:#fff;line-height:1.5;margin:0;padding:24px}
main{max-width:960px;margin:0 auto}
h1{font-size:1.7em;margin:0 0 .2em}
h2{font-size:1.25em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.8em}
.subtitle{color:#57606a;margin-top:0}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em;display:block;overflow-x:auto;max-width:100%}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
caption{caption-side:top;text-align:left;font-weight:600;padding-bottom:4px}
svg.chart{display:block;max-width:100%;height:auto;margin:.8em 0;font-family:inherit}
.note{color:#57606a;font-size:.92em}
.callout{border-left:4px solid;padding:8px 12px;border-radius:3px}
.callout.info{border-color:#0969da;background:#ddf4ff}.callout.ok{border-color:#1a7f37;background:#dafbe1}
.callout.warn{border-color:#9a6700;background:#fff8c5}
"""


def escape(text: object) -> str:
    """Escape any value for HTML/SVG text and attributes, so user text can never inject markup."""
    return html.escape(str(text), quote=True)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, numbers.Real) and math.isnan(float(value)))


def _num(value: object, digits: int = 4) -> str:
    """Unescaped compact text for a number (or str() of anything else)."""
    if _is_missing(value):
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        if v == 0:
            return "0"
        if abs(v) >= 1:  # keep `digits` significant digits but never use exponent notation
            decimals = max(0, digits - (int(math.log10(abs(v))) + 1))
            text = f"{v:,.{decimals}f}"
        else:
            text = f"{v:.{digits}g}"
        if "." in text and "e" not in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    return str(value)


def _plain(value: float) -> str:
    """A number without thousands separators, so "x, y" in a tooltip stays unambiguous."""
    return _num(value).replace(",", "")


def fmt(value: object, digits: int = 4) -> str:
    """Format a table cell: ints with thousands separators, floats compactly, missing as an em dash."""
    return escape(_num(value, digits))


def _cell(value: object) -> str:
    numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return f'<td class="num">{fmt(value)}</td>' if numeric else f"<td>{fmt(value)}</td>"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], caption: str | None = None) -> str:
    """An HTML table; numeric cells are right-aligned so columns of metrics line up."""
    out = ["<table>"]
    if caption is not None:
        out.append(f"<caption>{escape(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in headers) + "</tr></thead>")
    out.append("<tbody>")
    out.extend("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    out.append("</tbody></table>")
    return "\n".join(out)


def key_values(mapping: Mapping[str, object]) -> str:
    """A two-column table for run settings and summary facts."""
    rows = "".join(f"<tr><th>{escape(k)}</th>{_cell(v)}</tr>" for k, v in mapping.items())
    return f"<table>\n<tbody>{rows}</tbody></table>"


# ----------------------------------------------------------------------------- SVG helpers


def _c(v: float) -> str:
    """Fixed-precision coordinates keep the output byte-stable and small."""
    text = f"{v:.1f}"
    return "0.0" if text == "-0.0" else text


def _text(x: float, y: float, s: str, anchor: str = "middle", cls: str = "", extra: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f'<text x="{_c(x)}" y="{_c(y)}" text-anchor="{anchor}"{klass}{extra}>{escape(s)}</text>'


def _svg_open(width: float, height: float, title: str) -> list[str]:
    return [
        f'<svg class="chart" viewBox="0 0 {_c(width)} {_c(height)}" width="{_c(width)}" '
        f'height="{_c(height)}" role="img" aria-label="{escape(title)}" font-size="12">',
        f"<title>{escape(title)}</title>",
        _text(width / 2, 20, title, extra=' font-weight="600" font-size="14"'),
    ]


def _no_data(title: str, width: float, height: float) -> str:
    note = _text(width / 2, height / 2, "no data", cls="nodata", extra=' fill="#57606a"')
    return "\n".join(_svg_open(width, height, title) + [note, "</svg>"])


def _nice_ticks(lo: float, hi: float) -> tuple[list[float], int]:
    """4-6 round ticks (steps 1, 2, 2.5, 5 x 10^k) covering [lo, hi], plus decimals to print."""
    lo, hi = min(lo, hi), max(lo, hi)
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    top = math.floor(math.log10(hi - lo))
    best: tuple[float, int, float, float, int, int] | None = None
    for exp in range(top - 2, top + 2):
        for mant in (1.0, 2.0, 2.5, 5.0):
            step = mant * 10.0**exp
            start = math.floor(lo / step + 1e-9) * step
            end = math.ceil(hi / step - 1e-9) * step
            n = int(round((end - start) / step)) + 1
            if 4 <= n <= 6:
                decimals = max(0, -exp + (1 if mant == 2.5 else 0))
                cand = (end - start, abs(n - 5), start, step, decimals, n)
                if best is None or cand[:2] < best[:2]:  # tightest fit, then closest to 5 ticks
                    best = cand
    if best is None:  # unreachable for finite input; keep a sane fallback anyway
        return [lo + i * (hi - lo) / 4 for i in range(5)], 3
    _, _, start, step, decimals, count = best
    return [round(start + i * step, 12) + 0.0 for i in range(count)], decimals


def _log_ticks(xs: Sequence[float]) -> list[float]:
    """Log-axis ticks: the data's own x values when few, else powers of 10 (or 2) in range."""
    distinct = sorted(set(xs))
    if len(distinct) <= 6:
        return distinct
    lo, hi = distinct[0], distinct[-1]
    for base in (10, 2):
        first, last = math.ceil(math.log(lo, base) - 1e-9), math.floor(math.log(hi, base) + 1e-9)
        powers = [float(base**k) for k in range(first, last + 1)]
        if len(powers) >= 3:
            return powers[:: math.ceil(len(powers) / 6)]
    return [distinct[round(i * (len(distinct) - 1) / 4)] for i in range(5)]


def _legend(names: Sequence[str], x0: float, y0: float, width: float) -> tuple[list[str], float]:
    """Swatch + name entries wrapped into rows; returns SVG parts and the height used."""
    parts, x, y = [], x0, y0
    for i, name in enumerate(names):
        w = 22 + len(name) * _CHAR_W + 16
        if x > x0 and x + w > x0 + width:
            x, y = x0, y + 18
        colour, dash = _style(i)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<line class="swatch" x1="{_c(x)}" y1="{_c(y - 4)}" x2="{_c(x + 16)}" y2="{_c(y - 4)}" '
                     f'stroke="{colour}" stroke-width="3"{dash_attr}/>')
        parts.append(_text(x + 20, y, name, anchor="start"))
        x += w
    return parts, (y - y0 + 18) if names else 0.0


def _style(i: int) -> tuple[str, str]:
    return PALETTE[i % len(PALETTE)], _DASHES[(i // len(PALETTE)) % len(_DASHES)]


def _frame(left: float, top: float, pw: float, ph: float, x_label: str, y_label: str) -> list[str]:
    return [
        f'<rect x="{_c(left)}" y="{_c(top)}" width="{_c(pw)}" height="{_c(ph)}" fill="none" stroke="#8c959f"/>',
        *([_text(left + pw / 2, top + ph + 36, x_label)] if x_label else []),
        _text(0, 0, y_label, extra=f' transform="translate(16 {_c(top + ph / 2)}) rotate(-90)"'),
    ]


def _y_axis(ticks: list[float], decimals: int, ymap, left: float, pw: float) -> list[str]:
    out = []
    for t in ticks:
        y = ymap(t)
        out.append(f'<line x1="{_c(left)}" y1="{_c(y)}" x2="{_c(left + pw)}" y2="{_c(y)}" stroke="#eaeef2"/>')
        out.append(_text(left - 6, y + 4, f"{t:,.{decimals}f}", anchor="end", cls="ytick"))
    return out


def line_chart(series: Mapping[str, Sequence[tuple[float, float]]], title: str, x_label: str, y_label: str,
               log_x: bool = False, width: int = 560, height: int = 320) -> str:
    """Lines with hoverable markers; missing points (None/NaN, or x <= 0 on a log axis) break the line."""
    names = list(series)
    runs: dict[str, list[list[tuple[float, float]]]] = {name: [[]] for name in names}
    skipped = 0
    for name in names:
        for x, y in series[name]:
            if _is_missing(x) or _is_missing(y) or math.isinf(x) or math.isinf(y) or (log_x and x <= 0):
                skipped += 1
                runs[name].append([])  # a gap: start a new polyline
            else:
                runs[name][-1].append((float(x), float(y)))
        runs[name] = [run for run in runs[name] if run]
    points = [p for name in names for run in runs[name] for p in run]
    if not points:
        return _no_data(title, width, height)

    left, top, right = 64.0, 34.0, 16.0
    legend_names = [n if runs[n] else f"{n} (no data)" for n in names]
    leg_h = _legend(legend_names, 0, 0, width - left - right)[1]
    pw, ph = width - left - right, height - top - 50
    y_ticks, y_dec = _nice_ticks(min(p[1] for p in points), max(p[1] for p in points))
    ymap = lambda v: top + ph - (v - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * ph  # noqa: E731
    if log_x:
        x_ticks, x_dec = _log_ticks([p[0] for p in points]), 0
        lo, hi = math.log10(min(x_ticks + [p[0] for p in points])), math.log10(max(x_ticks + [p[0] for p in points]))
        pad = (hi - lo) * 0.04 or 0.5
        lo, hi = lo - pad, hi + pad
        xmap = lambda v: left + (math.log10(v) - lo) / (hi - lo) * pw  # noqa: E731
        x_text = [_num(t) for t in x_ticks]
    else:
        x_ticks, x_dec = _nice_ticks(min(p[0] for p in points), max(p[0] for p in points))
        xmap = lambda v: left + (v - x_ticks[0]) / (x_ticks[-1] - x_ticks[0]) * pw  # noqa: E731
        x_text = [f"{t:,.{x_dec}f}" for t in x_ticks]

    note_h = 18 if skipped else 0
    out = _svg_open(width, height + leg_h + note_h, title)
    out += _y_axis(y_ticks, y_dec, ymap, left, pw)
    for t, label in zip(x_ticks, x_text):
        x = xmap(t)
        out.append(f'<line x1="{_c(x)}" y1="{_c(top)}" x2="{_c(x)}" y2="{_c(top + ph)}" stroke="#eaeef2"/>')
        out.append(_text(x, top + ph + 16, label, cls="xtick"))
    out += _frame(left, top, pw, ph, x_label + (" (log scale)" if log_x else ""), y_label)
    for i, name in enumerate(names):
        colour, dash = _style(i)
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<g class="series" data-name="{escape(name)}">')
        for run in runs[name]:
            pts = " ".join(f"{_c(xmap(x))},{_c(ymap(y))}" for x, y in run)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"{dash_attr}/>')
        for run in runs[name]:
            for x, y in run:
                out.append(f'<circle cx="{_c(xmap(x))}" cy="{_c(ymap(y))}" r="3.5" fill="{colour}">'
                           f"<title>{escape(f'{name}: {_plain(x)}, {_plain(y)}')}</title></circle>")
        out.append("</g>")
    out += _legend(legend_names, left, height + 4, width - left - right)[0]
    if skipped:
        out.append(_text(width - right, height + leg_h + note_h - 4, f"{skipped} point(s) not plotted (missing"
                         + (" or x ≤ 0)" if log_x else ")"), anchor="end", cls="note", extra=' fill="#57606a"'))
    return "\n".join(out + ["</svg>"])


def bar_chart(categories: Sequence[str], series: Mapping[str, Sequence[float | None]], title: str,
              y_label: str, width: int = 560, height: int = 320) -> str:
    """Grouped bars; None/NaN values get no bar but a visible "—" marker so gaps are not mistaken for 0."""
    names = list(series)
    for name in names:
        if len(series[name]) != len(categories):
            raise ValueError(f"series {name!r} has {len(series[name])} values for {len(categories)} categories")
    values = [float(v) for n in names for v in series[n] if not _is_missing(v)]
    if not categories or not values:
        return _no_data(title, width, height)

    left, top, right = 64.0, 34.0, 16.0
    pw = width - left - right
    group_w = pw / len(categories)
    longest = max(len(c) for c in categories) * _CHAR_W
    rotate = longest > group_w - 4
    cat_h = (longest * 0.7 + 8) if rotate else 0.0  # rotated labels need extra room below the axis
    ph = height - top - 50 - cat_h
    leg_h = _legend(names, 0, 0, pw)[1]
    missing = sum(1 for n in names for v in series[n] if _is_missing(v))
    note_h = 18 if missing else 0
    y_ticks, y_dec = _nice_ticks(min(0.0, min(values)), max(0.0, max(values)))
    ymap = lambda v: top + ph - (v - y_ticks[0]) / (y_ticks[-1] - y_ticks[0]) * ph  # noqa: E731

    total_h = height + leg_h + note_h
    out = _svg_open(width, total_h, title)
    out += _y_axis(y_ticks, y_dec, ymap, left, pw)
    out.append(f'<line x1="{_c(left)}" y1="{_c(ymap(0))}" x2="{_c(left + pw)}" y2="{_c(ymap(0))}" stroke="#57606a"/>')
    bar_w = group_w * 0.8 / max(1, len(names))
    for ci, cat in enumerate(categories):
        gx = left + ci * group_w + group_w * 0.1
        for si, name in enumerate(names):
            v, x = series[name][ci], gx + si * bar_w
            if _is_missing(v):
                out.append(f'<text class="missing" x="{_c(x + bar_w / 2)}" y="{_c(ymap(0) - 4)}" '
                           f'text-anchor="middle" fill="#57606a"><title>{escape(f"{name}, {cat}: missing")}'
                           f"</title>{MISSING}</text>")
                continue
            y0, y1 = sorted((ymap(0), ymap(float(v))))
            out.append(f'<rect class="bar" x="{_c(x)}" y="{_c(y0)}" width="{_c(bar_w * 0.92)}" '
                       f'height="{_c(max(y1 - y0, 0.5))}" fill="{_style(si)[0]}">'
                       f"<title>{escape(f'{name}, {cat}: {_num(v)}')}</title></rect>")
        cx, cy = left + (ci + 0.5) * group_w, top + ph + 16
        if rotate:
            out.append(_text(0, 0, cat, anchor="end", cls="xtick",
                             extra=f' transform="translate({_c(cx)} {_c(cy - 4)}) rotate(-40)"'))
        else:
            out.append(_text(cx, cy, cat, cls="xtick"))
    out += _frame(left, top, pw, ph, "", y_label)
    out += _legend(names, left, height + 4, pw)[0]
    if missing:
        out.append(_text(width - right, total_h - 4, f"{MISSING} = missing value ({missing})", anchor="end",
                         cls="note", extra=' fill="#57606a"'))
    return "\n".join(out + ["</svg>"])


def _diverging(t: float) -> str:
    """Blue (-1) → white (0) → red (+1), so sign and magnitude of a similarity read at a glance."""
    t = max(-1.0, min(1.0, t))
    end = (33, 102, 172) if t < 0 else (178, 24, 43)
    rgb = (round(255 + (e - 255) * abs(t)) for e in end)
    return "#" + "".join(f"{c:02x}" for c in rgb)


def heatmap(labels: Sequence[str], matrix: Sequence[Sequence[float]], title: str,
            vmin: float = -1.0, vmax: float = 1.0) -> str:
    """A labelled square grid with the value printed in each cell (e.g. cosine similarities)."""
    n = len(labels)
    if len(matrix) != n or any(len(row) != n for row in matrix):
        raise ValueError(f"heatmap needs a {n}x{n} matrix for {n} labels")
    if n == 0:
        return _no_data(title, 320, 200)
    if not vmax > vmin:
        raise ValueError("heatmap needs vmin < vmax")
    cell = max(28.0, min(72.0, 360.0 / n))
    longest = max(len(lab) for lab in labels) * _CHAR_W
    left, top = longest + 16, 34 + longest * 0.72 + 12
    scale_h = 44
    width, height = left + n * cell + max(16.0, longest * 0.72), top + n * cell + scale_h
    mid = (vmin + vmax) / 2
    out = _svg_open(width, height, title)
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            x, y = left + j * cell, top + i * cell
            missing = _is_missing(v)
            t = 0.0 if missing else (float(v) - mid) / ((vmax - vmin) / 2)
            fill = "#d0d7de" if missing else _diverging(t)
            tip = escape(f"{labels[i]} × {labels[j]}: {_num(v)}")
            out.append(f'<rect class="cell" x="{_c(x)}" y="{_c(y)}" width="{_c(cell)}" height="{_c(cell)}" '
                       f'fill="{fill}" stroke="#fff"><title>{tip}</title></rect>')
            ink = "#fff" if abs(t) > 0.6 else "#1d232a"
            out.append(_text(x + cell / 2, y + cell / 2 + 4, _num(v, 2) if missing else f"{float(v):.2f}",
                             cls="value", extra=f' fill="{ink}"'))
    for k, lab in enumerate(labels):
        out.append(_text(left - 6, top + (k + 0.5) * cell + 4, lab, anchor="end", cls="row-label"))
        out.append(_text(0, 0, lab, anchor="start", cls="col-label",
                         extra=f' transform="translate({_c(left + (k + 0.5) * cell + 4)} {_c(top - 6)}) rotate(-45)"'))
    steps, sx, sw = 11, left, n * cell / 11  # discrete colour key: no gradient ids to clash between charts
    for s in range(steps):
        t = -1 + 2 * s / (steps - 1)
        out.append(f'<rect class="key" x="{_c(sx + s * sw)}" y="{_c(height - 32)}" width="{_c(sw)}" '
                   f'height="10" fill="{_diverging(t)}"/>')
    out.append(_text(sx, height - 8, _num(vmin, 3), anchor="start"))
    out.append(_text(sx + n * cell / 2, height - 8, _num(mid, 3)))
    out.append(_text(sx + n * cell, height - 8, _num(vmax, 3), anchor="end"))
    return "\n".join(out + ["</svg>"])


# ----------------------------------------------------------------------------- page structure

CALLOUT_KINDS = ("info", "ok", "warn")


def section(title: str, *parts: str, note: str | None = None) -> str:
    """A titled block of trusted fragments; the note (escaped) explains how to read them."""
    body = [f"<section>\n<h2>{escape(title)}</h2>"]
    if note is not None:
        body.append(f'<p class="note">{escape(note)}</p>')
    body.extend(parts)
    body.append("</section>")
    return "\n".join(body)


def callout(text: str, kind: str = "info") -> str:
    """A highlighted paragraph, e.g. to flag where our numbers differ from the paper's."""
    if kind not in CALLOUT_KINDS:
        raise ValueError(f"callout kind must be one of {CALLOUT_KINDS}, got {kind!r}")
    return f'<p class="callout {kind}">{escape(text)}</p>'


def page(title: str, *sections: str, subtitle: str | None = None) -> str:
    """A complete offline HTML5 document: inline CSS only, nothing fetched when viewed."""
    head = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n<h1>{escape(title)}</h1>")
    parts = [head]
    if subtitle is not None:
        parts.append(f'<p class="subtitle">{escape(subtitle)}</p>')
    parts.extend(sections)
    parts.append("</main>\n</body>\n</html>\n")
    return "\n".join(parts)


def write_page(path: pathlib.Path | str, html_text: str) -> pathlib.Path:
    """Write the document as UTF-8 (creating parent folders) and return where it went."""
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html_text, encoding="utf-8")
    return target

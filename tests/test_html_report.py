"""Behaviour of the dependency-free HTML/SVG report builders in reports/html.py."""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from reports import html as h

NAN = float("nan")
LABELS = ["like", "listen", "skip", "dislike"]
COSINES = [[1.0, 0.52, -0.31, -0.8], [0.52, 1.0, 0.1, -0.2], [-0.31, 0.1, 1.0, 0.61], [-0.8, -0.2, 0.61, 1.0]]


def svgs(text: str) -> list[ET.Element]:
    """Every <svg>…</svg> in the text, parsed as XML (fails if any is not well-formed)."""
    found = re.findall(r"<svg\b.*?</svg>", text, flags=re.S)
    assert found, "no <svg> element found"
    return [ET.fromstring(s) for s in found]


def floats(texts: list[str]) -> list[float]:
    return [float(t.replace(",", "")) for t in texts]


def tick_labels(svg: str, cls: str) -> list[str]:
    return re.findall(rf'class="{cls}"[^>]*>([^<]*)</text>', svg)


def tick_x(svg: str, cls: str) -> list[float]:
    return [float(x) for x in re.findall(rf'<text x="([-\d.]+)"[^>]*class="{cls}"', svg)]


def sample_page() -> str:
    curves = {"ours": [(1, 0.1), (4, 0.2), (16, 0.3), (64, 0.35), (256, 0.4), (1024, 0.41)],
              "paper": [(1, 0.12), (4, 0.22), (16, NAN), (64, 0.37), (256, 0.42), (1024, 0.45)]}
    return h.page(
        "Music recommender <report>",
        h.section("Recall", h.line_chart(curves, "Recall@k", "k", "recall", log_x=True),
                  h.callout("Ours differs from the paper at k=16.", "warn"), note="higher is better"),
        h.section("Feedback", h.bar_chart(LABELS, {"ours": [0.5, None, -0.2, 0.9], "paper": [0.4, 0.3, 0.1, 0.8]},
                                          "Scores", "score"),
                  h.heatmap(LABELS, COSINES, "Cosine similarity")),
        h.section("Numbers", h.table(["metric", "value"], [["plays", 12345], ["loss", 0.123456]], caption="run"),
                  h.key_values({"seed": 7, "lr": 0.001})),
        subtitle="generated offline",
    )


def test_page_is_self_contained_and_well_formed():
    text = sample_page()
    assert text.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in text and "<style>" in text and "max-width:960px" in text
    lowered = text.lower()
    for banned in ("http://", "https://", "<script", "src=", "@import", "url("):
        assert banned not in lowered, banned
    assert "<h1>Music recommender &lt;report&gt;</h1>" in text
    assert len(svgs(text)) == 3
    assert '<p class="callout warn">' in text and '<p class="note">higher is better</p>' in text


def test_output_is_deterministic():
    assert sample_page() == sample_page()


def test_fmt():
    assert h.fmt(None) == "—"
    assert h.fmt(NAN) == "—"
    assert h.fmt(12345) == "12,345"
    assert h.fmt(0.123456) == "0.1235"
    assert h.fmt(0.123456, digits=2) == "0.12"
    assert h.fmt(12.5) == "12.5"
    assert h.fmt(1234567.891) == "1,234,568"
    assert h.fmt(-0.0) == "0"
    assert h.fmt("a<b & c") == "a&lt;b &amp; c"


def test_table_and_key_values_escape_and_format():
    out = h.table(["name", "<n>"], [["<b>x</b>", 12345], ["y", None]], caption="A & B")
    assert "<caption>A &amp; B</caption>" in out and "<th>&lt;n&gt;</th>" in out
    assert "<td>&lt;b&gt;x&lt;/b&gt;</td>" in out and '<td class="num">12,345</td>' in out
    assert out.count("<tr>") == 3 and "<td>—</td>" in out
    kv = h.key_values({"seed": 7, "path": "<tmp>"})
    assert kv.count("<tr>") == 2 and "&lt;tmp&gt;" in kv and "<tmp>" not in kv


def test_line_chart_counts_polylines_and_markers():
    series = {"a": [(0, 1.0), (1, 2.0), (2, 1.5)], "b": [(0, 0.5), (1, 0.7), (2, 0.9), (3, 1.1)]}
    out = h.line_chart(series, "loss", "epoch", "value")
    (root,) = svgs(out)
    assert len(root.findall(".//polyline")) == 2
    assert len(root.findall(".//circle")) == 7
    groups = root.findall("g")
    assert [g.get("data-name") for g in groups] == ["a", "b"]
    colours = [g.find("polyline").get("stroke") for g in groups]
    assert len(set(colours)) == 2
    titles = [c.find("title").text for c in groups[0].findall("circle")]
    assert titles == ["a: 0, 1", "a: 1, 2", "a: 2, 1.5"]


def test_line_chart_ticks_are_round_and_cover_the_data():
    out = h.line_chart({"s": [(0, 0.13), (7, 0.87)]}, "t", "x", "y")
    for cls, lo, hi in (("xtick", 0, 7), ("ytick", 0.13, 0.87)):
        values = floats(tick_labels(out, cls))
        assert 4 <= len(values) <= 6, (cls, values)
        assert values[0] <= lo and values[-1] >= hi
        steps = {round(b - a, 9) for a, b in zip(values, values[1:])}
        assert len(steps) == 1
        step = steps.pop()
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert round(mantissa, 6) in (1.0, 2.0, 2.5, 5.0), (cls, step)


def test_line_chart_skips_nan_and_breaks_the_line():
    out = h.line_chart({"s": [(1, 1.0), (2, NAN), (3, 3.0), (4, 4.0), (5, None)]}, "t", "x", "y")
    (root,) = svgs(out)
    assert len(root.findall(".//circle")) == 3
    polylines = root.findall(".//polyline")
    assert [len(p.get("points").split()) for p in polylines] == [1, 2]
    assert "nan" not in out.lower()
    assert "2 point(s) not plotted" in out


def test_line_chart_log_x():
    xs = (1, 4, 16, 64, 256, 1024)
    out = h.line_chart({"recall": [(x, 0.1 * i) for i, x in enumerate(xs)]}, "t", "k", "recall", log_x=True)
    (root,) = svgs(out)
    assert tick_labels(out, "xtick") == ["1", "4", "16", "64", "256", "1,024"]
    positions = tick_x(out, "xtick")
    assert all(a < b for a, b in zip(positions, positions[1:]))
    gaps = [b - a for a, b in zip(positions, positions[1:])]
    assert max(gaps) - min(gaps) < 0.5  # equal ratios are equally spaced on a log axis
    cx = [float(c.get("cx")) for c in root.findall(".//circle")]
    assert cx == pytest.approx(positions, abs=0.11)


def test_line_chart_log_x_many_values_uses_powers():
    out = h.line_chart({"s": [(x, float(x)) for x in range(1, 2001, 50)]}, "t", "x", "y", log_x=True)
    assert tick_labels(out, "xtick") == ["1", "10", "100", "1,000"]
    bad = h.line_chart({"s": [(0, 1.0), (10, 2.0), (100, 3.0)]}, "t", "x", "y", log_x=True)
    assert len(svgs(bad)[0].findall(".//circle")) == 2 and "x ≤ 0" in bad


@pytest.mark.parametrize("series", [{"one": [(3.0, 5.0)]}, {"flat": [(1, 2.0), (2, 2.0), (3, 2.0)]}])
def test_line_chart_degenerate_ranges(series):
    out = h.line_chart(series, "t", "x", "y")
    (root,) = svgs(out)
    n = len(next(iter(series.values())))
    assert len(root.findall(".//circle")) == n
    values = floats(tick_labels(out, "ytick"))
    assert 4 <= len(values) <= 6 and values[0] < values[-1]
    assert all(math.isfinite(float(c.get("cy"))) for c in root.findall(".//circle"))


@pytest.mark.parametrize("series", [{}, {"a": []}, {"a": [(1, NAN)], "b": [(None, 2.0)]}])
def test_line_chart_without_data_says_so(series):
    out = h.line_chart(series, "empty", "x", "y")
    (root,) = svgs(out)
    assert "no data" in out and root.find(".//polyline") is None


def test_series_names_are_escaped():
    out = h.line_chart({"<script>alert(1)</script>": [(1, 1.0), (2, 2.0)]}, 'a "title"', "x", "y")
    assert "<script" not in out and "&lt;script&gt;" in out
    assert 'aria-label="a &quot;title&quot;"' in out
    bars = h.bar_chart(["<c>"], {"<s>": [1.0]}, "t", "y")
    assert "<c>" not in bars and "<s>" not in bars
    svgs(out + bars)


def test_bar_chart_bars_missing_values_and_axis():
    out = h.bar_chart(LABELS, {"ours": [0.5, None, -0.2, 0.9], "paper": [0.4, 0.3, NAN, 0.8]}, "s", "score")
    (root,) = svgs(out)
    assert out.count('<rect class="bar"') == 6
    assert len(root.findall(".//*[@class='missing']")) == 2 and "missing value (2)" in out
    titles = [r.find("title").text for r in root.iter("rect") if r.get("class") == "bar"]
    assert titles[0] == "ours, like: 0.5" and "ours, skip: -0.2" in titles
    ticks = floats(tick_labels(out, "ytick"))
    assert ticks[0] <= -0.2 < 0 and ticks[-1] >= 0.9 and 0.0 in ticks
    assert [t.text for t in root.iter("text") if t.get("class") == "xtick"] == LABELS


def test_bar_chart_axis_starts_at_zero_and_rejects_bad_lengths():
    out = h.bar_chart(["a", "b"], {"s": [5.0, 7.0]}, "s", "y")
    assert floats(tick_labels(out, "ytick"))[0] == 0.0
    assert "no data" in h.bar_chart(["a"], {"s": [None]}, "s", "y")
    with pytest.raises(ValueError):
        h.bar_chart(["a", "b"], {"s": [1.0]}, "s", "y")


def test_heatmap_cells_values_and_labels():
    out = h.heatmap(LABELS, COSINES, "cosine")
    (root,) = svgs(out)
    cells = [r for r in root.iter("rect") if r.get("class") == "cell"]
    assert len(cells) == 16
    printed = [t.text for t in root.iter("text") if t.get("class") == "value"]
    assert printed[:4] == ["1.00", "0.52", "-0.31", "-0.80"] and len(printed) == 16
    for cls in ("row-label", "col-label"):
        assert [t.text for t in root.iter("text") if t.get("class") == cls] == LABELS
    fills = {c.get("fill") for c in cells}
    assert cells[0].get("fill") != cells[3].get("fill") and len(fills) > 4  # diverging: +1 and -1 differ
    with pytest.raises(ValueError):
        h.heatmap(LABELS, COSINES[:3], "bad")


def test_callout_kinds_and_write_page(tmp_path):
    assert h.callout("fine", "ok") == '<p class="callout ok">fine</p>'
    with pytest.raises(ValueError):
        h.callout("x", "danger")
    text = h.page("π report", h.section("s", "<p>x</p>"))
    path = h.write_page(tmp_path / "a" / "b" / "report.html", text)
    assert path.exists() and path.read_bytes() == text.encode("utf-8")

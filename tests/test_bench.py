"""tools.bench: the renderer turns the committed figures into exactly the docs' sections, and the
shared end-point error helper against a hand-computed value. Fast, no timing."""
import json

import numpy as np

from tools.bench import render
from tools.bench.common import epe


def test_committed_figures_render_to_the_committed_pages():
    differ = render.render_all(check=True)
    assert differ == [], f"regenerate with `python -m tools.bench.render`: {differ}"


def test_render_replaces_only_its_section(tmp_path):
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "performance.md"
    page.write_text("intro\n\n<!-- bench_scan:start -->\nSTALE TEXT\n<!-- bench_scan:end -->\n\nhand-written 1.23x\n")
    figures = json.loads((render.BENCH_JSON / "bench_scan.json").read_text())
    figures["rows"]["verify"]["speedup"] = 9.876
    (tmp_path / "json").mkdir()
    (tmp_path / "json" / "bench_scan.json").write_text(json.dumps(figures))
    assert render.render_all(tmp_path / "json", tmp_path) == [page]
    text = page.read_text()
    assert text.startswith("intro\n\n<!-- bench_scan:start -->\n# Whole-store scans")
    assert "**9.88x**" in text and "STALE TEXT" not in text and text.endswith("\nhand-written 1.23x\n")
    assert render.render_all(tmp_path / "json", tmp_path, check=True) == []  # a second run changes nothing


def test_epe_by_hand():
    flow = np.zeros((1, 2, 2), np.float32)
    gt = np.array([[[3.0, 4.0], [0.0, 1.0]]], np.float32)  # errors 5 and 1 px
    assert epe(flow, gt) == 3.0

"""Turns the benchmarks' figures (docs/bench/*.json) into their sections of the docs.

Each JSON names its ``template`` (docs/bench/templates/NAME.md), its ``section`` (the part of
the page between ``<!-- section:start -->`` and ``<!-- section:end -->``) and its ``page``
(default docs/performance.md; a JSON with ``"section": null`` is the whole page). The templates
hold the prose; the JSON every number. Everything else on the page is left as it is.

    python -m tools.bench.render            # rewrite the sections
    python -m tools.bench.render --check    # exit 1 if a page differs from its JSON
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import jinja2

REPO = Path(__file__).resolve().parents[2]
BENCH_JSON = REPO / "docs" / "bench"
PAGE = "docs/performance.md"


def fmt_bytes(n) -> str:
    if n is None:
        return "? (no fincore)"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


ENV = jinja2.Environment(loader=jinja2.FileSystemLoader(BENCH_JSON / "templates"),
                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                         keep_trailing_newline=True, autoescape=False)
ENV.filters.update(
    f=lambda x, spec=".2f": "-" if x is None else format(x, spec),
    fl=lambda xs, spec=".2f": ", ".join(format(x, spec) for x in xs),
    fb=fmt_bytes,
    plural=lambda n, word: f"{n} {word}{'' if n == 1 else 's'}",
    minsec=lambda s: f"{int(s // 60)} min {round(s % 60):d} s" if s >= 60 else f"{round(s):d} s")


def verdicts(rows: list[dict]) -> str:
    """Store against folders per configuration, judged on every repeat: a difference counts only
    when the per-repeat ratios all fall on the same side of 1."""
    groups: dict[str, list[str]] = {"no clear difference (per-repeat ratios on both sides of 1)": [],
                                    "the store slower in every repeat": [],
                                    "the store faster in every repeat": []}
    for r in rows:
        pr = r["per_repeat"]
        key = list(groups)[1 if max(pr) < 1 else 2 if min(pr) > 1 else 0]
        groups[key].append(f"{r['modality']} num_workers={r['workers']} ({r['ratio']:.2f}; "
                           f"{min(pr):.2f}-{max(pr):.2f})")
    return "; ".join(f"{k}: {', '.join(v)}" for k, v in groups.items() if v)


def wins(r: dict, ours: str = "ours", other: str = "mmaction2") -> str:
    """How clear a ratio is: within 5 % of 1 it is even; else in how many repeats the faster won."""
    pr, n = r["per_repeat"], len(r["per_repeat"])
    if abs(r["ratio"] - 1) < 0.05:
        return "about even: within 5 %"
    side, won = (ours, sum(x > 1 for x in pr)) if r["ratio"] > 1 else (other, sum(x < 1 for x in pr))
    return f"{side} faster in {'every repeat' if won == n else f'{won} of {n} repeats'}"


ENV.globals.update(verdicts=verdicts, wins=wins)
ENV.filters["dev1"] = lambda x: abs(x - 1)


def section_text(figures: dict, template: Optional[str] = None) -> str:
    return ENV.get_template(f"{template or figures['template']}.md").render(**figures).rstrip("\n") + "\n"


def renders(figures: dict) -> list[dict]:
    """Where a JSON's figures go: its ``renders`` (``template``, ``section``, ``page`` each: one
    set of figures quoted on several pages), else its own ``template``, ``section`` and ``page``."""
    return figures.get("renders") or [{"template": figures["template"], "section": figures["section"],
                                       "page": figures.get("page", PAGE)}]


def put_section(page: str, name: str, text: str) -> str:
    """``page`` with ``text`` between ``name``'s markers (appended at the end if they are missing)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    if start in page and end in page:
        before, rest = page.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        return before + block + ("\n" + after if after else "")
    return page.rstrip("\n") + ("\n\n" if page.strip() else "") + block


def rendered_pages(json_dir: Path = BENCH_JSON, repo: Path = REPO) -> dict[Path, str]:
    """Every page with its sections rendered from ``json_dir``, in memory."""
    pages: dict[Path, str] = {}
    for path in sorted(json_dir.glob("*.json")):
        figures = json.loads(path.read_text(encoding="utf-8"))
        for r in renders(figures):
            page = repo / r["page"]
            if page not in pages:
                pages[page] = page.read_text(encoding="utf-8") if page.exists() else ""
            text = section_text(figures, r["template"])
            pages[page] = text if r["section"] is None else put_section(pages[page], r["section"], text)
    return pages


def render_all(json_dir: Path = BENCH_JSON, repo: Path = REPO, check: bool = False) -> list[Path]:
    """Rewrite (or with ``check`` only compare) the pages; returns those that differed."""
    differ = []
    for page, text in rendered_pages(json_dir, repo).items():
        if not page.exists() or page.read_text(encoding="utf-8") != text:
            differ.append(page)
            if not check:
                page.write_text(text, encoding="utf-8")
    return differ


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json-dir", type=Path, default=BENCH_JSON)
    p.add_argument("--repo", type=Path, default=REPO, help="root the pages' paths are relative to")
    p.add_argument("--check", action="store_true", help="only compare; exit 1 if a page differs")
    args = p.parse_args(argv)
    differ = render_all(args.json_dir, args.repo, args.check)
    for page in differ:
        print(f"{'differs' if args.check else 'rewrote'}: {page}")
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())

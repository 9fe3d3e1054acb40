"""The demo's docs cannot drift: the README's demo time and lines, getting-started's transcript,
untrimmed.md's table, visualize.md's table and results.md's measured rows are rendered from one
record (docs/bench/demo.json, by ``python -m tools.bench.demo``; test_bench checks the pages equal
their rendering), and that record must be of the demo scripts as they are now."""
from __future__ import annotations

import json
import re

from tools.bench import demo
from tools.bench.common import BENCH_JSON, REPO

RECORD = BENCH_JSON / "demo.json"
AGAIN = "run `python -m tools.bench.demo --untrimmed --write-docs` again"


def test_the_record_is_of_the_demo_scripts_as_they_are():
    figures = json.loads(RECORD.read_text())
    assert figures["inputs_sha1"] == demo.inputs_sha1(demo.DEMO_INPUTS), \
        f"tools/demo.sh or its settings changed after docs/bench/demo.json was recorded: {AGAIN}"
    assert figures["untrimmed"]["inputs_sha1"] == demo.inputs_sha1(demo.UNTRIMMED_INPUTS), \
        f"tools/untrimmed_demo.sh or the demos changed after docs/bench/demo.json was recorded: {AGAIN}"
    assert figures["command"] == "pip install -e . && bash tools/demo.sh"
    readme = (REPO / "README.md").read_text()
    assert f"```bash\n{figures['command']}\n```" in readme  # the command measured is the README's


def outside_sections(text: str) -> str:
    return re.sub(r"<!-- (\w+):start -->.*?<!-- \1:end -->", "", text, flags=re.S)


def test_the_demo_time_is_stated_in_one_place():
    readme = (REPO / "README.md").read_text()
    command_1 = readme.split("**1. Install and run the main job**")[1].split("**2. Install and run the tests**")[0]
    assert "<!-- demo:start -->" in command_1
    times = re.compile(r"\d+(\.\d+)?\s*(min|minutes|s)\b")
    assert not times.search(outside_sections(command_1)), "a demo time outside the rendered paragraph"
    for page in ("docs/getting-started.md", "docs/results.md"):
        assert not times.search(outside_sections((REPO / page).read_text())), page
    assert "<!-- demo:start -->" in readme and "It took **" in readme.split("<!-- demo:start -->")[1]

"""The project's benchmarks, run from the repository root as ``python -m tools.bench.<name>``
(prep, train, loader, videos, flow, algorithms, realtime, demo; gpu_check and its gpu_check_* parts).
Each writes its figures as JSON (``--json PATH``; ``--write-docs``: ``docs/bench/<section>.json``,
then re-renders the docs) and prints its docs section; ``python -m tools.bench.render`` turns
``docs/bench/*.json`` into the docs' marked sections through ``docs/bench/templates``.
Shared helpers: ``tools.bench.common``.
"""

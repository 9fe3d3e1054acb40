"""The project's benchmarks, run from the repository root as ``python -m tools.bench.<name>``.

Each one measures, writes its figures as JSON (``--json PATH``; ``--write-docs`` writes
``docs/bench/<section>.json`` and re-renders the docs) and prints its docs section;
``python -m tools.bench.render`` turns ``docs/bench/*.json`` into the marked sections of the docs
(the prose templates are in ``docs/bench/templates``). Shared helpers: ``tools.bench.common``.

    prep          extraction: flow pipeline vs bare TV-L1, warped flow, RGB workers
    train         training input (store vs JPEG folders, warm / cold) and step times
    loader        our input pipeline against mmaction2's (needs its own venv: --setup-env)
    flow          the PyTorch TV-L1 against OpenCV's (CPU or CUDA)
    algorithms    accuracy and speed of the flow algorithms (docs/flow-algorithms.md)
    realtime      RGB + RGB difference against RGB + flow; stream on a 25 fps source
    demo          the README's command 1 timed in a fresh clone (docs/bench/demo.json)
    gpu_check     everything a lent GPU measures (tools/gpu_check.sh; gpu_check_*.py its parts)
"""

"""The extraction engine: videos -> frames and flow, as images ready to store.

One module, one job; data flows down this list:

- ``params``: what is stored (``ExtractParams``, recorded with every entry); ``tvl1_params``,
  ``warp`` (``WarpParams``, camera compensation): the parameters of flow and warped flow.
- ``plan``: how a run uses the machine (``RunPlan``: workers, GPUs, batch size).
- ``run``: one shard's run over a folder of videos: resume, settings conflicts, the store writes.
- ``scheduler``: the engine's main loop (``engine_results``, ``extract_one``), which joins
  ``decoding`` and ``workers`` (the decoding workers, and the run's side of them), ``devices`` (one solver per device, each driven by a
  thread), ``solver_choice`` (which solvers on which devices), ``batch_size`` (the auto batch)
  and ``events`` (what they tell each other); ``results``: what a video's work gives back.
- ``backends``: the flow implementations and ``resolve_backend``, the one place that says which
  backend a request means; ``solver``: the ``BatchSolver`` protocol the scheduler drives.
- ``solver_process`` (a CPU solver in a process of its own) and ``solver_ring`` (a solver in a
  process of its own fed through shared memory; ``ring_child``, ``ring_messages``).
- The PyTorch TV-L1: ``tvl1_torch`` (``TorchTVL1``), ``tvl1_ops`` (its tensor maths),
  ``tvl1_compile`` (torch.compile with an eager fallback), and its kernels registered by name
  in ``tvl1_kernels``: ``tvl1_kernel_torch``, ``tvl1_triton``, ``tvl1_tiles`` (+ ``tvl1_tiles_jit``).

Nothing is imported here: ``import tsn_prep.extraction.backends`` must not import torch.
"""

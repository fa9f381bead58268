"""Benchmarking a reward model against human preferences: ``python -m spatialreward bench``.

- :mod:`.metrics`: pure functions (pairwise accuracy with ties wrong, exact ranking
  accuracy, region recall, grouped accuracy with Wilson intervals).
- :mod:`.runner`: :func:`~spatialreward.bench.runner.run_bench` judges a pair-format
  dataset (:mod:`storage.pairs`) and returns the results dict.
- :mod:`.command`: the ``bench`` subcommand of the CLI.

Nothing is imported here, so registering the command keeps ``python -m spatialreward``
fast: scipy, tqdm and the backends load only when a benchmark actually runs.
"""

"""Benchmarking a reward model against human preferences: ``python -m spatialreward bench``.

- :mod:`.types`, :mod:`.formats`, :mod:`.loaders` and :mod:`.tables`: the public
  benchmarks' local copies (EditReward-Bench in EditScore's and TIGER-Lab's layouts,
  MER-Bench, MMRB2, GEdit-Bench), our pair format and the store's human votes, detected
  and read into one item form.
- :mod:`.metrics`: pure functions (pairwise accuracy with ties wrong, exact ranking
  accuracy, region recall, grouped accuracy with Wilson intervals).
- :mod:`.public_metrics`: each benchmark's own metrics, computed as its paper does.
- :mod:`.runner`: :func:`~spatialreward.bench.runner.run_bench` judges a benchmark
  (through the store's cache) and returns the results dict.
- :mod:`.distributed`: sharding over ``torchrun`` ranks.
- :mod:`.report`: the HTML report of a run, and comparisons of two runs.
- :mod:`.runs`: bench runs started from the app, recorded in the store.
- :mod:`.command`: the ``bench`` subcommand of the CLI.

Nothing is imported here, so registering the command keeps ``python -m spatialreward``
fast: pyarrow, scipy, tqdm and the backends load only when a benchmark actually runs.
See docs/benchmarks.md.
"""

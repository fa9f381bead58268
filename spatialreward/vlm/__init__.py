"""Run Qwen-VL reward checkpoints (SpatialReward-8B, EditScore-style judges) through transformers.

The pieces, one module per concept:

- :mod:`.config` - :class:`VLMConfig`, the backend settings, parsed from ``vlm:PATH,key=value``;
- :mod:`.prompts` - the judging protocols as data (TOML template files in ``templates/``);
- :mod:`.checkpoint` - finding, validating and loading a checkpoint directory (+ LoRA);
- :mod:`.inputs` - images and prompts to model inputs, each distinct image encoded once;
- :mod:`.attention` - attention maps captured during the forward pass, without keeping
  every layer's full attention matrix;
- :mod:`.runner` - batched generation with optional attention capture;
- :mod:`.architectures` - tiny Qwen3-VL / Qwen2.5-VL checkpoints built in code (tests,
  benchmarks) and the Qwen3-VL-8B architecture (GPU check).

The backend itself is :mod:`spatialreward.backends.vlm` (``--backend vlm:PATH``).
Importing this package imports neither torch nor transformers.
"""

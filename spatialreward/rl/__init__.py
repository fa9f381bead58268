"""Online RL for image editing: Flow-GRPO on an editing policy, rewarded by a judge.

``policy`` is the protocol a flow-matching editor implements (``embedded`` implements it
for the small editor of ``editor``, pretrained by ``editor_train``); ``sde`` turns the
flow sampler into Gaussian steps with log-probabilities; ``prompts`` draws SynthEdit
prompts with exact targets and ``groundtruth`` scores edits against them; ``rewards``
judges edits with any backend mix; ``grpo`` holds the advantage and loss arithmetic;
``trainer`` runs the steps (sample -> reward -> advantages -> loss -> update) with
``checkpoint``, ``distributed`` (torchrun / DDP) and ``monitor`` (the reward-hacking
alert); ``runner`` is the recorded run process and ``runs`` starts and stops it from
the Studio; ``evaluate`` prints the GEdit-style table; ``command`` holds the CLI.

Importing this package imports nothing heavy (no torch).
"""

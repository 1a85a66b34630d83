"""Training TG-DFER on cached features: the optimisation settings, fold and validation splits, the
device-resident feature bank and its sampling, the loop, prediction on the bank, checkpoints.

A pure library: it knows nothing of params.yaml or DVC. Evaluation and inference import only
``bank``, ``predict`` and ``checkpoint``, never the loop.
"""

from __future__ import annotations




"""TG-DFER: text-guided weakly supervised dynamic facial expression recognition.

The library half of the project: pure functions and ``nn.Module`` s that know nothing of DVC or
params.yaml. The stage layer in ``pipeline/`` calls into it with explicit arguments.
"""

__version__ = "0.1.0"

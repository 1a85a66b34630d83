"""The stage layer: one click command per DVC stage, each reading its own params.yaml section.

Importing it caps torch's and numpy's CPU kernels for the reference CPU profile
(tg_dfer/cpu_profile.py): the libraries read their variables when they load, and every stage
module imports them after this.
"""

from tg_dfer.cpu_profile import ProfileError, prepare_environment

try:
    prepare_environment()
except ProfileError:
    pass  # `tg-dfer` names the bad value before any command runs (pipeline/cli.py)

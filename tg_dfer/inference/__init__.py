"""Running a trained TG-DFER model on new videos: the model file, the inputs, sliding windows, the
predictor (faces -> embed -> model through the pipeline's own code) and the output records.
"""

from __future__ import annotations




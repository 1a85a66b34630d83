"""Measurement's one home: the scripts here (run as `python benchmarks/<name>.py`) and the
measurements `tg-dfer bench` runs (measure, measure_train)."""

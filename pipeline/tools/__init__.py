"""Tools around the pipeline (not DVC stages): ablation queues and their report, the reproduction
check, model export and prediction, benchmarks."""

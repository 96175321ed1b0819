"""Benchmarks (`edn bench ingest|train|render`): each prints a table ending on its key ratios, ratios
measured within one run, and writes a JSON result file.

settings.py: each benchmark's settings, what it measures, and its flags (no heavy import);
harness.py: the run, the report and the in-process profile they share; ingest*.py, train*.py,
render*.py: the benchmarks; gpu_check.py: a one-command check of the training step and the render
generator on a GPU, with torch alone. Projections from assumed speeds are docs/bench-projections.md's.
"""

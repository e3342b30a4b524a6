"""Evaluation of predictions against ground truth, and the benchmark runner."""

from chromaflow.bench.evaluate import evaluate_paths, list_clips, match_clips
from chromaflow.bench.modes import MODES, conditions_for_mode
from chromaflow.bench.runner import BenchOptions, run_bench

__all__ = ["MODES", "BenchOptions", "conditions_for_mode", "evaluate_paths", "list_clips", "match_clips", "run_bench"]

"""Benchmarks: the same declared work through naive, tf.data, DataLoader, torchvision and DALI.

``python -m bench [--quick]`` runs them; ``python -m bench report`` renders the results table.
``bench.runner.measure_throughput`` is the reusable steady-state meter.
"""

from bench.runner import Measurement, measure_throughput

__all__ = ["Measurement", "measure_throughput"]

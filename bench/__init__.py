"""Benchmarks: the same declared work through naive, tf.data, DataLoader, torchvision and DALI.

``python -m bench [--quick]`` runs them; ``python -m bench report`` renders the newest run.
Modules: ``measure`` (time-based meter, reusable on any batch iterable), ``sweep`` (sections
-> jobs, each in a fresh process), ``records`` (the run file), ``queries`` (figures over a
run's records), ``report`` (Markdown) and ``plots`` (PNG) both reading them, ``publish``
(writing a run's files), ``data`` (which images), ``backends/`` (one module per backend), ``cli``.
"""

from bench.measure import Measurement, measure

__all__ = ["Measurement", "measure"]

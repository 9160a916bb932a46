"""AUTOTUNE for DALI loaders: the settings picked by measuring them.

``search`` is the pure search (hill climbing, grid) on any scoring function.
"""

from dali_pipelines.tune.search import Dimension, Score, SearchOutcome, SearchSpace, grid_search, hill_climb

__all__ = ["Dimension", "Score", "SearchOutcome", "SearchSpace", "grid_search", "hill_climb"]

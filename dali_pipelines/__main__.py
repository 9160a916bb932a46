"""``python -m dali_pipelines``: data set tools (make-sample, verify, to-shards) and the loader tuner."""

from dali_pipelines.cli import main

raise SystemExit(main())

"""``python -m dali_pipelines``: data set tools (make-sample, verify, to-shards)."""

from dali_pipelines.cli import main

raise SystemExit(main())

"""GoogLeNet training from DALI pipelines: ``python -m train --help``."""

"""``python -m bench check``: one command that proves what a GPU machine does with this project.

In order, each step writing its results before the next starts (a cut keeps what ran): the GPU
tests (bounded), the sample set made on every core beside them, the benchmark sections that
carry the project's claims, a short training run, then one tarball and the JSON summary. A
``--budget`` in seconds is planned first (repeats and sweep points shrink to fit) and guarded
while it runs. Modules: ``steps`` (the declared steps), ``plan`` (estimates, fitting the budget),
``execute`` (running each kind of step), ``outputs`` (the files in OUT), ``claims`` (targets
against what was measured), ``cli``. Documentation: docs/gpu-check.md.
"""

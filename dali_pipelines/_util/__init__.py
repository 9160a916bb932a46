"""Small helpers the library, ``train`` and ``bench`` share: atomic writes, native stderr, CLI types.

Private: reach them through ``dali_pipelines`` (``atomic_write``, ``native_stderr``, ``argtypes``).
"""

"""Small helpers the library, ``train`` and ``bench`` share: atomic writes, native stderr, CLI types.

Not part of the user API (``dali_pipelines.__all__``): import them from their modules.
"""

"""Small helpers the library, ``train`` and ``bench`` share: durable writes, native stderr, CLI
types, settings declared with the values they accept (``fields``).

Not part of the user API (``dali_pipelines.__all__``): import them from their modules.
"""

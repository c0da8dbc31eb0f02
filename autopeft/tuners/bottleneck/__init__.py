"""Serial and parallel bottleneck adapters (and learned attention prefixes) as a ``peft`` tuner.

Laid out as peft's own tuners: :mod:`.config` (``BottleneckConfig``), :mod:`.layer` (the injected
layers), :mod:`.model` (``BottleneckModel``, the ``BaseTuner``), :mod:`.prefix` (per-layer
attention prefixes) and :mod:`.registration`, the one place that registers the ``BOTTLENECK`` type
with peft. :mod:`.hook` runs that registration when peft is imported after ``import autopeft``.
This ``__init__`` imports nothing, so ``import autopeft`` stays free of torch and peft; the
search-side methods that build these configs are in :mod:`autopeft.methods.bottleneck`.
"""

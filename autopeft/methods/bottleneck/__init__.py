"""Serial and parallel bottleneck adapters: a custom ``peft`` tuner and their methods."""

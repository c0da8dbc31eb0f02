"""Search: samplers, promotion of multi-fidelity trials, warm start."""

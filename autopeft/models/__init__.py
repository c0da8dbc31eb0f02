"""Model introspection: a model's layer stack and linear leaves, below the search space."""

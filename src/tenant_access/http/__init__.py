"""The HTTP layer: it translates requests into use-case calls and results into responses."""

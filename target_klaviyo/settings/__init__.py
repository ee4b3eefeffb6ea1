"""The target's settings: their schema, their checks and where they come from."""

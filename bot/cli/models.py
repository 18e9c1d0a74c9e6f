"""`pttrust models` (placeholder until its issue lands)."""

COMMANDS: list = []

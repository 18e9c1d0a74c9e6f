"""`pttrust evaluate` (placeholder until its issue lands)."""

COMMANDS: list = []

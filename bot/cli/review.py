"""`pttrust review` (placeholder until its issue lands)."""

COMMANDS: list = []

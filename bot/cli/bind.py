"""`pttrust bind` (placeholder until its issue lands)."""

COMMANDS: list = []

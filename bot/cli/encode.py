"""`pttrust encode` (placeholder until its issue lands)."""

COMMANDS: list = []

"""`pttrust data` (placeholder until its issue lands)."""

COMMANDS: list = []

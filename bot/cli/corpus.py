"""`pttrust corpus` (placeholder until its issue lands)."""

COMMANDS: list = []

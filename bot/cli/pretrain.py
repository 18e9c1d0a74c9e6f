"""`pttrust pretrain` (placeholder until its issue lands)."""

COMMANDS: list = []

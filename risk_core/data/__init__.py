"""Stage 2 labeled data: mutants, HumanEval samples and bug-fix history, all in one JSONL format."""

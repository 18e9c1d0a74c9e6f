"""PtTrust review bot: diffs and pull requests in, ranked risky lines and review comments out."""

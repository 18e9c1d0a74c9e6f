"""The GitHub Action's entry: reads the event payload and runs the review."""

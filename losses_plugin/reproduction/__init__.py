"""The reproduction harness behind ``scripts/reproduce.py``: each paper's grid of runs with its
published numbers, the metrics BasicSR logged for our runs, and the report beside the paper."""

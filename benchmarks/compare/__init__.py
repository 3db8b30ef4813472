"""Issue 10's benchmark runner (``python -m benchmarks.compare``); see ``__main__``."""

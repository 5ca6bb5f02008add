"""The process: background thread, logs, metrics."""

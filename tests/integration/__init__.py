"""End-to-end scenarios: a real MLflow server, real databases, Chromium, Checkpoint served for real."""

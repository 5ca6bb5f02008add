"""What the tests share: serving an app, fresh databases, polling, MLflow helpers. Imported, never
reached through conftest."""

"""Fast tests of one module each: no MLflow server, no database server, no network."""

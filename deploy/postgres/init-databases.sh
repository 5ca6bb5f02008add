#!/bin/sh
# Runs once, when the PostgreSQL volume is still empty (docker-entrypoint-initdb.d): one role and
# one database each for MLflow and Checkpoint, so neither can read or change the other's tables.
# The passwords come from the environment (deploy/.env), never from this file.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v mlflow_password="$DB_PASSWORD_MLFLOW" -v checkpoint_password="$DB_PASSWORD_CHECKPOINT" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
CREATE ROLE checkpoint LOGIN PASSWORD :'checkpoint_password';
CREATE DATABASE checkpoint OWNER checkpoint;
SQL

"""Persistence: engine, tables, the store and its migrations. Hands out plain objects."""

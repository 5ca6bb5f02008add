"""HTTP handlers: thin blueprints over the domain layer, plus the catch-all gateway."""

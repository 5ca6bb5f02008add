"""The front door: WSGI gateway, proxy, rules table, gunicorn worker. No Flask views, no SQL."""

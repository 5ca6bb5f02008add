"""The behavioural diff: champion and challenger run on the same inputs, their outputs
compared (``compare``), each model in its own isolated process (``runner`` over
``runtime/sandbox.py``), asked for, cached and shown per request (``diffs``)."""

"""Composition root, settings, HTTP API, workers and the ``inbox`` command line."""

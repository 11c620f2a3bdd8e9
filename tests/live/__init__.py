"""A multi-process provider (gunicorn) for the concurrency tests of tests/test_races.py."""

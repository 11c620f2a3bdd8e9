"""A provider run in a separate process, for the remote-mode tests of tests/test_remote.py."""

"""Helpers shared by the test folders (a real redis-server, fixtures)."""

"""Fixtures shared by every test folder: a real redis-server started by the tests."""

from tests.support.fixtures import redis_server, redis_url  # noqa: F401

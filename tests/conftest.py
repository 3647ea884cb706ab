"""Fixtures shared by every test folder: a real redis-server (and a real Redis Cluster)
started by the tests themselves, once per session."""

from tests.support.fixtures import redis_server, redis_url  # noqa: F401
from tests.support.redis_cluster import redis_cluster, redis_cluster_url  # noqa: F401

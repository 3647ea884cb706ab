"""Client of the knapsack-rl rollout budget service.

A trainer installs only this package: it holds the wire models of the HTTP API
(the service imports them from here) and the sync and async clients.

```python
from knapsack_client import KnapsackClient

with KnapsackClient() as client:  # KRL_URL / KRL_TOKEN
    client.ensure_run("run7", {"strategy": "knapsack"})
    answer = client.allocate("run7", step, prompt_ids, budget=1024)
    ...
    client.report("run7", step, [{"prompt_id": p, "successes": s, "trials": n}, ...])
```
"""

from knapsack_client._client import (
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    AsyncKnapsackClient,
    KnapsackClient,
    derive_report_id,
)
from knapsack_client._exceptions import (
    InvalidRequest,
    KnapsackError,
    RunNotFound,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
)
from knapsack_client._journal import Journal, JournalEntry
from knapsack_client._models import *  # noqa: F403
from knapsack_client._models import __all__ as _model_names
from knapsack_client._retry import RetryPolicy

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "AsyncKnapsackClient",
    "InvalidRequest",
    "Journal",
    "JournalEntry",
    "KnapsackClient",
    "KnapsackError",
    "RetryPolicy",
    "RunNotFound",
    "ServerError",
    "ServiceUnavailable",
    "Unauthorized",
    "derive_report_id",
    *_model_names,
]

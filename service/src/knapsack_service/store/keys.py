"""Redis key names of a run.

Every key of a run carries the run's hash tag, `krl:{<escaped run>}:...`, so the run
lives in one Redis Cluster slot and multi-key scripts stay legal there. The run id is
escaped (every character outside `[A-Za-z0-9._-]` becomes `%XX` per UTF-8 byte), so
`{`, `}`, `:`, glob characters and spaces can never end the tag early, make two runs
share a key, or widen a pattern. Prompt ids never appear in key names at all: they
are fields of the run's prompts hash.

The empty run id gets the tag `{%}`: an empty `{}` is no hash tag for Redis Cluster
(the whole key would be hashed, scattering the run over slots), and a lone `%` is
never the escape of a non-empty id, so the tag stays unique.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Set of every run id (raw, not escaped); its own slot, never touched by a script.
RUNS_KEY = "krl:runs"
#: Hash tag content of the empty run id (see the module docstring).
EMPTY_RUN_TAG = "%"

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


def escape_run_id(run_id: str) -> str:
    """Escape a run id for use inside a key name (injective, reversible).

    Lone surrogates (which JSON may carry) are escaped by their surrogatepass bytes
    instead of raising.
    """
    return "".join(
        char
        if char in _SAFE
        else "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
        for char in run_id
    )


@dataclass(frozen=True)
class RunKeys:
    """Key names of one run."""

    run_id: str

    @property
    def prefix(self) -> str:
        """`krl:{<escaped run>}:`, the beginning of every key of the run."""
        return "krl:{" + (escape_run_id(self.run_id) or EMPTY_RUN_TAG) + "}:"

    @property
    def settings(self) -> str:
        """The run's settings JSON (string)."""
        return self.prefix + "cfg"

    @property
    def meta(self) -> str:
        """The run's counters (hash)."""
        return self.prefix + "meta"

    @property
    def prompts(self) -> str:
        """Prompt id -> packed record (hash)."""
        return self.prefix + "p"

    @property
    def steps(self) -> str:
        """Steps that have a summary (sorted set scored by step)."""
        return self.prefix + "steps"

    @property
    def report_ids(self) -> str:
        """Applied report ids scored by the unix time they were applied (sorted set)."""
        return self.prefix + "rids"

    @property
    def acks(self) -> str:
        """Report id -> `<digest> <accepted> <step>` of its first application (hash)."""
        return self.prefix + "acks"

    @property
    def plans(self) -> str:
        """Plan key -> encoded plan of a step (hash; `knapsack_service.step_plans`)."""
        return self.prefix + "plans"

    @property
    def plan_times(self) -> str:
        """Plan keys scored by the unix time they were kept (sorted set, for expiry)."""
        return self.prefix + "plan_t"

    @property
    def summary_prefix(self) -> str:
        """Prefix of the per-step summary hashes."""
        return self.prefix + "s:"

    def summary(self, step: int) -> str:
        """The summary hash of one step."""
        return f"{self.summary_prefix}{int(step)}"

    def fixed(self) -> tuple[str, ...]:
        """Every key of the run except the per-step summaries."""
        return (self.settings, self.meta, self.prompts, self.steps, self.report_ids, self.acks)


__all__ = ["EMPTY_RUN_TAG", "RUNS_KEY", "RunKeys", "escape_run_id"]

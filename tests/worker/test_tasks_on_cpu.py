"""Tasks, reward extraction, config loading and the prompt sampler (no torch needed)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from knapsack_trainer.worker.config import apply_overrides, load_config
from knapsack_trainer.worker.rewards import exact_answer_reward, extract_answer
from knapsack_trainer.worker.sampler import PromptSampler
from knapsack_trainer.worker.tasks import (
    TASK_REGISTRY,
    build_task,
    evaluate_expression,
    register_task,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so the total is 12 apples\n#### 42", "42"),
        ("we get \\boxed{\\frac{1}{2}} finally", "\\frac{1}{2}"),
        ("first 3 then 1,234 and", "1234"),
        ("no number here", None),
        ("#### -7.5", "-7.5"),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_exact_answer_reward_compares_numbers():
    assert exact_answer_reward("#### 42.0", "42") == 1.0
    assert exact_answer_reward("\\boxed{4,200}", "4200") == 1.0
    assert exact_answer_reward("answer 41", "42") == 0.0


def test_addition_task_is_deterministic_and_scored():
    task = build_task("addition", size=20, min_digits=2, max_digits=3, seed=3)
    again = build_task("addition", size=20, min_digits=2, max_digits=3, seed=3)
    assert [task.problem(p) for p in task.prompt_ids] == [
        again.problem(p) for p in again.prompt_ids
    ]
    problem = task.problem(task.prompt_ids[0])
    a, b = problem.prompt.rstrip("=").split("+")
    assert problem.answer == str(int(a) + int(b))
    assert task.score(problem.prompt_id, f"#### {int(a) + int(b)}") == 1.0
    assert task.score(problem.prompt_id, f"{int(a) + int(b) + 1}") == 0.0


def test_countdown_graded_reward():
    task = build_task("countdown", size=10, min_numbers=3, max_numbers=3, seed=1)
    problem = task.problem(task.prompt_ids[0])
    numbers = problem.prompt.split(" to make ")[0].split()[1:]
    assert len(numbers) == 3
    # A right expression is found by brute force over the allowed numbers.
    import itertools

    solutions = [
        f"({x}{o1}{y}){o2}{z}"
        for x, y, z in itertools.permutations(numbers)
        for o1 in "+-*"
        for o2 in "+-*"
        if str(evaluate_expression(f"({x}{o1}{y}){o2}{z}")[0]) == problem.answer
    ]
    assert solutions
    assert task.score(problem.prompt_id, solutions[0]) == 1.0
    wrong = f"{numbers[0]}+{numbers[1]}"
    expected = 1.0 if wrong in solutions else task.format_reward
    if str(evaluate_expression(wrong)[0]) != problem.answer:
        assert task.score(problem.prompt_id, wrong) == expected
    assert task.score(problem.prompt_id, "999+999") == 0.0  # numbers not allowed
    assert task.score(problem.prompt_id, "__import__('os')") == 0.0


def test_target_task():
    task = build_task("target", size=20, min_distractors=1, max_distractors=2)
    problem = task.problem("target-00007")
    assert problem.prompt.endswith("pick 7 =")
    assert task.score("target-00007", "7") == 1.0
    assert task.score("target-00007", " 7") == 1.0
    assert task.score("target-00007", "3") == 0.0


def test_jsonl_task(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [
        {"id": "q1", "prompt": "2+2?", "answer": "4"},
        {"id": "q2", "prompt": "3*3?", "answer": 9},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    task = build_task("jsonl", path=str(path), prompt_template="Q: {prompt}")
    assert task.prompt_ids == ["q1", "q2"]
    assert task.problem("q1").prompt == "Q: 2+2?"
    assert task.score("q2", "thinking... \\boxed{9}") == 1.0
    path.write_text('{"id": "x"}\n')
    with pytest.raises(ValueError, match=":1: bad record"):
        build_task("jsonl", path=str(path))


def test_task_registry_rejects_duplicates_and_unknown():
    with pytest.raises(ValueError, match="already registered"):
        register_task("addition")(lambda: None)
    with pytest.raises(ValueError, match="unknown task"):
        build_task("nope")
    assert {"addition", "countdown", "jsonl", "target"} <= set(TASK_REGISTRY)


def test_sampler_resumes_exactly():
    ids = [f"p{i}" for i in range(10)]
    sampler = PromptSampler(ids, seed=5)
    first = [sampler.next_batch(4) for _ in range(3)]
    state = sampler.state_dict()
    following = [sampler.next_batch(4) for _ in range(4)]
    resumed = PromptSampler(ids, seed=5)
    resumed.load_state_dict(state)
    assert [resumed.next_batch(4) for _ in range(4)] == following
    assert all(len(set(batch)) == 4 for batch in first + following)


def test_config_yaml_and_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model_path: /m\nbudget: 64\ntask_options: {size: 8}\n")
    config = load_config(path, ["learning_rate=3e-4", "task_options.seed=2", "kl_coef=0"])
    assert config.budget == 64
    assert config.learning_rate == pytest.approx(3e-4)
    assert config.task_options == {"size": 8, "seed": 2}
    assert config.resolved_tokenizer_path == "/m"
    assert config.run_settings_payload()["budget"] == 64
    with pytest.raises(ValidationError, match="learnig_rate"):
        load_config(path, ["learnig_rate=1"])
    with pytest.raises(ValidationError, match="min_n"):
        load_config(path, ["run_settings.min_n=9", "run_settings.max_n=2"])
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["oops"])

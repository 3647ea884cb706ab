"""reasoning-gym as a task source (`reasoning_gym:<name>`): real generators, real verifiers."""

from __future__ import annotations

import pytest

pytest.importorskip("reasoning_gym")

from knapsack_trainer.worker.tasks import ReasoningGymTask, build_task

ARITHMETIC = {
    "min_terms": 2,
    "max_terms": 2,
    "min_digits": 1,
    "max_digits": 2,
    "operators": ["+", "-"],
    "allow_parentheses": False,
    "allow_negation": False,
}


def test_basic_arithmetic_problems_are_the_generators_and_seeded():
    import reasoning_gym

    task = build_task("reasoning_gym:basic_arithmetic", size=6, seed=4, **ARITHMETIC)
    assert isinstance(task, ReasoningGymTask)
    assert task.name == "reasoning_gym:basic_arithmetic"
    assert len(task) == 6
    reference = reasoning_gym.create_dataset("basic_arithmetic", seed=4, size=6, **ARITHMETIC)
    for prompt_id, entry in zip(task.prompt_ids, reference, strict=True):
        assert task.problem(prompt_id).prompt == entry["question"]
        assert task.problem(prompt_id).answer == entry["answer"]
    again = build_task("reasoning_gym:basic_arithmetic", size=6, seed=4, **ARITHMETIC)
    other = build_task("reasoning_gym:basic_arithmetic", size=6, seed=5, **ARITHMETIC)
    prompts = [task.problem(i).prompt for i in task.prompt_ids]
    assert prompts == [again.problem(i).prompt for i in again.prompt_ids]
    assert prompts != [other.problem(i).prompt for i in other.prompt_ids]
    assert set(task.prompt_ids).isdisjoint(other.prompt_ids)  # held-out ids never collide


def test_score_is_the_generators_verifier_on_the_tagged_answer():
    task = build_task("reasoning_gym:basic_arithmetic", size=4, seed=1, **ARITHMETIC)
    prompt_id = task.prompt_ids[0]
    answer = task.problem(prompt_id).answer
    wrong = str(int(answer) + 1)
    assert task.score(prompt_id, f"thinking <answer>{answer}</answer>") == 1.0
    assert task.score(prompt_id, f"<answer>{wrong}</answer>") == 0.0
    assert task.score(prompt_id, answer) == 0.0  # no tag: no answer
    direct = build_task(
        "reasoning_gym:basic_arithmetic", size=4, seed=1, answer_tag=None, **ARITHMETIC
    )
    assert direct.score(prompt_id, f" {answer}\n") == 1.0
    assert direct.score(prompt_id, wrong) == 0.0


def test_countdown_reward_is_graded_by_its_verifier():
    task = build_task(
        "reasoning_gym:countdown", size=3, seed=2, min_numbers=3, max_numbers=3, max_target=200
    )
    prompt_id = task.prompt_ids[0]
    entry_answer = task.problem(prompt_id).answer  # an expression reaching the target
    assert task.score(prompt_id, f"<answer>{entry_answer}</answer>") == 1.0
    numbers = task._entries[prompt_id]["metadata"]["numbers"]
    # Every number used once, but a wrong value: the verifier's partial 0.05.
    summed = "+".join(str(n) for n in numbers)
    target = task._entries[prompt_id]["metadata"]["target"]
    if sum(numbers) != target:
        assert task.score(prompt_id, f"<answer>{summed}</answer>") == pytest.approx(0.05)
    assert task.score(prompt_id, "no answer") == pytest.approx(0.01)


def test_gsm_symbolic_builds_and_accepts_its_own_answers():
    task = build_task("reasoning_gym:gsm_symbolic", size=3, seed=0)
    for prompt_id in task.prompt_ids:
        problem = task.problem(prompt_id)
        assert len(problem.prompt) > 40
        assert task.score(prompt_id, f"<answer>{problem.answer}</answer>") == 1.0


def test_vocabulary_holds_the_words_and_symbols_of_the_questions():
    task = build_task("reasoning_gym:basic_arithmetic", size=4, seed=0, **ARITHMETIC)
    words = task.vocabulary()
    assert "Calculate" in words
    assert "." in words
    assert not any(ch.isdigit() for word in words for ch in word)


def test_bad_names_and_settings_are_clear_errors():
    with pytest.raises(ValueError, match=r"reasoning_gym:basic_arithmetic: .*max_terms"):
        build_task("reasoning_gym:basic_arithmetic", size=2, min_terms=3, max_terms=2)
    with pytest.raises(ValueError, match="not registered"):
        build_task("reasoning_gym:no_such_generator", size=2)
    with pytest.raises(ValueError, match="nothing after 'reasoning_gym:'"):
        build_task("reasoning_gym:")
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        build_task("nope:countdown")

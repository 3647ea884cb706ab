"""Tasks with verifiable rewards, registered by name.

A task is a fixed, ordered set of problems (prompt id, prompt text, reference answer)
and a reward function. The procedural tasks are generated from a seed, so they need
no download and every rank of a data-parallel job builds the same problems; each has
difficulty knobs (digits, distractors, operand counts) drawn per problem from a range,
so that success rates spread out across prompts: a knapsack allocation only helps
where prompts differ.
"""

from __future__ import annotations

import ast
import json
import operator
import random
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knapsack_trainer.worker.registry import Registry
from knapsack_trainer.worker.rewards import exact_answer_reward, extract_answer


@dataclass(frozen=True)
class Problem:
    """One prompt with its reference answer."""

    prompt_id: str
    prompt: str
    answer: str


class Task(ABC):
    """An ordered set of problems and a reward for a completion."""

    name: str = "task"

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError(f"task {self.name!r} has no problems")
        self._problems = {problem.prompt_id: problem for problem in problems}
        if len(self._problems) != len(problems):
            raise ValueError(f"task {self.name!r} has duplicate prompt ids")
        self._order = [problem.prompt_id for problem in problems]

    @property
    def prompt_ids(self) -> list[str]:
        """Every prompt id, in a fixed order."""
        return list(self._order)

    def problem(self, prompt_id: str) -> Problem:
        """The problem with this id."""
        return self._problems[prompt_id]

    def __len__(self) -> int:
        return len(self._order)

    @abstractmethod
    def score(self, prompt_id: str, completion: str) -> float:
        """Reward of `completion` for the prompt, in [0, 1]."""

    def vocabulary(self) -> list[str]:
        """Words the task's text uses (a tiny word-level tokenizer is built from them)."""
        return []


TaskFactory = Callable[..., Task]
TASKS: Registry[TaskFactory] = Registry("task")
TASK_REGISTRY = TASKS.functions


def register_task(name: str) -> Callable[[TaskFactory], TaskFactory]:
    """Register a task class or factory under `name`; refuse duplicates."""
    return TASKS.register(name)


def build_task(name: str, **options: Any) -> Task:
    """Build the task registered under `name` with its options.

    A name `family:item` (e.g. `reasoning_gym:countdown`) builds the task registered
    as `family` with `item` as its first argument, so a task source that holds many
    generators needs one registration, not one per generator.

    Raises:
        ValueError: If no task has that name.

    """
    family, separator, item = name.partition(":")
    if separator:
        if not item:
            raise ValueError(f"task {name!r}: nothing after {family + ':'!r}")
        return TASKS.get(family)(item, **options)
    return TASKS.get(name)(**options)


def _check_range(low: int, high: int, what: str) -> None:
    if low < 1 or high < low:
        raise ValueError(f"{what}: need 1 <= min <= max, got {low}..{high}")


@register_task("target")
class TargetTokenTask(Task):
    """Answer with the target digit: `"4 1 pick 7 ="` -> `7`.

    The easiest task a randomly initialised tiny model can learn by RL alone: a
    success needs only one right token, so the initial success rate is about
    1/vocabulary (near 0, not 0), and the rule (copy the token after `pick`) is one
    attention pattern. More distractor digits before `pick` make a prompt harder.
    """

    name = "target"

    def __init__(
        self,
        size: int = 64,
        min_distractors: int = 0,
        max_distractors: int = 3,
        seed: int = 0,
    ) -> None:
        if min_distractors < 0 or max_distractors < min_distractors:
            raise ValueError("distractors: need 0 <= min_distractors <= max_distractors")
        rng = random.Random(seed)
        problems = []
        for index in range(size):
            count = rng.randint(min_distractors, max_distractors)
            distractors = " ".join(str(rng.randint(0, 9)) for _ in range(count))
            target = str(index % 10) if size >= 10 else str(rng.randint(0, 9))
            prompt = f"{distractors} pick {target} =".strip()
            problems.append(Problem(f"target-{index:05d}", prompt, target))
        super().__init__(problems)

    def score(self, prompt_id: str, completion: str) -> float:
        """1.0 when the first non-blank character of the completion is the target."""
        text = completion.strip()
        return 1.0 if text[:1] == self.problem(prompt_id).answer else 0.0

    def vocabulary(self) -> list[str]:  # noqa: D102
        return ["pick", "="]


@register_task("addition")
class AdditionTask(Task):
    """Multi-digit addition, `"123+45="` -> `168`, operands of `min_digits..max_digits`."""

    name = "addition"

    def __init__(
        self, size: int = 256, min_digits: int = 1, max_digits: int = 3, seed: int = 0
    ) -> None:
        _check_range(min_digits, max_digits, "digits")
        rng = random.Random(seed)
        problems = []
        for index in range(size):
            digits = [rng.randint(min_digits, max_digits) for _ in range(2)]
            a, b = (rng.randint(10 ** (d - 1) if d > 1 else 0, 10**d - 1) for d in digits)
            problems.append(Problem(f"add-{index:05d}", f"{a}+{b}=", str(a + b)))
        super().__init__(problems)

    def score(self, prompt_id: str, completion: str) -> float:
        """1.0 when the extracted answer equals the sum."""
        return exact_answer_reward(completion, self.problem(prompt_id).answer)

    def vocabulary(self) -> list[str]:  # noqa: D102
        return ["+", "=", "####"]


_OPERATORS: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
}


def evaluate_expression(text: str) -> tuple[int, list[int]] | None:
    """Value and operands of an integer expression over `+ - *` and parentheses.

    Walks the AST instead of calling `eval`, so a completion cannot run code.

    Returns:
        `(value, numbers used)` or None if `text` is not such an expression.

    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError):
        return None
    numbers: list[int] = []

    def walk(node: ast.AST) -> int:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            numbers.append(node.value)
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError("unsupported expression")

    try:
        return walk(tree.body), numbers
    except (ValueError, RecursionError):
        return None


@register_task("countdown")
class CountdownTask(Task):
    """Countdown: combine the given numbers with `+ - *` to reach the target.

    `"Use 3 5 7 to make 22 ="` -> an expression such as `3*5+7`. Each number may be
    used at most once. The reward is graded as in TinyZero's countdown: 1.0 for a
    right expression, `format_reward` for a well-formed expression over the allowed
    numbers that misses the target, 0 otherwise. More numbers make a prompt harder.
    """

    name = "countdown"

    def __init__(
        self,
        size: int = 256,
        min_numbers: int = 2,
        max_numbers: int = 4,
        max_value: int = 20,
        format_reward: float = 0.1,
        seed: int = 0,
    ) -> None:
        _check_range(min_numbers, max_numbers, "numbers")
        if not 0.0 <= format_reward < 1.0:
            raise ValueError("format_reward must be in [0, 1)")
        self.format_reward = format_reward
        rng = random.Random(seed)
        problems = []
        for index in range(size):
            count = rng.randint(min_numbers, max_numbers)
            numbers = [rng.randint(1, max_value) for _ in range(count)]
            expression = str(numbers[0])
            for number in numbers[1:]:
                expression = f"({expression}){rng.choice('+-*')}{number}"
            result = evaluate_expression(expression)
            assert result is not None  # built from the grammar above
            listed = " ".join(str(n) for n in rng.sample(numbers, len(numbers)))
            prompt = f"Use {listed} to make {result[0]} ="
            problems.append(Problem(f"countdown-{index:05d}", prompt, str(result[0])))
        super().__init__(problems)

    def score(self, prompt_id: str, completion: str) -> float:
        """Graded reward: 1, `format_reward` or 0 (see the class docstring)."""
        problem = self.problem(prompt_id)
        candidate = completion.split("####")[-1].strip().splitlines()
        if not candidate:
            return 0.0
        evaluated = evaluate_expression(candidate[0])
        if evaluated is None:
            return 0.0
        value, used = evaluated
        allowed = Counter(int(n) for n in problem.prompt.split(" to make ")[0].split()[1:])
        if Counter(used) - allowed:
            return 0.0
        return 1.0 if str(value) == problem.answer else self.format_reward

    def vocabulary(self) -> list[str]:  # noqa: D102
        return ["Use", "to", "make", "=", "+", "-", "*", "(", ")"]


@register_task("jsonl")
class JsonlTask(Task):
    r"""Problems from a JSON-lines file of `{"id", "prompt", "answer"}` objects.

    The reward is 1.0 when the answer extracted from the completion (`#### 42`,
    `\boxed{42}`, else the last number) matches `answer`. `prompt_template` wraps
    each prompt, e.g. `"{prompt}\nAnswer after ####."`.
    """

    name = "jsonl"

    def __init__(self, path: str, prompt_template: str = "{prompt}", limit: int | None = None):
        problems = []
        with Path(path).open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    problem = Problem(
                        str(record["id"]),
                        prompt_template.format(prompt=record["prompt"]),
                        str(record["answer"]),
                    )
                except (json.JSONDecodeError, KeyError, TypeError) as error:
                    raise ValueError(f"{path}:{number}: bad record ({error})") from error
                problems.append(problem)
                if limit is not None and len(problems) >= limit:
                    break
        super().__init__(problems)

    def score(self, prompt_id: str, completion: str) -> float:
        """1.0 when the extracted answer matches the reference."""
        return exact_answer_reward(completion, self.problem(prompt_id).answer)


@register_task("reasoning_gym")
class ReasoningGymTask(Task):
    r"""A reasoning-gym generator (`reasoning_gym:<name>`), its own verifier the reward.

    reasoning-gym (PyPI `reasoning-gym`, pure Python, offline) ships procedural
    generators with verifiers: `basic_arithmetic`, `countdown`, `gsm_symbolic` (100
    templates derived from GSM8K) and many more, each with difficulty settings. The
    problems are entries 0..size-1 of `create_dataset(name, seed=seed, size=size,
    **settings)`, so every rank builds the same ones, and the reward is the dataset's
    `score_answer(answer, entry)`, graded for some generators (countdown gives 0.05 to
    a wrong expression over the right numbers); the run's success threshold decides
    what counts as a success.

    Args:
        dataset: The generator's registered name.
        size: Problems to generate.
        seed: The generator's seed (a different seed gives held-out problems).
        prompt_template: Wraps each question, e.g. `"{question}\nAnswer in <answer></answer>."`.
        answer_tag: The completion's answer is inside `<tag>...</tag>`, as reasoning-gym's
            prompts ask; None takes the whole completion, stripped (a tiny model that
            answers directly).
        settings: The generator's own settings (`min_digits`, `max_numbers`, ...).

    """

    name = "reasoning_gym"

    def __init__(
        self,
        dataset: str,
        size: int = 256,
        seed: int = 0,
        prompt_template: str = "{question}",
        answer_tag: str | None = "answer",
        **settings: Any,
    ) -> None:
        import reasoning_gym

        self.dataset_name = dataset
        self.answer_tag = answer_tag
        try:
            self.dataset = reasoning_gym.create_dataset(dataset, seed=seed, size=size, **settings)
        except (AssertionError, TypeError, ValueError) as error:
            raise ValueError(f"reasoning_gym:{dataset}: {error}") from error
        self._entries: dict[str, dict[str, Any]] = {}
        problems = []
        for index in range(size):
            entry = self.dataset[index]
            prompt_id = f"{dataset}-{seed}-{index:05d}"
            self._entries[prompt_id] = entry
            prompt = prompt_template.format(question=entry["question"])
            problems.append(Problem(prompt_id, prompt, str(entry["answer"])))
        self.name = f"reasoning_gym:{dataset}"
        super().__init__(problems)

    def answer(self, completion: str) -> str | None:
        """The answer part of a completion (None when the tag is missing)."""
        if self.answer_tag is None:
            return completion.strip()
        from reasoning_gym.utils import extract_answer as extract_tagged

        return extract_tagged(completion, tag_name=self.answer_tag)

    def score(self, prompt_id: str, completion: str) -> float:
        """The generator's `score_answer` on the extracted answer, clipped to [0, 1]."""
        value = self.dataset.score_answer(self.answer(completion), self._entries[prompt_id])
        return min(1.0, max(0.0, float(value)))

    def vocabulary(self) -> list[str]:
        """Every word and symbol of the questions and answers (for a tiny word-level tokenizer)."""
        words: set[str] = set()
        for prompt_id in self.prompt_ids:
            problem = self.problem(prompt_id)
            words.update(_WORD.findall(problem.prompt + " " + problem.answer))
        return sorted(words)


_WORD = re.compile(r"[A-Za-z_]+|[^\w\s]")


__all__ = [
    "TASK_REGISTRY",
    "AdditionTask",
    "CountdownTask",
    "JsonlTask",
    "Problem",
    "ReasoningGymTask",
    "TargetTokenTask",
    "Task",
    "build_task",
    "evaluate_expression",
    "extract_answer",
    "register_task",
]

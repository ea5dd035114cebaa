"""One sentence that says whether a forged model is worth having, computed from the report's rows.

Shared by the forge report, the model card and the demo so that all three say the same
thing. The comparison is in held-out bits per byte when the rows have it (it stays fair
when the forged model's vocabulary was trimmed); perplexity per token is added only
where both rows use the same tokenizer (same vocabulary size), and is the measure
only for older reports that have no bits per byte. Pure Python (the Mac runtime reads
it without torch).
"""

from __future__ import annotations

from typing import Iterable, Mapping


def _same_tokenizer(a: Mapping, b: Mapping) -> bool:
    return a.get("vocab_size") == b.get("vocab_size")


def verdict(rows: Iterable[Mapping]) -> str:
    """``forged is X% smaller and Y% worse/better in held-out bits per byte than the control`` (or the baseline)."""
    by = {r["row"]: r for r in rows}
    forged = by.get("forged")
    ref = by.get("unpruned control") or by.get("LoRA-only control") or by.get("baseline")
    if not forged or not ref:
        return ""
    key = "bpb" if forged.get("bpb") and ref.get("bpb") else "ppl"
    if not forged.get(key) or not ref.get(key):
        return ""
    smaller = 1 - forged["params"] / ref["params"]
    worse = forged[key] / ref[key] - 1
    name = "the baseline" if ref is by.get("baseline") else "the unpruned control"
    measure = "bits per byte" if key == "bpb" else "perplexity"
    text = (f"forged is {smaller:.0%} smaller and {abs(worse):.1%} {'worse' if worse > 0 else 'better'} "
            f"in held-out {measure} than {name}")
    notes = []
    if key == "bpb" and forged.get("ppl") and ref.get("ppl") and _same_tokenizer(forged, ref):
        notes.append(f"PPL {forged['ppl'] / ref['ppl'] - 1:+.1%}")
    base = by.get("baseline")
    if base and base is not ref and base.get(key):
        notes.append(f"{'better' if forged[key] < base[key] else 'worse'} than the untuned base model")
    return text + (f" ({'; '.join(notes)})" if notes else "") + "."

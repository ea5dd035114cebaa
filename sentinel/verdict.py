"""One sentence that says whether a forged model is worth having, computed from the report's rows.

Shared by the forge report, the model card and the demo so that all three say the same
thing. Pure Python (the Mac runtime reads it without torch).
"""

from __future__ import annotations

from typing import Iterable, Mapping


def verdict(rows: Iterable[Mapping]) -> str:
    """``forged is X% smaller and Y% worse/better ... than the control`` (or the baseline without one)."""
    by = {r["row"]: r for r in rows}
    forged = by.get("forged")
    ref = by.get("unpruned control") or by.get("LoRA-only control") or by.get("baseline")
    if not forged or not ref or not forged.get("ppl") or not ref.get("ppl"):
        return ""
    smaller = 1 - forged["params"] / ref["params"]
    worse = forged["ppl"] / ref["ppl"] - 1
    name = "the baseline" if ref is by.get("baseline") else "the unpruned control"
    text = (f"forged is {smaller:.0%} smaller and {abs(worse):.1%} {'worse' if worse > 0 else 'better'} "
            f"in held-out perplexity than {name}")
    base = by.get("baseline")
    if base and base is not ref and base.get("ppl"):
        text += f" ({'better' if forged['ppl'] < base['ppl'] else 'worse'} than the untuned base model)"
    return text + "."

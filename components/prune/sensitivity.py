"""Layer sensitivity: how much validation accuracy each layer loses at a few ratios,
and per-layer ratios chosen from that scan to meet a size, MACs or latency target.

The scan prunes one layer at a time, with no fine-tuning, so it ranks layers by
how much they tolerate; it does not predict the accuracy after fine-tuning.
"""

from __future__ import annotations

from collections.abc import Callable

from modelpress.errors import ModelpressError

# {layer: {ratio: validation accuracy drop}}
Table = dict[str, dict[float, float]]


def scan(
    layers: list[str],
    ratios: tuple[float, ...],
    probe: Callable[[str, float], float],
    baseline: float,
    say: Callable[[str], None],
) -> Table:
    """`probe(layer, ratio)` returns validation accuracy with only that layer pruned."""
    table: Table = {}
    for layer in layers:
        table[layer] = {r: baseline - probe(layer, r) for r in ratios}
        say("sensitivity " + layer + ": " + ", ".join(f"{r:.2f}->{d:+.4f}" for r, d in table[layer].items()))
    return table


def choose(
    table: Table,
    cost: Callable[[dict[str, float]], float],
    keep: float,
    max_drop: float,
    objective: str,
) -> dict[str, float]:
    """Greedy: raise, one level at a time, the layer that buys the most cost per accuracy lost.

    Stops once cost(ratios) <= keep * cost(no pruning). Probes losing more than `max_drop` are
    never taken. Raises when the target cannot be met that way.
    """
    ratios = {layer: 0.0 for layer in table}
    full = cost(ratios)
    current = full
    while current > keep * full:
        best: tuple[float, str, float, float] | None = None
        for layer, probes in table.items():
            higher = [r for r in probes if r > ratios[layer] and probes[r] <= max_drop]
            if not higher:
                continue
            nxt = min(higher)
            trial = {**ratios, layer: nxt}
            c = cost(trial)
            gain = current - c
            if gain <= 0:
                continue
            lost = probes[nxt] - probes.get(ratios[layer], 0.0)
            score = gain / max(lost, 1e-3)
            if best is None or score > best[0]:
                best = (score, layer, nxt, c)
        if best is None:
            raise ModelpressError(
                f"prune.sensitivity: no per-layer ratios keep {objective} at or below {keep:.0%} "
                f"without a layer losing more than {max_drop} validation accuracy "
                f"(reached {current / full:.0%})",
                "raise sensitivity.keep or sensitivity.max_accuracy_drop, or add higher sensitivity.ratios",
            )
        _, layer, nxt, current = best
        ratios[layer] = nxt
    return {k: v for k, v in ratios.items() if v > 0}

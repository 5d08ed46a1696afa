"""Value-range rule for the data checks: false positives on real data vs detection of corruption.

Each rule turns the train split into an allowed [low, high] per feature (a feature is one column
of the flattened sample); a val/test value outside it is flagged. Datasets: scikit-learn's digits
(pixels / 16), wine, breast_cancer and diabetes (raw, unscaled features), each raw and standardized
(StandardScaler fit on train); splits 70/10/20 (stratified for the classifiers), seeds 0..9.

False positives: share of the (dataset, seed) combos whose clean val or test split has any flagged
value, and share of val+test rows flagged. Detection: a corruption injected into the test split is
detected when any value it changed is flagged (so a rule's false positives cannot count as hits):
  unscaled   one test row left raw in a standardized dataset (standardized datasets only)
  sentinel   one value set to -999
  value x100 one non-zero value multiplied by 100
  row x10    one whole row multiplied by 10
  col shift  every test row's features shifted by one position (np.roll), a schema mix-up
Single-row corruptions are drawn --trials times per combo; their rate is over all draws.

    python benchmarks/data_range_rule.py [--trials 20] [--out benchmarks/results/data_range_rule.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

RESULTS = Path(__file__).parent / "results" / "data_range_rule.json"
SEEDS = range(10)
FLOOR = 0.1  # span / std floor, as a fraction of the whole train input's span / std
# k (x span) on each side; 2 and 3 extend the first grid, whose widest (1.0) still flagged real data.
WIDTHS = (0.25, 0.5, 1.0, 2.0, 3.0)
CORRUPTIONS = ("unscaled", "sentinel", "value x100", "row x10", "col shift")


def datasets():
    """(name, X, y or None) with the raw features; y only where the split is stratified."""
    digits = load_digits()
    yield "digits", digits.data / 16.0, digits.target
    yield "wine", *load_wine(return_X_y=True)
    yield "breast_cancer", *load_breast_cancer(return_X_y=True)
    yield "diabetes", load_diabetes(return_X_y=True, scaled=False)[0], None


def split(x, y, seed):
    idx = np.arange(len(x))
    tr, rest = train_test_split(idx, test_size=0.3, random_state=seed, stratify=y)
    va, te = train_test_split(rest, test_size=2 / 3, random_state=seed,
                              stratify=None if y is None else y[rest])
    return tr, va, te


# Rules: train split (n, f) -> (low, high), each broadcastable to a row of f features.
def whole_exact(t):
    return t.min(), t.max()


def feature_widened(k, floor=False):
    def rule(t):
        lo, hi = t.min(0), t.max(0)
        span = np.maximum(hi - lo, FLOOR * (t.max() - t.min())) if floor else hi - lo
        return lo - k * span, hi + k * span
    return rule


def feature_zscore(z):
    def rule(t):
        mu, sd = t.mean(0), np.maximum(t.std(0), FLOOR * t.std())
        return mu - z * sd, mu + z * sd
    return rule


RULES = {
    "whole input [min, max] (current)": whole_exact,
    "per-feature [min, max]": feature_widened(0.0),
    **{f"per-feature +/- {k} span": feature_widened(k) for k in WIDTHS},
    **{f"per-feature +/- {k} span, floored": feature_widened(k, floor=True) for k in WIDTHS},
    **{f"per-feature mean +/- {z} std, floored": feature_zscore(z) for z in (6, 10)},
}


def flagged(x, lo, hi):
    return (x < lo) | (x > hi)


def cases():
    """(dataset, seed, train, val, test, raw test or None) for every dataset variant and seed."""
    for name, x, y in datasets():
        for seed in SEEDS:
            tr, va, te = split(x, y, seed)
            yield f"{name} raw", seed, x[tr], x[va], x[te], None
            sc = StandardScaler().fit(x[tr])
            yield f"{name} std", seed, sc.transform(x[tr]), sc.transform(x[va]), sc.transform(x[te]), x[te]


def corrupt(kind, test, raw, rng):
    """A corrupted copy of test and the mask of the values it changed; None when not applicable."""
    bad = test.copy()
    r, f = rng.integers(len(test)), rng.integers(test.shape[1])
    if kind == "unscaled":
        if raw is None:
            return None
        bad[r] = raw[r]
    elif kind == "sentinel":
        bad[r, f] = -999.0
    elif kind == "value x100":
        rows, cols = np.nonzero(test)
        i = rng.integers(len(rows))
        bad[rows[i], cols[i]] *= 100
    elif kind == "row x10":
        bad[r] *= 10
    elif kind == "col shift":
        bad = np.roll(test, 1, axis=1)
    changed = bad != test
    return (bad, changed) if changed.any() else None


def evaluate(trials):
    stats = {rule: {"fp_combos": 0, "combos": 0, "fp_rows": 0, "rows": 0, "fp_datasets": set(),
                    **{c: [0, 0] for c in CORRUPTIONS}} for rule in RULES}
    for name, seed, train, val, test, raw in cases():
        rng = np.random.default_rng(seed)
        draws = [(c, corrupt(c, test, raw, rng)) for c in CORRUPTIONS
                 for _ in range(1 if c == "col shift" else trials)]
        for rule, fn in RULES.items():
            lo, hi = fn(train)
            s = stats[rule]
            rows = np.concatenate([flagged(val, lo, hi).any(1), flagged(test, lo, hi).any(1)])
            s["combos"] += 1
            s["rows"] += len(rows)
            s["fp_rows"] += int(rows.sum())
            if rows.any():
                s["fp_combos"] += 1
                s["fp_datasets"].add(name)
            for c, d in draws:
                if d is not None:
                    bad, changed = d
                    s[c][0] += bool((flagged(bad, lo, hi) & changed).any())
                    s[c][1] += 1
    return {rule: {"false_positive_combos": s["fp_combos"], "combos": s["combos"],
                   "false_positive_combo_rate": s["fp_combos"] / s["combos"],
                   "false_positive_row_rate": s["fp_rows"] / s["rows"],
                   "false_positive_datasets": sorted(s["fp_datasets"]),
                   "detection": {c: s[c][0] / s[c][1] for c in CORRUPTIONS},
                   "detection_cases": {c: s[c][1] for c in CORRUPTIONS}}
            for rule, s in stats.items()}


def table(results):
    head = "| rule | FP combos | FP rows | " + " | ".join(CORRUPTIONS) + " |"
    lines = [head, "|---" * (3 + len(CORRUPTIONS)) + "|"]
    for rule, r in results.items():
        det = " | ".join(f"{r['detection'][c]:.0%}" for c in CORRUPTIONS)
        lines.append(f"| {rule} | {r['false_positive_combos']}/{r['combos']} "
                     f"| {r['false_positive_row_rate']:.2%} | {det} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20, help="draws per combo of each single-row corruption")
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results file (default {RESULTS})")
    args = ap.parse_args()
    results = evaluate(args.trials)
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"seeds": list(SEEDS), "trials": args.trials, "floor": FLOOR,
                                    "splits": "70/10/20", "rules": results}, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Scores per task: what the evaluate step measures on the candidate and the source alike.

- classification: accuracy against the labels; top-1 agreement and largest output difference
  against the source;
- regression: MAE and RMSE against the labels (their change against the source is what
  relative gates hold); largest prediction difference against the source;
- embedding (no labels): cosine similarity of each output vector to the source's, mean and
  minimum, after pooling token vectors under the attention mask where the task says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from modelpress.core.data import Split


def score(task: str, out: np.ndarray, reference: np.ndarray, part: Split, info: dict[str, Any]) -> dict[str, float]:
    """`out`'s metrics for `task`: against the labels, or (embedding) against `reference`, the source's outputs."""
    import numpy as np

    if task == "classification":
        return {"accuracy": float((out.reshape(len(out), -1).argmax(1) == part.labels).mean())}
    if task == "regression":
        err = out.reshape(len(out), -1).astype(np.float64) - part.labels.reshape(len(out), -1)
        return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean()))}
    mask = part.inputs.get(info.get("mask_input") or "")
    a, b = vectors(out, info.get("pooling", "none"), mask), vectors(reference, info.get("pooling", "none"), mask)
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}


def compare(task: str, cand: np.ndarray, src: np.ndarray, scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Candidate against source, side by side."""
    import numpy as np

    diff = float(np.abs(cand.astype(np.float64) - src.astype(np.float64)).max())
    out = {"max_abs_diff": diff}
    if task == "classification":
        c, s = cand.reshape(len(cand), -1), src.reshape(len(src), -1)
        out |= {"top1_agreement": float((c.argmax(1) == s.argmax(1)).mean()), "max_abs_logit_diff": diff,
                "accuracy_delta": scores["candidate"]["accuracy"] - scores["source"]["accuracy"]}
    return out


def vectors(out: np.ndarray, pooling: str, mask: np.ndarray | None) -> np.ndarray:
    """One vector per sample (mean or first token), or every vector of the last axis (none)."""
    import numpy as np

    x = out.astype(np.float64)
    if pooling == "mean" and mask is not None:
        m = mask.astype(np.float64)[..., None]
        return (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    if pooling == "first":
        return x[:, 0]
    return x.reshape(-1, x.shape[-1]) if x.ndim > 1 else x.reshape(-1, 1)

"""Transformer encoders (`mlflow.transformers` models) between steps: config + safetensors, no code.

A folder holds `config.json` and `model.safetensors` as `save_pretrained` writes them, plus the
manifest, which lists the attention heads removed so far per layer. Loading builds the model
class the config names from transformers itself (a config asking for remote code is refused),
removes those heads so the shapes match, and reads the weights with safetensors: nothing is
unpickled and no code from the registry runs. The module the techniques see is `Encoder`:
token-id tensors in, the last hidden state out, as the exported ONNX model will be.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import torch

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# What modelpress feeds an encoder: the data's token ids and mask (token_type_ids default to zeros).
INPUTS = ("input_ids", "attention_mask")
FIX_SAFETENSORS = "save it with save_pretrained's default (safetensors) and log it with mlflow.transformers.log_model"


def _encoder_class() -> type:
    import torch

    class Encoder(torch.nn.Module):
        """A transformers encoder seen as tensors in, last hidden state out."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return Encoder


def encoder(model: torch.nn.Module) -> torch.nn.Module:
    return _encoder_class()(model)


def check_config(model_dir: Path, what: str) -> Any:
    """The folder's transformers config; refused when it needs code from outside transformers."""
    from transformers import AutoConfig

    if not (model_dir / CONFIG_FILE).is_file():
        raise ModelpressError(f"{what}: no {CONFIG_FILE} in the transformers model", FIX_SAFETENSORS)
    try:
        config = AutoConfig.from_pretrained(str(model_dir), trust_remote_code=False, local_files_only=True)
    except Exception as exc:  # unknown model_type, or a config that needs remote code
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelpressError(f"{what}: transformers cannot read its config ({reason[:200]})",
                              "use a model type that transformers ships (no trust_remote_code)") from None
    if getattr(config, "auto_map", None):
        raise ModelpressError(f"{what}: its config asks for custom code (auto_map), which modelpress never runs",
                              "use a model type that transformers ships")
    return config


def load(model_dir: Path, heads_removed: dict[int, tuple[int, ...]], what: str) -> torch.nn.Module:
    """The encoder in `model_dir`, with `heads_removed` cut out so the saved weights fit."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel

    from modelpress.components.prune.heads import find_blocks, remove_heads

    config = check_config(model_dir, what)
    if not (model_dir / WEIGHTS_FILE).is_file():
        raise ModelpressError(f"{what}: no {WEIGHTS_FILE} (a pytorch_model.bin would be a pickle)", FIX_SAFETENSORS)
    torch.manual_seed(0)
    model = AutoModel.from_config(config, attn_implementation="eager")
    if heads_removed:
        remove_heads(find_blocks(model), {int(k): list(v) for k, v in heads_removed.items()})
    state = load_file(str(model_dir / WEIGHTS_FILE))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if getattr(model, "pooler", None) is not None and any(k.startswith("pooler.") for k in missing):
        model.pooler = None  # saved without a pooling head; the last hidden state does not need one
        missing = [k for k in missing if not k.startswith("pooler.")]
    persistent = {k for k, _ in model.named_parameters()} | {
        k for k, _ in model.named_buffers() if k.rsplit(".", 1)[-1] not in ("position_ids", "token_type_ids")}
    if [k for k in missing if k in persistent] or unexpected:
        raise ModelpressError(
            f"{what}: the weights do not fit the config (missing {sorted(set(missing) & persistent)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]})", FIX_SAFETENSORS)
    return encoder(model.eval()).eval()


def save(model_dir: Path, module: torch.nn.Module) -> None:
    """Write the encoder's config and weights (safetensors) into `model_dir`."""
    from safetensors.torch import save_file

    model = module.model
    model_dir.mkdir(parents=True, exist_ok=True)
    model.config.to_json_file(str(model_dir / CONFIG_FILE))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(_untie(state), str(model_dir / WEIGHTS_FILE))


def _untie(state: dict[str, Any]) -> dict[str, Any]:
    """safetensors refuses tensors that share memory; give each its own copy."""
    seen: dict[int, str] = {}
    out = {}
    for k, v in state.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.setdefault(ptr, k)
    return out

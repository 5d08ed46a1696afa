"""Train a torch model of our own on sklearn's digits and log it with mlflow.pytorch.log_model.

Plays a user bringing a torch model: plain torch/sklearn/MLflow calls, nothing from modelpress.
  --arch mlp        a tabular MLP on the 64 pixel columns (64 -> 256 -> 128 -> 10)
  --arch resnet     a small residual CNN with a concatenation and a depthwise conv on 1x8x8 images
  --arch mlp-small  a narrower MLP (64 -> 48 -> 10), e.g. as a registered distillation student
By default the model is logged with MLflow 3's defaults: a torch.export program (.pt2) traced
from the input example. `--pickle` logs it the way MLflow 2 did (serialization_format="pickle").
Prints the logged data file's artifact URI (runs:/<run_id>/data/digits.parquet) on stdout.
"""

import argparse
import contextlib
import copy
import sys
import tempfile
import warnings
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from byom_tracking import use_experiment  # this folder's helper: where the runs go
from mlflow import MlflowClient
from sklearn import datasets
from sklearn.model_selection import train_test_split
from torch import nn


class MLP(nn.Module):
    def __init__(self, hidden=(256, 128)) -> None:
        super().__init__()
        widths = (64, *hidden)
        self.body = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths, widths[1:]))
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(widths[-1], 10)

    def forward(self, x):
        for layer in self.body:
            x = self.dropout(torch.relu(layer(x)))
        return self.head(x)


class ResNetCat(nn.Module):
    """stem -> residual block -> [block, 1x1 branch, depthwise branch] concatenated -> pool -> head."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.branch = nn.Conv2d(width, width // 2, 1)
        self.depthwise = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.mix = nn.Conv2d(width + width // 2 + width, 64, 3, padding=1)
        self.head = nn.Linear(64 * 4 * 4, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))  # residual add
        x = torch.cat([x, torch.relu(self.branch(x)), self.depthwise(x)], dim=1)     # concatenation
        x = nn.functional.max_pool2d(torch.relu(self.mix(x)), 2)
        return self.head(x.view(x.size(0), -1))


ARCHS = {"mlp": (MLP, {}), "mlp-small": (MLP, {"hidden": (48,)}), "resnet": (ResNetCat, {})}
DEFAULT_NAMES = {"mlp": "digits-torch-mlp", "mlp-small": "digits-torch-mlp-small", "resnet": "digits-resnet"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load() -> pd.DataFrame:
    """64 pixel columns scaled to [0, 1], int64 `target` and a stratified 70/10/20 `split`."""
    bunch = datasets.load_digits(as_frame=True)
    X = (bunch.data / 16.0).astype("float32")
    y = bunch.target.astype("int64")
    idx_train, idx_test = train_test_split(X.index, test_size=0.2, stratify=y, random_state=0)
    idx_train, idx_val = train_test_split(idx_train, test_size=0.125, stratify=y[idx_train], random_state=0)
    split = pd.Series("train", index=X.index)
    split[idx_val], split[idx_test] = "val", "test"
    df = X.copy()
    df["target"], df["split"] = y, split
    return df


def tensors(df: pd.DataFrame, split: str, image: bool) -> tuple[torch.Tensor, torch.Tensor]:
    part = df[df["split"] == split]
    X = torch.tensor(part.drop(columns=["target", "split"]).to_numpy(), dtype=torch.float32)
    return (X.reshape(-1, 1, 8, 8) if image else X), torch.tensor(part["target"].to_numpy())


def train(model: nn.Module, df: pd.DataFrame, image: bool, epochs: int) -> nn.Module:
    Xtr, ytr = tensors(df, "train", image)
    Xva, yva = tensors(df, "val", image)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    best, best_acc = copy.deepcopy(model.state_dict()), -1.0
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(Xtr), generator=gen).split(64):
            opt.zero_grad()
            loss_fn(model(Xtr[idx]), ytr[idx]).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(Xva).argmax(1) == yva).float().mean().item()
        if acc > best_acc:
            best, best_acc = copy.deepcopy(model.state_dict()), acc
    model.load_state_dict(best)
    return model.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="mlp")
    ap.add_argument("--name", help="registered model name (default: digits-torch-mlp / digits-resnet / ...)")
    ap.add_argument("--alias", default="champion")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--pickle", action="store_true", help="log a pickled module, as MLflow 2 did")
    args = ap.parse_args()
    name = args.name or DEFAULT_NAMES[args.arch]
    torch.manual_seed(0)
    image = args.arch == "resnet"
    cls, kwargs = ARCHS[args.arch]

    df = load()
    model = train(cls(**kwargs), df, image, args.epochs)
    Xte, yte = tensors(df, "test", image)
    with torch.no_grad():
        test_acc = (model(Xte).argmax(1) == yte).float().mean().item()
    log(f"{args.arch}: {sum(p.numel() for p in model.parameters())} parameters, test accuracy {test_acc:.4f}")
    example = Xte[:4].numpy()  # a few rows, so torch.export keeps the batch axis dynamic
    fmt = {"serialization_format": "pickle"} if args.pickle else {}

    use_experiment()

    with (contextlib.redirect_stdout(sys.stderr), mlflow.start_run(run_name=f"digits-{args.arch}") as run,
          tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings()):
        warnings.simplefilter("ignore")  # MLflow's notice about pickles, on purpose under --pickle
        data_file = Path(tmp) / "digits.parquet"
        df.to_parquet(data_file, index=False)
        mlflow.log_artifact(str(data_file), artifact_path="data")
        mlflow.log_metrics({"test_accuracy": test_acc})
        info = mlflow.pytorch.log_model(model, name="model", input_example=np.asarray(example),
                                        registered_model_name=name, **fmt)
        MlflowClient().set_registered_model_alias(name, args.alias, info.registered_model_version)
        log(f"registered {name} version {info.registered_model_version} as @{args.alias}"
            + (" (pickled module)" if args.pickle else " (torch.export program)"))
        data_uri = f"runs:/{run.info.run_id}/data/{data_file.name}"
    print(data_uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())

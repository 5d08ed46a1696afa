"""Train a small MLP classifier on an sklearn tabular dataset and register it in MLflow as ONNX.

Plays a user bringing their own model: plain sklearn/torch/MLflow calls, nothing else.
Prints the logged data file's artifact URI (runs:/<run_id>/data/<file>) on stdout.
"""

import argparse
import contextlib
import copy
import io
import re
import sys
import tempfile
import warnings
from pathlib import Path

import mlflow
import onnx
import pandas as pd
import torch
from byom_tracking import use_experiment  # this folder's helper: where the runs go
from mlflow import MlflowClient
from sklearn import datasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

LOADERS = {"wine": datasets.load_wine, "breast_cancer": datasets.load_breast_cancer}
DEFAULT_NAMES = {"wine": "wine-mlp", "breast_cancer": "breast-cancer-mlp"}
EPOCHS = 200


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load(dataset: str) -> pd.DataFrame:
    """Standardized features (safe column names), int64 `target` and a stratified 70/10/20 `split`."""
    bunch = LOADERS[dataset](as_frame=True)
    X = bunch.data.rename(columns=lambda c: re.sub(r"[^A-Za-z0-9_]", "_", c))
    y = bunch.target.astype("int64")
    idx_train, idx_test = train_test_split(X.index, test_size=0.2, stratify=y, random_state=0)
    # 10% of the whole set is 1/8 of the remaining 80%.
    idx_train, idx_val = train_test_split(idx_train, test_size=0.125, stratify=y[idx_train],
                                          random_state=0)
    split = pd.Series("train", index=X.index)
    split[idx_val], split[idx_test] = "val", "test"
    # Fit the scaler on train rows only so val/test statistics never leak into training.
    scaler = StandardScaler().fit(X.loc[idx_train])
    df = pd.DataFrame(scaler.transform(X), columns=X.columns, index=X.index).astype("float32")
    df["target"], df["split"] = y, split
    return df


def tensors(df: pd.DataFrame, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    part = df[df["split"] == split]
    X = torch.tensor(part.drop(columns=["target", "split"]).to_numpy(), dtype=torch.float32)
    return X, torch.tensor(part["target"].to_numpy())


def train(df: pd.DataFrame) -> tuple[torch.nn.Module, int]:
    Xtr, ytr = tensors(df, "train")
    Xva, yva = tensors(df, "val")
    n_classes = int(df["target"].max()) + 1
    model = torch.nn.Sequential(torch.nn.Linear(Xtr.shape[1], 32), torch.nn.ReLU(),
                                torch.nn.Linear(32, n_classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.CrossEntropyLoss()
    best, best_key, best_epoch = None, None, -1
    for epoch in range(EPOCHS):  # full batch: these datasets have a few hundred rows
        model.train()
        opt.zero_grad()
        loss_fn(model(Xtr), ytr).backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            logits = model(Xva)
        # Val sets are tiny, so accuracy ties a lot; break ties on lower val loss.
        key = ((logits.argmax(1) == yva).float().mean().item(), -loss_fn(logits, yva).item())
        if best_key is None or key > best_key:
            best, best_key, best_epoch = copy.deepcopy(model.state_dict()), key, epoch
    model.load_state_dict(best)
    return model.eval(), best_epoch


def accuracy(model: torch.nn.Module, df: pd.DataFrame, split: str) -> float:
    X, y = tensors(df, split)
    with torch.no_grad():
        return (model(X).argmax(1) == y).float().mean().item()


def to_onnx(model: torch.nn.Module, n_features: int) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is chosen on purpose; mute its notice
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (torch.zeros(2, n_features),), buf,
            input_names=["features"], output_names=["logits"],
            dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    return onnx.load_from_string(buf.getvalue())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(LOADERS), default="wine")
    ap.add_argument("--name", help="registered model name (default: wine-mlp / breast-cancer-mlp)")
    ap.add_argument("--alias", default="champion")
    args = ap.parse_args()
    name = args.name or DEFAULT_NAMES[args.dataset]
    torch.manual_seed(0)

    df = load(args.dataset)
    log(f"{args.dataset}: {len(df)} rows, {df.shape[1] - 2} features, "
        f"splits {df['split'].value_counts().to_dict()}")
    model, best_epoch = train(df)
    val_acc, test_acc = accuracy(model, df, "val"), accuracy(model, df, "test")
    log(f"best epoch {best_epoch}: val accuracy {val_acc:.4f}, test accuracy {test_acc:.4f}")
    proto = to_onnx(model, df.shape[1] - 2)

    # MLflow prints "View run ... at" links to stdout; stdout here is the data URI alone.
    use_experiment()
    with (contextlib.redirect_stdout(sys.stderr), mlflow.start_run(run_name=f"{args.dataset}-mlp") as run,
          tempfile.TemporaryDirectory() as tmp):
        data_file = Path(tmp) / f"{args.dataset}.parquet"
        df.to_parquet(data_file, index=False)
        mlflow.log_artifact(str(data_file), artifact_path="data")
        mlflow.log_params({"dataset": args.dataset, "hidden": 32, "epochs": EPOCHS, "lr": 1e-2})
        mlflow.log_metrics({"val_accuracy": val_acc, "test_accuracy": test_acc,
                            "best_epoch": best_epoch})
        info = mlflow.onnx.log_model(proto, name="model", registered_model_name=name)
        version = info.registered_model_version
        MlflowClient().set_registered_model_alias(name, args.alias, version)
        log(f"registered {name} version {version} as @{args.alias}")
        data_uri = f"runs:/{run.info.run_id}/data/{data_file.name}"
    print(data_uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())

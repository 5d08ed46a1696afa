"""Train a small MLP regressor on sklearn's diabetes data and register it in MLflow as ONNX.

Plays a user bringing their own model: plain sklearn/torch/MLflow calls, nothing else.
The exported model predicts the raw target (disease progression units), not a scaled one.
Prints the logged data file's artifact URI (runs:/<run_id>/data/<file>) on stdout.
"""

import argparse
import contextlib
import copy
import io
import sys
import tempfile
import warnings
from pathlib import Path

import mlflow
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import torch
from byom_tracking import use_experiment  # this folder's helper: where the runs go
from mlflow import MlflowClient
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

EPOCHS, LR, WEIGHT_DECAY = 300, 1e-2, 1e-3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load() -> pd.DataFrame:
    """Standardized features, float `target` and a random 70/10/20 `split`."""
    bunch = load_diabetes(as_frame=True)
    X, y = bunch.data, bunch.target.astype("float64")
    idx_train, idx_test = train_test_split(X.index, test_size=0.2, random_state=0)
    idx_train, idx_val = train_test_split(idx_train, test_size=0.125, random_state=0)  # 10% overall
    split = pd.Series("train", index=X.index)
    split[idx_val], split[idx_test] = "val", "test"
    # Fit on train rows only so val/test statistics never leak into training.
    scaler = StandardScaler().fit(X.loc[idx_train])
    df = pd.DataFrame(scaler.transform(X), columns=X.columns, index=X.index).astype("float32")
    df["target"], df["split"] = y, split
    return df


def arrays(df: pd.DataFrame, split: str) -> tuple[np.ndarray, np.ndarray]:
    part = df[df["split"] == split]
    return part.drop(columns=["target", "split"]).to_numpy(np.float32), part["target"].to_numpy()


def rmse(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred.reshape(-1) - y) ** 2)))


def train(df: pd.DataFrame) -> tuple[torch.nn.Sequential, float, float, int]:
    """Returns a model of the standardized target, plus that target's train mean and std."""
    Xtr, ytr = arrays(df, "train")
    Xva, yva = arrays(df, "val")
    # Train on a standardized target: the raw one (25..346) makes Adam at lr 1e-2 crawl.
    mean, std = ytr.mean(), ytr.std()
    Xtr_t, ytr_t = torch.tensor(Xtr), torch.tensor((ytr - mean) / std, dtype=torch.float32)
    model = torch.nn.Sequential(torch.nn.Linear(Xtr.shape[1], 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 1))
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    best, best_rmse, best_epoch = None, float("inf"), -1
    for epoch in range(EPOCHS):  # full batch: 309 training rows
        model.train()
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(Xtr_t).squeeze(1), ytr_t).backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            val = rmse(model(torch.tensor(Xva)).numpy() * std + mean, yva)
        if val < best_rmse:
            best, best_rmse, best_epoch = copy.deepcopy(model.state_dict()), val, epoch
    model.load_state_dict(best)
    return model.eval(), float(mean), float(std), best_epoch


def fold(model: torch.nn.Sequential, mean: float, std: float) -> torch.nn.Sequential:
    """Fold y = out * std + mean into the last Linear so the exported model speaks raw units."""
    raw = copy.deepcopy(model)
    with torch.no_grad():
        raw[-1].weight.mul_(std)
        raw[-1].bias.mul_(std).add_(mean)
    return raw


def to_onnx(model: torch.nn.Module, n_features: int) -> onnx.ModelProto:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is chosen on purpose; mute its notice
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (torch.zeros(2, n_features),), buf,
            input_names=["features"], output_names=["prediction"],
            dynamic_axes={"features": {0: "batch"}, "prediction": {0: "batch"}},
            opset_version=17, dynamo=False,
        )
    return onnx.load_from_string(buf.getvalue())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="diabetes-mlp", help="registered model name")
    ap.add_argument("--alias", default="champion")
    args = ap.parse_args()
    torch.manual_seed(0)

    df = load()
    log(f"diabetes: {len(df)} rows, splits {df['split'].value_counts().to_dict()}")
    model, mean, std, best_epoch = train(df)
    proto = to_onnx(fold(model, mean, std), df.shape[1] - 2)

    # Score the exported graph itself, checking the fold against un-scaling by hand in numpy.
    sess = ort.InferenceSession(proto.SerializeToString())
    scores = {}
    for split in ("val", "test"):
        X, y = arrays(df, split)
        pred = sess.run(None, {"features": X})[0]
        with torch.no_grad():
            expected = model(torch.tensor(X)).numpy() * std + mean
        np.testing.assert_allclose(pred, expected, rtol=1e-4, atol=1e-3)
        scores[f"{split}_rmse"] = rmse(pred, y)
    log(f"best epoch {best_epoch}: val RMSE {scores['val_rmse']:.2f}, "
        f"test RMSE {scores['test_rmse']:.2f} (onnxruntime matches numpy un-scaling)")

    # MLflow prints "View run ... at" links to stdout; stdout here is the data URI alone.
    use_experiment()
    with (contextlib.redirect_stdout(sys.stderr), mlflow.start_run(run_name="diabetes-mlp") as run,
          tempfile.TemporaryDirectory() as tmp):
        data_file = Path(tmp) / "diabetes.csv"
        df.to_csv(data_file, index=False)
        mlflow.log_artifact(str(data_file), artifact_path="data")
        mlflow.log_params({"hidden": 64, "epochs": EPOCHS, "lr": LR, "weight_decay": WEIGHT_DECAY})
        mlflow.log_metrics({**scores, "best_epoch": best_epoch})
        info = mlflow.onnx.log_model(proto, name="model", registered_model_name=args.name)
        version = info.registered_model_version
        MlflowClient().set_registered_model_alias(args.name, args.alias, version)
        log(f"registered {args.name} version {version} as @{args.alias}")
        data_uri = f"runs:/{run.info.run_id}/data/{data_file.name}"
    print(data_uri)
    return 0


if __name__ == "__main__":
    sys.exit(main())

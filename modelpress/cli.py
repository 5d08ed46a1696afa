"""The `modelpress` command line.

Imports here stay light: `modelpress --help` must not load torch, mlflow,
kfp or onnxruntime. Each command imports what it needs when it runs.
Exit codes: 0 ok, 1 a gate failed (nothing registered), 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from modelpress import __version__
from modelpress.errors import GateFailed, ModelpressError

EXIT_GATE_FAILED = 1
EXIT_USER_ERROR = 2


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- commands


def cmd_targets(args: argparse.Namespace) -> int:
    from modelpress.core.hardware import known_targets

    for t in known_targets().values():
        print(f"{t.name:18s} {t.precision:5s} {t.provider:26s} {t.description}")
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    import json

    from modelpress.pipelines.recipe import Recipe

    print(json.dumps(Recipe.model_json_schema(), indent=2))
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from modelpress.pipelines.compile import compile_all, compile_pipeline

    # Loading validates: a gate on a metric no step produces stops here, before any cluster time.
    recipe = _load_recipe(args.recipe) if args.recipe else None
    if args.all:
        for path in compile_all(Path(args.all), recipe):
            print(path)
    else:
        print(compile_pipeline(Path(args.output), recipe))
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from modelpress.core.tasks import TASKS
    from modelpress.pipelines.metrics import produced_metrics

    recipe = _load_recipe(args.recipe)
    tasks = TASKS if recipe.task.kind == "auto" else (recipe.task.kind,)
    gated = {t: {g.metric for target in recipe.targets for g in recipe.active_gates(t, target)} for t in tasks}
    for name in sorted(produced_metrics(recipe)):
        by = [t for t in tasks if name in gated[t]]
        mark = "" if not by else "  (gated)" if len(by) == len(tasks) else f"  (gated for {', '.join(by)})"
        print(f"{name}{mark}")
    return 0


def cmd_variants(args: argparse.Namespace) -> int:
    import json

    from modelpress.registry.readback import list_variants, parse_variant_name
    from modelpress.registry.store import connect

    rows = list_variants(connect(), parse_variant_name(args.model))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        _say(f"no variants of {args.model} yet; `modelpress run --source models:/{args.model}@<alias>` makes one")
        return 0

    def metric(row: dict, key: str, fmt: str) -> str:
        return format(row["metrics"][key], fmt) if key in row["metrics"] else "-"

    header = ["variant", "target", "from", "recipe", "chain", "quality", "vs source", "size vs source",
              "latency b1", "verdict", "aliases"]
    table = [[r["uri"], r["target"], f"v{r['source_version']}", f"{r['recipe'] or '-'} {r['config_hash'][:8]}",
              ">".join(r["chain"]), _quality(r["metrics"]),
              _quality_change(r["metrics"]),
              metric(r, "size_ratio", ".2f") + "x", metric(r, "latency_ratio_b1", ".2f") + "x", r["verdict"],
              ", ".join(r["aliases"]) or "-"] for r in rows]
    print(_grid(header, table))
    return 0


def cmd_lineage(args: argparse.Namespace) -> int:
    import json

    from modelpress.registry.readback import lineage
    from modelpress.registry.store import connect

    info = lineage(connect(), args.variant)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    src = info["source"]
    m = info["metrics"]
    lines = [
        f"{info['variant']}  (aliases: {', '.join(info['aliases']) or 'none'})",
        f"  target     {info['target']}, verdict {info['verdict']}",
        f"  metrics    {_quality(m)} ({_quality_change(m)}), size {m.get('size_ratio', float('nan')):.2f}x of source",
        f"  built by   pipeline run {info['pipeline_run_id']}, MLflow run {info['run_id']}",
        f"  recipe     {info['recipe'] or '(not recorded)'}, config hash {info['config_hash']}, "
        f"variant key {info['key']}",
        f"  chain      {' > '.join(info['chain'])}"
        + (f" (training run {info['training_run_id']})" if info.get("training_run_id") else ""),
        f"  source     {src['uri']}" + ("  (deleted from the registry)" if src.get("missing") else
                                        f", dataset {src.get('dataset') or '-'}, run {src.get('run_id') or '-'}"),
    ]
    if data := info.get("data"):
        where = data.get("data", {})
        origin = where.get("uri") or where.get("files") or where.get("run_input") or where.get("dataset") or "-"
        lines.append(f"  data       {origin}; split: {where.get('split', {}).get('method', '-')}; "
                     f"task {data.get('task', '-')} ({data.get('task_reason', '-')}), output {data.get('output', '-')}")
    print("\n".join(lines))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from modelpress.registry.promotion import promote
    from modelpress.registry.store import connect
    from modelpress.registry.uris import parse_model_uri

    ref = parse_model_uri(args.variant)
    if ref.version is None:
        raise ModelpressError(f"{args.variant}: promote needs a version", "use models:/<variant>/<version>")
    move = promote(connect(), ref.name, ref.version, args.alias)
    if move.status == "UNCHANGED":
        print(f"{move.model}@{move.alias} already points at v{move.to_version}; nothing moved")
        return 0
    print(f"{move.model}@{move.alias}: {('v' + move.from_version) if move.from_version else 'unset'} -> v{move.to_version}"
          f" (recorded as run {move.run_id})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from modelpress.registry.promotion import rollback
    from modelpress.registry.readback import parse_variant_name
    from modelpress.registry.store import connect

    move = rollback(connect(), parse_variant_name(args.variant), args.alias)
    print(f"{move.model}@{move.alias}: v{move.from_version} -> v{move.to_version} (rolled back; run {move.run_id})")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    import datetime as dt
    import json

    from modelpress.registry.promotion import history
    from modelpress.registry.readback import parse_variant_name
    from modelpress.registry.store import connect

    moves = history(connect(), parse_variant_name(args.variant), args.alias)
    if args.json:
        print(json.dumps([m.to_dict() for m in moves], indent=2))
        return 0
    table = [[dt.datetime.fromtimestamp(m.time_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S"), m.alias,
              m.action, f"v{m.from_version}" if m.from_version else "unset", f"v{m.to_version}", m.status]
             for m in moves]
    print(_grid(["time (UTC)", "alias", "action", "from", "to", "status"], table) if moves else "no alias moves recorded")
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    from modelpress.pipelines import cluster

    target = cluster.cluster_from(args.host, args.token)
    recipe = _load_recipe(args.recipe)
    uri = cluster.check_tracking_uri(args.tracking_uri)
    out = cluster.submit(target, recipe, uri, args.experiment, args.run_name, force=args.force)
    print(f"submitted run {out['run_id']} to {out['host']} (experiment {args.experiment})")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from modelpress.pipelines import cluster
    from modelpress.pipelines.cron import normalize_cron

    normalize_cron(args.cron)  # a bad expression stops here, before anything is read or sent
    target = cluster.cluster_from(args.host, args.token)
    recipe = _load_recipe(args.recipe)
    uri = cluster.check_tracking_uri(args.tracking_uri)
    out = cluster.schedule(target, recipe, uri, args.experiment, args.name, args.cron, args.max_concurrency)
    what = f"replaced {', '.join(out['replaced'])}" if out["replaced"] else "new"
    print(f"recurring run {out['recurring_run_id']} '{args.name}' on {out['host']}: cron '{out['cron']}', "
          f"max concurrency {args.max_concurrency}, no catch-up ({what})")
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    from modelpress.components.image import IMAGE

    if args.action is None:
        print(IMAGE)  # what every compiled component runs in
        return 0
    from modelpress import image_build

    if args.action == "wheelhouse":
        if not args.dir:
            raise ModelpressError("image wheelhouse needs a folder", "modelpress image wheelhouse DIR")
        print(image_build.make_wheelhouse(Path(args.dir), _say))
        return 0
    wheelhouse = Path(args.wheelhouse) if args.wheelhouse else None
    print(image_build.build_image(args.tag or IMAGE, args.base_image, wheelhouse, _say))
    return 0


def _grid(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, rows)])


def _load_recipe(path: str | None):
    from modelpress.pipelines.recipe import load_recipe

    return load_recipe(path)


def cmd_train_demo(args: argparse.Namespace) -> int:
    from modelpress.demo import train_and_register
    from modelpress.registry.names import check_alias, check_model_name
    from modelpress.registry.store import connect

    name = check_model_name(args.name or args.architecture)  # before the training, not after it
    train_and_register(connect(), name, check_alias(args.alias), args.architecture)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from modelpress.demo import DEMO_ALIAS, DEMO_MODEL, existing_demo, train_and_register
    from modelpress.registry.store import connect, store_lock

    client = connect()
    with store_lock("demo"):  # demos started together: the first trains, the others find its model
        ref = None if args.retrain else existing_demo(client, DEMO_MODEL, DEMO_ALIAS)
        if ref is None:
            train_and_register(client)
        else:
            _say(f"using the registered demo model {ref.version_uri} (@{DEMO_ALIAS}); --retrain trains anew")
    args.source = f"models:/{DEMO_MODEL}@{DEMO_ALIAS}"
    args.recipe = None
    args.data = None
    args.trust_pickled_source = False  # the demo model is modelpress's own, never a pickle
    # The demo tunes: the catalog defaults are rarely the fastest INT8 on a given CPU.
    # A target that fails only the default latency gate is an answer the demo explains, not an error.
    return cmd_run(args, overrides={"quantize": {"tune": {}}}, explained_is_answer=True)


def _explain_latency(recipe: Any, verdicts: list[dict]) -> list[dict]:
    """Say why a target failed only on the default latency gate, and what the user can do; those verdicts."""
    from modelpress.validators.gates import latency_guard

    explained = []
    for v in verdicts:
        guard = latency_guard(v["target"], recipe.objective, recipe.latency_batch())
        task = v.get("evaluation", {}).get("task", "classification")
        failed = [r for r in v.get("results", []) if not r["passed"]]
        if guard is None or guard not in recipe.active_gates(task, v["target"]) \
                or [r["metric"] for r in failed] != [guard.metric]:
            continue
        ratio = failed[0]["measured"]
        _say(f"{v['target']}: no variant registered: on this CPU the INT8 variant runs at {ratio:.2f}x its FP32 "
             f"source's latency at batch {recipe.latency_batch()}, and the objective is latency. Quantize/dequantize "
             "overhead outweighs the integer kernels on small models. For the smallest file that passes the other "
             "gates, rerun with --objective size (recipe: `objective: size`)"
             + ("" if recipe.quantize.tune is not None else "; `quantize: {tune: {}}` searches for a faster one"))
        explained.append(v)
    return explained


def cmd_run(args: argparse.Namespace, overrides: dict | None = None, explained_is_answer: bool = False) -> int:
    from modelpress.core.dburl import redact
    from modelpress.pipelines.local import preflight, run_local, source_role
    from modelpress.pipelines.recipe import load_recipe
    from modelpress.registry.source import SourceRef
    from modelpress.registry.store import connect, home
    from modelpress.registry.variants import alias_phrase, find_variant, variant_key, variant_name

    trust = {"trust_pickled_source": True} if args.trust_pickled_source else {}
    flags = {**(overrides or {}), **trust, "objective": args.objective}
    recipe = load_recipe(args.recipe, source=args.source, target=args.target, **flags)
    if args.data:  # the flag names the file; the recipe's other data keys (label, inputs, split) still apply
        recipe = load_recipe(args.recipe, source=args.source, target=args.target, **flags,
                             data={**recipe.data.model_dump(exclude={"uri", "train", "val", "test", "run_input"}),
                                   "uri": args.data})
    client = connect()  # checks the URI (a bad or dead store is one line) and creates a fresh store's schema once
    uri = client.tracking_uri
    _say(f"registry: {redact(uri)}")
    # A missing model or alias fails here; a corrupt file fails in the first tasks, before any compute.
    ref = preflight(client, recipe, uri)
    _say(f"{(source_role(recipe) or 'source').split()[-1]}: {recipe.source} -> {ref.version_uri}; "
         f"target{'s' if len(recipe.targets) > 1 else ''}: {', '.join(recipe.targets)}")
    _say(f"running the pipeline with kfp.local (one {'container' if args.docker else 'subprocess'} per step):")
    run = run_local(recipe, uri, home() / "runs", force=args.force, verbose=args.verbose, docker=args.docker,
                    quiet=args.quiet)

    for found in run.registered:  # skipped inside the pipeline: the answer is already in the registry
        m, at = found["metrics"], f"models:/{found['name']}/{found['version']}"
        if "size_ratio" in m:
            alias = alias_phrase(found["alias"], found["version"], found["alias_on"])
            print(f"{at} {alias}: {_quality(m)} ({_quality_change(m)}), size {m['size_ratio']:.2f}x of "
                  f"source; `modelpress lineage {at}` for the rest")
    if not run.verdicts:
        return 0
    pinned = SourceRef(**run.source)
    run.verdicts.sort(key=lambda v: recipe.targets.index(v["target"]))  # the recipe's order
    rows = []
    for verdict in run.verdicts:
        name = variant_name(pinned.name, verdict["target"])
        mv = find_variant(client, name, variant_key(pinned, recipe.config_hash(), verdict["target"])) \
            if verdict["passed"] else None
        registered = (_at_alias(client, name, str(mv.version), recipe.variant.alias) if mv else "not found") \
            if verdict["passed"] else None
        rows.append((name, verdict, registered))
    print(_table(rows), flush=True)
    _say(f"task logs: {run.log_path}")
    if (report := run.pareto_report()) is not None:
        _say(f"report (accuracy, latency, size; Pareto front): {report}")
    for verdict in run.verdicts:
        if (report := run.report_path(verdict)) is not None:
            _say(f"gate report{'' if len(run.verdicts) == 1 else ' (' + verdict['target'] + ')'}: {report}")
    failed = [v for v in run.verdicts if not v["passed"]]
    explained = _explain_latency(recipe, failed)
    if explained_is_answer and len(explained) == len(failed):
        return 0
    if len(run.verdicts) == 1 and failed:
        raise GateFailed(f"gate failed, nothing registered: {failed[0]['reason']}")
    if failed:
        raise GateFailed(f"gate failed on {len(failed)} of {len(run.verdicts)} targets, nothing registered for "
                         + "; ".join(f"{v['target']}: {v['reason']}" for v in failed))
    return 0


def _at_alias(client: Any, name: str, version: str, alias: str) -> str:
    from modelpress.registry.aliases import get_alias
    from modelpress.registry.variants import alias_phrase

    return f"models:/{name}/{version} {alias_phrase(alias, version, get_alias(client, name, alias))}"


# The metric each task's result line leads with, and how it reads.
_HEADLINE = {"classification": ("accuracy", "accuracy", lambda v: f"{v * 100:.2f}%"),
             "regression": ("rmse", "RMSE", lambda v: f"{v:.4g}"),
             "embedding": ("cosine_mean", "cosine to source", lambda v: f"{v:.4f}")}


def _size(n: float) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _quality(m: dict[str, float]) -> str:
    """A variant's headline metric from its tags, whatever its task."""
    for key, label, fmt in _HEADLINE.values():
        if key in m:
            return f"{label} {fmt(m[key])}"
    return "-"


def _quality_change(m: dict[str, float]) -> str:
    if "accuracy_delta" in m:
        return f"{m['accuracy_delta'] * 100:+.2f} pt"
    if "rmse" in m and m.get("source_rmse"):
        return f"{(m['rmse'] / m['source_rmse'] - 1) * 100:+.1f}% RMSE"
    if "cosine_min" in m:
        return f"min {m['cosine_min']:.4f}"
    return "-"


def _table(rows: list[tuple[str, dict, str | None]]) -> str:
    """One row per target's variant, ratios against the source measured in the same run."""
    lines = [_row(name, verdict, registered) for name, verdict, registered in rows]
    first = rows[0][1]["evaluation"]
    task = first.get("task", "classification")
    key, label, fmt = _HEADLINE[task]
    source = first["source"]
    batches = sorted(int(k.removeprefix("latency_p50_ms_b")) for k in source if k.startswith("latency_p50_ms_b"))
    src_latency = ", ".join(f"b{b} {source[f'latency_p50_ms_b{b}']:.3f} ms" for b in batches)
    own = f", {label} {fmt(source[key])}" if task != "embedding" else ""
    header = ["variant", "target", "size vs source", label if task == "embedding" else f"{label} vs source",
              "latency p50 vs source", "gate", "registry URI"]
    return (f"source: {_size(source['size_bytes'])}{own}, task {task}, "
            f"latency p50 {src_latency or 'not measured'} ({first['environment'].get('latency_provider', '-')})\n"
            + _grid(header, lines))


def _row(variant: str, verdict: dict, registered: str | None) -> list[str]:
    ev = verdict["evaluation"]
    cand, source, comp = ev["candidate"], ev["source"], ev["comparison"]
    batches = sorted(int(k.removeprefix("latency_ratio_b")) for k in comp if k.startswith("latency_ratio_b"))
    latency = ", ".join(f"b{b} {comp[f'latency_ratio_b{b}']:.2f}x" for b in batches)
    packed = ev.get("technique", {}).get("deep_compress_compressed_bytes")
    if packed is not None:  # the registered .mpdc file, not its decoded ONNX, is what ships
        size = f"{_size(packed)} .mpdc ({source['size_bytes'] / packed:.1f}x smaller)"
    else:
        size = f"{_size(cand['size_bytes'])} ({comp['size_ratio']:.2f}x)"
    task = ev.get("task", "classification")
    key, _, fmt = _HEADLINE[task]
    if task == "classification":
        quality = f"{fmt(cand[key])} ({comp['accuracy_delta'] * 100:+.2f} pt)"
    elif task == "regression":
        quality = f"{fmt(cand[key])} ({(cand[key] / source[key] - 1) * 100:+.1f}%)" if source[key] else fmt(cand[key])
    else:
        quality = f"mean {fmt(cand[key])}, min {fmt(cand['cosine_min'])}"
    return [
        variant,
        verdict["target"],
        size,
        quality,
        latency or ev["environment"].get("latency_unavailable", "not measured"),
        "PASSED" if verdict["passed"] else "FAILED",
        registered or "- (not registered)",
    ]


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelpress",
        description="Compress models from the MLflow registry with Kubeflow Pipelines components, "
        "gate them, and register one variant per hardware target.",
        epilog="Registry: MLFLOW_TRACKING_URI, or an embedded store in ./.modelpress/ when unset.",
    )
    p.add_argument("--version", action="version", version=f"modelpress {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add_run_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--target", help="hardware target (see `modelpress targets`); default cpu-x86-int8")
        loud = sp.add_mutually_exclusive_group()
        loud.add_argument("--verbose", "-v", action="store_true", help="stream every task's full log")
        loud.add_argument("--quiet", "-q", action="store_true", help="no progress lines, only the result table "
                          "and errors")
        sp.add_argument("--force", action="store_true", help="run even when this source version, recipe and "
                        "target already have a registered variant (the registry still keeps one)")
        sp.add_argument("--docker", action="store_true", help="run every task in the component image "
                        "(`modelpress image`) with kfp.local.DockerRunner; needs an MLflow server")
        sp.add_argument("--objective", choices=("latency", "size"),
                        help="what the variant is for (recipe key objective; default latency: a CPU INT8 variant "
                        "slower than its source fails its gates; size: the smallest file that passes)")

    d = sub.add_parser(
        "demo",
        help="train and register the demo CNN if needed, then compress it end to end",
        description="Train the digits CNN and register it as models:/digits-cnn@champion (once), "
        "then run the compression pipeline locally and print the result table.",
    )
    d.add_argument("--retrain", action="store_true", help="train and register a new source version")
    add_run_options(d)
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser(
        "run",
        help="run the compression pipeline locally (kfp.local) for one source and target",
        description="Resolve the source in the registry, export, quantize, evaluate, gate, and "
        "register the variant only if every gate passes. Exits 1 when a gate fails.",
    )
    r.add_argument("--recipe", help="YAML or JSON recipe; see `modelpress config-schema`")
    r.add_argument("--source", help="source model URI, e.g. models:/digits-cnn@champion")
    r.add_argument("--data", help="data file for this run: a path or an MLflow artifact URI (runs:/<run>/data.parquet); "
                   "replaces the recipe's data location (default: the source's modelpress.dataset tag)")
    r.add_argument("--trust-pickled-source", action="store_true",
                   help="load a source logged as a pickled torch module (mlflow.pytorch before MLflow 3); "
                   "unpickling runs code from the registry, so only for models you trust (recorded on the "
                   "variant; recipe key trust_pickled_source)")
    add_run_options(r)
    r.set_defaults(func=cmd_run)

    t = sub.add_parser(
        "train-demo",
        help="train a digits model (the demo CNN by default) and register a new version with an alias",
        description="Train a seeded digits model and register it as a new version.",
    )
    t.add_argument("--name", help="registered model name (default: the architecture's name)")
    t.add_argument("--alias", default="champion", help="alias to set (default champion)")
    t.add_argument("--architecture", default="digits-cnn", choices=["digits-cnn", "lenet5", "mlp-300-100"],
                   help="digits-cnn (the demo's), lenet5 (LeNet-5's widths, 5x5 kernels) or mlp-300-100 "
                   "(LeNet-300-100's widths); default digits-cnn")
    t.set_defaults(func=cmd_train_demo)

    c = sub.add_parser(
        "compile",
        help="write the pipeline as KFP IR YAML for a Kubeflow cluster",
        description="Compile the compression pipeline to KFP IR YAML, which kfp.Client uploads unchanged.",
    )
    c.add_argument("--output", "-o", default="pipeline.yaml", help="output file (default pipeline.yaml)")
    c.add_argument("--all", metavar="DIR", help="write the pipeline and every component into DIR instead")
    c.add_argument("--recipe", help="validate this recipe (gates included) and make it the pipeline's default")
    c.set_defaults(func=cmd_compile)

    m = sub.add_parser(
        "metrics",
        help="list the metrics a recipe's run produces (what gates may name)",
        description="List every metric the pipeline will produce for a recipe; gated ones are marked.",
    )
    m.add_argument("--recipe", help="YAML or JSON recipe (default: the built-in defaults)")
    m.set_defaults(func=cmd_metrics)

    v = sub.add_parser(
        "variants",
        help="list every registered variant of a source model, with its metrics",
        description="List the variants of a source model over all targets (only versions with full lineage).",
    )
    v.add_argument("model", help="source model name, e.g. digits-cnn")
    v.add_argument("--json", action="store_true", help="print JSON instead of a table")
    v.set_defaults(func=cmd_variants)

    li = sub.add_parser(
        "lineage",
        help="show a variant's chain back to its source",
        description="Show where a variant came from: source version, dataset, techniques, runs, recipe hash.",
    )
    li.add_argument("variant", help="variant URI: models:/<source>.<target>/<version> or @<alias>")
    li.add_argument("--json", action="store_true", help="print JSON")
    li.set_defaults(func=cmd_lineage)

    pr = sub.add_parser(
        "promote",
        help="point an alias at a variant version, only if its gates passed",
        description="Move an alias (e.g. production) to a variant version whose gate verdict passed; "
        "the move is recorded and can be rolled back.",
    )
    pr.add_argument("variant", help="models:/<source>.<target>/<version>")
    pr.add_argument("--alias", default="production", help="alias to move (default production)")
    pr.set_defaults(func=cmd_promote)

    rb = sub.add_parser(
        "rollback",
        help="point an alias back at the version it held before its last move",
        description="Undo the alias's last recorded move (itself recorded, so a second rollback undoes the first).",
    )
    rb.add_argument("variant", help="variant model name (<source>.<target>) or a models:/ URI of it")
    rb.add_argument("--alias", default="production", help="alias to roll back (default production)")
    rb.set_defaults(func=cmd_rollback)

    hi = sub.add_parser(
        "history",
        help="list recorded alias moves of a variant model",
        description="Every promote and rollback on a variant model, newest first.",
    )
    hi.add_argument("variant", help="variant model name (<source>.<target>) or a models:/ URI of it")
    hi.add_argument("--alias", help="only this alias")
    hi.add_argument("--json", action="store_true", help="print JSON")
    hi.set_defaults(func=cmd_history)

    def add_cluster_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--recipe", help="YAML or JSON recipe (validated, gates included, before anything is sent)")
        sp.add_argument("--host", help="Kubeflow Pipelines URL (default: $KF_PIPELINES_ENDPOINT)")
        sp.add_argument("--token", help="bearer token (default: $KF_PIPELINES_TOKEN)")
        sp.add_argument("--tracking-uri", help="MLflow server the cluster's tasks use (default: $MLFLOW_TRACKING_URI, "
                        "if it is http(s))")
        sp.add_argument("--experiment", default="modelpress", help="KFP experiment (default modelpress)")

    su = sub.add_parser(
        "submit",
        help="run the compiled pipeline once on a Kubeflow Pipelines host",
        description="Compile the pipeline with the recipe and create one run on the host "
        "(kfp.Client.create_run_from_pipeline_package).",
    )
    add_cluster_options(su)
    su.add_argument("--run-name", help="run name (default: modelpress <source> for <target>)")
    su.add_argument("--force", action="store_true", help="build every target even where its variant is registered "
                    "already (by default the run's first task finds it and nothing else runs)")
    su.set_defaults(func=cmd_submit)

    sc = sub.add_parser(
        "schedule",
        help="create or replace a recurring run on a Kubeflow Pipelines host",
        description="Compile the pipeline with the recipe and create a recurring run with a cron schedule, "
        "max concurrency and no catch-up; one of the same name is replaced.",
    )
    add_cluster_options(sc)
    sc.add_argument("--cron", required=True, help="six fields (sec min hour day month weekday) or five; "
                    "e.g. '0 0 2 * * *'")
    sc.add_argument("--name", default="modelpress-nightly", help="recurring run name (default modelpress-nightly)")
    sc.add_argument("--max-concurrency", type=int, default=1, choices=range(1, 11), metavar="1-10",
                    help="runs at once (default 1)")
    sc.set_defaults(func=cmd_schedule)

    im = sub.add_parser(
        "image",
        help="print the component image tag; build it (`image build`) or its wheelhouse",
        description="Without an action: print the image every compiled component runs in. "
        "`image wheelhouse DIR`: download every dependency wheel the image needs (needs the index). "
        "`image build [--wheelhouse DIR]`: build docker/Dockerfile with the Docker SDK, offline with a wheelhouse.",
    )
    im.add_argument("action", nargs="?", choices=["build", "wheelhouse"], help="build, or wheelhouse DIR")
    im.add_argument("dir", nargs="?", help="wheelhouse folder to fill (for `wheelhouse`)")
    im.add_argument("--wheelhouse", help="build from this folder of wheels, with no network")
    im.add_argument("--base-image", default="python:3.11-slim", help="BASE_IMAGE build arg (default python:3.11-slim)")
    im.add_argument("--tag", help="image tag (default: the one compiled components use)")
    im.set_defaults(func=cmd_image)

    g = sub.add_parser("targets", help="list known hardware targets", description="List hardware targets.")
    g.set_defaults(func=cmd_targets)

    s = sub.add_parser(
        "config-schema",
        help="print the recipe's JSON schema",
        description="Print the JSON schema of a recipe: every key, its bounds and its description.",
    )
    s.set_defaults(func=cmd_config_schema)
    return p


def main(argv: list[str] | None = None) -> int:
    import os

    args = build_parser().parse_args(argv)
    try:
        from modelpress.core.telemetry import opt_out
        from modelpress.registry.store import home

        # torch keeps its compile cache in the temporary folder by default; keep it with the store instead.
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(home() / "cache" / "torchinductor"))
        opt_out()  # before any task starts, so they inherit it
        return args.func(args)
    except GateFailed as exc:
        _say(f"modelpress: {exc}")
        return EXIT_GATE_FAILED
    except ModelpressError as exc:
        _say(f"modelpress: error: {exc}")
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        _say("modelpress: interrupted")
        return 130
    except BrokenPipeError:  # e.g. `modelpress targets | head`: the reader left, not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0

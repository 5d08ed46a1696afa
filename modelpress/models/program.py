"""Any torch architecture between pipeline steps: a `torch.export` program, read without unpickling.

A `.pt2` archive (what `torch.export.save` and MLflow 3's `mlflow.pytorch.log_model` write)
holds the graph as JSON and the weights as raw bytes, but it may also hold `torch.save`
pickles (example inputs, some constants), and `torch.export.load` falls back to a full
unpickler when the safe one refuses a record. So every record is checked first, without
running it: JSON, raw tensor bytes, short text, or a pickle whose opcodes reference
only tensor-rebuilding globals. Anything else (an AOTInductor library, a crafted pickle)
is refused, and nothing is loaded.

The loaded program becomes an ordinary trainable module (`as_module`): each aten
`linear`, `conv2d`, `batch_norm`, `embedding` and `layer_norm` call becomes a real
`nn.Linear`, `nn.Conv2d`, ... holding the same weights, so pruning, QAT, weight sharing
and distillation see layers as they do in any eager model. `save_program` exports it back
with a dynamic batch axis.
"""

from __future__ import annotations

import io
import json
import pickletools
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelpress.errors import ModelpressError

if TYPE_CHECKING:
    import torch
    from torch import fx

    from modelpress.core.artifacts import TensorSpec

# Globals a pickle of plain tensors references (torch.save of a tensor or a dict of tensors).
_TENSOR_GLOBALS = frozenset({
    "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_parameter",
    "torch._tensor._rebuild_from_type_v2", "torch.Tensor", "torch.nn.parameter.Parameter",
    "collections.OrderedDict", "torch.Size", "torch.storage.UntypedStorage", "builtins.tuple", "builtins.list",
    "builtins.dict", "builtins.set",
} | {f"torch.{t}Storage" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char",
                                    "Byte", "Bool")} | {f"torch.{t}" for t in (
    "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool")})
_TEXT_RECORDS = frozenset({"archive_format", "archive_version", "byteorder", "version", "serialization_id",
                           ".format_version", ".storage_alignment"})
_STRINGS = frozenset({"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
                      "BINUNICODE8"})
FIX_RELOG = "log the model again with mlflow.pytorch.log_model(..., serialization_format='pt2') from plain torch"


def pickle_globals(data: bytes) -> set[str]:
    """The `module.name` globals a pickle stream references, read from its opcodes (nothing runs).

    Protocol 4 names a global by pushing two strings (possibly fetched back from the memo)
    before STACK_GLOBAL; a name that is not such a literal is an error, so callers refuse it.
    """
    found: set[str] = set()
    stack: list[str | None] = []  # strings pushed lately (None: anything else)
    memo: dict[int, str | None] = {}
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name == "GLOBAL":
            module, attr = str(arg).split(" ", 1)
            found.add(f"{module}.{attr}")
            stack.append(None)
        elif name == "STACK_GLOBAL":
            if len(stack) < 2 or stack[-1] is None or stack[-2] is None:
                raise ValueError("a STACK_GLOBAL whose name is computed")
            found.add(f"{stack[-2]}.{stack[-1]}")
            stack[-2:] = [None]
        elif name in _STRINGS:
            stack.append(str(arg))
        elif name == "MEMOIZE":
            memo[len(memo)] = stack[-1] if stack else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[int(arg)] = stack[-1] if stack else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(int(arg)))
        else:
            stack.append(None)
    return found


def _raw_tensor_records(records: dict[str, bytes]) -> set[str]:
    """Records the archive's configs declare as raw tensor bytes (never unpickled)."""
    raw = set()
    for name, content in records.items():
        if not name.endswith("_config.json"):
            continue
        try:
            entries = json.loads(content).get("config", {})
        except (ValueError, AttributeError):
            continue
        folder = name.rsplit("/", 1)[0]
        for entry in entries.values() if isinstance(entries, dict) else ():
            if isinstance(entry, dict) and entry.get("use_pickle") is False and "path_name" in entry:
                raw.add(f"{folder}/{entry['path_name']}")
    return raw


def _is_tensor_pickle(content: bytes) -> str | None:
    """None if `content` is a torch.save archive of plain tensors; else what is wrong with it."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as inner:
            pickles = [n for n in inner.namelist() if n.endswith(".pkl")]
            if not pickles:
                return "not JSON, text, raw tensor bytes or a tensor pickle"
            for member in pickles:
                extra = pickle_globals(inner.read(member)) - _TENSOR_GLOBALS
                if extra:
                    return f"a pickle that references {sorted(extra)[0]}"
    except (zipfile.BadZipFile, ValueError, EOFError) as exc:
        return f"unreadable ({type(exc).__name__})"
    return None


def check_pickle_free(path: str | Path, what: str) -> None:
    """Refuse a .pt2 archive unless every record is data: loading it then runs no code from it."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelpressError(f"{what}: not a torch.export archive ({type(exc).__name__})", FIX_RELOG) from None
    with archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        configs = {i.filename: archive.read(i) for i in infos if i.filename.endswith("_config.json")}
        raw = _raw_tensor_records(configs)
        for info in infos:
            name = info.filename
            if name in raw:
                continue
            content = archive.read(info)
            if name.endswith(".json"):
                try:
                    json.loads(content)
                    continue
                except ValueError:
                    problem = "a .json record that is not JSON"
            elif name.rsplit("/", 1)[-1] in _TEXT_RECORDS and len(content) < 256 and content.isascii():
                continue
            else:
                problem = _is_tensor_pickle(content)
                if problem is None:
                    continue
            raise ModelpressError(
                f"{what}: record {name!r} of the torch.export archive is {problem}; modelpress loads only "
                "archives made of data, so nothing in it runs", FIX_RELOG,
            )


def load_program(path: str | Path, what: str) -> Any:
    """The ExportedProgram in a .pt2 archive, checked to be pickle-free first."""
    import torch

    check_pickle_free(path, what)
    try:
        return torch.export.load(str(path))
    except Exception as exc:  # a truncated or inconsistent archive
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelpressError(f"{what}: cannot load the torch.export program ({reason[:200]})", FIX_RELOG) from None


# ---- the program as a trainable module -------------------------------------------------------------


def _layer(node: fx.Node, tensor: Any) -> tuple[Any, list[Any], dict[str, fx.Node | None]] | None:
    """(new module, its call arguments, {its parameter name: get_attr node}) for a layer op, else None."""
    import torch
    from torch import nn

    aten = torch.ops.aten
    a = list(node.args)

    def opt(i: int, default: Any) -> Any:
        return a[i] if len(a) > i else default

    t = node.target
    if t == aten.linear.default:
        w = tensor(a[1])
        m = nn.Linear(w.shape[1], w.shape[0], bias=opt(2, None) is not None)
        return m, [a[0]], {"weight": a[1], "bias": opt(2, None)}
    if t == aten.conv2d.default:
        w = tensor(a[1])
        groups = opt(6, 1)
        m = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), stride=opt(3, 1), padding=opt(4, 0),
                      dilation=opt(5, 1), groups=groups, bias=opt(2, None) is not None)
        return m, [a[0]], {"weight": a[1], "bias": opt(2, None)}
    if t == aten.batch_norm.default and opt(5, False) is False:
        rank = node.args[0].meta["val"].dim() if "val" in node.args[0].meta else 4
        size = tensor(a[3]).shape[0]
        kind = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}.get(rank)
        if kind is None or a[3] is None or a[4] is None:
            return None
        m = kind(size, eps=opt(7, 1e-5), momentum=opt(6, 0.1), affine=a[1] is not None)
        return m, [a[0]], {"weight": a[1], "bias": a[2], "running_mean": a[3], "running_var": a[4]}
    if t == aten.embedding.default:
        w = tensor(a[0])
        pad = opt(2, -1)
        m = nn.Embedding(w.shape[0], w.shape[1], padding_idx=None if pad == -1 else pad)
        return m, [a[1]], {"weight": a[0]}
    if t == aten.layer_norm.default:
        m = nn.LayerNorm(tuple(a[1]), eps=opt(4, 1e-5), elementwise_affine=opt(2, None) is not None,
                         bias=opt(3, None) is not None)
        return m, [a[0]], {"weight": opt(2, None), "bias": opt(3, None)}
    return None


def _module_name(taken: set[str], attr_nodes: dict[str, Any]) -> str:
    """`encoder.0` for weights at `encoder.0.weight`, as a flat, unique submodule name."""
    first = next(n for n in attr_nodes.values() if n is not None)
    base = str(first.target).rsplit(".", 1)[0] if "." in str(first.target) else str(first.target)
    base = base.replace(".", "_") or "layer"
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}_{i}"
    taken.add(name)
    return name


def as_module(program: Any, batch: int | None = None) -> fx.GraphModule:
    """A plain, trainable GraphModule computing what `program` (an ExportedProgram) computes.

    Layer ops become real torch layers (named after where their weights lived, dots as
    underscores). Shape guards are dropped; when the program fixed the batch axis at
    `batch` (an input example of that many rows), `view`/`reshape` sizes that repeat it are
    replaced by the input's real batch size.
    """
    from torch import fx, nn

    gm = program.module()
    graph = gm.graph
    graph.owning_module = None  # the new layers live on `root`, not on the program's module
    root = nn.Module()
    taken: set[str] = set()

    def tensor(node: Any) -> Any:
        return None if node is None else gm.get_parameter(node.target) if _is_param(gm, node.target) \
            else gm.get_buffer(node.target)

    for node in list(graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("_guards"):
            graph.erase_node(node)
            continue
        if node.op != "call_function":
            continue
        made = _layer(node, tensor)
        if made is None or any(n is not None and n.op != "get_attr" for n in made[2].values()):
            continue
        module, call_args, attrs = made
        for pname, attr in attrs.items():
            value = tensor(attr)
            if value is None:
                continue
            if isinstance(getattr(module, pname, None), nn.Parameter) or pname in ("weight", "bias"):
                setattr(module, pname, value if isinstance(value, nn.Parameter) else nn.Parameter(value.detach()))
            else:
                setattr(module, pname, value.detach().clone())
        name = _module_name(taken, attrs)
        root.add_module(name, module)
        with graph.inserting_before(node):
            new = graph.call_module(name, tuple(call_args))
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        graph.erase_node(node)
    # Weights no layer took (a custom op's, a bare parameter) stay where they were.
    for node in graph.nodes:
        if node.op == "get_attr" and node.users:
            _copy_attr(gm, root, str(node.target))
    for node in [n for n in graph.nodes if n.op == "get_attr" and not n.users]:
        graph.erase_node(node)
    if batch is not None:
        _free_batch(graph, batch)
    _traceable_sizes(graph)
    graph.lint()
    out = fx.GraphModule(root, graph)
    out.recompile()
    return out.eval()


def _is_param(gm: Any, target: str) -> bool:
    try:
        gm.get_parameter(target)
        return True
    except AttributeError:
        return False


def _copy_attr(src: Any, dst: Any, target: str) -> None:
    """Copy `a.b.c` from src onto dst under the same path, keeping parameter vs buffer."""
    from torch import nn

    *path, leaf = target.split(".")
    s, d = src, dst
    for part in path:
        s = getattr(s, part)
        if not hasattr(d, part):
            d.add_module(part, nn.Module())
        d = getattr(d, part)
    value = getattr(s, leaf)
    if isinstance(value, nn.Parameter):
        d.register_parameter(leaf, value)
    elif hasattr(value, "shape"):
        d.register_buffer(leaf, value)
    else:
        setattr(d, leaf, value)


def _free_batch(graph: fx.Graph, batch: int) -> None:
    """Reshapes that spelled out the example's batch size take the input's batch size instead."""
    import torch

    aten = torch.ops.aten
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in (aten.view.default, aten.reshape.default):
            continue
        src, shape = node.args[0], list(node.args[1])
        val = src.meta.get("val") if hasattr(src, "meta") else None
        if shape and shape[0] == batch and val is not None and val.dim() > 0 and val.shape[0] == batch:
            with graph.inserting_before(node):
                size = graph.call_method("size", (src, 0))
            node.args = (src, [size, *shape[1:]])


def _traceable_sizes(graph: fx.Graph) -> None:
    """Sizes read from tensors stay symbolic through the ONNX (TorchScript) exporter, which turns
    `aten.sym_size.int` and the size lists of aten `view`/`reshape` calls into the example's
    constants: as `x.size(i)` and `x.reshape(...)` method calls they are recorded as graph ops."""
    import torch

    aten = torch.ops.aten
    methods = {aten.sym_size.int: "size", aten.view.default: "reshape", aten.reshape.default: "reshape",
               aten._unsafe_view.default: "reshape"}
    for node in list(graph.nodes):
        method = methods.get(node.target) if node.op == "call_function" else None
        if method is None:
            continue
        args = (node.args[0], *node.args[1]) if method == "reshape" else tuple(node.args)
        with graph.inserting_before(node):
            new = graph.call_method(method, args)
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        graph.erase_node(node)


def examples(inputs: tuple[TensorSpec, ...], batch: int = 2, length: int = 8) -> tuple[Any, ...]:
    """Zero inputs matching the specs; every dynamic axis (batch included) gets a size above 1."""
    import torch

    return tuple(
        torch.zeros((batch, *[d if isinstance(d, int) else length for d in spec.shape]),
                    dtype=getattr(torch, spec.dtype))
        for spec in inputs
    )


def dynamic_shapes(inputs: tuple[TensorSpec, ...]) -> tuple[dict[int, Any], ...]:
    """Batch (axis 0) and every named axis dynamic; axes with one name share one `Dim`."""
    import torch

    dims: dict[str, Any] = {"batch": torch.export.Dim("batch")}
    out = []
    for spec in inputs:
        axes = {0: dims["batch"]}
        for i, d in enumerate(spec.shape, start=1):
            if isinstance(d, str):
                key = "".join(c if c.isalnum() else "_" for c in d) or f"axis{i}"
                key = key if key[0].isalpha() else f"d_{key}"
                axes[i] = dims.setdefault(key, torch.export.Dim(key))
        out.append(axes)
    return tuple(out)


def export(module: torch.nn.Module, inputs: tuple[TensorSpec, ...], what: str) -> Any:
    """`module` as an ExportedProgram with a dynamic batch axis (and the inputs' named axes)."""
    import torch

    module.eval()
    try:
        return torch.export.export(module, examples(inputs), dynamic_shapes=dynamic_shapes(inputs))
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelpressError(
            f"{what}: torch.export cannot export the model with a dynamic batch axis ({reason[:240]})",
            "make the forward independent of the batch size (x.flatten(1), not x.view(64, -1)), then log it again",
        ) from None


def save_program(module: torch.nn.Module, inputs: tuple[TensorSpec, ...], path: str | Path, what: str) -> Any:
    """Export and write a .pt2 archive (its example inputs are zeros, a pickle of plain tensors)."""
    import torch

    program = export(module, inputs, what)
    torch.export.save(program, str(path))
    return program


def io_of(program: Any) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Inputs and outputs of a program as TensorSpecs: names from the graph, dynamic axes named."""
    from modelpress.core.artifacts import TensorSpec

    def spec(name: str, val: Any, kind: str) -> TensorSpec:
        dtype = str(val.dtype).removeprefix("torch.")
        if val.dim() == 0:
            raise ModelpressError(f"the program's {kind} {name!r} is a scalar, with no batch axis",
                                  "return tensors with a batch axis")
        shape = tuple(int(d) if isinstance(d, int) or str(d).isdigit() else str(d) for d in val.shape[1:])
        try:
            return TensorSpec(name=name, shape=shape, dtype=dtype)
        except ValueError:
            raise ModelpressError(f"the program's {kind} {name!r} has dtype {dtype}, which modelpress cannot feed",
                                  "take float, int or bool tensors") from None

    sig = program.graph_signature
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    inputs = tuple(spec(s.arg.name, placeholders[s.arg.name].meta["val"], "input")
                   for s in sig.input_specs if s.kind.name == "USER_INPUT")
    out_node = next(n for n in program.graph.nodes if n.op == "output")
    values = list(out_node.args[0])[-len(sig.user_outputs):] if sig.user_outputs else []
    names = ["output"] if len(values) == 1 else [f"output_{i}" for i in range(len(values))]
    outputs = tuple(spec(n, v.meta["val"], "output") for n, v in zip(names, values))
    if not inputs:
        raise ModelpressError("the program takes no tensor inputs", "export the model with its inputs")
    return inputs, outputs


def fixed_batch(program: Any) -> int | None:
    """The batch size the program's inputs are fixed at, or None when axis 0 is dynamic."""
    sig = program.graph_signature
    placeholders = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    for s in sig.input_specs:
        if s.kind.name == "USER_INPUT":
            d = placeholders[s.arg.name].meta["val"].shape[0]
            if isinstance(d, int) or str(d).isdigit():
                return int(d)
    return None


# ---- a program without its weights (deep compression stores the weights its own way) --------------


def skeleton(path: str | Path, module: torch.nn.Module) -> dict[str, Any]:
    """The .pt2 archive at `path` (exported from `module`) minus its weight bytes, as JSON.

    What is left (the graph, configs, example inputs) compresses well; `rebuild` puts the
    weights back. `order` lists the weights as the archive does, with the dtype each is stored in.
    """
    import base64

    state = module.state_dict()
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        configs = {n: z.read(n) for n in names if n.endswith("_config.json")}
        weights_cfg = next((n for n in configs if n.endswith("model_weights_config.json")), None)
        entries = json.loads(configs[weights_cfg])["config"] if weights_cfg else {}
        folder = weights_cfg.rsplit("/", 1)[0] if weights_cfg else ""
        raw = {f"{folder}/{e['path_name']}": fqn for fqn, e in entries.items() if e.get("use_pickle") is False}
        records = []
        for n in names:
            if n in raw:
                records.append({"name": n, "weight": raw[n]})
                continue
            content = z.read(n)
            try:
                records.append({"name": n, "json": _lean(json.loads(content))} if n.endswith(".json")
                               else {"name": n, "text": content.decode("ascii")})
            except (ValueError, UnicodeDecodeError):
                records.append({"name": n, "b64": base64.b64encode(content).decode()})
    order = [[fqn, str(state[fqn].dtype).removeprefix("torch."),
              [s["as_int"] for s in entries[fqn]["tensor_meta"]["sizes"]]] for fqn in raw.values()]
    return {"records": records, "order": order}


def _lean(doc: Any) -> Any:
    """A serialized graph without per-node debug metadata (stack traces, module paths): most of its bytes."""
    nodes = doc.get("graph_module", {}).get("graph", {}).get("nodes") if isinstance(doc, dict) else None
    for node in nodes or ():
        node["metadata"] = {}
    return doc


def rebuild(skel: dict[str, Any], tensors: dict[str, Any]) -> bytes:
    """The .pt2 archive's bytes, with `tensors` (by name) as its weights."""
    import base64

    import torch

    dtypes = {fqn: getattr(torch, dtype) for fqn, dtype, _ in skel["order"]}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for r in skel["records"]:
            if "weight" in r:
                t = tensors[r["weight"]].to(dtypes[r["weight"]]).contiguous()
                data = t.reshape(-1).view(torch.uint8).numpy().tobytes()
            elif "json" in r:
                data = json.dumps(r["json"]).encode()
            elif "text" in r:
                data = r["text"].encode("ascii")
            else:
                data = base64.b64decode(r["b64"])
            z.writestr(r["name"], data)
    return buf.getvalue()

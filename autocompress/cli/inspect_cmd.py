"""``autocompress inspect ARTIFACT``: an artifact's layers in model order, from its header.

Nothing is decoded and no model is built: the spec (modules, encodings, plan, provenance) and
the safetensors index (each tensor's dtype and shape) are enough.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from autocompress.cli.output import emit, escape, show_all

COLUMNS = ("layer", "type", "shape", "got", "bits", "encoding", "bytes", "share")


def tensor_bytes(path: str | os.PathLike) -> dict[str, tuple[list[int], int]]:
    """Each stored tensor's shape and bytes, read from the safetensors header only."""
    from safetensors import safe_open

    out = {}
    with safe_open(os.fspath(path), "pt") as f:
        for key in f.keys():  # noqa: SIM118  (safe_open is not a mapping)
            piece = f.get_slice(key)
            shape = list(piece.get_shape())
            count = 1
            for n in shape:
                count *= n
            out[key] = (shape, count * _itemsize(piece.get_dtype()))
    return out


def _itemsize(dtype: str) -> int:
    digits = "".join(ch for ch in dtype if ch.isdigit())
    return max(1, int(digits) // 8) if digits else 1


def layer_rows(spec: dict[str, Any], tensors: dict[str, tuple[list[int], int]]) -> list[dict]:
    """One row per module with stored state, in model order, then any other tensor groups."""
    from autocompress.viz.plans import layer_choices, plan_from_dict

    plan = plan_from_dict((spec.get("extra") or {}).get("plan"))
    got = layer_choices(plan) if plan is not None else {}
    sizes: dict[str, int] = {}
    for key, (_, size) in tensors.items():
        owner = key.rsplit(".", 1)[0] if "." in key else ""
        sizes[owner] = sizes.get(owner, 0) + size
    total = sum(sizes.values()) or 1
    order = [m["name"] for m in spec.get("modules", [])]
    order += sorted(set(sizes) - set(order))
    kinds = {m["name"]: m.get("type") or m.get("keep", "") for m in spec.get("modules", [])}
    rows = []
    for name in order:
        if name not in sizes:
            continue
        encoding = (spec.get("encodings") or {}).get(name, {})
        rows.append({"layer": name or "(top level)", "type": kinds.get(name, ""),
                     "shape": _shape(name, encoding, tensors), "got": got.get(name, ""),
                     "bits": encoding.get("bits"), "encoding": _coding(encoding),
                     "bytes": sizes[name], "share": sizes[name] / total})
    return rows


def _shape(name: str, encoding: dict, tensors: dict) -> list[int] | None:
    if "shape" in encoding:
        return list(encoding["shape"])
    weight = tensors.get(f"{name}.weight")
    return weight[0] if weight else None


def _coding(encoding: dict) -> str:
    """How a layer's weight is stored: ``fixed 8-bit``, ``huffman``, ``sparse``, ``float``."""
    if not encoding:
        return "float"
    parts = [f"{key} {value.get('coding', '')}".strip() for key, value in encoding.items()
             if isinstance(value, dict)]
    return ", ".join(parts) or "coded"


def header(path: str, spec: dict[str, Any], total: int) -> dict[str, Any]:
    """The artifact's provenance: base model, recipe, source trial, quality, input shape."""
    extra = spec.get("extra") or {}
    return {"artifact": path, "bytes": total, "format_version": spec.get("version"),
            "base": spec.get("base"), "recipe": extra.get("recipe"),
            "trial": extra.get("trial"), "metric": extra.get("metric"),
            "quality": extra.get("quality"), "input_shape": extra.get("input_shape")}


def inspect(args: argparse.Namespace) -> int:
    """Print the artifact's layers (model order) with shapes, methods, bits and bytes."""
    from autocompress.export import read_spec

    spec = read_spec(args.artifact)
    total = os.path.getsize(args.artifact)
    rows = layer_rows(spec, tensor_bytes(args.artifact))
    info = header(args.artifact, spec, total)
    emit(args.format, rows, {**info, "layers": rows}, lambda: show_all(*_table(info, rows)),
         COLUMNS)
    return 0


def _table(info: dict[str, Any], rows: list[dict]) -> list[Any]:
    from rich.table import Table

    total = info["bytes"]
    table = Table(title=escape(f"{info['artifact']}: {total:,} bytes ({total / 1024:.1f} KB)"))
    for column in COLUMNS:
        table.add_column(column, justify="right" if column in ("bits", "bytes", "share")
                         else "left", overflow="fold")
    for row in rows:
        shape = "×".join(str(n) for n in row["shape"]) if row["shape"] else ""
        table.add_row(escape(row["layer"]), escape(row["type"]), shape, escape(row["got"]),
                      "" if row["bits"] is None else str(row["bits"]), escape(row["encoding"]),
                      f"{row['bytes']:,}", f"{row['share']:.1%}")
    base = info["base"] or {}
    lines = [f"base model: {base.get('model')} {base.get('kwargs') or ''}".rstrip(),
             f"recipe: {info['recipe'] or '-'}; source trial: {info['trial'] or '-'}; "
             f"input shape: {info['input_shape'] or '-'}; quality: {_quality(info)}"]
    return [table, *lines]


def _quality(info: dict[str, Any]) -> str:
    value = info.get("quality")
    if value is None:
        return "-"
    metric = info.get("metric") or {}
    name = metric.get("key", "") if isinstance(metric, dict) else str(metric)
    return f"{name} {value:.4g}".strip() if isinstance(value, (int, float)) else str(value)

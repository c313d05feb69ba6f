"""``--help`` of the entry points, drawn from the schema so that it cannot drift.

Every key comes with its type (from the dataclass), its default (from the composed config, so
YAML defaults count) and its meaning (the ``Attributes:`` section of the dataclass docstring);
every config group with its options and the first comment of each option's YAML file.
"""
from __future__ import annotations

import dataclasses
import re
import typing
from enum import Enum
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from omegaconf import DictConfig, OmegaConf

COMMANDS = {
    "train": [
        ("python -m pinn.train", "the default run: Burgers, about 2 minutes on 2 CPU cores"),
        ("python -m pinn.train pde=heat model.width=32", "another problem, a wider network"),
        ("python -m pinn.train experiment=precise pde=<problem>",
         "high accuracy, 15-minute budget (trainer.max_minutes)"),
        ("python -m pinn.train -m seed=0,1,2 optim.lr=1e-3,3e-3", "a sweep, one folder per job"),
        ("python -m pinn.train trainer.resume=<run folder>", "continue a stopped run"),
        ("python -m pinn.train --config-dir examples pde=advection_diffusion",
         "a problem of your own (a YAML file in <dir>/pde/)"),
        ("python -m pinn.train --cfg job", "print the composed config, run nothing"),
        ("tensorboard --logdir outputs", "watch the runs"),
    ],
    "evaluate": [
        ("python -m pinn.evaluate run_dir=<run folder>", "errors, residuals, figures"),
    ],
    "diagnose": [
        ("python -m pinn.diagnose", "forward-vs-predict study of a BN network"),
    ],
}


def attribute_docs(cls: type) -> Dict[str, str]:
    """``{field: meaning}`` from the ``Attributes:`` section of ``cls``'s docstring."""
    doc = cls.__doc__ or ""
    lines = doc.splitlines()
    out: Dict[str, str] = {}
    inside, key, indent = False, None, None
    for line in lines:
        if line.strip() == "Attributes:":
            inside = True
            continue
        if not inside:
            continue
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        m = re.match(r"\s*(\w+): (.*)$", line)
        if m and (indent is None or width == indent):
            indent = width
            key = m.group(1)
            out[key] = m.group(2).strip()
        elif key is not None and indent is not None and width > indent:
            out[key] += " " + line.strip()
        else:
            break
    return out


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return f"{_type_name(inner[0])} or null" if len(inner) == 1 else "any"
    if origin in (list, List):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin in (dict, Dict):
        return "mapping"
    if isinstance(tp, type) and issubclass(tp, Enum):
        return "|".join(m.value for m in tp)
    if tp is Any:
        return "expression(s)"
    return getattr(tp, "__name__", str(tp))


def schema_rows(cls: type, cfg: DictConfig, prefix: str = "") -> List[Tuple[str, str, str, str]]:
    """(key, type, default, meaning) of every leaf of the schema ``cls``, in field order."""
    hints = typing.get_type_hints(cls)
    docs = attribute_docs(cls)
    rows = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += schema_rows(tp, cfg, key + ".")
            continue
        if OmegaConf.is_missing(cfg, key) if _has(cfg, key) else True:
            default = "(required)"
        else:
            value = OmegaConf.select(cfg, key)
            if isinstance(value, DictConfig) or OmegaConf.is_list(value):
                value = OmegaConf.to_container(value)
            if isinstance(value, Enum):
                value = value.value
            default = ("null" if value is None else str(value).lower() if isinstance(value, bool)
                       else str(value))
        rows.append((key, _type_name(tp), default, docs.get(f.name, "")))
    return rows


def _has(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return isinstance(node, DictConfig) and leaf in node


def describe_option(path: Path) -> str:
    """The first comment paragraph of a YAML file (its first sentence), without Hydra's
    ``@package`` line."""
    words: List[str] = []
    for line in path.read_text().splitlines():
        s = line.strip()
        if not s.startswith("#"):
            if words:
                break
            if s:
                break
            continue
        s = s.lstrip("#").strip()
        if s.startswith("@package"):
            continue
        words.append(s)
    return first_sentence(" ".join(words))


# Words after which a period does not end a sentence ("Raissi et al.", "e.g.", "J. Comput.").
ABBREVIATIONS = re.compile(r"(?:\bal|\be\.g|\bi\.e|\bcf|\bvs|\betc|\bEq|\bFig|\bno"
                           r"|\b[A-Z][a-z]{0,5}|\b[A-Z])$")


def first_sentence(text: str) -> str:
    """``text`` up to the end of its first sentence: a period followed by a space or the end,
    outside parentheses and not after an abbreviation or an initial."""
    depth = 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if (ch == "." and depth <= 0 and (i + 1 == len(text) or text[i + 1].isspace())
                and not ABBREVIATIONS.search(text[:i])):
            return text[:i + 1]
    return text


def groups(config_dirs: Sequence[Path], chosen: DictConfig) -> List[Tuple[str, str, List]]:
    """(group, default option, [(option, description)]) of every config group folder."""
    found: Dict[str, Dict[str, str]] = {}
    for d in config_dirs:
        for sub in sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("_")):
            for yml in sorted(sub.glob("*.yaml")):
                found.setdefault(sub.name, {}).setdefault(yml.stem, describe_option(yml))
    out = []
    for group, options in sorted(found.items()):
        default = str(chosen.get(group, "")) if chosen is not None else ""
        out.append((group, default, sorted(options.items())))
    return out


def key_table(rows: Sequence[Tuple[str, str, str, str]]) -> List[str]:
    """One line per key: key, type, default and meaning in columns; a default too wide for
    its column is shown whole, with the meaning on the next line under its column."""
    kw = max(len(r[0]) for r in rows)
    tw = min(max(len(r[1]) for r in rows), 28)
    out = []
    for key, tp, default, meaning in rows:
        head = f"  {key:<{kw}}  {tp:<{tw}}  "
        if len(default) <= 24:
            out.append(f"{head}{default:<24}  {meaning}")
        else:
            out.append(f"{head}{default}")
            out.append(f"{'':<{len(head) + 26}}{meaning}")
    return out


def sweeper_rows() -> List[Tuple[str, str, str, str]]:
    """(key, type, default, meaning) of the optuna sweeper's options, the meanings from the
    comments beside the fields of its config dataclass."""
    import inspect

    from hydra_plugins.pinn_optuna_sweeper.config import OptunaSweeperConf

    comments = {}
    for line in inspect.getsource(OptunaSweeperConf).splitlines():
        m = re.match(r"\s+(\w+):.*?#\s*(.+)$", line)
        if m:
            comments[m.group(1)] = m.group(2).strip()
    hints = typing.get_type_hints(OptunaSweeperConf)
    rows = []
    for f in dataclasses.fields(OptunaSweeperConf):
        if f.name.startswith("_"):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        default = (default.name if isinstance(default, Enum) else "null" if default is None
                   else str(default))
        tp = hints[f.name]
        name = ("|".join(m.name for m in tp) if isinstance(tp, type) and issubclass(tp, Enum)
                else _type_name(tp))
        rows.append((f"hydra.sweeper.{f.name}", name, default, comments.get(f.name, "")))
    return rows


def render(program: str, schema: type, cfg: DictConfig, config_dirs: Sequence[Path],
           choices: Optional[DictConfig] = None) -> str:
    """The whole help text."""
    lines = [f"usage: python -m pinn.{program} [key=value ...] [-m] [--config-dir DIR] "
             "[--cfg job] [--hydra-help]", ""]
    commands = COMMANDS.get(program, [])
    if commands:
        lines.append("Common commands:")
        width = max(len(c) for c, _ in commands)
        lines += [f"  {c:<{width}}  {what}" for c, what in commands]
        lines.append("")
    group_rows = groups(config_dirs, choices) if program == "train" else []
    if group_rows:
        lines.append("Config groups (group=option; the default is marked *):")
        for group, default, options in group_rows:
            lines.append(f"  {group}")
            for name, text in options:
                mark = "*" if name == default else " "
                lines.append(f"    {mark} {name:<22} {text}")
        lines.append("")
    rows = schema_rows(schema, cfg)
    maps = [r[0] for r in rows if r[1] == "mapping"]
    plus = (f"; '+' adds an entry that a mapping does not have yet: "
            f"{', '.join(f'+{k}.<name>=...' for k in maps)}" if maps else "")
    lines.append(f"Keys (key=value; a sweep with -m key=a,b{plus}):")
    lines += key_table(rows)
    lines.append("")
    if program == "train":
        lines.append("Search keys (python -m pinn.train -m hydra/sweeper=optuna "
                     "hydra.sweeper.<key>=value ...; see docs/hyperparameter-search.md):")
        lines += key_table(sweeper_rows())
        lines.append("")
    lines.append("Values out of range stop the run before anything is written, with one line "
                 "naming the key. docs/training.md has the details.")
    return "\n".join(lines)

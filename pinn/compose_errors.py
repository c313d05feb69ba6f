"""One line for a failed Hydra composition: the key, the value, what is allowed and, where a
close match exists, what was probably meant. Shared by the command-line check
(:mod:`pinn.cli`) and the search's check (:mod:`pinn.sweep.check`); Hydra reports these
failures in several lines, across a chain of exceptions.
"""
from __future__ import annotations

import difflib
import re
from typing import Iterable, Optional

from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf

TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false",
              "String": "a string"}


def chain_text(exc: BaseException) -> str:
    """The messages of ``exc`` and of every exception behind it (``__cause__``, else
    ``__context__``), one per line: Hydra wraps OmegaConf's errors, whose text names the key."""
    texts = []
    e: Optional[BaseException] = exc
    while e is not None:
        texts.append(str(e))
        e = e.__cause__ or e.__context__
    return "\n".join(texts)


def close_match(word: str, options: Iterable[str]) -> str:
    match = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def node_at(cfg: DictConfig, dotted: str):
    node = cfg
    for part in [p for p in dotted.split(".") if p]:
        if not OmegaConf.is_dict(node) or part not in node:
            return None
        node = node[part]
    return node


def unknown_key(key: str, cfg: DictConfig, prefix: str = "") -> str:
    """One line for a key the config does not have, with the nearest valid key."""
    parent, _, leaf = key.rpartition(".")
    node = node_at(cfg, parent)
    if node is None or not OmegaConf.is_dict(node):
        return unknown_key(parent, cfg, prefix) if parent else f"{prefix}{key} is not a config key"
    keys = [str(k) for k in node.keys()]
    if not keys:
        return f"{prefix}{key} is not a config key; {parent} is empty in this config"
    full = [f"{parent}.{k}" if parent else k for k in keys]
    hint = close_match(key, full)
    shown = ", ".join(keys) if len(keys) <= 12 else ", ".join(keys[:12]) + ", ..."
    where = f"the keys of {parent}" if parent else "the top-level keys"
    return f"{prefix}{key} is not a config key{hint}; {where}: {shown}"


def composition_error(exc: BaseException, override: str, cfg: DictConfig) -> str:
    """One line for a composition failure caused by ``override``."""
    text = chain_text(exc)
    key, _, value = override.lstrip("+~").partition("=")
    if isinstance(exc, MissingConfigException) and exc.options:
        m = re.search(r"Could not (?:find|load) '([^']+)'", text)
        group = key
        if m and "/" in m.group(1):
            group = m.group(1).rsplit("/", 1)[0].replace("/", ".")
        options = sorted(str(o) for o in exc.options)
        return (f"{group}={value} is not allowed: one of {', '.join(options)}"
                f"{close_match(value, options)}")
    m = re.search(r"Key '([^']+)' not in '[^']+'", text)
    if m:
        fk = re.search(r"full_key: (\S+)", text)
        return unknown_key(fk.group(1) if fk else key, cfg)
    m = re.search(r"Value '(.*)' of type '\w+' could not be converted to (\w+)", text)
    if m:
        fk = re.search(r"full_key: (\S+)", text)
        return (f"{fk.group(1) if fk else key}={m.group(1)!r} is not allowed: "
                f"{TYPE_WORDS.get(m.group(2), m.group(2).lower())}")
    m = re.search(r"Invalid value '(.*)', expected one of \[(.*)\]", text)
    if m:
        fk = re.search(r"full_key: (\S+)", text)
        options = [o.strip() for o in m.group(2).split(",")]
        return (f"{fk.group(1) if fk else key}={m.group(1)!r} is not allowed: one of "
                f"{', '.join(options)}{close_match(m.group(1), options)}")
    m = re.search(r"Multiple values for (\S+?)\.", text)
    if m:
        return (f"{override}: {m.group(1)} is chosen already by the config; choose it without "
                f"'+': {key}={value}")
    m = re.search(r"Could not append to config. An item is already at '([^']+)'", text)
    if m:
        return (f"+{key}={value}: {m.group(1)} exists already; set it without '+': "
                f"{key}={value}")
    m = re.search(r"Could not override '([^']+)'\.\s*To append to your config use", text)
    if m:  # a new entry of a map (data.columns, pde.params, ...)
        return f"{override}: {m.group(1)} does not exist yet; add it with '+': +{key}={value}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return f"{override}: {first}"

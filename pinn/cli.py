"""Command-line overrides checked before Hydra starts: one line per mistake, exit status 2.

Hydra reports a typo in several lines (its own hint, the schema's class names, the config
search path) and its hint, ``+model.widht=3``, adds the misspelt key and trains with the old
value. :func:`check_command_line` composes the config from the command line first, as
``python -m pinn.train`` will, and turns every failure into one line that names the key, the
value, what is allowed and, where a close match exists, what was probably meant. A ``+key``
that the schema does not have is refused the same way (``+`` adds keys only where a config
takes new ones: ``pde.params.*``). Nothing is written before the check passes, so bad input
leaves no run folder.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from pinn.compose_errors import composition_error, node_at, unknown_key
from pinn.config import CONFIG_DIR
from pinn.help import render
from pinn.sweep.check import check_search, is_search

# Flags after which Hydra prints something instead of running: nothing to check.
INFO_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i",
              "--shell-completion", "-sc", "--experimental-rerun", "--version"}
# Hydra options that take a value.
VALUE_FLAGS = {"--config-dir", "-cd", "--config-path", "-cp", "--config-name", "-cn",
               "--package", "-p"}
MAX_SWEEP_VALUES = 50  # values of one sweep that are checked one by one


@contextmanager
def quiet_closed_pipe() -> Iterator[None]:
    """Around an entry point: when the reader of its output stops early
    (``python -m pinn.accuracy --list | head``), end quietly with status 1 instead of a
    BrokenPipeError traceback (the recipe of Python's signal documentation: point stdout at
    /dev/null so that the interpreter's last flush does not fail again)."""
    def reader_gone() -> bool:
        try:
            sys.stdout.flush()
            return False
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return True

    try:
        yield
    except BrokenPipeError:
        reader_gone()
        sys.exit(1)
    except SystemExit:  # argparse's --help, Hydra's exits: their output may be unflushed
        if reader_gone():
            sys.exit(1)
        raise
    if reader_gone():
        sys.exit(1)


class OneLineParser(argparse.ArgumentParser):
    """argparse for the entry points without Hydra (bench, accuracy), with the project's error
    form: one line ``error: ...``, exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        print(f"error: {message} ({self.prog} --help lists the options)", file=sys.stderr)
        sys.exit(2)


class CommandLineError(ValueError):
    """An override that does not compose; the message is one line."""


def split_argv(argv: Sequence[str]) -> Tuple[List[str], Optional[str], Optional[str], bool]:
    """(overrides, --config-dir, --config-name, info) of Hydra's command line."""
    overrides: List[str] = []
    config_dir = config_name = None
    info = False
    it = iter(argv)
    for arg in it:
        flag, _, inline = arg.partition("=")
        if arg.startswith("-"):
            if flag in INFO_FLAGS:
                info = True
            if flag in VALUE_FLAGS:
                value = inline if inline else next(it, "")
                if flag in ("--config-dir", "-cd"):
                    config_dir = value
                elif flag in ("--config-name", "-cn"):
                    config_name = value
            continue
        overrides.append(arg)
    return overrides, config_dir, config_name, info


def _is_group(key: str, config_dirs: Sequence[Path]) -> bool:
    return any((d / key.replace(".", "/")).is_dir() for d in config_dirs)


class _Composer:
    """Composes ``config_name`` with given overrides (Hydra's compose API)."""

    def __init__(self, config_name: str, config_dir: Optional[str]):
        self.config_name = config_name
        self.extra = []
        self.dirs = [Path(CONFIG_DIR)]
        if config_dir:
            d = Path(config_dir).resolve()
            if not d.is_dir():
                raise CommandLineError(f"--config-dir={config_dir} is not a folder")
            self.extra = [f"hydra.searchpath=[file://{d}]"]
            self.dirs.insert(0, d)

    def __call__(self, overrides: List[str], hydra: bool = False) -> DictConfig:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIG_DIR),
                                   job_name="pinn_check"):
            return compose(self.config_name, overrides=[*self.extra, *overrides],
                           return_hydra_config=hydra)


def check_overrides(config_name: str, overrides: List[str],
                    config_dir: Optional[str] = None) -> DictConfig:
    """Compose ``config_name`` with ``overrides`` (each value of a sweep on its own).

    Returns:
        the composed config (first value of each sweep).

    Raises:
        CommandLineError: one line naming the override that fails and why.
    """
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as e:  # noqa: BLE001 - Hydra's grammar errors come in several types
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CommandLineError(f"cannot read the override(s) {' '.join(overrides)}: {first}") \
            from None
    composer = _Composer(config_name, config_dir)
    plain: List[str] = []
    checks: List[Tuple[str, List[str]]] = []  # (override text, values to try one by one)
    for o, text in zip(parsed, overrides):
        if o.key_or_group.startswith("hydra.") or o.key_or_group.startswith("hydra/"):
            continue
        if o.is_sweep_override():
            try:
                values = list(o.sweep_string_iterator())[:MAX_SWEEP_VALUES]
            except Exception:  # noqa: BLE001 - interval sweeps (for a sweeper) have no list
                continue
            prefix = text.split("=", 1)[0]
            checks.append((text, [f"{prefix}={v}" for v in values]))
        else:
            plain.append(text)
    @functools.cache
    def base() -> DictConfig:
        """The config without overrides, for error messages: composed when one is needed."""
        return composer([])

    # Adding keys: only where the config takes new ones (a plain dict, not a schema node), in the
    # config that the other overrides choose (+pde.conditions.top.p=... after pde=taylor_green).
    adds = [(o, text) for o, text in zip(parsed, overrides)
            if (o.is_add() or o.is_force_add()) and not o.key_or_group.startswith("hydra")
            and not _is_group(o.key_or_group, composer.dirs)]
    target: Optional[DictConfig] = None
    if adds:
        added = {text for _, text in adds}
        try:
            target = composer([t for t in plain if t not in added])
        except Exception:  # noqa: BLE001 - the composition below names the culprit
            target = base()
    for o, text in adds:
        key = o.key_or_group
        parent, _, leaf = key.rpartition(".")
        node = node_at(target, parent)
        if node is None or not OmegaConf.is_dict(node):
            raise CommandLineError(unknown_key(key, target, prefix="+"))
        if leaf not in node and OmegaConf.get_type(node) not in (dict, None):
            hint = unknown_key(key, target)
            raise CommandLineError(f"+{hint}; '+' adds keys only where the config takes "
                                   "new ones (pde.params.*)")
    try:
        cfg = composer(plain)
    except Exception as e:  # noqa: BLE001 - blame the first override whose prefix fails
        culprit, cause = " ".join(plain), e
        for i in range(len(plain)):
            try:
                composer(plain[:i + 1])
            except Exception as ei:  # noqa: BLE001
                culprit, cause = plain[i], ei
                break
        raise CommandLineError(composition_error(cause, culprit, base())) from None
    for text, singles in checks:
        for single in singles:
            try:
                composer([*plain, single])
            except Exception as e:  # noqa: BLE001
                raise CommandLineError(composition_error(e, single, base()) + f" (in the sweep {text})") \
                    from None
    return cfg


def help_text(config_name: str, schema: type, overrides: List[str],
              config_dir: Optional[str] = None) -> str:
    """``--help``: keys, groups and common commands of ``config_name`` (see pinn.help)."""
    composer = _Composer(config_name, config_dir)
    cfg = composer([o for o in overrides if "," not in o], hydra=True)
    choices = cfg.hydra.runtime.choices
    with open_dict(cfg):
        del cfg["hydra"]
    return render(config_name, schema, cfg, composer.dirs, choices)


def check_command_line(config_name: str, schema: Optional[type] = None,
                       argv: Optional[Sequence[str]] = None,
                       validate: Optional[Callable[[DictConfig], None]] = None) -> None:
    """Check ``argv`` (default ``sys.argv[1:]``) before Hydra runs; on a mistake print one line
    ``error: ...`` to stderr and exit with status 2. ``--help`` (``-h``) prints
    :func:`help_text` for ``schema`` and exits 0. ``validate``: also check the values of the
    composed config of a single run (it raises ``ValueError``; a multirun's jobs are checked
    one by one when they start, so that the others go on)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    overrides, config_dir, name, info = split_argv(argv)
    if schema is not None and ("--help" in argv or "-h" in argv):
        try:
            check_overrides(name or config_name, overrides, config_dir)
            print(help_text(name or config_name, schema, overrides, config_dir))
        except CommandLineError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        sys.exit(0)
    if info:
        return
    multirun = any(a in ("-m", "--multirun") for a in argv)
    try:
        cfg = check_overrides(name or config_name, overrides, config_dir)
        if validate is not None and not multirun:
            validate(cfg)
        if is_search(overrides):
            composer = _Composer(name or config_name, config_dir)
            check_search(overrides, multirun,
                         lambda o, hydra: composer(o, hydra=hydra))
    except (CommandLineError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def check_before_imports(config_name: str, schema: type,
                         validate: Callable[[DictConfig], None]) -> None:
    """:func:`check_command_line` with ``validate``, for an entry point's ``__main__`` before its
    heavy imports: a refused command line costs the config's composition, not the import of
    torch. Under torchrun it does nothing: each rank checks after its imports, rank 0 speaking."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return
    with quiet_closed_pipe():
        check_command_line(config_name, schema, validate=validate)

"""The documentation (README.md and docs/): the site builds strictly, every page is in the nav,
every path it names exists, and every command it shows still runs: a training command line
composes and passes the checks ``python -m pinn.train`` makes before it trains; every other
entry point answers ``--help``."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional, Tuple

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from pinn.cli import check_command_line, check_overrides, split_argv
from pinn.config import TrainConfig
from pinn.validation import validate
from pinn.diagnose import DiagnoseConfig
from pinn.evaluate import EvaluateConfig
from pinn.nn import build_model
from pinn.optim.stages import check_quasi_newton
from pinn.pdes import build_pde
from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MKDOCS_ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's notice, not a warning

# Placeholders of the docs and what stands in for them when a command is checked.
STAND_INS = [
    (r"\[([^\]\s]*=[^\]]*)\]", r"\1"),           # [nx=512 nt=201]: optional arguments
    (r"\bseed=[sS]\b", "seed=0"), (r"<s>", "0"),
    (r"<problem>|<any>", "heat"),
    (r"=true\|false\b", "=true"),
    (r"\bdata\.file=\.\.\.", "data.file=observations.npz"),
    (r"<run folder>", "outputs/2026-11-27/10-00-00"),
    (r"<same overrides>|<overrides>", ""),
    (r"<partition>", "debug"), (r"<count>", "100"), (r"<level>", "0.01"), (r"<file>", "obs.npz"),
    (r"<study>", "study"), (r"<folder>", "outputs/sweeps/study"),
]
# Commands that cannot be checked as written, with the reason. A new command with an unfilled
# placeholder ("<...>" or "...") fails the test until it gets a stand-in above or a line here.
NOT_RUNNABLE = {
    "python -m pinn.train key=value ...": "the form of every command line",
    ".venv/bin/python -m pinn.train ...": "stands for any command line",
    "hydra.sweeper.pruner=percentile hydra.sweeper.seed=0 ...":
        "the search above with other sweeper options ('the rest as above')",
    "python -m pinn.evaluate ... device=": "names the device= key of an elided command line",
    "python -m pinn.diagnose ... device=": "names the device= key of an elided command line",
}
OTHER_MODULES = ("pinn.evaluate", "pinn.diagnose", "pinn.accuracy", "pinn.report", "pinn.data",
                 "pinn.bench", "pinn.timeline")
PATH_RE = re.compile(r"(?<![\w./-])((?:pinn|tests|configs|benchmarks|examples|hydra_plugins|docs)"
                     r"/[\w./*-]*[\w*/])")


class Command(NamedTuple):
    where: str          # page:line
    text: str           # as shown
    program: str        # a module (pinn.train, ...) or a script path (benchmarks/....py)
    args: Tuple[str, ...]  # its arguments, placeholders filled in


def _code(text: str) -> Iterator[tuple]:
    """(line number, code) of every command-like line of fenced bash blocks (continuations
    joined, comments dropped) and of every inline code span."""
    lines, fence, pending, start = text.splitlines(), None, "", 0
    for i, line in enumerate(lines, 1):
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
            continue
        if fence in ("bash", "sh"):
            start = start or i
            pending += line.rstrip("\\").rstrip() + " " if line.endswith("\\") else line
            if not line.endswith("\\"):
                yield start, pending
                pending, start = "", 0
    prose = re.sub(r"^```.*?^```", lambda m: "\n" * m.group(0).count("\n"), text,
                   flags=re.S | re.M)  # the blocks blanked, line numbers kept
    for m in re.finditer(r"`([^`]+)`", prose):
        yield prose[:m.start()].count("\n") + 1, m.group(1).replace("\n", " ")


def _parse(where: str, code: str) -> Optional[Command]:
    """The command of one line of code, or None where the code is not a command."""
    try:
        words = shlex.split(code, comments=True)
    except ValueError:
        return None
    shown = " ".join(words)
    if not words or words[0] not in ("python", ".venv/bin/python", "torchrun", "srun", "make"):
        return None
    if any(key in code for key in NOT_RUNNABLE):
        return None
    if words[:2] == ["make", "train"]:
        args = next((w[5:] for w in words[2:] if w.startswith("ARGS=")), "")
        program, rest = "pinn.train", args
    elif "-m" in words and words.index("-m") + 1 < len(words):
        i = words.index("-m")
        program, rest = words[i + 1], code.split(words[i + 1], 1)[1]
    elif words[0] == "python" and len(words) > 1 and words[1].endswith(".py"):
        program, rest = words[1], code.split(words[1], 1)[1]
    else:
        return None  # torchrun or python without a program: a tool, not a command
    if not program.startswith("pinn") and not program.endswith(".py"):
        return None
    for pattern, stand_in in STAND_INS:
        rest = re.sub(pattern, stand_in, rest)
    args = shlex.split(rest, comments=True)
    unfilled = [a for a in args if "<" in a or a == "..." or a.endswith("=...")]
    if unfilled:
        UNFILLED.append(f"{where}: {shown!r} has the placeholder(s) {unfilled}")
        return None
    return Command(where, shown, program, tuple(args))


UNFILLED: List[str] = []  # commands with a placeholder that nothing stands in for


def commands() -> List[Command]:
    found, seen = [], set()
    for page in PAGES:
        for line, code in _code(page.read_text()):
            cmd = _parse(f"{page.relative_to(REPO)}:{line}", code)
            if cmd is not None and (cmd.program, cmd.args) not in seen:
                seen.add((cmd.program, cmd.args))
                found.append(cmd)
    return found


COMMANDS = commands()
TRAIN = [c for c in COMMANDS if c.program == "pinn.train"]


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.fail("mkdocs is not installed: it is a test dependency (pip install -e '.[test]')")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "-f", str(config), "-d", str(site)],
                          capture_output=True, text=True, env=MKDOCS_ENV, timeout=120)


def test_the_site_builds_strictly(tmp_path):
    r = _mkdocs(REPO / "mkdocs.yml", tmp_path / "site")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "index.html").is_file()


def test_a_stray_page_a_broken_link_or_anchor_fails_the_build(tmp_path):
    """The guard itself: what the strict build must refuse."""
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "docs" / "stray.md").write_text("# Not in the nav\n")
    with open(tmp_path / "docs" / "index.md", "a") as f:
        f.write("\n[gone](no-such-page.md) and [no anchor](training.md#no-such-heading)\n")
    r = _mkdocs(tmp_path / "mkdocs.yml", tmp_path / "site")
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "stray.md" in out and "not included in the \"nav\"" in out
    assert "no-such-page.md" in out and "#no-such-heading" in out


def test_every_page_is_in_the_nav_and_linked_from_the_readme():
    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]
    in_nav = [page for entry in nav for page in entry.values()]
    assert sorted(in_nav) == sorted(p.name for p in (REPO / "docs").glob("*.md"))
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert all((REPO / link).is_file() for link in local), local
    assert {f"docs/{p}" for p in in_nav if p != "index.md"} <= set(local)


def test_every_path_named_in_the_docs_exists():
    missing = []
    for page in PAGES:
        for path in set(PATH_RE.findall(page.read_text())):
            if not any(REPO.glob(path.rstrip("/"))):
                missing.append(f"{page.name}: {path}")
    assert not missing


def test_every_placeholder_has_a_stand_in():
    assert not UNFILLED, ("add a stand-in (STAND_INS) or a NOT_RUNNABLE line with the reason: "
                          + "; ".join(UNFILLED))


def test_every_command_left_unchecked_is_still_in_the_docs():
    text = "\n".join(re.sub(r"\s+", " ", p.read_text()) for p in PAGES)
    assert all(key in text for key in NOT_RUNNABLE)


def test_the_docs_show_the_commands_this_test_checks():
    """The extraction itself: a change to it that finds nothing would pass silently."""
    assert len(TRAIN) >= 25
    programs = {c.program for c in COMMANDS}
    assert set(OTHER_MODULES) <= programs
    assert {"benchmarks/check_burgers_run.py", "benchmarks/burgers_inverse_limit.py",
            "benchmarks/distributed.py"} <= programs
    assert any(c.text.startswith("make train") for c in TRAIN)
    assert any(c.text.startswith("torchrun") for c in TRAIN)


@pytest.mark.parametrize("cmd", TRAIN, ids=[c.where for c in TRAIN])
def test_training_command_composes_and_passes_the_checks_before_training(cmd, capsys,
                                                                          monkeypatch):
    """What ``python -m pinn.train`` checks before it trains, without training: the command
    line (every value of a sweep, a search's space), then the ranges, the problem, the network
    and the quasi-Newton stage. Not checked: files (data.file, trainer.resume) and devices."""
    monkeypatch.chdir(REPO)  # --config-dir examples
    argv = [a for i, a in enumerate(cmd.args)
            if a not in ("--cfg", "-c") and (i == 0 or cmd.args[i - 1] not in ("--cfg", "-c"))]
    try:
        check_command_line("train", TrainConfig, argv)
    except SystemExit as e:
        assert e.code == 0, f"{cmd.where}: {cmd.text}\n{capsys.readouterr().err}"
    if "--help" in argv:
        return
    overrides, config_dir, name, _ = split_argv(argv)
    parsed = OverridesParser.create().parse_overrides(overrides)
    single = [text for o, text in zip(parsed, overrides) if not o.is_sweep_override()]
    cfg = check_overrides(name or "train", single, config_dir)  # each sweep value: checked above
    validate(cfg)
    pde = build_pde(cfg.pde)
    network = build_model(cfg, pde)
    if cfg.trainer.qn_steps > 0:
        check_quasi_newton(cfg.optim, list(network.parameters()))


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.program in ("pinn.evaluate",
                                                                     "pinn.diagnose")],
                         ids=lambda c: c.where)
def test_evaluate_and_diagnose_commands_compose(cmd, capsys):
    name, schema = {"pinn.evaluate": ("evaluate", EvaluateConfig),
                    "pinn.diagnose": ("diagnose", DiagnoseConfig)}[cmd.program]
    try:
        check_command_line(name, schema, cmd.args)
    except SystemExit as e:
        assert e.code == 0, f"{cmd.where}: {cmd.text}\n{capsys.readouterr().err}"


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.program == "pinn.accuracy"],
                         ids=lambda c: c.where)
def test_accuracy_commands_name_known_cases(cmd, capsys):
    """``--list`` reads the whole command line (cases, seeds) and lists instead of running."""
    from pinn.accuracy import main
    try:
        code = main([*cmd.args, "--list"])
    except SystemExit as e:
        code = e.code
    assert code == 0, f"{cmd.where}: {cmd.text}\n{capsys.readouterr().err}"


def test_every_other_entry_point_answers_help():
    """``--help`` of every module and script the docs run, in one process (runpy)."""
    targets = sorted({c.program for c in COMMANDS if c.program != "pinn.train"})
    driver = textwrap.dedent("""
        import contextlib, io, json, runpy, sys, warnings
        warnings.simplefilter("ignore")
        codes = {}
        for target in sys.argv[1:]:
            sys.argv = [target, "--help"]
            out = io.StringIO()
            try:
                with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                    if target.endswith(".py"):
                        runpy.run_path(target, run_name="__main__")
                    else:
                        runpy.run_module(target, run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as e:
                code = e.code or 0
            except Exception as e:  # a missing file, an import error: that target fails
                code = repr(e)
            codes[target] = [code, out.getvalue()[-500:]]
        print(json.dumps(codes))
    """)
    r = subprocess.run([sys.executable, "-c", driver, *targets], cwd=REPO, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    codes = json.loads(r.stdout.strip().splitlines()[-1])
    assert set(codes) == set(targets)
    failed = {t: out for t, (code, out) in codes.items() if code != 0}
    assert not failed

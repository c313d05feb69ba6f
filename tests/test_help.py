"""``--help``: every key with its type, default and meaning, drawn from the schema."""
from __future__ import annotations

import dataclasses
import typing

import pytest

from pinn.config import TrainConfig
from pinn.diagnose import DiagnoseConfig
from pinn.evaluate import EvaluateConfig
from pinn.help import attribute_docs, describe_option
from tests.conftest import run_cli


def schema_classes(cls):
    yield cls
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            yield from schema_classes(tp)


@pytest.mark.parametrize("root", [TrainConfig, EvaluateConfig, DiagnoseConfig])
def test_every_schema_key_is_documented_and_nothing_else(root):
    """A key added without a line in its class's Attributes section fails here, so the help
    cannot drift from the schema."""
    for cls in schema_classes(root):
        hints = typing.get_type_hints(cls)
        leaves = {f.name for f in dataclasses.fields(cls)
                  if not dataclasses.is_dataclass(hints[f.name])}
        docs = attribute_docs(cls)
        assert set(docs) == leaves, f"{cls.__name__}: {set(docs) ^ leaves}"
        assert all(len(v) > 3 for v in docs.values())


def test_attribute_docs_join_continuation_lines():
    class Demo:
        """Demo.

        Attributes:
            a: first line
                continued
            b: second
        """
    assert attribute_docs(Demo) == {"a": "first line continued", "b": "second"}


def test_train_help_lists_keys_groups_and_commands(tmp_path):
    r = run_cli(["--help"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith("  ") and "." in line.split()[0]}
    assert rows["model.width"][1:3] == ["int", "20"]
    assert "neurons per hidden block" in out
    assert rows["optim.qn"][1:3] == ["lbfgs|bfgs|ssbfgs|ssbroyden|lm", "ssbroyden"]
    assert rows["trainer.max_minutes"][1:5] == ["float", "or", "null", "null"]
    assert "  * burgers " in out and "Viscous Burgers (Raissi et al.)" in out
    assert "bn_seed                The network of the batch-normalization study" in out
    assert "python -m pinn.train experiment=precise pde=<problem>" in out
    assert len(out.splitlines()) > 100  # every key of the schema


def test_help_shows_the_defaults_of_the_chosen_options(tmp_path):
    r = run_cli(["pde=heat", "--help"], cwd=tmp_path)
    assert r.returncode == 0
    assert "  * heat " in r.stdout
    assert any(line.split()[:3] == ["pde.name", "str", "heat"] for line in r.stdout.splitlines())


def test_evaluate_help_and_a_typo_before_help(tmp_path):
    r = run_cli(["--help"], cwd=tmp_path, module="pinn.evaluate")
    assert r.returncode == 0 and "run_dir" in r.stdout and "(required)" in r.stdout
    r = run_cli(["pde=hea", "--help"], cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: pde=hea is not allowed: one of advection, allen_cahn, "
                                "burgers, burgers_inverse, cavity, cylinder, heat, heat2d, "
                                "heat_annulus, helmholtz2d, kdv, klein_gordon, kovasznay, "
                                "kuramoto_sivashinsky, laplace_lshape, nls, poisson2d, poisson3d, "
                                "poisson_holes, reaction, taylor_green, wave (did you mean heat?)")


def test_option_descriptions_come_from_the_first_comment(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("# @package _global_\n# A short preset. More words here.\n# More.\nkey: 1\n")
    assert describe_option(p) == "A short preset."
    p.write_text("key: 1\n")
    assert describe_option(p) == ""


def test_first_sentences_end_at_a_sentence_not_at_an_abbreviation():
    from pinn.help import first_sentence

    assert first_sentence("Burgers with Raissi et al.'s two coefficients (J. Comput. Phys. "
                          "378, 2019). More.") == ("Burgers with Raissi et al.'s two "
                                                   "coefficients (J. Comput. Phys. 378, 2019).")
    assert first_sentence("From observations (Raissi et al. 2019, e.g. 4.1.1): all. Next.") == \
        "From observations (Raissi et al. 2019, e.g. 4.1.1): all."
    assert first_sentence("No period at all") == "No period at all"


def test_help_shows_whole_descriptions_and_defaults_the_plus_rule_and_the_search_keys(tmp_path):
    out = run_cli(["--help"], cwd=tmp_path).stdout
    cut = [line for line in out.splitlines() if line.rstrip().endswith("...")
           and not line.rstrip().endswith("sqlite:///...")]
    assert cut == []  # nothing cut short
    assert "burgers_inverse        Identification of Burgers' coefficients from scattered " \
           "observations (Raissi et al. 2019, section 4.1.1): " in out
    assert "{'res': 1.0, 'ic': 10.0, 'bc': 1.0}" in out
    plus = next(line for line in out.splitlines() if line.startswith("Keys ("))
    assert "+pde.unknown.<name>=..." in plus and "+data.columns.<name>=..." in plus
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith("  hydra.sweeper.")}
    assert rows["hydra.sweeper.n_trials"][1:3] == ["int", "20"]
    assert rows["hydra.sweeper.pruner"][2] == "median"

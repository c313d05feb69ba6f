"""Config errors end with one clear line, a non-zero exit and no run folder."""
import pytest

from omegaconf import OmegaConf

from pinn.config import CONFIG_DIR
from pinn.validation import ConfigError, validate
from tests.conftest import compose_cfg, run_cli


@pytest.mark.parametrize("override, expected", [
    ("model.widht=3", "model.widht is not a config key (did you mean model.width?)"),
    ("model.width=abc", "model.width='abc' is not allowed: an integer"),
    ("pde=burger", "pde=burger is not allowed: one of advection, allen_cahn, burgers"),
    ("model.activation=relu6", "model.activation='relu6' is not allowed: one of tanh, gelu, "
                               "sin, silu"),
    ("model.width=-4", "model.width=-4 is not allowed: an integer >= 1"),
    ("optim.lr=0", "optim.lr=0.0 is not allowed: a finite number > 0"),
    ("pde.x_max=-2", "pde.x_max=-2.0 is not allowed"),
    ("optim.qn=newton", "optim.qn='newton' is not allowed: one of lbfgs, bfgs, ssbfgs, "
                        "ssbroyden"),
    ("sampler.resample_every=0", "sampler.adaptive='rad' is not allowed: with "
                             "sampler.resample_every=0 there are no redraws to adapt"),
    ("sampler.rad_k=-1", "sampler.rad_k=-1.0 is not allowed: a number >= 0"),
    ("sampler.rad_oversample=0", "sampler.rad_oversample=0 is not allowed"),
    ("optim.wolfe_c2=1e-5", "optim.wolfe_c1/wolfe_c2=(0.0001, 1e-05) is not allowed"),
    ("trainer.max_minutes=0", "trainer.max_minutes=0.0 is not allowed: null or a number > 0"),
    ("optim.on_line_search_failure=retry", "optim.on_line_search_failure='retry' is not "
                                           "allowed: one of reset, stop"),
])
def test_bad_override_fails_cleanly(tmp_path, override, expected):
    run_dir = tmp_path / "run"
    p = run_cli([override, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    assert expected in lines[0]
    assert not run_dir.exists()


def test_a_network_too_large_for_a_dense_method_is_refused_before_training(tmp_path):
    run_dir = tmp_path / "run"
    p = run_cli(["optim.qn=ssbroyden", "model.width=64", "model.depth=4",
                 f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert p.returncode == 2
    err = p.stderr.strip().splitlines()
    assert len(err) == 1, p.stderr
    assert ("optim.qn=ssbroyden: the network has 12,737 parameters; a dense inverse Hessian "
            "takes 1.21 GiB (12,737^2 x 8 bytes) and training holds up to 3 such matrices at "
            "once, 3.63 GiB") in err[0] and "optim.qn=lbfgs" in err[0]
    assert not run_dir.exists()


def test_available_pde_options_are_listed(tmp_path):
    p = run_cli(["pde=burger"], cwd=tmp_path)
    assert "burgers" in p.stderr and "heat" in p.stderr


def test_cfg_job_and_help(tmp_path):
    p = run_cli(["--cfg", "job", "model.width=7"], cwd=tmp_path)
    assert p.returncode == 0 and "width: 7" in p.stdout
    p = run_cli(["--help"], cwd=tmp_path)
    assert p.returncode == 0
    for option in ("advection", "allen_cahn", "burgers", "heat", "klein_gordon", "nls", "wave"):
        assert f" {option} " in p.stdout
    assert not (tmp_path / "outputs").exists()


def test_validate_names_the_key():
    cfg = compose_cfg(["sampler.n_interior=0"])
    with pytest.raises(ConfigError, match=r"^sampler.n_interior=0 is not allowed"):
        validate(cfg)
    validate(compose_cfg())  # the defaults are valid


def test_coupled_bn_derivatives_are_refused_at_start_up(tmp_path):
    run_dir = tmp_path / "run"
    p = run_cli(["model.norm=batch", "bn.mode=batch", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert p.returncode != 0
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: bn.mode='batch' is not allowed")
    for word in ("bn.mode=detached", "bn.mode=frozen", "bn.allow_coupled_derivatives=true"):
        assert word in err[0]
    assert not run_dir.exists()


def test_every_experiment_and_pde_composes_and_validates():
    from pinn.config import CONFIG_DIR
    from pinn.nn import build_model
    from pinn.pdes import build_pde

    for exp in sorted((CONFIG_DIR / "experiment").glob("*.yaml")):
        cfg = compose_cfg([f"experiment={exp.stem}"])
        if cfg.pde.unknown:  # an inverse problem: refused without observations, as it should be
            with pytest.raises(ConfigError, match="needs observations"):
                validate(cfg)
            cfg = compose_cfg([f"experiment={exp.stem}", "data.file=observations.npz"])
        validate(cfg)
        build_model(cfg, build_pde(cfg.pde))
    for pde in sorted((CONFIG_DIR / "pde").glob("*.yaml")):
        validate(compose_cfg([f"pde={pde.stem}"]))


def _leaves(node, prefix=""):
    """(dotted key, value) of every leaf of a YAML mapping."""
    for k, v in node.items():
        if k == "defaults":
            continue
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _leaves(v, key + ".")
        else:
            yield key, v


@pytest.mark.parametrize("path", sorted((CONFIG_DIR / "experiment").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_value_an_experiment_sets_reaches_the_run_config(path):
    # An experiment must win over the entry config's own values (train.yaml sets loss.*, bn.*,
    # precision...), or `experiment=precise` would silently train without its loss balancing.
    import yaml

    cfg = compose_cfg([f"experiment={path.stem}"])
    leaves = list(_leaves(yaml.safe_load(path.read_text())))
    assert leaves
    for key, value in leaves:
        got = OmegaConf.select(cfg, key)
        got = got.value if hasattr(got, "value") else got
        if OmegaConf.is_config(got):
            got = OmegaConf.to_container(got)
        assert got == value, f"{path.name}: {key} = {got!r}, the experiment sets {value!r}"

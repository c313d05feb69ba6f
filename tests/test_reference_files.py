"""Reference data files (pinn.reference.files): every format read back exactly, grids expanded
in either axis order, one-line refusals, relative L2 with gaps, and the shipped Ghia table."""
import numpy as np
import pytest
from scipy.io import savemat

from pinn.config import CONFIG_DIR
from pinn.reference.files import ReferenceData, read_reference, relative_l2
from tests.conftest import reference_dir

AXES = ("x", "y")
OUTPUTS = ("u", "v", "p")


@pytest.fixture
def nodes():
    """Seven scattered nodes of the unit square and three outputs there."""
    rng = np.random.default_rng(0)
    return rng.random((7, 2)), rng.standard_normal((7, 3))  # (N, 2), (N, 3)


def write_rows(path, rows, header=(), sep=" "):
    lines = [*header, *(sep.join(repr(float(v)) for v in row) for row in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def assert_read_back(ref, points, values, columns):
    assert isinstance(ref, ReferenceData)
    assert ref.points.dtype == ref.values.dtype == np.float64
    np.testing.assert_array_equal(ref.points, points)
    np.testing.assert_array_equal(ref.values, values)
    assert ref.columns == columns
    assert (ref.axes, ref.outputs) == (AXES, OUTPUTS)


# -- each format, read back exactly ---------------------------------------------------------
def test_comsol_text_with_units_and_columns_in_any_order(tmp_path, nodes):
    points, values = nodes
    header = ["% Model:              cavity.mph", "% Version:            COMSOL 6.1",
              "% Dimension:          2", "% Nodes:              7",
              "% Length unit:        m",
              "% y                 p (Pa)     x       spf.U (m/s)    v (m/s)    u (m/s)"]
    rows = np.c_[points[:, 1], values[:, 2], points[:, 0], np.hypot(values[:, 0], values[:, 1]),
                 values[:, 1], values[:, 0]]
    path = write_rows(tmp_path / "cavity.txt", rows, header, sep="   ")
    ref = read_reference(path, AXES, OUTPUTS)
    assert_read_back(ref, points, values, ("x", "y", "u (m/s)", "v (m/s)", "p (Pa)"))
    assert ref.ignored == ("spf.U (m/s)",) and ref.path == path


def test_text_without_names_is_axes_then_outputs(tmp_path, nodes):
    points, values = nodes
    # a comment with one word per column but no axis or output among them is prose
    path = write_rows(tmp_path / "cavity.dat", np.c_[points, values],
                      ["# my solver run five", "# seven nodes of the unit square"])
    assert_read_back(read_reference(path, AXES, OUTPUTS), points, values, AXES + OUTPUTS)


@pytest.mark.parametrize("header", [True, False])
def test_csv_with_and_without_a_header(tmp_path, nodes, header):
    points, values = nodes
    if header:
        rows, names = np.c_[values[:, ::-1], points], ['p (Pa),v,"u (m/s)",x,y']
    else:
        rows, names = np.c_[points, values], []
    path = write_rows(tmp_path / "cavity.csv", rows, names, sep=",")
    columns = ("x", "y", "u (m/s)", "v", "p (Pa)") if header else AXES + OUTPUTS
    assert_read_back(read_reference(path, AXES, OUTPUTS), points, values, columns)


def test_npz_named_arrays_and_single_table(tmp_path, nodes):
    points, values = nodes
    named = tmp_path / "named.npz"
    np.savez(named, x=points[:, 0], y=points[:, 1:], u=values[:, 0], vsol=values[:, 1],
             p=values[:, 2:], Re=np.array(100.0))
    ref = read_reference(named, AXES, OUTPUTS)
    assert_read_back(ref, points, values, ("x", "y", "u", "vsol", "p"))
    assert ref.ignored == ("Re",)
    table = tmp_path / "table.npz"
    np.savez(table, data=np.c_[points, values])
    assert_read_back(read_reference(table, AXES, OUTPUTS), points, values, AXES + OUTPUTS)


def test_mat_scattered(tmp_path, nodes):
    points, values = nodes
    path = tmp_path / "cavity.mat"
    savemat(path, {"x": points[:, 0], "y": points[:, 1], "u": values[:, 0], "v": values[:, 1],
                   "p": values[:, 2], "note": "computed on a 64 x 64 mesh"})
    ref = read_reference(path, AXES, OUTPUTS)
    assert_read_back(ref, points, values, AXES + OUTPUTS)
    assert ref.ignored == ("note",)


def field(x, t):
    """A field that tells (x, t) from (t, x)."""
    return np.sin(3.0 * x) + x * t ** 2


@pytest.mark.parametrize("suffix", [".npz", ".mat"])
@pytest.mark.parametrize("time_first", [False, True])
def test_grids_expand_to_their_nodes_in_either_axis_order(tmp_path, suffix, time_first):
    x = np.linspace(-1.0, 1.0, 5)
    t = np.linspace(0.0, 0.9, 4)
    usol = field(x[:, None], t[None, :])  # (nx, nt): u[x_i, t_j], as Raissi stores it
    arrays = {"x": x[:, None], "t": t[:, None], "usol": usol.T if time_first else usol}
    path = tmp_path / f"burgers{suffix}"
    if suffix == ".npz":
        np.savez(path, **arrays)
    else:
        savemat(path, arrays)
    ref = read_reference(path, ("x", "t"), ("u",))
    assert ref.points.shape == (20, 2) and ref.columns == ("x", "t", "usol")
    assert {tuple(p) for p in ref.points} == {(a, b) for a in x for b in t}
    np.testing.assert_array_equal(ref.values[:, 0], field(ref.points[:, 0], ref.points[:, 1]))


def test_a_three_axis_grid_stored_time_first(tmp_path):
    x, y, t = np.linspace(0, 1, 3), np.linspace(0, 2, 4), np.linspace(0, 1, 2)
    u = x[:, None, None] + 10 * y[None, :, None] + 100 * t[None, None, :]  # (nx, ny, nt)
    path = tmp_path / "heat.npz"
    np.savez(path, x=x, y=y, t=t, u=np.transpose(u, (2, 0, 1)))  # stored (nt, nx, ny)
    ref = read_reference(path, ("x", "y", "t"), ("u",))
    assert ref.points.shape == (24, 3)
    expect = ref.points[:, 0] + 10 * ref.points[:, 1] + 100 * ref.points[:, 2]
    np.testing.assert_array_equal(ref.values[:, 0], expect)


@pytest.mark.parametrize("relative, name, order", [
    ("raissi_pinns/burgers_shock.mat", "burgers_shock", "u[x, t]"),
    ("jaxpi/burgers.mat", "burgers", "u[t, x]"),
])
def test_the_published_burgers_grids_start_from_minus_sin(relative, name, order):
    path = reference_dir() / relative
    if not path.is_file():
        pytest.skip(f"the published {name} file is not here ({path})")
    ref = read_reference(path, ("x", "t"), ("u",), bounds={"x": (-1, 1), "t": (0, 1)})
    start = ref.points[:, 1] == 0
    assert start.sum() in (256, 512)
    np.testing.assert_allclose(ref.values[start, 0], -np.sin(np.pi * ref.points[start, 0]),
                               rtol=0, atol=1e-14)


# -- refusals -------------------------------------------------------------------------------
GOOD = "0 0 1 2 3\n0.5 1 4 5 6\n"

BAD = [
    ("empty.txt", b"", "the file is empty"),
    ("empty.npz", b"", "the file is empty"),
    ("comments.txt", b"% x y u v p\n% nothing else\n", r"no data \(only comments"),
    ("short.txt", b"0 0 1 2\n", r"4 columns, expected 5 \(x, y, u, v, p\)"),
    ("ragged.txt", b"0 0 1 2 3\n\n0 1 2 3\n", "line 3 has 4 columns, line 1 has 5"),
    ("word.txt", b"# x y u v p\n0 0 1 2 3\n0 1 2 abc 3\n",
     "line 3, column 4: 'abc' is not a number"),
    ("word.csv", b"x,y,u,v,p\n0,0,1,2,3\n0,1,2,,3\n", "line 3, column 4: '' is not a number"),
    ("model.h5", b"\x89HDF\r\n\x1a\n\x00\x00\x00", "unknown format"),
    ("nan_axis.txt", b"0 0 1 2 3\n0.5 nan 4 5 6\n", "line 2: y is nan: a node's coordinates"),
    ("inf_value.txt", b"0 0 1 2 3\n0.5 1 inf 5 6\n", "line 2: u is inf"),
    ("no_v.txt", b"0 0 1 nan 3\n0.5 1 4 nan 6\n", r"no value of v \(every entry is nan\)"),
    ("outside.txt", b"0 0 1 2 3\n1.5 1 4 5 6\n", r"line 2: x=1.5 is outside \[0, 1\]"),
    ("no_p.txt", b"% x y u v w\n" + GOOD.encode(), "no column p .*it has x, y, u, v, w"),
    ("three_d.csv", b"x,y,z,u,v,p\n0,0,0,1,2,3\n", "z: an axis this problem does not have"),
    ("twice.csv", b"x,y,u,usol,v,p\n0,0,1,1,2,3\n", "u and usol are both u"),
    ("header.csv", b"x,y,u,v\n0,0,1,2,3\n", "the header names 4 columns, the data has 5"),
]


@pytest.mark.parametrize("name, content, words", BAD, ids=[b[0] for b in BAD])
def test_bad_files_are_refused_in_one_line_naming_the_key(tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=words) as e:
        read_reference(path, AXES, OUTPUTS, key="pde.ref", bounds={"x": (0.0, 1.0)})
    assert str(e.value).startswith(f"pde.ref={path}: ") and "\n" not in str(e.value)


def test_the_column_count_message(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cav.txt").write_text("0 0 1 2\n1 1 3 4\n")
    with pytest.raises(ValueError) as e:
        read_reference("cav.txt", AXES, OUTPUTS)
    assert str(e.value) == "pde.reference_file=cav.txt: 4 columns, expected 5 (x, y, u, v, p)"
    with pytest.raises(ValueError, match="^pde.reference_file=gone.txt: no such file$"):
        read_reference("gone.txt", AXES, OUTPUTS)


def test_bounds_allow_rounding_and_nothing_more(tmp_path):
    path = tmp_path / "edge.txt"
    path.write_text(f"{1 + 1e-12!r} 0 1 2 3\n")
    read_reference(path, AXES, OUTPUTS, bounds={"x": (0.0, 1.0), "y": (0.0, 1.0)})
    path.write_text(f"{1 + 1e-6!r} 0 1 2 3\n")
    with pytest.raises(ValueError, match=r"line 1: x=1.000001 is outside \[0, 1\]"):
        read_reference(path, AXES, OUTPUTS, bounds={"x": (0.0, 1.0)})


def v73_header() -> bytes:
    """The 128-byte header of a MATLAB v7.3 (HDF5-based) file: text, then version 0x0200."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5"
    return text.ljust(116) + bytes(8) + b"\x00\x02IM" + bytes(384)


@pytest.mark.parametrize("name, make, words", [
    ("v73.mat", lambda p: p.write_bytes(v73_header()),
     r"a MATLAB v7.3 file, which scipy cannot read: save it with save\(..., '-v7'\) or as "
     r"\.npz$"),
    ("junk.mat", lambda p: p.write_bytes(b"not a mat file" * 20), "cannot read it as .mat"),
    ("square.npz", lambda p: np.savez(p, x=np.arange(3.0), t=np.arange(3.0),
                                      u=np.ones((3, 3))),
     r"u has shape \(3, 3\), which fits the axes x, t .* in more than one order"),
    ("misfit.npz", lambda p: np.savez(p, x=np.arange(3.0), t=np.arange(4.0),
                                      u=np.ones((3, 5))),
     r"u has shape \(3, 5\), which is neither one value per node nor a grid"),
    ("complex.mat", lambda p: savemat(p, {"x": np.arange(3.0), "t": np.arange(3.0),
                                          "u": np.ones(3) * 1j}),
     "u is complex"),
    ("cube.npz", lambda p: np.savez(p, x=np.arange(3.0), t=np.arange(3.0), y=np.arange(3.0),
                                    u=np.ones(3)),
     "y: an axis this problem does not have"),
])
def test_bad_array_files_are_refused_in_one_line(tmp_path, name, make, words):
    path = tmp_path / name
    make(path)
    with pytest.raises(ValueError, match=words) as e:
        read_reference(path, ("x", "t"), ("u",))
    assert str(e.value).startswith(f"pde.reference_file={path}: ") and "\n" not in str(e.value)


# -- relative L2 ----------------------------------------------------------------------------
def test_relative_l2_by_hand_over_the_given_entries():
    nan = np.nan
    ref = np.array([[1.0, nan], [2.0, 1.0], [nan, -2.0], [2.0, 2.0]])
    pred = np.array([[1.5, 9.0], [2.0, 1.5], [7.0, -2.0], [1.0, 2.0]])
    errors = relative_l2(pred, ref, ("u", "v"))
    # u: rows 0, 1, 3: (0.25 + 0 + 1) / (1 + 4 + 4); v: rows 1, 2, 3: 0.25 / (1 + 4 + 4)
    assert errors == pytest.approx({"u": np.sqrt(1.25 / 9), "v": np.sqrt(0.25 / 9),
                                    "all": np.sqrt(1.5 / 18)}, rel=1e-15)
    assert relative_l2(pred[:, :1], ref[:, 0], ("u",)) == pytest.approx(
        {"u": np.sqrt(1.25 / 9), "all": np.sqrt(1.25 / 9)}, rel=1e-15)


def test_relative_l2_refuses_shapes_that_do_not_fit():
    with pytest.raises(ValueError, match="expected \\(N, n_out\\) twice"):
        relative_l2(np.zeros((3, 2)), np.ones((3, 1)), ("u",))
    with pytest.raises(ValueError, match="gives no value of v"):
        relative_l2(np.zeros((2, 2)), np.array([[1.0, np.nan], [2.0, np.nan]]), ("u", "v"))


# -- the Ghia et al. (1982) cavity table, Re = 100 --------------------------------------------
GHIA = CONFIG_DIR / "pde" / "data" / "ghia_re100.txt"
GHIA_Y = [0.0, 0.0547, 0.0625, 0.0703, 0.1016, 0.1719, 0.2813, 0.4531, 0.5, 0.6172, 0.7344,
          0.8516, 0.9531, 0.9609, 0.9688, 0.9766, 1.0]
GHIA_X = [0.0, 0.0625, 0.0703, 0.0781, 0.0938, 0.1563, 0.2266, 0.2344, 0.5, 0.8047, 0.8594,
          0.9063, 0.9453, 0.9531, 0.9609, 0.9688, 1.0]


def test_the_ghia_table_has_both_centerlines():
    ref = read_reference(GHIA, ("x", "y"), ("u", "v"), bounds={"x": (0, 1), "y": (0, 1)})
    assert ref.points.shape == (34, 2) and ref.columns == ("x", "y", "u", "v")
    on_u, on_v = ~np.isnan(ref.values[:, 0]), ~np.isnan(ref.values[:, 1])
    assert on_u.sum() == on_v.sum() == 17 and not (on_u & on_v).any()
    assert (ref.points[on_u, 0] == 0.5).all() and (ref.points[on_v, 1] == 0.5).all()
    assert sorted(ref.points[on_u, 1]) == GHIA_Y and sorted(ref.points[on_v, 0]) == GHIA_X
    u = dict(zip(ref.points[on_u, 1], ref.values[on_u, 0]))
    v = dict(zip(ref.points[on_v, 0], ref.values[on_v, 1]))
    assert (u[0.0], u[0.4531], u[0.5], u[0.9766], u[1.0]) == (0.0, -0.21090, -0.20581,
                                                              0.84123, 1.0)
    assert (v[0.0], v[0.2344], v[0.5], v[0.8047], v[1.0]) == (0.0, 0.17527, 0.05454,
                                                              -0.24533, 0.0)
    # a zero prediction is wrong by exactly the reference's own norm
    assert relative_l2(np.zeros((34, 2)), ref) == {"u": 1.0, "v": 1.0, "all": 1.0}

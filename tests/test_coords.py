"""The coordinates of a problem (pinn.coords): axes, derivative names and multi-indices."""
import pytest

from pinn.coords import (MAX_ORDER, Axes, CoordinateError, Derivative, closure, key_of,
                         parse_key, predecessor)


@pytest.mark.parametrize("names, space, time", [
    (["x", "t"], ("x",), True),
    (["x"], ("x",), False),
    (["x", "y"], ("x", "y"), False),
    (["x", "z", "t"], ("x", "z"), True),
    (["x", "y", "z", "t"], ("x", "y", "z"), True),
])
def test_axes_in_order_with_time_last(names, space, time):
    axes = Axes.parse(names)
    assert (axes.space, axes.time, axes.names, axes.dim) == (space, time, tuple(names), len(names))
    assert [axes.index(n) for n in names] == list(range(len(names)))


@pytest.mark.parametrize("names, words", [
    (["x", "w"], "'w' is not an axis: one of x, y, z, t"),
    (["x", "x"], "the axis x is given twice"),
    (["t", "x"], "t must be the last axis"),
    (["t"], "at least one space axis"),
    (["y", "x"], "space axes go in the order x, y, z"),
])
def test_bad_axes_are_refused_in_one_line_naming_the_key(names, words):
    with pytest.raises(CoordinateError) as e:
        Axes.parse(names, key="pde.axes")
    message = str(e.value)
    assert message.startswith("pde.axes: ") and words in message and "\n" not in message


def test_derivative_names_become_multi_indices_in_the_axes_order():
    axes = Axes.parse(["x", "y", "t"])
    outputs = ("u", "v", "p")
    assert parse_key("u", outputs, axes) == Derivative(0, (0, 0, 0))
    assert parse_key("v_xxy", outputs, axes) == Derivative(1, (2, 1, 0))
    assert parse_key("u_yx", outputs, axes) == parse_key("u_xy", outputs, axes)
    assert parse_key("p_txx", outputs, axes) == Derivative(2, (2, 0, 1))
    assert parse_key("u_xxxx", outputs, axes).order == 4
    assert key_of(parse_key("u_yxt", outputs, axes), outputs, axes) == "u_xyt"
    assert key_of(Derivative(1, (0, 0, 0)), outputs, axes) == "v"
    # Output names with underscores: the last underscore starts the derivative.
    assert parse_key("u_1_x", ("u_1",), Axes.parse(["x"])) == Derivative(0, (1,))


@pytest.mark.parametrize("axes, key, words", [
    (["x", "y"], "u_t", "a time derivative in a steady problem"),
    (["x", "t"], "u_y", "'y' is not an axis of this problem (its axes are x, t)"),
    (["x", "t"], "u_xxxxx", f"order 5 is above the highest allowed, {MAX_ORDER}"),
    (["x", "y", "t"], "u_xxyyt", f"order 5 is above the highest allowed, {MAX_ORDER}"),
    (["x", "t"], "w_x", "'w_x' is not a derivative of the outputs u"),
    (["x", "t"], "u_", "'u_' is not a derivative of the outputs u"),
])
def test_bad_derivatives_are_refused_in_one_line(axes, key, words):
    with pytest.raises(CoordinateError) as e:
        parse_key(key, ("u",), Axes.parse(axes))
    assert words in str(e.value) and "\n" not in str(e.value)


def test_the_paths_to_derivatives_are_closed_and_shared():
    alphas = [(2, 1, 0), (1, 0, 1), (0, 0, 2), (4, 0, 0)]
    path = closure(alphas)
    assert set(alphas) <= set(path) and path[0] == (0, 0, 0)
    for a in path[1:]:
        prev, axis = predecessor(a)
        assert prev in path and path.index(prev) < path.index(a)
        assert sum(prev) == sum(a) - 1 and a[axis] == prev[axis] + 1
    # u_xxy and u_xt share u_x; u_xxxx passes through u_xx and u_xxx; u_tt through u_t.
    assert set(path) == {(0, 0, 0), (1, 0, 0), (2, 0, 0), (2, 1, 0), (1, 0, 1), (0, 0, 1),
                         (0, 0, 2), (3, 0, 0), (4, 0, 0)}


def test_the_laplacian_sums_the_second_partials_of_the_space_axes():
    assert Axes.parse(["x", "y", "z", "t"]).laplacian() == ((2, 0, 0, 0), (0, 2, 0, 0),
                                                            (0, 0, 2, 0))
    assert Axes.parse(["x"]).laplacian() == ((2,),)

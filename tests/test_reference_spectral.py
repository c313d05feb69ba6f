"""Tests for the pseudo-spectral ETDRK4 reference solver (``pinn.reference.spectral``).

The first tests compare with published benchmark data (Raissi et al. ``AC.mat`` and ``NLS.mat``,
jaxpi ``allen_cahn.mat``) and are skipped when those files are not available. The others need no
data: an exact linear solution, an exact spatially uniform nonlinear solution (which also checks
that output times are hit exactly), the fourth-order convergence of ETDRK4, the flux form of a
nonlinearity against the pointwise one, stepping in extended precision, conservation laws of
NLS, the Allen-Cahn residual and symmetry, and exactness of the trigonometric interpolation.
The KdV and Kuramoto-Sivashinsky references have test files of their own.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_jaxpi, load_raissi

from pinn.reference.spectral import (EXTENDED, allen_cahn, fourier_interpolate, nls,
                                     solve_periodic)

# Fourth-order central-difference weights for a first derivative on offsets -2..2.
_D1 = np.array([1.0, -8.0, 0.0, 8.0, -1.0]) / 12.0
_OFFSETS = np.arange(-2, 3)


def _rel_l2(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(pred - ref) / np.linalg.norm(ref))


def _wavenumbers(m: int, length: float) -> np.ndarray:
    return 2.0 * np.pi * np.fft.fftfreq(m, d=length / m)


# --------------------------------------------------------------------------- published data


def test_allen_cahn_matches_raissi_ac_data():
    x, t, uu = load_raissi("AC.mat")  # (512,) the periodic grid on [-1, 1), (201,), (201, 512)
    u = allen_cahn(x, t)
    assert u.shape == (t.size, x.size) and u.dtype == np.float64
    rel = _rel_l2(u, uu)
    # The data are the 512-mode discretisation that the defaults use, so the agreement is at the
    # level of the time-stepping error (about 1e-11), far inside the 1e-5 benchmark tolerance.
    assert rel <= 1e-8, f"relative L2 error against AC.mat: {rel:.3e}"


def test_allen_cahn_matches_jaxpi_data():
    x, t, usol = load_jaxpi("allen_cahn.mat")  # (511,), (201,), (201, 511)
    # Default grid (512 modes) interpolated to jaxpi's 511-point grid: the two grids resolve the
    # kinked initial data differently, which leaves about 6e-7.
    rel = _rel_l2(allen_cahn(x, t), usol)
    assert rel <= 1e-5, f"relative L2 error against allen_cahn.mat: {rel:.3e}"
    # On jaxpi's own grid the same scheme reproduces the data to the time-stepping error.
    rel_511 = _rel_l2(allen_cahn(x, t, n_modes=511), usol)
    assert rel_511 <= 1e-8, f"relative L2 error against allen_cahn.mat (511 modes): {rel_511:.3e}"


@pytest.fixture(scope="module")
def nls_benchmark():
    """``(x, t, h)`` of the default NLS solve on the benchmark grid: (256,), (201,), (201, 256)."""
    x = -5.0 + 10.0 * np.arange(256) / 256
    t = np.linspace(0.0, np.pi / 2, 201)
    return x, t, nls(x, t)


def test_nls_matches_raissi_data(nls_benchmark):
    x, t, uu = load_raissi("NLS.mat")  # (256,), (201,), (201, 256) complex
    x_b, t_b, h = nls_benchmark
    np.testing.assert_allclose(x, x_b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(t, t_b, rtol=0, atol=1e-12)

    assert h.dtype == np.complex128
    rel_mod = _rel_l2(np.abs(h), np.abs(uu))
    rel = _rel_l2(h, uu)
    assert rel_mod <= 1e-4, f"relative L2 error of |h| against NLS.mat: {rel_mod:.3e}"
    # The phase agrees as well (about 7e-9): same equation, sign convention and grid.
    assert rel <= 1e-6, f"relative L2 error of h against NLS.mat: {rel:.3e}"


# ------------------------------------------------------------------------ independent checks


@pytest.mark.parametrize("m", [32, 33])
@pytest.mark.parametrize("complex_data", [False, True])
def test_linear_advection_diffusion_is_exact(m, complex_data):
    # u_t = -c u_x + nu u_xx: each Fourier mode travels at speed c and decays like
    # exp(-nu k^2 t). ETDRK4 integrates the linear part exactly, whatever the step.
    c, nu, length, x0 = 0.7, 0.05, 3.0, -1.2
    x = x0 + length * np.arange(m) / m
    k = _wavenumbers(m, length)
    k1, k2 = 2.0 * np.pi / length, 2.0 * np.pi * 5 / length

    def exact(t):
        decay1, decay2 = np.exp(-nu * k1**2 * t), np.exp(-nu * k2**2 * t)
        u = decay1 * np.sin(k1 * (x - c * t)) + 0.5 * decay2 * np.cos(k2 * (x - c * t) + 0.3)
        if complex_data:
            u = u + 0.25j * decay1 * np.exp(1j * k1 * (x - c * t))
        return u

    t_out = np.array([0.0, 0.13, 0.5, 1.7])
    u = solve_periodic(-1j * c * k - nu * k**2, np.zeros_like, exact(0.0), length, t_out, 0.05,
                       x0=x0)
    assert u.shape == (t_out.size, m)
    # Real data with a real-to-real operator stay real (for even m through the Nyquist mode).
    assert u.dtype == (np.complex128 if complex_data else np.float64)
    want = np.stack([exact(t) for t in t_out])
    np.testing.assert_allclose(u, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (EXTENDED, 1e-15)],
                         ids=["double", "extended"])
def test_etdrk4_coefficients_free_of_cancellation(dtype, rtol):
    from math import factorial

    from pinn.reference.spectral import _etdrk4_coefficients

    # Taylor series of the weight functions (see the module docstring), summed far past
    # convergence for |z| <= 2, where the closed forms cancel worst. In long double the
    # weights must be good to long-double accuracy (2e-17 measured), or extended-precision
    # stepping would gain nothing.
    n = np.arange(40)
    fact = np.array([factorial(j) for j in range(44)], dtype=object).astype(dtype)
    series = {
        "Q": 0.5 ** (n + 1) / fact[n + 1],
        "f1": 4.0 / fact[n + 3] - 3.0 / fact[n + 2] + 1.0 / fact[n + 1],
        "f2": 1.0 / fact[n + 2] - 2.0 / fact[n + 3],
        "f3": 4.0 / fact[n + 3] - 1.0 / fact[n + 2],
    }
    rng = np.random.default_rng(3)
    z = np.concatenate([
        [0.0, 1e-12, -1e-7, 1e-4j, -0.3, 0.499, 0.5, -0.5j, -1.0, -1.0j, 1j * 0.9999, -2.0],
        -np.logspace(-9, np.log10(2.0), 30),
        -1j * np.logspace(-9, np.log10(2.0), 30),
        rng.uniform(0.0, 2.0, 40) * np.exp(2j * np.pi * rng.uniform(size=40)),
    ]).astype(np.result_type(dtype, np.complex128))
    h = 0.37
    coeffs = _etdrk4_coefficients(z, h)
    powers = z[:, None] ** n[None, :]
    for name, c in series.items():
        want = h * (powers @ c)
        assert coeffs[name].dtype == z.dtype
        np.testing.assert_allclose(coeffs[name], want, rtol=rtol, atol=0, err_msg=name)
    np.testing.assert_allclose(coeffs["E"], np.exp(z), rtol=1e-15)
    # Real arguments give real weights (exactly), so real problems are not polluted.
    real = z.imag == 0.0
    for name in ("Q", "f1", "f2", "f3"):
        assert np.all(coeffs[name][real].imag == 0.0)


@pytest.mark.parametrize("m", [24, 25])
@pytest.mark.parametrize("flux", [False, True], ids=["reaction", "flux"])
@pytest.mark.parametrize("dtype", [np.float64, EXTENDED], ids=["double", "extended"])
def test_real_and_complex_paths_agree(m, flux, dtype):
    # A real problem (advection-diffusion with a reaction, or with the flux -0.6 (u^2 / 2)_x,
    # and rough real data, so the Nyquist mode is populated) solved with real FFTs, and again
    # as a complex problem. The real path acts on the Nyquist grid mode with Re L(-k_N) (and
    # Re G(-k_N)); given those symbols, the complex path must agree.
    rng = np.random.default_rng(7)
    length = 2.0
    k = _wavenumbers(m, length)
    symbol = -1j * 0.8 * k - 1e-2 * k**2
    if flux:
        nonlinear, g_symbol = np.square, -0.3j * k
    else:
        nonlinear, g_symbol = (lambda v: 5.0 * (v - v**3)), None
    u0 = 0.5 * rng.uniform(-1.0, 1.0, size=m)
    t_out = np.array([0.1, 0.3])
    u_real = solve_periodic(symbol, nonlinear, u0, length, t_out, 0.01,
                            nonlinear_symbol=g_symbol, dtype=dtype)
    assert u_real.dtype == np.float64

    symbol_c = symbol.copy()
    g_symbol_c = None if g_symbol is None else g_symbol.copy()
    if m % 2 == 0:
        symbol_c[m // 2] = symbol_c[m // 2].real
        if flux:
            g_symbol_c[m // 2] = g_symbol_c[m // 2].real
    u_cplx = solve_periodic(symbol_c, nonlinear, u0.astype(np.complex128), length, t_out, 0.01,
                            nonlinear_symbol=g_symbol_c, dtype=dtype)
    assert u_cplx.dtype == np.complex128
    np.testing.assert_allclose(u_cplx.real, u_real, rtol=0, atol=1e-12)
    np.testing.assert_allclose(u_cplx.imag, 0.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("m", [96, 97])
def test_flux_form_matches_pointwise_form(m):
    # Viscous Burgers u_t = nu u_xx - u u_x, once with the nonlinearity -u u_x evaluated
    # pointwise (u_x spectrally) and once as G(u^2) with G = -1/2 d/dx applied in Fourier
    # space. For a resolved solution (coefficients below 1e-16 past a third of the modes) the
    # two differ only by aliasing and round-off.
    length, nu = 2.0 * np.pi, 0.1
    x = length * np.arange(m) / m
    k = _wavenumbers(m, length)
    u0 = 0.3 * np.sin(x) + 0.1 * np.cos(2.0 * x)
    t_out = np.array([0.5, 1.0])

    def advection(v):
        return -v * np.fft.ifft(1j * k * np.fft.fft(v)).real

    pointwise = solve_periodic(-nu * k**2, advection, u0, length, t_out, 0.01)
    flux = solve_periodic(-nu * k**2, np.square, u0, length, t_out, 0.01,
                          nonlinear_symbol=-0.5j * k)
    np.testing.assert_allclose(flux, pointwise, rtol=0, atol=1e-13)
    # Mass (the mean) is conserved exactly by the flux form: G has no k = 0 component.
    np.testing.assert_allclose(flux.mean(axis=1), u0.mean(), rtol=0, atol=1e-15)


def test_complex_flux_symbol_gives_complex_solution():
    # Real data and a real nonlinearity, but G = i: u_t = i u, so u = u0 e^{i t}. Solving it
    # with real transforms would drop the imaginary part.
    m, length = 8, 1.0
    u0 = np.cos(2.0 * np.pi * np.arange(m) / m) + 0.5
    t_out = np.array([0.5, 1.0])
    u = solve_periodic(np.zeros(m), lambda v: v, u0, length, t_out, 1e-2,
                       nonlinear_symbol=np.full(m, 1j))
    assert u.dtype == np.complex128
    np.testing.assert_allclose(u, u0[None, :] * np.exp(1j * t_out)[:, None], rtol=0, atol=1e-9)


def test_uniform_state_and_output_times():
    # A constant state follows the Allen-Cahn reaction ODE u' = g (u - u^3), whose solution is
    # u0 e^{g t} / sqrt(1 + u0^2 (e^{2 g t} - 1)). The output times are not multiples of dt,
    # start after 0 and repeat; missing one by a step would cost ~1e-3 here.
    m, length, g, u0 = 16, 2.0, 5.0, 0.2
    k = _wavenumbers(m, length)
    t_out = np.array([0.037, 0.037, 0.4, 1.0])
    u = solve_periodic(-1e-4 * k**2, lambda v: g * (v - v**3), np.full(m, u0), length, t_out,
                       1e-3, x0=-1.0)
    growth = np.exp(g * t_out)
    exact = u0 * growth / np.sqrt(1.0 + u0**2 * (growth**2 - 1.0))
    np.testing.assert_allclose(u, np.repeat(exact[:, None], m, axis=1), rtol=0, atol=1e-10)


def _allen_cahn_64():
    m, length = 64, 2.0
    x = -1.0 + length * np.arange(m) / m
    k = _wavenumbers(m, length)
    return -1e-2 * k**2, (lambda v: 5.0 * (v - v**3)), x**2 * np.cos(np.pi * x), length


def _nls_64():
    m, length = 64, 10.0
    x = -5.0 + length * np.arange(m) / m
    k = _wavenumbers(m, length)
    return (-0.5j * k**2, (lambda h: 1j * (h.real**2 + h.imag**2) * h),
            (2.0 / np.cosh(x)).astype(np.complex128), length)


@pytest.mark.parametrize(
    "problem, t_end, dt",
    [(_allen_cahn_64, 1.0, 0.025), (_nls_64, 0.5, 0.00625)],
    ids=["allen_cahn_real", "nls_complex"],
)
def test_etdrk4_fourth_order(problem, t_end, dt):
    symbol, nonlinear, u0, length = problem()
    t_out = np.array([0.5 * t_end, t_end])
    fine = solve_periodic(symbol, nonlinear, u0, length, t_out, dt / 32)
    err = [_rel_l2(solve_periodic(symbol, nonlinear, u0, length, t_out, h), fine)
           for h in (dt, dt / 2)]
    ratio = err[0] / err[1]
    assert err[1] > 1e-10  # well above round-off, so the ratio measures the scheme
    assert 14.0 <= ratio <= 18.5, f"errors {err[0]:.3e}, {err[1]:.3e}: ratio {ratio:.2f}"


@pytest.mark.parametrize("problem", [_allen_cahn_64, _nls_64], ids=["real", "complex"])
def test_extended_precision_agrees_with_double(problem):
    # Problems that do not amplify round-off give the same answer in either precision, in
    # double precision out.
    symbol, nonlinear, u0, length = problem()
    t_out = np.array([0.2, 0.5])
    double = solve_periodic(symbol, nonlinear, u0, length, t_out, 0.01)
    extended = solve_periodic(symbol, nonlinear, u0, length, t_out, 0.01, dtype=EXTENDED)
    assert extended.dtype == double.dtype
    np.testing.assert_allclose(extended, double, rtol=0, atol=1e-12)


@pytest.mark.skipif(EXTENDED is np.float64, reason="no fast extended precision here")
def test_extended_precision_keeps_round_off_below_double():
    # 1000 steps of a linear problem, whose exact solution is one multiplication in Fourier
    # space (done here in long double). Stepping in double accumulates 2.5e-14; in long double
    # what is left is the final rounding to double (8e-17, the values are below 1).
    m, length = 15, 2.0
    k = _wavenumbers(m, length)
    symbol = -1j * 0.7 * k - 0.01 * k**2
    u0 = np.random.default_rng(5).standard_normal(m)
    exact = np.fft.irfft(np.exp(symbol[: m // 2 + 1].astype(np.clongdouble))
                         * np.fft.rfft(u0.astype(np.longdouble)), n=m)  # t = 1
    u = solve_periodic(symbol, np.zeros_like, u0, length, np.array([1.0]), 1e-3, dtype=EXTENDED)
    assert np.max(np.abs(exact)) < 1.0
    assert np.max(np.abs(u[0] - exact)) <= 2.5e-16


def test_nls_conserves_mass_and_energy(nls_benchmark):
    x, t, h = nls_benchmark
    dx = x[1] - x[0]
    k = _wavenumbers(x.size, 10.0)
    # On the periodic grid the rectangle rule is the exact integral of the interpolant's |h|^2.
    mass = np.sum(np.abs(h) ** 2, axis=1) * dx
    h_x = np.fft.ifft(1j * k * np.fft.fft(h, axis=1), axis=1)
    # Hamiltonian of i h_t + 0.5 h_xx + |h|^2 h = 0; a sign error in either term breaks it.
    energy = np.sum(0.5 * np.abs(h_x) ** 2 - 0.5 * np.abs(h) ** 4, axis=1) * dx
    assert np.max(np.abs(mass / mass[0] - 1.0)) <= 1e-8
    assert np.max(np.abs(energy / energy[0] - 1.0)) <= 1e-8
    # The data-free check that the dynamics are not trivial: |h| changes a lot (focusing).
    assert np.max(np.abs(h)) > 3.0
    np.testing.assert_array_equal(h[0], 2.0 / np.cosh(x))


def test_allen_cahn_residual_symmetry_and_bounds():
    m = 512
    x = -1.0 + 2.0 * np.arange(m) / m
    k = _wavenumbers(m, 2.0)
    t_c = np.array([0.2, 0.5, 0.9])
    h_t = 1e-3
    tt = (t_c[:, None] + h_t * _OFFSETS[None, :]).ravel()  # (n_t * 5,), time-major
    v = allen_cahn(x, tt).reshape(t_c.size, 5, m)
    u = v[:, 2]
    u_t = np.einsum("a,iaj->ij", _D1, v) / h_t
    u_xx = np.fft.irfft(-k[: m // 2 + 1] ** 2 * np.fft.rfft(u, axis=1), n=m, axis=1)
    reaction = 5.0 * (u - u**3)
    residual = u_t - 1e-4 * u_xx - reaction
    scale = np.max(np.abs(u_t) + np.abs(1e-4 * u_xx) + np.abs(reaction))
    assert scale > 1.0  # interfaces make the terms O(1), so the bound below is meaningful
    # Fourth-order differences in t leave ~1e-10; a 10% error in d or gamma gives ~1e-2.
    assert np.max(np.abs(residual)) / scale < 1e-7

    u_all = allen_cahn(x, np.linspace(0.0, 1.0, 21))
    # Even initial data stay even: the grid maps to itself under x -> -x (index j -> -j mod m).
    np.testing.assert_allclose(u_all[:, (-np.arange(m)) % m], u_all, rtol=0, atol=1e-12)
    # Maximum principle: |u| <= 1 initially, hence always.
    assert np.max(np.abs(u_all)) <= 1.0 + 1e-9


def test_allen_cahn_times_any_order_and_initial_row():
    x = np.array([-1.0, -0.3, 0.123, 0.99, 1.0, 2.5])
    t = np.array([0.5, 0.0, 0.1, 0.5])
    u = allen_cahn(x, t)
    sorted_u = allen_cahn(x, np.array([0.0, 0.1, 0.5]))
    np.testing.assert_array_equal(u, sorted_u[[2, 0, 1, 2]])
    # The t = 0 row is the initial condition itself, periodically extended (2.5 -> 0.5).
    x_wrapped = np.array([-1.0, -0.3, 0.123, 0.99, -1.0, 0.5])
    np.testing.assert_allclose(u[1], x_wrapped**2 * np.cos(np.pi * x_wrapped), rtol=0,
                               atol=1e-15)
    # Off-grid points carry the periodic extension too.
    np.testing.assert_allclose(u[:, 4], u[:, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("m", [16, 15])
@pytest.mark.parametrize("complex_data", [False, True])
def test_fourier_interpolate_reproduces_trig_polynomials(m, complex_data):
    rng = np.random.default_rng(1234)
    length, x0 = 2.7, -0.4
    batch = (2, 3)
    degrees = np.arange(1, (m - 1) // 2 + 1)  # every degree below m / 2

    def draw(shape):
        z = rng.normal(size=shape)
        return z + 1j * rng.normal(size=shape) if complex_data else z

    a0 = draw(batch)
    a = draw(batch + (degrees.size,))
    b = draw(batch + (degrees.size,))
    nyq = draw(batch) if m % 2 == 0 else np.zeros(batch)

    def poly(x):
        w = 2.0 * np.pi * (x[:, None] - x0) / length  # (n_x, 1)
        out = a0[..., None] + np.einsum("...d,xd->...x", a, np.cos(w * degrees))
        out = out + np.einsum("...d,xd->...x", b, np.sin(w * degrees))
        return out + nyq[..., None] * np.cos(0.5 * m * w[:, 0])

    grid = x0 + length * np.arange(m) / m
    x = rng.uniform(x0 - 2.0 * length, x0 + 3.0 * length, size=200)
    got = fourier_interpolate(poly(grid), length, x, x0=x0)
    assert got.shape == batch + (x.size,)
    assert got.dtype == (np.complex128 if complex_data else np.float64)
    np.testing.assert_allclose(got, poly(x), rtol=0, atol=1e-12)
    # At the nodes the interpolant returns the data.
    np.testing.assert_allclose(fourier_interpolate(poly(grid), length, grid, x0=x0), poly(grid),
                               rtol=0, atol=1e-13)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dt": 0.0},
        {"dt": float("nan")},
        {"length": -1.0},
        {"t_out": np.array([-0.1, 0.5])},
        {"t_out": np.array([0.5, 0.1])},
        {"t_out": np.zeros((2, 2))},
        {"u0": np.zeros(7)},
        {"linear_symbol": np.zeros((8, 1))},
        {"u0": np.full(8, np.nan)},
        {"nonlinear_symbol": np.ones(7)},
        {"nonlinear_symbol": np.full(8, np.inf)},
        {"dtype": np.float32},
    ],
)
def test_solve_periodic_rejects_invalid_input(kwargs):
    args = {
        "linear_symbol": -_wavenumbers(8, 1.0) ** 2,
        "nonlinear": np.zeros_like,
        "u0": np.zeros(8),
        "length": 1.0,
        "t_out": np.array([0.0, 0.5]),
        "dt": 0.1,
    }
    args.update(kwargs)
    with pytest.raises(ValueError):
        solve_periodic(**args)


def test_long_double_needs_a_long_double_fft(monkeypatch):
    # numpy before 2.0 rounds long-double input of its FFT to double, which would step in
    # double while claiming long double.
    import pinn.reference.spectral as spectral

    monkeypatch.setattr(spectral, "_LONG_DOUBLE_FFT", False)
    with pytest.raises(ValueError, match="numpy >= 2.0"):
        solve_periodic(np.zeros(8), np.zeros_like, np.zeros(8), 1.0, np.array([0.1]), 0.1,
                       dtype=np.longdouble)


def test_blow_up_is_reported():
    # u' = u^2 from u = 1 blows up at t = 1.
    k = _wavenumbers(8, 1.0)
    with np.errstate(over="ignore", invalid="ignore"), pytest.raises(FloatingPointError):
        solve_periodic(0.0 * k, np.square, np.ones(8), 1.0, np.array([0.5, 2.0]), 0.01)


def test_empty_inputs():
    assert allen_cahn(np.array([]), np.array([0.0, 0.5])).shape == (2, 0)
    assert allen_cahn(np.array([0.0]), np.array([])).shape == (0, 1)
    assert nls(np.array([0.0, 1.0]), np.array([])).shape == (0, 2)

"""Reference solutions of periodic 1-D evolution equations (Fourier pseudo-spectral, ETDRK4).

Problems of the form

    u_t = L u + N(u),   x in [x0, x0 + length) periodic,

with a linear, constant-coefficient operator ``L`` (diagonal in Fourier space, with symbol
``L(k)``) and a nonlinear term ``N`` evaluated pointwise in physical space, are discretised on
the ``M``-point grid ``x_j = x0 + length * j / M`` and advanced in time with the fourth-order
exponential time-differencing Runge-Kutta scheme ETDRK4 of Cox and Matthews (2002, J. Comput.
Phys. 176, 430-455). The stiff linear part is integrated exactly; only ``N`` is approximated, so
the step size is limited by the accuracy wanted for the nonlinear dynamics, not by the stiffness
of ``L`` (``-1e-4 k^2`` for Allen-Cahn, ``-0.5 i k^2`` for NLS, ``i lambda2 k^3`` for KdV,
``beta k^2 - gamma k^4`` for Kuramoto-Sivashinsky).

A nonlinearity in conservation form, ``N(u) = G (g(u))`` with ``G`` a constant-coefficient
operator (``-lambda1 / 2 d/dx`` for the ``-lambda1 u u_x = -lambda1 (u^2 / 2)_x`` of KdV and
Kuramoto-Sivashinsky), is given as the pointwise ``g`` and the symbol of ``G``: ``G`` is then
applied in Fourier space, where the transform of ``g(u)`` is taken anyway, so it costs no
extra transforms.

One ETDRK4 step of size ``h`` for the Fourier coefficients ``v`` reads, with ``z = h L``,

    a = E2 v + Q N(v),          b = E2 v + Q N(a),
    c = E2 a + Q (2 N(b) - N(v)),
    v <- E v + f1 N(v) + 2 f2 (N(a) + N(b)) + f3 N(c),

    E = e^z,  E2 = e^(z/2),  Q = h (e^(z/2) - 1) / z,
    f1 = h (-4 - z + e^z (4 - 3 z + z^2)) / z^3,
    f2 = h (2 + z + e^z (z - 2)) / z^3,
    f3 = h (-4 - 3 z - z^2 + e^z (4 - z)) / z^3.

The coefficient formulas suffer catastrophic cancellation for small ``|z|`` (for ``f1`` the
relative error grows like ``eps / |z|^3``, i.e. it is useless below ``|z| ~ 1e-5`` and loses
half the digits around ``1e-3``), and every problem has ``z = 0`` at ``k = 0``. Following Kassam
and Trefethen (2005, SIAM J. Sci. Comput. 26, 1214-1233) they are evaluated there as the mean of
the function over a circle around ``z``: the functions are entire, so by the mean-value property
the mean equals the value at the centre, and the trapezoidal rule on the circle converges
geometrically in the number of points. The circle has radius 1 and is used for ``|z| < 1/2``,
so every point on it stays at distance ``>= 1/2`` from the origin and the formulas lose at most a
few digits; for ``|z| >= 1/2`` the closed forms lose at most about two digits and are used
directly. (Kassam and Trefethen use the circle for every entry; for complex ``z``, as in NLS, a
circle point can then land arbitrarily close to the origin when ``|z|`` is near the radius, which
the split above rules out.)

Real problems (real initial data, symbols with ``L(-k) = conj(L(k))`` (and the same for ``G``)
and a nonlinearity that maps real arrays to real arrays) are advanced with real FFTs, which
halves the work and keeps the solution exactly real. For even ``M`` the Nyquist mode
``cos(pi M (x - x0) / length)`` is then treated symmetrically: it is acted on by
``(L(k_N) + L(-k_N)) / 2 = Re L(-k_N)``, which is what the operator does to that grid function
(for odd derivatives, ``0``).

No dealiasing is applied: like the published reference data, the nonlinear term is evaluated
pointwise on the ``M``-point grid.

The two benchmark problems below reproduce the data sets used throughout the PINN literature:
``allen_cahn`` (Raissi et al. ``AC.mat``, jaxpi ``allen_cahn.mat``) and ``nls`` (Raissi et al.
``NLS.mat``). KdV and Kuramoto-Sivashinsky have modules of their own (``kdv.py``,
``kuramoto_sivashinsky.py``) built on :func:`solve_on_points`.

Resolution. Both benchmark initial conditions have a kink where the period closes:
``x^2 cos(pi x)`` has slope ``-2`` at ``x = 1`` and ``+2`` at ``x = -1``, and ``2 sech(x)`` has
slope ``-0.027`` at ``x = 5`` and ``+0.027`` at ``x = -5``. Their Fourier coefficients
therefore decay only like ``k^-2``, and early on diffusion (Allen-Cahn) smooths the kink over
less than a grid spacing, so spatial convergence is algebraic (second order at best) rather
than spectral. The relative L2 difference over ``t in [0, 1]`` between the 512-mode Allen-Cahn
solution and a 4096-mode one is about ``1e-5`` (1024 modes: ``3e-6``; 2048: ``7e-7``); for NLS
over ``t in [0, pi/2]``, 256 and 512 modes differ from 1024 by ``2e-5`` and ``6e-6``. The
published data sets are these very grid discretisations: ``AC.mat`` is the 512-point one,
``allen_cahn.mat`` the 511-point one, ``NLS.mat`` the 256-point one, each reproduced here to
``1e-10`` or better with ``n_modes`` set to match and a small ``dt``. The defaults use the
benchmark grids; raise ``n_modes`` for the continuous problem instead.

Time stepping is far from limiting. For Allen-Cahn (512 modes) the relative error against
``dt -> 0`` is ``2.4e-9`` at ``dt = 5e-3``, ``1.5e-10`` at ``2.5e-3`` (the fourth-order ratio 16)
and ``4e-12`` at the default ``1e-3``; for NLS (256 modes) it is about ``1e-6`` at ``dt = 1e-3``,
``7e-8`` at ``5e-4`` and ``5e-9`` at the default ``2.5e-4``. Each benchmark solve on a
201-time grid takes well under a second.

Precision. Round-off enters every step at the level of ``eps`` (``2.2e-16`` in double) and is
then carried along by the dynamics. Where they amplify small differences, as the chaotic
Kuramoto-Sivashinsky benchmark does (about ``1e5``-fold by ``t = 1``), it sets a floor to the
accuracy that no finer step or grid lowers; ``dtype=np.longdouble`` steps in long double
(``eps = 1.1e-19`` where that is the 80-bit x87 format, :data:`EXTENDED`), at two to three
times the cost.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from pinn.reference.checks import check_domain, check_points

__all__ = ["EXTENDED", "wavenumbers", "solve_periodic", "fourier_interpolate", "solve_on_points",
           "allen_cahn", "nls"]

#: An initial value: a function of positions ``(M,) -> (M,)``, or its values on the grid.
Initial = Union[Callable[[np.ndarray], np.ndarray], np.ndarray]

#: Whether numpy's FFT computes in long double (numpy >= 2.0; before, it rounds to double).
_LONG_DOUBLE_FFT = np.fft.rfft(np.zeros(2, dtype=np.longdouble)).dtype == np.clongdouble

#: Long double where it is the 80-bit x87 format (x86-64), which runs in hardware, at two to
#: three times the cost of double, and numpy's FFT supports it; double elsewhere: IEEE quad
#: (Linux on arm64) is emulated in software, and Windows and macOS on arm64 have nothing wider.
EXTENDED = (np.longdouble if np.finfo(np.longdouble).nmant == 63 and _LONG_DOUBLE_FFT
            else np.float64)

#: Points on the circle around ``z`` used for the ETDRK4 coefficients at small ``|z|``.
_CONTOUR_POINTS = 32
#: Radius of that circle; with ``_CONTOUR_BELOW`` it keeps every point >= 1/2 from the origin.
_CONTOUR_RADIUS = 1.0
#: ``|z|`` below which the coefficients come from the circle rather than the closed forms.
_CONTOUR_BELOW = 0.5
#: Number of complex entries in one (points, modes) block of ``fourier_interpolate`` (16 MiB).
_CHUNK_ELEMS = 1 << 20


def _phi_closed(z: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The four ETDRK4 weight functions (without the factor ``h``) from their closed forms.

    Args:
        z: Complex array of any shape, nonzero.

    Returns:
        ``(q, g1, g2, g3)``, each shaped like ``z``: ``q = (e^(z/2) - 1) / z`` and the ``f1``,
        ``f2``, ``f3`` numerators of the module docstring divided by ``z^3``.
    """
    ez = np.exp(z)
    z2 = z * z
    z3 = z2 * z
    q = (np.exp(0.5 * z) - 1.0) / z
    g1 = (-4.0 - z + ez * (4.0 - 3.0 * z + z2)) / z3
    g2 = (2.0 + z + ez * (z - 2.0)) / z3
    g3 = (-4.0 - 3.0 * z - z2 + ez * (4.0 - z)) / z3
    return q, g1, g2, g3


def _etdrk4_coefficients(z: np.ndarray, h: float) -> Dict[str, np.ndarray]:
    """ETDRK4 coefficients for a diagonal linear part.

    Args:
        z: ``h * L(k)``, array of shape ``(K,)``; long-double input gives long-double output.
        h: Step size, ``> 0``.

    Returns:
        Dict with keys ``"E"``, ``"E2"``, ``"Q"``, ``"f1"``, ``"f2"``, ``"f3"``, each a complex
        array of shape ``(K,)`` (see the module docstring); ``Q`` and ``f1..f3`` include ``h``.
    """
    z = np.asarray(z)
    z = z.astype(np.result_type(z.dtype, np.complex128))  # complex128 or clongdouble
    real_type = z.real.dtype.type
    q = np.empty_like(z)
    g1 = np.empty_like(z)
    g2 = np.empty_like(z)
    g3 = np.empty_like(z)

    small = np.abs(z) < _CONTOUR_BELOW
    big = ~small
    if big.any():
        q[big], g1[big], g2[big], g3[big] = _phi_closed(z[big])
    if small.any():
        # Nodes at half-step angles come in conjugate pairs without touching the real axis, so
        # for real z the mean is real up to round-off; accuracy does not depend on it, since
        # every node is >= 1/2 from the origin.
        pi = 4.0 * np.arctan(real_type(1.0))  # np.pi in float64, pi to long-double accuracy
        theta = 2.0 * pi * (np.arange(_CONTOUR_POINTS, dtype=real_type) + 0.5) / _CONTOUR_POINTS
        zc = z[small, None] + _CONTOUR_RADIUS * np.exp(1j * theta)[None, :]  # (n_small, P)
        vals = _phi_closed(zc)
        q[small], g1[small], g2[small], g3[small] = (v.mean(axis=1) for v in vals)
        # For real z the exact values are real; the circle mean carries a round-off imaginary
        # part, which would leak into real problems solved with complex FFTs.
        real_z = small & (z.imag == 0.0)
        if real_z.any():
            for arr in (q, g1, g2, g3):
                arr[real_z] = arr[real_z].real

    return {
        "E": np.exp(z),
        "E2": np.exp(0.5 * z),
        "Q": h * q,
        "f1": h * g1,
        "f2": h * g2,
        "f3": h * g3,
    }


def _is_hermitian_symbol(symbol: np.ndarray) -> bool:
    """Whether ``symbol`` (fftfreq order) maps real grid functions to real ones.

    The Nyquist entry of an even-length symbol is not tested: its real part is what acts on the
    (real) Nyquist grid mode, see the module docstring.
    """
    m = symbol.size
    idx = np.arange(m)
    mirrored = symbol[(-idx) % m]
    scale = max(float(np.max(np.abs(symbol))), 1.0)
    mask = np.ones(m, dtype=bool)
    if m % 2 == 0:
        mask[m // 2] = False
    return bool(np.all(np.abs(mirrored[mask] - np.conj(symbol[mask])) <= 1e-13 * scale))


def solve_periodic(
    linear_symbol: np.ndarray,
    nonlinear: Callable[[np.ndarray], np.ndarray],
    u0: np.ndarray,
    length: float,
    t_out: np.ndarray,
    dt: float,
    x0: float = 0.0,
    nonlinear_symbol: Optional[np.ndarray] = None,
    dtype: type = np.float64,
) -> np.ndarray:
    """Solve ``u_t = L u + N(u)`` on a periodic grid with Fourier pseudo-spectral ETDRK4.

    Args:
        linear_symbol: Fourier symbol of ``L``, shape ``(M,)``, complex or real, on the
            wavenumbers ``np.fft.fftfreq(M, d=length / M) * 2 * pi`` (``u_xx`` is ``-k**2``,
            ``u_x`` is ``1j * k``).
        nonlinear: ``N``, a function of the physical-space state of shape ``(M,)`` returning an
            array of shape ``(M,)``, real or complex. It is called with a real array when the
            problem is real (see below) and with a complex array otherwise.
        u0: Initial state on the grid ``x0 + length * arange(M) / M``, shape ``(M,)``.
        length: Period, ``> 0``.
        t_out: Output times, shape ``(n_t,)``, finite, ``>= 0`` and non-decreasing. The solve
            starts from ``u0`` at ``t = 0``.
        dt: Largest step size, ``> 0``. Each interval between consecutive output times (and from
            0 to the first) is split into the fewest equal steps of size ``<= dt``, so every
            output time is hit exactly.
        x0: Left end of the grid. The dynamics are translation invariant, so it only documents
            where ``u0`` was sampled; it must be finite.
        nonlinear_symbol: Fourier symbol of ``G`` for a nonlinearity ``N(u) = G(nonlinear(u))``,
            shape ``(M,)`` on the same wavenumbers (``-0.5j * k`` for ``-u u_x``); ``None``
            for ``N = nonlinear``.
        dtype: Real type the state and the ETDRK4 coefficients are held in while stepping:
            ``np.float64``, or ``np.longdouble`` for problems that amplify round-off (see the
            module docstring). The inputs and the result are double precision either way.

    Returns:
        States at ``t_out``, shape ``(n_t, M)``, time along rows. The result is float64 when
        ``u0`` is real, ``linear_symbol`` satisfies ``L(-k) = conj(L(k))`` (up to round-off;
        the Nyquist entry of even ``M`` excepted), so does ``nonlinear_symbol``, and
        ``nonlinear`` maps the real ``u0`` to a real array; it is complex128 otherwise.

    Raises:
        ValueError: On inconsistent shapes, non-finite input, ``length <= 0``, ``dt <= 0``,
            output times that are negative or decreasing, or another ``dtype``.
        FloatingPointError: If the solution stops being finite (an unstable symbol, a blow-up,
            or a step far too large).
    """
    symbol = np.asarray(linear_symbol)
    if symbol.ndim != 1 or symbol.size < 2:
        raise ValueError(f"linear_symbol must be 1-D with >= 2 entries, got {symbol.shape}")
    m = symbol.size
    symbol = symbol.astype(np.complex128)
    u0 = np.asarray(u0)
    if u0.shape != (m,):
        raise ValueError(f"u0 must have shape ({m},) like linear_symbol, got {u0.shape}")
    t_out = np.asarray(t_out, dtype=np.float64)
    if t_out.ndim != 1:
        raise ValueError(f"t_out must be 1-D, got shape {t_out.shape}")
    length = float(length)
    dt = float(dt)
    x0 = float(x0)
    if not (math.isfinite(length) and length > 0.0):
        raise ValueError(f"length must be a positive finite number, got {length!r}")
    if not (math.isfinite(dt) and dt > 0.0):
        raise ValueError(f"dt must be a positive finite number, got {dt!r}")
    if not math.isfinite(x0):
        raise ValueError(f"x0 must be finite, got {x0!r}")
    if dtype not in (np.float64, np.longdouble):
        raise ValueError(f"dtype must be np.float64 or np.longdouble, got {dtype!r}")
    if dtype is np.longdouble and not _LONG_DOUBLE_FFT:
        raise ValueError(f"dtype=np.longdouble needs numpy >= 2.0, whose FFT computes in long "
                         f"double; this is numpy {np.__version__}")
    complex_type = np.result_type(dtype, np.complex128).type
    if nonlinear_symbol is None:
        g_symbol = np.ones(m, dtype=np.complex128)
    else:
        g_symbol = np.asarray(nonlinear_symbol).astype(np.complex128)
        if g_symbol.shape != (m,):
            raise ValueError(f"nonlinear_symbol must have shape ({m},) like linear_symbol, got "
                             f"{g_symbol.shape}")
    if not (np.all(np.isfinite(symbol)) and np.all(np.isfinite(g_symbol))
            and np.all(np.isfinite(u0)) and np.all(np.isfinite(t_out))):
        raise ValueError("linear_symbol, nonlinear_symbol, u0 and t_out must be finite")
    if t_out.size and t_out[0] < 0.0:
        raise ValueError(f"output times must be >= 0, got t_out[0] = {t_out[0]!r}")
    if np.any(np.diff(t_out) < 0.0):
        raise ValueError("output times must be non-decreasing")

    real = (
        np.isrealobj(u0)
        and _is_hermitian_symbol(symbol)
        and _is_hermitian_symbol(g_symbol)
        and np.isrealobj(nonlinear(u0.astype(np.float64)))
    )
    if real:
        u = u0.astype(dtype)
        lin = symbol[: m // 2 + 1].astype(complex_type)
        g_hat = g_symbol[: m // 2 + 1].astype(complex_type)
        if m % 2 == 0:
            # The symmetric Nyquist mode, see the module docstring. For G, irfft would drop
            # the imaginary part anyway; this keeps the state's Nyquist entry real as well.
            lin[-1] = lin[-1].real
            g_hat[-1] = g_hat[-1].real
        fwd = np.fft.rfft

        def inv(v: np.ndarray) -> np.ndarray:
            return np.fft.irfft(v, n=m)

        out = np.empty((t_out.size, m), dtype=np.float64)
    else:
        u = u0.astype(complex_type)
        lin = symbol.astype(complex_type)
        g_hat = g_symbol.astype(complex_type)
        fwd = np.fft.fft
        inv = np.fft.ifft
        out = np.empty((t_out.size, m), dtype=np.complex128)

    def w_hat(v: np.ndarray) -> np.ndarray:
        # The transform of nonlinear(u); N(u) is g_hat times it, folded into the weights below.
        return fwd(nonlinear(inv(v)))

    v = fwd(u)
    t_now = 0.0
    coeffs = None
    h_coeffs = -1.0
    for j, t_next in enumerate(t_out):
        span = t_next - t_now
        if span > 0.0:
            # The fewest equal steps of size <= dt; the tolerance keeps spans that are a whole
            # number of steps up to round-off (0.005 / 1e-3) from taking one extra step.
            n_steps = max(1, math.ceil(span / dt * (1.0 - 1e-12)))
            h = span / n_steps
            # Spans of uniform output times differ in the last bits; coefficients for step sizes
            # equal to ~1e-14 relative are equal to round-off, so they are reused.
            if coeffs is None or abs(h - h_coeffs) > 1e-14 * h:
                coeffs = _etdrk4_coefficients(h * lin, h)
                h_coeffs = h
                # Every N enters multiplied by one of Q, f1, f2, f3, so G goes there once.
                # Without G it multiplies by 1, which changes no bit.
                for key in ("Q", "f1", "f2", "f3"):
                    coeffs[key] = coeffs[key] * g_hat
                coeffs["2f2"] = 2.0 * coeffs["f2"]
            e, e2, q = coeffs["E"], coeffs["E2"], coeffs["Q"]
            f1, f2x2, f3 = coeffs["f1"], coeffs["2f2"], coeffs["f3"]
            for _ in range(n_steps):
                wv = w_hat(v)
                e2v = e2 * v
                a = e2v + q * wv
                wa = w_hat(a)
                b = e2v + q * wa
                wb = w_hat(b)
                c = e2 * a + q * (2.0 * wb - wv)
                wc = w_hat(c)
                v = e * v + f1 * wv + f2x2 * (wa + wb) + f3 * wc
            t_now = float(t_next)
        out[j] = inv(v)  # rounded to double precision
        if not np.all(np.isfinite(out[j])):
            raise FloatingPointError(f"solution is not finite at t = {t_next!r}")
    return out


def fourier_interpolate(
    u_grid: np.ndarray, length: float, x: np.ndarray, x0: float = 0.0
) -> np.ndarray:
    """Evaluate the trigonometric interpolant of periodic grid data at arbitrary points.

    The data ``u_grid[..., j]`` sit at ``x0 + length * j / M``. The interpolant is the unique
    trigonometric polynomial of degree ``< M / 2`` through them, plus for even ``M`` the Nyquist
    term ``c_N cos(pi M (x - x0) / length)`` (half of it on each of ``+-k_N``), so real data give
    a real interpolant and every mode up to degree ``M / 2 - 1`` (and ``cos`` of degree ``M / 2``)
    is reproduced exactly. Points outside the period are evaluated on the periodic extension.

    Args:
        u_grid: Grid values, shape ``(..., M)``, real or complex, ``M >= 1``.
        length: Period, ``> 0``.
        x: Evaluation points, shape ``(n_x,)``.
        x0: Position of the first grid value.

    Returns:
        Interpolated values, shape ``(..., n_x)``; float64 for real ``u_grid``, complex128
        otherwise.

    Raises:
        ValueError: If ``x`` is not 1-D, ``length`` is not positive, or the input is not finite.
    """
    u_grid = np.asarray(u_grid)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D, got shape {x.shape}")
    if u_grid.ndim < 1 or u_grid.shape[-1] < 1:
        raise ValueError(f"u_grid must have a non-empty last axis, got shape {u_grid.shape}")
    length = float(length)
    if not (math.isfinite(length) and length > 0.0):
        raise ValueError(f"length must be a positive finite number, got {length!r}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(u_grid)) and math.isfinite(x0)):
        raise ValueError("u_grid, x and x0 must be finite")

    m = u_grid.shape[-1]
    real = np.isrealobj(u_grid)
    coef = np.fft.fft(u_grid, axis=-1) / m  # (..., M)
    # Integer wavenumbers; the phase is 2 pi n xi with xi = (x - x0) / length reduced to [0, 1),
    # which keeps the argument of exp small (accurate) far from the base period.
    n = np.fft.fftfreq(m, d=1.0 / m)  # (M,)
    xi = np.mod((x - x0) / length, 1.0)  # (n_x,)

    batch = coef.shape[:-1]
    flat = coef.reshape(-1, m)
    out = np.empty((flat.shape[0], x.size), dtype=np.complex128)
    rows = max(1, _CHUNK_ELEMS // m)
    for lo in range(0, x.size, rows):
        hi = min(lo + rows, x.size)
        phase = 2.0 * np.pi * xi[lo:hi, None] * n[None, :]  # (chunk, M)
        basis = np.exp(1j * phase)
        if m % 2 == 0:
            # e^{-i k_N x} alone would give real data an imaginary part between the nodes.
            basis[:, m // 2] = np.cos(phase[:, m // 2])
        out[:, lo:hi] = flat @ basis.T
    out = out.reshape(*batch, x.size)
    return out.real.copy() if real else out


def wavenumbers(n_modes: int, length: float) -> np.ndarray:
    """Angular wavenumbers of the ``n_modes``-point grid on a period ``length``, FFT order.

    Returns:
        ``k`` of shape ``(n_modes,)``: ``d/dx`` has the symbol ``1j * k``.
    """
    return 2.0 * np.pi * np.fft.fftfreq(n_modes, d=length / n_modes)


def solve_on_points(
    symbol: np.ndarray,
    nonlinear: Callable[[np.ndarray], np.ndarray],
    initial: Initial,
    domain: Sequence[float],
    x: np.ndarray,
    t: np.ndarray,
    dt: float,
    nonlinear_symbol: Optional[np.ndarray] = None,
    dtype: type = np.float64,
) -> np.ndarray:
    """Solve on the grid of ``domain`` and interpolate to the points ``(t, x)``.

    Args:
        symbol: Fourier symbol of the linear part on :func:`wavenumbers` ``(M, length)``,
            shape ``(M,)``; ``M`` sets the grid.
        nonlinear: The pointwise nonlinearity, see :func:`solve_periodic`.
        initial: The initial value, a function of positions ``(M,) -> (M,)`` or its values on
            the grid ``x_min + length * arange(M) / M``, shape ``(M,)``.
        domain: ``(x_min, x_max)``, the period, ``x_min < x_max``.
        x: Positions, shape ``(n_x,)``; outside the period the periodic extension is returned.
        t: Times, shape ``(n_t,)``, ``>= 0``, in any order and possibly repeated.
        dt: Largest ETDRK4 step.
        nonlinear_symbol: Fourier symbol applied to ``nonlinear(u)``, see
            :func:`solve_periodic`.
        dtype: Precision of the time stepping, see :func:`solve_periodic`.

    Returns:
        ``u[j, i] = u(x[i], t[j])``, shape ``(n_t, n_x)``. Rows with ``t == 0`` are a callable
        ``initial`` evaluated at ``x`` (wrapped into the period) rather than interpolated: the
        Allen-Cahn initial data have a kink at the ends of the period, which no trigonometric
        interpolant reproduces between nodes.

    Raises:
        ValueError: On a domain that is not two finite increasing numbers, or an initial value
            of the wrong shape (and as :func:`solve_periodic`).
    """
    a, b = check_domain(domain)
    length = b - a
    n_modes = np.shape(symbol)[0]
    grid = a + length * np.arange(n_modes) / n_modes
    u0 = np.asarray(initial(grid) if callable(initial) else initial)
    if u0.shape != (n_modes,):
        raise ValueError(f"the initial value on the {n_modes}-point grid must have shape "
                         f"({n_modes},), got {u0.shape}")
    ts, inverse = np.unique(t, return_inverse=True)
    states = solve_periodic(symbol, nonlinear, u0, length, ts, dt, x0=a,
                            nonlinear_symbol=nonlinear_symbol, dtype=dtype)
    values = fourier_interpolate(states, length, x, x0=a)  # (len(ts), n_x)
    if callable(initial) and ts.size and ts[0] == 0.0:
        values[0] = initial(np.mod(x - a, length) + a)
    return values[inverse.reshape(-1)]


def allen_cahn(
    x: np.ndarray,
    t: np.ndarray,
    d: float = 1e-4,
    gamma: float = 5.0,
    n_modes: int = 512,
    dt: float = 1e-3,
) -> np.ndarray:
    """Reference solution of the Allen-Cahn benchmark.

    ``u_t = d u_xx + gamma (u - u^3)`` (written ``u_t - 1e-4 u_xx + 5 u^3 - 5 u = 0`` with the
    defaults) on ``x in [-1, 1]``, periodic, with ``u(x, 0) = x^2 cos(pi x)``.

    Args:
        x: Positions, shape ``(n_x,)``; outside ``[-1, 1)`` the periodic extension is returned.
        t: Times, shape ``(n_t,)``, ``>= 0``, in any order.
        d: Diffusion coefficient, ``> 0`` for a well-posed problem.
        gamma: Reaction rate.
        n_modes: Fourier modes (grid points) on ``[-1, 1)``. The default is the grid of the
            published ``AC.mat``; 511 is that of jaxpi's ``allen_cahn.mat`` (see the module
            docstring on spatial resolution).
        dt: Largest ETDRK4 step.

    Returns:
        ``u`` of shape ``(n_t, n_x)``, float64, ``u[j, i] = u(x[i], t[j])``.

    Raises:
        ValueError: If ``x`` or ``t`` is not 1-D or not finite, or a time is negative.
    """
    x, t = check_points(x, t)
    k = wavenumbers(n_modes, 2.0)
    symbol = -d * k * k

    def reaction(u: np.ndarray) -> np.ndarray:
        return gamma * (u - u * u * u)

    def initial(xx: np.ndarray) -> np.ndarray:
        return xx * xx * np.cos(np.pi * xx)

    return solve_on_points(symbol, reaction, initial, (-1.0, 1.0), x, t, dt)


def nls(
    x: np.ndarray,
    t: np.ndarray,
    n_modes: int = 256,
    dt: float = 2.5e-4,
) -> np.ndarray:
    """Reference solution of the nonlinear Schrodinger benchmark.

    ``i h_t + 0.5 h_xx + |h|^2 h = 0``, i.e. ``h_t = 0.5 i h_xx + i |h|^2 h``, on
    ``x in [-5, 5)``, periodic, with ``h(x, 0) = 2 sech(x)``.

    Args:
        x: Positions, shape ``(n_x,)``; outside ``[-5, 5)`` the periodic extension is returned.
        t: Times, shape ``(n_t,)``, ``>= 0``, in any order.
        n_modes: Fourier modes (grid points) on ``[-5, 5)``. The default is the grid of the
            published ``NLS.mat``.
        dt: Largest ETDRK4 step.

    Returns:
        ``h`` of shape ``(n_t, n_x)``, complex128, ``h[j, i] = h(x[i], t[j])``.

    Raises:
        ValueError: If ``x`` or ``t`` is not 1-D or not finite, or a time is negative.
    """
    x, t = check_points(x, t)
    k = wavenumbers(n_modes, 10.0)
    symbol = -0.5j * k * k

    def cubic(h: np.ndarray) -> np.ndarray:
        return 1j * (h.real * h.real + h.imag * h.imag) * h

    def initial(xx: np.ndarray) -> np.ndarray:
        return (2.0 / np.cosh(xx)).astype(np.complex128)

    return solve_on_points(symbol, cubic, initial, (-5.0, 5.0), x, t, dt)

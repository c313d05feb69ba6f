"""A problem's domain from its ``pde.geometry`` node: shapes (:mod:`pinn.geometry.csg`) or
point files (:mod:`pinn.geometry.cloud`), times the time interval of ``pde.domain``."""
from __future__ import annotations

from pathlib import Path

from pinn.coords import Axes
from pinn.expressions import constant
from pinn.geometry.cloud import PointCloud, cloud_spec
from pinn.geometry.csg import build_shape
from pinn.geometry.region import Region
from pinn.geometry.shapes import GeometryError


def region_from_config(geometry, axes: Axes, domain, periodic=None,
                       resolve=None) -> Region:
    """The region of ``pde.geometry`` on ``axes``; ``pde.domain`` gives t's interval only.

    ``resolve``: a file name of a domain from files (``points``) -> its path.

    Raises:
        GeometryError: see :func:`pinn.geometry.csg.build_shape`, :class:`Region` and
            :class:`pinn.geometry.cloud.PointCloud`; a space axis in ``pde.domain`` or periodic
            axes beside a geometry; t without an interval.
    """
    k = len(axes.space)
    if k not in (2, 3):
        raise GeometryError(f"pde.geometry: shapes are 2-D or 3-D; pde.axes has {k} space "
                            "axis (an interval needs no geometry: give pde.domain)")
    if periodic:
        raise GeometryError("pde.periodic: periodic axes are for boxes (pde.domain); a "
                            "geometry has none")
    spec = dict(domain or {})
    extra = [str(a) for a in spec if str(a) != "t"]
    if extra:
        raise GeometryError(f"pde.domain.{extra[0]}: with pde.geometry the shapes give the "
                            "space axes' extent; pde.domain gives only t: [t_min, t_max]")
    time = None
    if axes.time:
        v = spec.get("t")
        if v is None or isinstance(v, (str, int, float)) or len(list(v)) != 2:
            raise GeometryError("pde.domain.t: give the time interval as [t_min, t_max]")
        time = tuple(constant(x, key="pde.domain.t") for x in v)
        if not time[1] > time[0]:
            raise GeometryError(f"pde.domain.t={list(time)} is not allowed: t_max > t_min")
    files = cloud_spec(geometry)
    if files is not None:
        return PointCloud(axes, files, resolve or Path, time)
    return Region(axes, build_shape(geometry, k), time)


__all__ = ["region_from_config"]

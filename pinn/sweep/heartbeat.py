"""Who runs a trial of a search, and whether that process is gone.

Optuna's journal file has no heartbeat of its own (only its database storage has), so the
sweeper keeps one: every trial it asks records its owner (the sweeper process: host, boot,
pid namespace, pid, process start time and a random token) in the same journal entry that
creates the trial, and a background thread refreshes the trial's ``heartbeat`` (seconds since
the epoch) every ``hydra.sweeper.heartbeat_interval`` seconds while it runs.

A RUNNING trial is stale, and may be failed and run again by another search, only when its
owner is provably gone:

- on the same machine (same host name, boot and pid namespace): no live process has the
  owner's pid, or the process that has it started at another time (the pid was reused);
- on the same host name after a reboot of that machine: always;
- on another machine (a SLURM node, another container): its last heartbeat is older than
  the grace period (``hydra.sweeper.heartbeat_grace``, at least three of the owner's
  intervals).

A trial with no owner was asked by an earlier pinn (a journal from before heartbeats) or by
other code: it is stale as it always was. A queued trial (a re-run) is claimed before it is
taken from the queue, so between the two writes it is never without a record of who may own it.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Mapping, Optional, Set

log = logging.getLogger(__name__)

OWNER = "owner"          # user attribute: the sweeper process that runs the trial
HEARTBEAT = "heartbeat"  # user attribute: its last sign of life, seconds since the epoch
CLAIM = "claim:"         # user attribute prefix: a process about to take a queued trial
HEARTBEAT_INTERVAL = 10.0
HEARTBEAT_GRACE = 60.0


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def process_started(pid: int) -> Optional[str]:
    """When the live process ``pid`` started, as text (Linux: clock ticks after boot, field 22
    of ``/proc/<pid>/stat``); ``""`` where the platform does not say; ``None`` when no live
    process has this pid (a zombie, killed and not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return ""
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (command)": field 3 onwards
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


@dataclass(frozen=True)
class Owner:
    """A sweeper process, as recorded in the trials it runs."""

    host: str
    boot: str      # /proc/sys/kernel/random/boot_id: changes when the machine restarts
    pidns: str     # pids are comparable only within one pid namespace
    pid: int
    started: str   # see process_started
    token: str     # tells apart two owners that nothing else does
    every: float   # its heartbeat interval, seconds

    def record(self) -> dict:
        return asdict(self)


def this_process(every: float = HEARTBEAT_INTERVAL) -> Owner:
    pid = os.getpid()
    return Owner(socket.gethostname(), _read("/proc/sys/kernel/random/boot_id"),
                 _pid_namespace(), pid, process_started(pid) or "", uuid.uuid4().hex,
                 float(every))


def owner_gone(owner: Mapping, beat: Optional[float], now: float, grace: float,
               here: Owner) -> Optional[str]:
    """Why the process ``owner`` (an :meth:`Owner.record`) is provably gone, or ``None``.

    Args:
        owner: the recorded owner.
        beat: its last heartbeat (seconds since the epoch), if any.
        now: the time of the check, seconds since the epoch.
        grace: seconds without a heartbeat after which an owner on another machine is gone.
        here: the process that checks.
    """
    host, pid = owner.get("host"), owner.get("pid")
    who = f"pid {pid} on {host}"
    if host == here.host and owner.get("boot", "") != here.boot and owner.get("boot") \
            and here.boot:
        return f"its search ({who}) ran before that machine restarted"
    if host == here.host and owner.get("boot", "") == here.boot \
            and owner.get("pidns", "") == here.pidns and isinstance(pid, int):
        started = process_started(pid)
        if started is None:
            return f"its search ({who}) is gone"
        if owner.get("started") and started and started != owner["started"]:
            return f"its search ({who}) is gone; another process has that pid now"
        return None  # alive: it tells the study how the trial ended
    limit = max(grace, 3 * float(owner.get("every") or 0))
    if beat is None or now - beat > limit:
        age = "no heartbeat" if beat is None else f"no heartbeat for {now - beat:.0f} s"
        return f"its search ({who}) sent {age} (grace {limit:.0f} s)"
    return None


def stale_reason(attrs: Mapping, started: Optional[datetime], now: float, grace: float,
                 here: Owner) -> Optional[str]:
    """Why a RUNNING trial with user attributes ``attrs``, started at ``started``, is stale
    (its search is gone), or ``None`` while it may still be running; see the module's
    docstring for the rule."""
    owner = attrs.get(OWNER)
    if owner:
        return owner_gone(owner, attrs.get(HEARTBEAT), now, grace, here)
    claims = [v for k, v in attrs.items() if k.startswith(CLAIM) and isinstance(v, Mapping)]
    if not claims:
        return "no owner recorded (asked by an earlier pinn or by other code)"
    # Taken from the queue by one of the claimants, which records itself as owner at once.
    if started is not None and now - started.timestamp() > grace:
        return f"taken from the queue {now - started.timestamp():.0f} s ago, no owner since"
    if all(owner_gone(c, c.get("time"), now, grace, here) for c in claims):
        return "every search that claimed it is gone"
    return None


class Heartbeat:
    """Refreshes the ``heartbeat`` of this process's running trials from a background thread
    every ``every`` seconds. Use as a context; :meth:`add` a trial when it starts and
    :meth:`discard` it when it ends."""

    def __init__(self, storage, every: float):
        self.storage = storage
        self.every = float(every)
        self._trial_ids: Set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pinn-heartbeat", daemon=True)
        self._warned = False

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def add(self, trial_id: int) -> None:
        with self._lock:
            self._trial_ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self._trial_ids.discard(trial_id)

    def beat(self) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        with self._lock:
            trial_ids = sorted(self._trial_ids)
        for trial_id in trial_ids:
            try:
                self.storage.set_trial_user_attr(trial_id, HEARTBEAT, time.time())
            except UpdateFinishedTrialError:
                self.discard(trial_id)  # told meanwhile
            except Exception as e:  # noqa: BLE001 - a missed beat must not end the search
                if not self._warned:
                    log.warning(f"heartbeat of trial id {trial_id} not written: {e}")
                    self._warned = True

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.beat()

"""Transcript recorder for the Python session programs of the differential suite: each step's
observable result (rows, command tag, or SQLSTATE and message) is written as one JSON line, so
that the run against the primary and the run through pgswitch can be compared line by line by
tests/integration/test_differential.py."""
from __future__ import annotations

import datetime
import decimal
import json
import sys
import traceback
import uuid


def plain(v):
    """A JSON-friendly, driver-independent form of a value (the same in both runs)."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (decimal.Decimal, uuid.UUID)):
        return str(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(v).hex()
    if isinstance(v, (datetime.date, datetime.time, datetime.datetime, datetime.timedelta)):
        return str(v)
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if hasattr(v, "items") and hasattr(v, "keys"):  # asyncpg Record
        return [plain(x) for x in v.values()]
    return str(v)


def error_result(e: BaseException) -> dict:
    """SQLSTATE and primary message of a database error; the class name of anything else."""
    sqlstate = getattr(e, "sqlstate", None)
    if sqlstate is None:
        sqlstate = getattr(e, "pgcode", None)
    msg = None
    diag = getattr(e, "diag", None)
    if diag is not None:
        msg = getattr(diag, "message_primary", None)
    if msg is None:
        msg = getattr(e, "message", None) or (str(e).splitlines() or [""])[0]
    if sqlstate:
        return {"error": sqlstate, "message": msg}
    return {"exception": type(e).__name__, "message": msg}


class Recorder:
    """rec.scenario(name) selects the scenario; rec.step(name, fn) runs fn() and records what it
    returned (already made plain by the caller's helpers) or the error it raised."""

    def __init__(self, out=None):
        self.out = out or sys.stdout
        self.current = "?"

    def scenario(self, name: str) -> None:
        self.current = name

    def emit(self, step: str, result) -> None:
        self.out.write(json.dumps({"scenario": self.current, "step": step, "result": result})
                       + "\n")
        self.out.flush()

    def step(self, name: str, fn):
        try:
            res = fn()
        except Exception as e:  # noqa: BLE001 - the error is the observable result
            res = error_result(e)
            self.emit(name, res)
            return None
        self.emit(name, plain(res))
        return res

    async def astep(self, name: str, coro_fn):
        try:
            res = await coro_fn()
        except Exception as e:  # noqa: BLE001
            self.emit(name, error_result(e))
            return None
        self.emit(name, plain(res))
        return res

    def run_scenarios(self, scenarios, *args) -> None:
        """Runs each scenario function(rec, *args); an exception that escapes a scenario (a bug
        in the program, a lost connection) is recorded as that scenario's last step."""
        for fn in scenarios:
            self.scenario(fn.__name__)
            try:
                fn(self, *args)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                self.emit("scenario_aborted", error_result(e))
        self.out.write(json.dumps({"done": True}) + "\n")
        self.out.flush()

    async def arun_scenarios(self, scenarios, *args) -> None:
        for fn in scenarios:
            self.scenario(fn.__name__)
            try:
                await fn(self, *args)
            except Exception as e:  # noqa: BLE001
                traceback.print_exc()
                self.emit("scenario_aborted", error_result(e))
        self.out.write(json.dumps({"done": True}) + "\n")
        self.out.flush()

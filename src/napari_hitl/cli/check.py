"""``napari-hitl check STORE [--repair]``: verify a store's invariants, repair what can be repaired.

Exit 0 when the store is consistent, 1 with one line per problem otherwise. ``--repair``
finishes or drops a change a crash interrupted and repairs everything that can be repaired
without touching a human label (see :mod:`napari_hitl.core.store.check`).
"""

from __future__ import annotations

import argparse
import json

from napari_hitl.cli.common import add_command, add_json_option


def cmd_check(args: argparse.Namespace) -> int:
    """Verify a store (labels vs provenance, undo history, derived arrays, models).

    Verify the store's invariants: labels and provenance agree, the undo history is readable,
    derived arrays are signed and whole, model bytes match their hash. Exit 0 when consistent,
    1 with one line per problem.
    """
    from napari_hitl.core.store.check import check_store

    report = check_store(args.store, repair=args.repair)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "problems": [p.line() for p in report.problems],
                    "repaired": report.repaired,
                }
            )
        )
        return 0 if report.ok else 1
    for line in report.repaired:
        print(f"repaired: {line}")
    for p in report.problems:
        print(f"problem: {p.line()}")
    if report.ok:
        print(f"{args.store}: consistent")
        return 0
    if not args.repair and any(p.fix is not None for p in report.problems):
        print(f"run `napari-hitl check {args.store} --repair` to repair (human labels are kept)")
    return 1


def add_check_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``check`` to the ``napari-hitl`` parser."""
    p = add_command(sub, "check", cmd_check)
    p.add_argument(
        "--repair",
        action="store_true",
        help="finish or drop an interrupted change and repair what can be repaired; "
        "never changes a human label",
    )
    add_json_option(p)

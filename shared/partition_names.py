"""Names of the partitions a table partitioned by month gets at run time (no model declares them).

`<parent>_pYYYY_MM` holds one UTC month, `<parent>_default` any row no month takes, and
`retired_<month partition>` is a month retention has detached and not yet dropped. Written
here rather than in the service owning the table, so that migration tooling, which imports
no service, leaves alone exactly the tables the service makes.
"""

from __future__ import annotations

import re

RETIRED_PREFIX = "retired_"


def month_prefix(parent: str) -> str:
    """What every month partition's name of `parent` starts with."""
    return f"{parent}_p"


def month_partition(parent: str, year: int, month: int) -> str:
    """The name of `parent`'s partition for one month."""
    return f"{month_prefix(parent)}{year:04d}_{month:02d}"


def default_partition(parent: str) -> str:
    return f"{parent}_default"


def month_of_partition(parent: str, name: str) -> tuple[int, int] | None:
    """(year, month) of `parent`'s month partition called `name`; None if it is not one."""
    found = re.fullmatch(rf"{re.escape(month_prefix(parent))}(\d{{4}})_(\d{{2}})", name)
    if not found or not 1 <= int(found[2]) <= 12:
        return None
    return int(found[1]), int(found[2])


def is_partition(parent: str, table: str) -> bool:
    """Whether `table` is one of `parent`'s partitions: a month, the default, or retired."""
    return (
        table == default_partition(parent)
        or month_of_partition(parent, table.removeprefix(RETIRED_PREFIX)) is not None
    )

"""Object types and their loose-object path suffixes."""

from __future__ import annotations

from enum import IntEnum

from ..errors import OstreeError


class ObjectType(IntEnum):
    """OstreeObjectType; the values are ostree's (used in deltas and ``ostree.sizes``)."""

    FILE = 1
    DIR_TREE = 2
    DIR_META = 3
    COMMIT = 4
    TOMBSTONE_COMMIT = 5
    COMMIT_META = 6

    @property
    def is_meta(self) -> bool:
        return self is not ObjectType.FILE

    @property
    def name_str(self) -> str:
        """ostree's object type string (``file``, ``dirtree``, …)."""
        return _NAMES[self]

    @property
    def archive_suffix(self) -> str:
        """The loose-object suffix in an archive repository (``filez`` for files)."""
        return "filez" if self is ObjectType.FILE else _NAMES[self]

    @classmethod
    def from_str(cls, text: str) -> ObjectType:
        try:
            return _BY_NAME[text]
        except KeyError:
            raise OstreeError(f"Unknown object type {text!r}") from None


_NAMES = {
    ObjectType.FILE: "file",
    ObjectType.DIR_TREE: "dirtree",
    ObjectType.DIR_META: "dirmeta",
    ObjectType.COMMIT: "commit",
    ObjectType.TOMBSTONE_COMMIT: "tombstone-commit",
    ObjectType.COMMIT_META: "commitmeta",
}
_BY_NAME = {name: t for t, name in _NAMES.items()} | {"filez": ObjectType.FILE}

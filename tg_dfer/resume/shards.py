"""Shards of a run: which units a shard does, where it writes, and the merge of the shard files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py

from tg_dfer.io.h5 import SchemaError, decode_strings, json_values, open_checked, read_row


@dataclass(frozen=True)
class Shard:
    index: int  # 0 .. count - 1
    count: int

    def take(self, items: Sequence) -> list:
        return list(items[self.index::self.count])

    def path(self, output: Path) -> Path:
        """Where this shard writes instead of ``output``; ``output`` itself for a whole run."""
        if self.count == 1:
            return output
        return output.with_name(f"{output.stem}.shard-{self.index}-of-{self.count}{output.suffix}")

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def attrs(self) -> dict[str, str]:
        """The root attribute that marks a shard's file (none for a whole run)."""
        return {"shard": self.label} if self.count > 1 else {}


WHOLE = Shard(0, 1)


def shard_paths(output: Path, count: int) -> list[Path]:
    return [Shard(index, count).path(output) for index in range(count)]


class ShardSet:
    """The shard files of one sharded run (``shard`` attribute ``i/n``), opened for merging.

    They must hold the same schema and, but for ``shard``, the same root attributes (the same
    params, weights and inputs), and no clip twice.
    """

    def __init__(self, paths: list[Path], schema: str):
        self.handles = []
        try:
            for index, path in enumerate(paths):
                self.handles.append(open_checked(path, schema))
                found = self.handles[-1].attrs.get("shard")
                if found != f"{index}/{len(paths)}":
                    raise SchemaError(f"{path}: shard attribute is {found!r}, expected {index}/{len(paths)}")
            self.attrs = {key: value for key, value in self.handles[0].attrs.items() if key != "shard"}
            first = json_values(self.attrs)
            self.where: dict[str, tuple[h5py.File, int]] = {}
            for path, handle in zip(paths, self.handles):
                ours = json_values({key: value for key, value in handle.attrs.items() if key != "shard"})
                differ = sorted(key for key in set(first) | set(ours) if first.get(key) != ours.get(key))
                if differ:
                    raise SchemaError(f"{path}: attributes {', '.join(differ)} differ from {paths[0]}: "
                                      "the shards were made with different params or inputs")
                for row, clip_id in enumerate(decode_strings(handle["clip_id"][:])):
                    if clip_id in self.where:
                        raise SchemaError(f"{path}: clip {clip_id!r} is also in {self.where[clip_id][0].filename}")
                    self.where[clip_id] = (handle, row)
        except BaseException:
            self.close()
            raise

    def rows(self, order: list[str], allow_missing: bool = False) -> Iterator[dict[str, Any]]:
        """The rows of the clips ``order``, which must be exactly the clips of the shards; with
        ``allow_missing``, clips of ``order`` that no shard holds are left out (embed skips a clip
        whose crops do not decode)."""
        missing = [clip_id for clip_id in order if clip_id not in self.where]
        extra = sorted(set(self.where) - set(order))
        if (missing and not allow_missing) or extra:
            raise SchemaError(f"shards do not match the clips expected: {len(missing)} missing "
                              f"({', '.join(missing[:5])}), {len(extra)} unexpected ({', '.join(extra[:5])})")
        for clip_id in order:
            if clip_id in self.where:
                handle, row = self.where[clip_id]
                yield read_row(handle, row)

    def close(self) -> None:
        for handle in self.handles:
            handle.close()

    def __enter__(self) -> "ShardSet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

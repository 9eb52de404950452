"""fsgr.serving.bulk_torchrun in one process: how a rank's refusal or failure reaches every rank, and the part files'
names. The whole torchrun job (two gloo processes through `fsgr caption --out`) is
tests/serving/test_bulk.py::test_torchrun_ranks_caption_shards_and_rank0_merges."""

from __future__ import annotations

from pathlib import Path

import pytest

from fsgr.core.distributed import DistInfo
from fsgr.errors import ConfigError, FsgrError, WorkFailed
from fsgr.serving import bulk_torchrun
from fsgr.serving.bulk import BulkCounts
from fsgr.serving.bulk_torchrun import on_every_rank, part_path


def _refuse():
    raise ConfigError("out.jsonl: not a caption file written by fsgr")


def test_one_process_gets_what_its_step_returned_or_its_own_error():
    assert on_every_rank(DistInfo(), lambda: 3) == [3]
    with pytest.raises(ConfigError, match="not a caption file written by fsgr"):
        on_every_rank(DistInfo(), _refuse)


@pytest.mark.parametrize("other, raised", [((2, "rank 1: out.jsonl: refused"), FsgrError),
                                           ((1, "rank 1: disk full"), WorkFailed)])
def test_another_ranks_failure_is_raised_here_naming_that_rank(monkeypatch, other, raised):
    """Rank 0 succeeded and rank 1 failed: rank 0 raises too, with rank 1's words and its exit status (2: refused
    before any work, 1: work failed)."""
    monkeypatch.setattr(bulk_torchrun, "all_gather_objects", lambda outcome, info: [outcome, other])
    with pytest.raises(raised) as exc:
        on_every_rank(DistInfo(rank=0, world_size=2), lambda: 0)
    assert type(exc.value) is raised and exc.value.exit_code == other[0]
    assert str(exc.value) == f"fsgr caption under torchrun: {other[1]}"


def test_every_rank_has_its_own_part_beside_the_output():
    out = Path("/data/caps.jsonl")
    assert part_path(out, 1, 4) == Path("/data/caps.jsonl.parts/part-00001-of-00004.jsonl")
    assert len({part_path(out, r, 4) for r in range(4)}) == 4


def test_the_report_line_names_retried_images_only_when_there_were_some():
    assert BulkCounts(5, 1, 2, 0).describe("o.jsonl") == "wrote 5 row(s) to o.jsonl (1 failed, 2 already there)"
    assert BulkCounts(5, 1, 2, 3).describe("o.jsonl") == ("wrote 5 row(s) to o.jsonl (1 failed, 2 already there, "
                                                          "3 retried)")

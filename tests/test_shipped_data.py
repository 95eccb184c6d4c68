"""An installed package (no checkout beside it) finds the main job's data in the user cache."""

from __future__ import annotations

import shutil

from rllib_fastq import spec as specs
from rllib_fastq.datasets import player_platform


def test_main_job_data_is_generated_into_the_cache_without_a_checkout(tmp_path, monkeypatch):
    monkeypatch.setattr(specs, "PLAYER_PLATFORM_DIR", tmp_path / "no_checkout")
    monkeypatch.setenv("RLLIB_FASTQ_DATA", str(tmp_path / "cache"))
    calls = []

    def fake_generate(out, **kwargs):  # the real one takes a minute; copy the shipped files instead
        calls.append(out)
        shutil.copytree(specs.ROOT / "offline_data" / "player_platform", out)

    monkeypatch.setattr(player_platform, "generate_player_platform_dataset", fake_generate)
    spec = specs.load_spec()
    cache = tmp_path / "cache" / "player_platform"
    assert calls == [cache]
    assert spec.data == [str(cache / "train.parquet")] and spec.card == str(cache / "card.json")
    specs.load_spec()  # second use: no regeneration
    assert len(calls) == 1

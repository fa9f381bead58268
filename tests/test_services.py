"""Services the Inspect tab calls: candidate groups, attention, stability, saving."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spatialreward.config import StudioConfig
from spatialreward.errors import InputError
from spatialreward.service import MAX_CANDIDATES, Services

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = json.loads((ROOT / "examples" / "examples.json").read_text())[3]  # astronaut


def paths() -> tuple[str, list[str], str]:
    folder = ROOT / "examples"
    return (str(folder / EXAMPLE["source"]), [str(folder / c) for c in EXAMPLE["candidates"]],
            EXAMPLE["instruction"])


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> Services:
    return Services(StudioConfig(db=tmp_path_factory.mktemp("svc") / "studio.db"))


def test_group_keeps_the_candidate_order_and_limits_its_size(services) -> None:
    src, cands, text = paths()
    results = services.inspect_group(src, cands, text)
    assert [r.judgment.backend for r in results] == ["mini"] * 3
    overall = [r.judgment.overall for r in results]
    assert overall[0] == max(overall)  # the correct edit is listed first in examples.json
    with pytest.raises(InputError, match=f"1 to {MAX_CANDIDATES}"):
        services.inspect_group(src, [], text)
    with pytest.raises(InputError, match=f"1 to {MAX_CANDIDATES}"):
        services.inspect_group(src, cands * 2, text)


def test_attention_maps_per_layer_and_head(services) -> None:
    src, cands, text = paths()
    (result,) = services.inspect_group(src, cands[:1], text)
    mean = services.attention(result)
    assert mean is not None
    source_map, edited_map, (layers, heads) = mean
    assert layers >= 1 and heads >= 1
    assert source_map.shape == edited_map.shape and source_map.ndim == 2
    assert max(source_map.max(), edited_map.max()) == pytest.approx(1.0)
    assert min(source_map.min(), edited_map.min()) >= 0.0
    one = services.attention(result, layer=layers - 1, head=0)
    assert one is not None and not np.allclose(one[1], edited_map)  # a head is not the mean
    with pytest.raises(InputError, match="layer"):
        services.attention(result, layer=layers)
    (pixel,) = services.inspect_group(src, cands[:1], text, "pixel")
    assert services.attention(pixel) is None  # no attention there


def test_stability_of_a_clear_verdict(services) -> None:
    src, cands, text = paths()
    report = services.stability(src, cands, text)
    assert set(report["scores"]) == {"as given", "edit re-encoded (JPEG 90)",
                                     "edit resampled by 3%", "candidates in reverse order"}
    # Reversing the order must not change any candidate's score (each is judged alone).
    assert report["scores"]["candidates in reverse order"] == report["scores"]["as given"]
    assert report["ranking_changed_under"] == []
    assert len(report["max_change"]) == 3


def test_save_stores_the_item_and_its_judgments(services) -> None:
    src, cands, text = paths()
    results = services.inspect_group(src, cands[:2], text)
    item_id = services.save(src, cands[:2], text, [r.judgment for r in results])
    store = services.store
    item = store.item(item_id)
    assert item["n_candidates"] == 2 and item["origin_dataset"] == "inspect"
    assert store.image_bytes(item["source_sha256"]) == Path(src).read_bytes()
    version = services.backend("mini").version
    stored = store.cached_judgment(item_id, 1, "mini", version)
    assert stored is not None and stored.overall == results[1].judgment.overall
    with pytest.raises(InputError, match="judge the candidates"):
        services.save(src, cands[:2], text, [results[0].judgment])


def test_stored_items_are_judged_once_through_one_path(tmp_path) -> None:
    from spatialreward.judgment import Judgment

    services = Services(StudioConfig(db=tmp_path / "studio.db", backend="pixel"))
    src, cands, text = paths()
    store = services.store
    item = store.add_item(text, src, cands[:2])
    first = services.judge_item(item)
    assert [j.backend for j in first] == ["pixel", "pixel"]
    again = [services.judge_stored(item, k) for k in range(2)]
    assert [reused for _, reused in again] == [True, True]  # the store's cache
    assert [j.overall for j, _ in again] == [j.overall for j in first]

    class Broken:
        name, version = "broken", "1"

        def judge(self, *args, **kwargs) -> Judgment:
            raise RuntimeError("out of memory")

    services.add_backend("broken", Broken())  # type: ignore[arg-type]
    failed, reused = services.judge_stored(item, 0, "broken")
    assert failed.status == "backend_error" and not reused
    assert store.cached_judgment(item, 0, "broken", "1") is None  # tried again next time

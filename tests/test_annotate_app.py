"""The Annotate API through gradio_client: annotate, undo, next_item, many annotators at
once, and login rules."""

from __future__ import annotations

import random
import threading
from collections import Counter

import numpy as np
import pytest
from gradio_client import Client

from storage.annotate import side_order
from tests.conftest import launch_studio

N_ANNOTATORS = 30
N_VOTES = 20
CHOICES = ("A", "B", "tie", "both bad")


def tiny(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)


def add_items(store, n: int, first_seed: int = 0) -> list[int]:
    return [store.add_item(f"make thing {s} blue", tiny(5000 + s),
                           [tiny(s * 10 + 1), tiny(s * 10 + 2)])
            for s in range(first_seed, first_seed + n)]


@pytest.fixture(scope="module")
def items(studio) -> list[int]:
    return add_items(studio.services.store, N_VOTES)


@pytest.fixture(scope="module")
def client(studio) -> Client:
    return Client(studio.url, verbose=False)


def test_next_item_annotate_and_undo(studio, items, client) -> None:
    store = studio.services.store
    store.add_annotator("solo")
    shown = client.predict("solo", "all", api_name="/next_item")
    first = items[0]
    assert shown["item_id"] == first and shown["labels"] == ["A", "B"]
    assert shown["instruction"] == "make thing 0 blue"
    assert shown["order"] == side_order("solo", first, 2)
    assert (shown["judged"], shown["total"]) == (0, len(items))

    jid = client.predict("solo", first, "A", {"B": {"overall": 2, "quality": 9.5}},
                         [{"candidate": "A", "bbox_2d": [10, 20, 300, 400], "label": "cup"}],
                         "fine", 4.25, api_name="/annotate")
    [j] = store.human_judgments(annotator="solo")
    a, b = shown["order"]
    assert j.id == jid and j.item_id == first and j.preferred == a
    assert j.scores == {b: {"overall": 2.0, "quality": 9.5}}
    assert j.regions == [{"candidate": a, "bbox_2d": [10, 20, 300, 400], "label": "cup"}]
    assert (j.comment, j.seconds_spent) == ("fine", 4.25)

    after = client.predict("solo", "all", api_name="/next_item")
    assert after["item_id"] == items[1] and after["judged"] == 1
    rid = client.predict("solo", api_name="/undo")
    last = store.human_judgments(annotator="solo", history=True)[-1]
    assert (last.id, last.kind, last.supersedes) == (rid, "retraction", jid)
    assert client.predict("solo", "all", api_name="/next_item")["item_id"] == first


def test_bad_requests_are_clear_errors(studio, items, client) -> None:
    studio.services.store.add_annotator("oops")
    with pytest.raises(Exception, match="no annotator named 'nobody'"):
        client.predict("nobody", items[0], "A", api_name="/annotate")
    with pytest.raises(Exception, match="no item 99999"):
        client.predict("oops", 99999, "A", api_name="/annotate")
    with pytest.raises(Exception, match="not a shown candidate"):
        client.predict("oops", items[0], "C", api_name="/annotate")
    with pytest.raises(Exception, match="no current vote to undo"):
        client.predict("oops", api_name="/undo")
    with pytest.raises(Exception, match="no queue 'mine'"):
        client.predict("oops", "mine", api_name="/next_item")
    assert studio.services.store.human_judgments(annotator="oops", history=True) == []


def test_concurrent_annotators_each_vote_stored_once(studio, items) -> None:
    store = studio.services.store
    names = [f"crowd{k:02d}" for k in range(N_ANNOTATORS)]
    for name in names:
        store.add_annotator(name)
    returned: dict[str, list[tuple[int, int, str]]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(N_ANNOTATORS)

    def work(name: str) -> None:
        try:
            client = Client(studio.url, verbose=False)
            rng = random.Random(name)
            barrier.wait()  # every client connected: now all vote at once
            out = []
            for item_id in rng.sample(items, len(items)):
                choice = rng.choice(CHOICES)
                out.append((client.predict(name, item_id, choice, api_name="/annotate"),
                            item_id, choice))
            returned[name] = out
        except BaseException as err:  # reported below, with the thread's name
            errors.append(err)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(n,), name=n) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert sorted(returned) == names

    rows = {j.id: j for j in store.human_judgments(history=True) if j.annotator in names}
    assert len(rows) == N_ANNOTATORS * N_VOTES  # no vote lost, none doubled
    assert all(j.kind == "judgment" and j.supersedes is None for j in rows.values())
    assert Counter((j.annotator, j.item_id) for j in rows.values()) == Counter(
        {(n, i): 1 for n in names for i in items})
    for name, votes in returned.items():
        for jid, item_id, choice in votes:
            j = rows[jid]
            assert (j.annotator, j.item_id) == (name, item_id)
            order = side_order(name, item_id, 2)
            expected = {"A": str(order[0]), "B": str(order[1]), "tie": "tie",
                        "both bad": "both_bad"}[choice]
            assert j.label == expected
    assert store.integrity() == []


@pytest.fixture(scope="module")
def auth_studio(tmp_path_factory):
    demo, s = launch_studio(tmp_path_factory.mktemp("auth"), auth=True)
    store = s.services.store
    store.add_annotator("ann", password="ann-password")
    store.add_annotator("bob", password="bob-password")
    s.item = add_items(store, 1, first_seed=100)[0]
    yield s
    demo.close()


def test_with_login_a_vote_under_another_name_is_refused(auth_studio) -> None:
    store = auth_studio.services.store
    client = Client(auth_studio.url, auth=("ann", "ann-password"), verbose=False)
    with pytest.raises(Exception, match="logged in as 'ann'"):
        client.predict("bob", auth_studio.item, "A", api_name="/annotate")
    with pytest.raises(Exception, match="logged in as 'ann'"):
        client.predict("bob", api_name="/undo")
    assert store.human_judgments(history=True) == []
    own = client.predict("ann", auth_studio.item, "A", api_name="/annotate")
    implied = client.predict("", auth_studio.item, "B", api_name="/annotate")
    assert [(j.id, j.annotator) for j in store.human_judgments()] == [(implied, "ann")]
    assert store.human_judgments(history=True)[-1].supersedes == own
    assert client.predict("", "all", api_name="/next_item")["item_id"] is None


def test_with_login_the_api_needs_a_login(auth_studio) -> None:
    with pytest.raises(Exception):  # noqa: B017 - gradio_client's error type varies here
        Client(auth_studio.url, auth=("ann", "wrong"), verbose=False)

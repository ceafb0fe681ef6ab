from __future__ import annotations

import base64

import pytest

from shared.webapi.packing import batch_item, batch_payload, components, pack


def test_45_singletons_pack_into_20_20_5() -> None:
    groups = [[f"op{i}"] for i in range(45)]
    batches = pack(groups)
    assert [len(b) for b in batches] == [20, 20, 5]
    assert [x for b in batches for x in b] == [f"op{i}" for i in range(45)]


def test_components_keep_dependency_order_and_group() -> None:
    ids = ["a", "b", "c", "d", "e"]
    deps = {"a": ["c"], "c": ["e"], "b": []}
    comps = components(ids, deps)
    assert comps == [["e", "c", "a"], ["b"], ["d"]]


def test_components_diamond_topological() -> None:
    ids = ["top", "left", "right", "bottom"]
    deps = {"left": ["top"], "right": ["top"], "bottom": ["left", "right"]}
    assert components(ids, deps) == [["top", "left", "right", "bottom"]]


def test_components_cycle_raises() -> None:
    with pytest.raises(ValueError, match="cycle"):
        components(["a", "b"], {"a": ["b"], "b": ["a"]})


def test_component_never_split_and_first_fit() -> None:
    groups = [["x"] * 15, ["y"] * 10, ["z"] * 5]
    batches = pack(groups)
    assert [len(b) for b in batches] == [20, 10]
    assert batches[0] == ["x"] * 15 + ["z"] * 5


def test_group_larger_than_limit_raises() -> None:
    with pytest.raises(ValueError, match="exceeds the batch limit 20"):
        pack([["a"] * 21])


def test_alone_groups_get_their_own_batch() -> None:
    batches = pack([["a"], ["b", "c"], ["d"]], alone=lambda g: len(g) > 1)
    assert batches == [["a", "d"], ["b", "c"]]


def test_max_batches_leaves_the_rest() -> None:
    batches = pack([[i] for i in range(50)], max_batches=2)
    assert [len(b) for b in batches] == [20, 20]


def test_batch_item_serialises_depends_on_and_json_body() -> None:
    item = batch_item("2", "PATCH", "/users/u1", body={"city": "Oslo"}, depends_on=["1"])
    assert item == {
        "id": "2",
        "method": "PATCH",
        "url": "/users/u1",
        "body": {"city": "Oslo"},
        "headers": {"Content-Type": "application/json"},
        "dependsOn": ["1"],
    }
    assert "depends_on" not in item


def test_batch_item_keeps_callers_content_type() -> None:
    item = batch_item(
        "1", "POST", "/x", body={"a": 1}, headers={"content-type": "application/json"}
    )
    assert item["headers"] == {"content-type": "application/json"}


def test_batch_item_base64_for_non_json_bodies() -> None:
    item = batch_item("1", "PUT", "/photo", body=b"\x89PNG", headers={"Content-Type": "image/png"})
    assert base64.b64decode(item["body"]) == b"\x89PNG"
    text = batch_item("2", "PUT", "/note", body="hi", headers={"Content-Type": "text/plain"})
    assert base64.b64decode(text["body"]) == b"hi"


def test_batch_item_without_body_has_no_headers() -> None:
    assert batch_item("1", "GET", "/users") == {"id": "1", "method": "GET", "url": "/users"}


def test_batch_payload_checks_ids_and_size() -> None:
    with pytest.raises(ValueError, match="duplicate ids"):
        batch_payload([{"id": "1"}, {"id": "1"}])
    with pytest.raises(ValueError, match="exceed the batch limit"):
        batch_payload([{"id": str(i)} for i in range(21)])
    assert batch_payload([{"id": "1"}]) == {"requests": [{"id": "1"}]}

"""The directory API's route table: built once, first match wins, costs read per request."""

from __future__ import annotations

import pytest

from sandbox.graph import GraphConfig, GraphService
from sandbox.graph.errors import GraphError
from sandbox.graph.operation import Operation
from sandbox.tokens import TokenIssuer
from tests.clock import FakeClock


def op(method: str, path: str, *, in_batch: bool = False) -> Operation:
    return Operation(method, path, [], {}, None, "https://graph.test/v1.0", in_batch=in_batch)


@pytest.fixture
def service(issuer: TokenIssuer, clock: FakeClock) -> GraphService:
    return GraphService(issuer, clock=clock, config=GraphConfig())


def test_the_table_is_built_once(service: GraphService) -> None:
    table = service.api.routes
    routes = table.routes
    service.api.resolve(op("GET", "users"))
    service.api.resolve(op("POST", "groups"))
    assert service.api.routes is table
    assert table.routes is routes


def test_a_literal_segment_wins_over_an_id(service: GraphService) -> None:
    api = service.api
    delta = api.resolve(op("GET", "users/delta"))
    assert delta.handler == api.delta.users_delta
    assert delta.args == []
    user = api.resolve(op("GET", "Users/Alice@Contoso.example"))
    assert user.handler == api.users.get_user
    assert user.args == ["Alice@Contoso.example"]  # the id as given, not lower-cased
    member = api.resolve(op("DELETE", "groups/g1/members/u1/$ref"))
    assert member.handler == api.members.remove_member
    assert member.args == ["g1", "u1"]


def test_costs_follow_a_configuration_change(service: GraphService) -> None:
    api = service.api
    assert api.resolve(op("GET", "users")).ru == service.config.cost_get_users
    service.config.update({"cost_get_users": 7, "write_cost": 4})
    assert api.resolve(op("GET", "users")).ru == 7
    create = api.resolve(op("POST", "users"))
    assert (create.ru, create.writes) == (service.config.cost_write, 4)
    assert api.resolve(op("GET", "users/u1/memberOf")).ru == 2
    assert api.resolve(op("GET", "users/u1")).writes == 0


@pytest.mark.parametrize(
    ("method", "path", "in_batch", "status", "message"),
    [
        ("PUT", "users", False, 405, "Specified HTTP method is not allowed"),
        ("GET", "$batch", False, 405, "Specified HTTP method is not allowed"),
        ("GET", "$batch", True, 400, "A $batch request cannot be nested in a batch."),
        ("GET", "users/u1/manager", False, 400, "segment 'u1'"),
        ("GET", "", False, 400, "segment ''"),
    ],
)
def test_unrouted_requests(
    service: GraphService, method: str, path: str, in_batch: bool, status: int, message: str
) -> None:
    with pytest.raises(GraphError) as caught:
        service.api.resolve(op(method, path, in_batch=in_batch))
    assert caught.value.status == status
    assert message in caught.value.message

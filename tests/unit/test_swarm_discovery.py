"""Containers on other swarm nodes, read from an overlay network's verbose
inspect, are destinations only."""

from __future__ import annotations

from dataclasses import replace

from netwatch.containers import NetworkInfo, monitoring_decision, remote_tasks
from netwatch.pairs import plan_pairs

OVERLAY = NetworkInfo(
    id="ov1id", name="shop_backend", driver="overlay", internal=False, scope="swarm"
)

# The shape of GET /networks/{id}?verbose=true on a swarm manager (recorded
# from Docker 20.10), with one task moved to another node.
VERBOSE = {
    "Name": "shop_backend",
    "Id": "ov1id",
    "Scope": "swarm",
    "Containers": {
        "c1": {"Name": "web", "EndpointID": "ep-local", "IPv4Address": "10.0.1.2/24"},
    },
    "Services": {
        "": {
            "VIP": "<nil>",
            "Tasks": [
                {
                    "Name": "web",
                    "EndpointID": "ep-local",
                    "EndpointIP": "10.0.1.2",
                    "Info": {"Host IP": "192.0.2.2"},
                },
                {
                    "Name": "batch",
                    "EndpointID": "ep-far",
                    "EndpointIP": "10.0.1.9",
                    "Info": {"Host IP": "192.0.2.7"},
                },
            ],
        },
        "shop_api": {
            "VIP": "10.0.1.4",
            "Tasks": [
                {
                    "Name": "shop_api.1.xyz",
                    "EndpointID": "ep-api",
                    "EndpointIP": "10.0.1.5",
                    "Info": {"Host IP": "192.0.2.8"},
                },
                {"Name": "broken", "EndpointID": "ep-bad", "EndpointIP": "not-an-ip"},
            ],
        },
    },
}


def test_tasks_on_other_nodes_become_remote_destinations():
    """Tasks whose endpoint is not local are remote, with their overlay address."""
    found = {info.name: info for info in remote_tasks(VERBOSE, OVERLAY)}

    assert set(found) == {"batch", "shop_api.1.xyz"}
    api = found["shop_api.1.xyz"]
    assert api.remote
    assert api.id == "remote-ep-api"
    assert api.addresses == ("10.0.1.5",)
    assert api.networks[0].network_id == "ov1id"
    assert api.labels["netwatch.node"] == "192.0.2.8"


def test_remote_tasks_are_never_sources():
    """Pairs go from local containers to remote ones, never the other way."""
    remote = remote_tasks(VERBOSE, OVERLAY)
    here = replace(remote[0].networks[0], ipv4="10.0.1.2")
    local = replace(remote[0], id="c1", name="web", remote=False, networks=(here,))

    plan = plan_pairs([local, *remote], max_ports=8)

    assert set(plan.by_source) == {"c1"}
    assert {pair.dst for pair in plan.pairs.values()} == {info.id for info in remote}
    assert all(pair.expected_reachable for pair in plan.pairs.values())


def test_remote_tasks_are_left_out_when_labels_decide():
    """Opt-in or label matching cannot see a remote task's labels: left out."""
    remote = remote_tasks(VERBOSE, OVERLAY)[0]

    opted, _ = monitoring_decision(
        remote, opt_in=True, self_id=None, include_self=False
    )
    matched, why = monitoring_decision(
        remote, opt_in=False, self_id=None, include_self=False, match_labels={"a": "b"}
    )
    default, _ = monitoring_decision(
        remote, opt_in=False, self_id=None, include_self=False
    )

    assert (opted, matched, default) == (False, False, True)
    assert "another node" in why

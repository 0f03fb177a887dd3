"""plan_pairs: which ordered pairs are probed, and what the topology expects."""

from __future__ import annotations

import pytest

from netwatch.containers import ContainerInfo, NetworkMode
from netwatch.pairs import PairPlan, Target, plan_pairs
from tests.factories import attachment as attach
from tests.factories import container


def key(src: ContainerInfo, dst: ContainerInfo) -> tuple[str, str]:
    return (src.id, dst.id)


def summary(plan: PairPlan) -> dict[tuple[str, str], tuple[bool, tuple[Target, ...]]]:
    return {k: (p.expected_reachable, p.targets) for k, p in plan.pairs.items()}


WEB = container("web", attach("frontend", "10.1.0.2"), attach("backend", "10.2.0.2"))
API = container("api", attach("backend", "10.2.0.3"), attach("database", "10.3.0.3"))
DB = container("db", attach("database", "10.3.0.4"))


def test_three_tier_lab_expects_neighbours_only():
    """Tiers sharing a network reach each other on it; web and db do not."""
    plan = plan_pairs([WEB, API, DB], max_ports=8)

    assert summary(plan) == {
        key(WEB, API): (True, (Target("10.2.0.3", "backend"),)),
        key(API, WEB): (True, (Target("10.2.0.2", "backend"),)),
        key(API, DB): (True, (Target("10.3.0.4", "database"),)),
        key(DB, API): (True, (Target("10.3.0.3", "database"),)),
        key(WEB, DB): (False, (Target("10.3.0.4", "database"),)),
        key(DB, WEB): (False, (Target("10.1.0.2", "frontend"),)),
    }
    assert plan.unaddressable == {}


def test_isolated_pair_probes_exactly_one_address():
    """Without a shared network one of the destination's addresses proves the
    isolation."""
    plan = plan_pairs([WEB, API, DB], max_ports=8)

    pair = plan.pairs[key(DB, WEB)]

    assert pair.expected_reachable is False
    assert len(pair.targets) == 1
    assert pair.basis == "no shared network"


def test_containers_sharing_two_networks_are_probed_on_both():
    """The destination's address on every shared network is a target."""
    a = container("a", attach("one", "10.1.0.2"), attach("two", "10.2.0.2"))
    b = container("b", attach("one", "10.1.0.3"), attach("two", "10.2.0.3"))

    plan = plan_pairs([a, b], max_ports=8)

    assert set(plan.pairs[key(a, b)].targets) == {
        Target("10.1.0.3", "one"),
        Target("10.2.0.3", "two"),
    }


def test_default_bridge_containers_reach_each_other():
    """Two containers on the default bridge expect each other reachable."""
    one = container(
        "one", attach("bridge", "172.17.0.2"), mode=NetworkMode.DEFAULT_BRIDGE
    )
    two = container(
        "two", attach("bridge", "172.17.0.3"), mode=NetworkMode.DEFAULT_BRIDGE
    )

    plan = plan_pairs([one, two], max_ports=8)

    assert summary(plan) == {
        key(one, two): (True, (Target("172.17.0.3", "bridge"),)),
        key(two, one): (True, (Target("172.17.0.2", "bridge"),)),
    }


def test_none_network_source_expects_to_reach_nothing():
    """A --network none container as source expects isolation, on one target."""
    lonely = container("lonely", mode=NetworkMode.NONE)

    plan = plan_pairs([lonely, WEB], max_ports=8)

    pair = plan.pairs[key(lonely, WEB)]
    assert pair.expected_reachable is False
    assert len(pair.targets) == 1
    assert pair.targets[0] in {
        Target("10.1.0.2", "frontend"),
        Target("10.2.0.2", "backend"),
    }


def test_none_network_destination_is_unaddressable():
    """Pairs towards a --network none container are listed, not planned."""
    lonely = container("lonely", mode=NetworkMode.NONE)

    plan = plan_pairs([lonely, WEB], max_ports=8)

    assert key(WEB, lonely) not in plan.pairs
    assert plan.unaddressable[key(WEB, lonely)] == "destination has no network address"


def test_host_network_source_reaches_bridges_not_overlays():
    """The host reaches containers on local bridges, internal ones too, but
    not containers on overlay networks only."""
    host = container("host-agent", mode=NetworkMode.HOST)
    bridged = container("bridged", attach("backend", "10.2.0.5"))
    internal = container("internal", attach("vault", "10.9.0.5", internal=True))
    overlaid = container("overlaid", attach("swarm-net", "10.0.1.5", driver="overlay"))

    plan = plan_pairs([host, bridged, internal, overlaid], max_ports=8)

    assert plan.pairs[key(host, bridged)].expected_reachable is True
    assert plan.pairs[key(host, bridged)].targets == (Target("10.2.0.5", "backend"),)
    assert plan.pairs[key(host, internal)].expected_reachable is True
    assert plan.pairs[key(host, overlaid)].expected_reachable is False
    assert plan.pairs[key(host, overlaid)].targets == (Target("10.0.1.5", "swarm-net"),)


def test_host_network_source_probes_only_the_bridge_address():
    """A destination on a bridge and an overlay is probed from the host on the
    bridge address only."""
    host = container("host-agent", mode=NetworkMode.HOST)
    both = container(
        "both",
        attach("backend", "10.2.0.5"),
        attach("swarm-net", "10.0.1.5", driver="overlay"),
    )

    plan = plan_pairs([host, both], max_ports=8)

    assert plan.pairs[key(host, both)].targets == (Target("10.2.0.5", "backend"),)


def test_host_network_destination_is_unaddressable():
    """A host-network container has no address of its own to probe."""
    host = container("host-agent", mode=NetworkMode.HOST)

    plan = plan_pairs([host, WEB], max_ports=8)

    assert key(WEB, host) not in plan.pairs
    assert plan.unaddressable[key(WEB, host)] == "destination uses the host's network"


@pytest.mark.parametrize("reference", ["id", "short_id", "name"])
def test_container_mode_guest_shares_its_hosts_stack(reference):
    """A container:X guest and X are one stack, addressed by X's addresses."""
    vpn = container("vpn", attach("frontend", "10.1.0.9"))
    guest = container(
        "guest", mode=NetworkMode.CONTAINER, target=getattr(vpn, reference)
    )

    plan = plan_pairs([vpn, guest], max_ports=8)

    assert summary(plan) == {
        key(guest, vpn): (True, (Target("10.1.0.9", "frontend"),)),
        key(vpn, guest): (True, (Target("10.1.0.9", "frontend"),)),
    }
    assert plan.pairs[key(guest, vpn)].basis == "same network stack"


def test_container_mode_guest_has_its_hosts_networks():
    """Third containers reach a container:X guest through X's networks."""
    vpn = container("vpn", attach("frontend", "10.1.0.9"))
    guest = container("guest", mode=NetworkMode.CONTAINER, target=vpn.id)

    plan = plan_pairs([vpn, guest, WEB, DB], max_ports=8)

    assert plan.pairs[key(WEB, guest)].expected_reachable is True
    assert plan.pairs[key(WEB, guest)].targets == (Target("10.1.0.9", "frontend"),)
    assert plan.pairs[key(guest, WEB)].expected_reachable is True
    assert plan.pairs[key(guest, DB)].expected_reachable is False


def test_icc_off_network_keeps_its_members_apart():
    """Two containers sharing only an enable_icc=false bridge expect isolation."""
    a = container("a", attach("locked", "10.5.0.2", icc=False))
    b = container("b", attach("locked", "10.5.0.3", icc=False))

    plan = plan_pairs([a, b], max_ports=8)

    assert plan.pairs[key(a, b)].expected_reachable is False
    assert plan.pairs[key(b, a)].expected_reachable is False
    assert "icc" in plan.pairs[key(a, b)].basis


def test_icc_off_network_does_not_hide_an_open_shared_network():
    """With an icc-off bridge and an open one shared, the open one is probed."""
    a = container(
        "a", attach("locked", "10.5.0.2", icc=False), attach("open", "10.6.0.2")
    )
    b = container(
        "b", attach("locked", "10.5.0.3", icc=False), attach("open", "10.6.0.3")
    )

    plan = plan_pairs([a, b], max_ports=8)

    assert plan.pairs[key(a, b)].expected_reachable is True
    assert plan.pairs[key(a, b)].targets == (Target("10.6.0.3", "open"),)


def test_paused_source_and_destination_put_pairs_on_hold():
    """Pairs from or to a paused container are planned but held, with why."""
    frozen = container("frozen", attach("backend", "10.2.0.9"), paused=True)

    plan = plan_pairs([frozen, API], max_ports=8)

    assert plan.pairs[key(frozen, API)].hold == "source is paused"
    assert plan.pairs[key(API, frozen)].hold == "destination is paused"


def test_running_pairs_are_not_held():
    """Pairs between running containers carry no hold."""
    plan = plan_pairs([WEB, API, DB], max_ports=8)

    holds = {pair.hold for pair in plan.pairs.values()}

    assert holds == {None}


def test_ports_are_capped_at_max_ports():
    """Only the first max_ports of the destination's probe ports are planned."""
    server = container(
        "server", attach("backend", "10.2.0.7"), ports=(22, 80, 443, 8080)
    )

    plan = plan_pairs([API, server], max_ports=2)

    assert plan.pairs[key(API, server)].ports == (22, 80)
    assert plan.pairs[key(server, API)].ports == ()


def test_count_is_the_number_of_planned_ordered_pairs():
    """count covers planned pairs; unaddressable ones are listed apart."""
    lonely = container("lonely", mode=NetworkMode.NONE)

    plan = plan_pairs([WEB, API, DB, lonely], max_ports=8)

    assert plan.count == 9
    assert len(plan.unaddressable) == 3
    assert sum(len(pairs) for pairs in plan.by_source.values()) == 9
    assert {p.src for p in plan.by_source[WEB.id]} == {WEB.id}


def test_no_containers_plan_nothing():
    """An empty inventory gives an empty plan."""
    plan = plan_pairs([], max_ports=8)

    assert plan.count == 0
    assert plan.unaddressable == {}


def test_plan_is_read_only():
    """The plan's mappings cannot be changed by whoever reads them."""
    plan = plan_pairs([WEB, API], max_ports=8)

    with pytest.raises(TypeError):
        plan.pairs[key(WEB, DB)] = plan.pairs[key(WEB, API)]  # type: ignore[index]

"""Which sources a new plan makes probe again at once."""

from __future__ import annotations

from netwatch.pairs import plan_pairs
from netwatch.scheduler import changed_sources
from tests.factories import attachment, container

WEB = container("web", attachment("front", "10.0.0.2"), attachment("back", "10.1.0.2"))
API = container("api", attachment("back", "10.1.0.3"))
DB = container("db", attachment("data", "10.2.0.4"))


def test_a_new_container_makes_no_source_probe_early():
    """Adding a destination changes no existing pair: nobody is nudged."""
    before = plan_pairs([WEB, API], max_ports=8)

    after = plan_pairs([WEB, API, DB], max_ports=8)

    assert changed_sources(before, after) == set()


def test_a_network_change_makes_the_affected_sources_probe_early():
    """Disconnecting web from back changes web<->api both ways."""
    before = plan_pairs([WEB, API, DB], max_ports=8)
    web_alone = container("web", attachment("front", "10.0.0.2"))

    after = plan_pairs([web_alone, API, DB], max_ports=8)

    assert changed_sources(before, after) == {WEB.id, API.id}

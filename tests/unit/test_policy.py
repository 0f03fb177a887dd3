"""The expectation policy: loading with line-numbered errors, group matching,
and what it decides of a pair; and the line-aware YAML reader beneath it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netwatch.containers import ContainerInfo, NetworkMode
from netwatch.errors import ConfigError
from netwatch.policy import GroupSpec, Policy, load_policy
from netwatch.yamlfile import line_of, read_yaml

# The module docstring's example: db reachable from api on 5432 and from
# nothing else. Line numbers matter: rule 1 is on line 6, rule 2 on line 7.
THREE_TIER = """\
groups:
  web: {services: [web]}
  api: {names: ["shop-api-*"]}
  db: {labels: {tier: db}}
rules:
  - allow: {from: api, to: db, ports: [5432]}
  - deny: {from: "*", to: db}
  - allow: {from: web, to: api}
default: topology
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def policy_of(tmp_path: Path, text: str) -> Policy:
    return load_policy(write(tmp_path, text))


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    return caught.value.problems


def container(
    name: str,
    *,
    service: str | None = None,
    labels: dict[str, str] | None = None,
    ports: tuple[int, ...] = (),
) -> ContainerInfo:
    all_labels = dict(labels or {})
    if service is not None:
        all_labels["com.docker.compose.service"] = service
    return ContainerInfo(
        id=f"{name}-container-id",
        name=name,
        image="alpine:3.20",
        labels=all_labels,
        network_mode=NetworkMode.USER_DEFINED,
        network_mode_target=None,
        networks=(),
        exposed_tcp_ports=ports,
        probe_ports=ports,
        paused=False,
        pid=100,
        health=None,
        started_at="2024-05-01T10:00:00Z",
    )


WEB = container("shop-web-1", service="web", ports=(80,))
API = container("shop-api-1", service="api", ports=(8080,))
DB = container("shop-db-1", service="db", labels={"tier": "db"}, ports=(5432, 9187))
OTHER = container("metrics", ports=(9100,))


# The three-tier example.


def test_three_tier_api_reaches_db_on_its_port_only(tmp_path):
    """api reaches db by rule 1: 5432 must be open, db's other ports closed."""
    policy = policy_of(tmp_path, THREE_TIER)

    decision = policy.decide(API, DB)

    assert decision.expected_reachable is True
    assert decision.basis == "policy rule 1 (line 6) allows"
    assert dict(decision.ports) == {5432: True, 9187: False}


def test_three_tier_nothing_else_reaches_db(tmp_path):
    """Every other container is denied db by rule 2, on every port."""
    policy = policy_of(tmp_path, THREE_TIER)

    decisions = [policy.decide(src, DB) for src in (WEB, OTHER)]

    for decision in decisions:
        assert decision.expected_reachable is False
        assert decision.basis == "policy rule 2 (line 7) denies"
        assert dict(decision.ports) == {5432: False, 9187: False}


def test_three_tier_allow_without_ports_asserts_no_port(tmp_path):
    """web reaches api by rule 3, which names no ports and so judges none."""
    policy = policy_of(tmp_path, THREE_TIER)

    decision = policy.decide(WEB, API)

    assert decision.expected_reachable is True
    assert decision.basis == "policy rule 3 (line 8) allows"
    assert dict(decision.ports) == {}


@pytest.mark.parametrize(
    ("src", "dst"),
    [(DB, WEB), (API, WEB), (DB, API), (OTHER, WEB)],
    ids=["db-web", "api-web", "db-api", "other-web"],
)
def test_three_tier_pairs_no_rule_names_keep_the_topology(tmp_path, src, dst):
    """With `default: topology`, a pair no rule names gets no expectation."""
    policy = policy_of(tmp_path, THREE_TIER)

    decision = policy.decide(src, dst)

    assert (decision.expected_reachable, decision.basis) == (None, None)
    assert dict(decision.ports) == {}


def test_rule_lines_are_kept(tmp_path):
    """Each loaded rule knows its index, its line and what it says."""
    policy = policy_of(tmp_path, THREE_TIER)

    rules = [
        (r.index, r.line, r.allow, r.sources, r.destinations, r.ports)
        for r in policy.rules
    ]

    assert rules == [
        (0, 6, True, ("api",), ("db",), (5432,)),
        (1, 7, False, ("*",), ("db",), ()),
        (2, 8, True, ("web",), ("api",), ()),
    ]
    assert policy.default == "topology"
    assert set(policy.groups) == {"web", "api", "db"}


# Defaults.


def test_zero_trust_default_deny_isolates_every_unnamed_pair(tmp_path):
    """`default: deny` expects every pair no rule names to be isolated."""
    policy = policy_of(
        tmp_path,
        "groups:\n"
        "  web: {services: [web]}\n"
        "  api: {services: [api]}\n"
        "rules:\n"
        "  - allow: {from: web, to: api, ports: [8080]}\n"
        "default: deny\n",
    )

    allowed = policy.decide(WEB, API)
    denied = [policy.decide(API, WEB), policy.decide(DB, API), policy.decide(WEB, DB)]

    assert allowed.expected_reachable is True
    assert dict(allowed.ports) == {8080: True}
    for decision in denied:
        assert decision.expected_reachable is False
        assert decision.basis == "policy default deny"


def test_default_allow_expects_every_unnamed_pair_reachable(tmp_path):
    """`default: allow` expects every pair no rule names to be reachable."""
    policy = policy_of(
        tmp_path,
        "groups:\n  db: {services: [db]}\nrules:\n  - deny: {from: '*', to: db}\n"
        "default: allow\n",
    )

    open_pair = policy.decide(WEB, API)
    closed_pair = policy.decide(WEB, DB)

    assert (open_pair.expected_reachable, open_pair.basis) == (
        True,
        "policy default allow",
    )
    assert closed_pair.expected_reachable is False


# Rule semantics.


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [("allow", "deny", True), ("deny", "allow", False)],
)
def test_first_matching_rule_wins(tmp_path, first, second, expected):
    """Of two rules naming the same pair, the earlier one decides."""
    policy = policy_of(
        tmp_path,
        "groups:\n  web: {services: [web]}\n  api: {services: [api]}\n"
        "rules:\n"
        f"  - {first}: {{from: web, to: api}}\n"
        f"  - {second}: {{from: web, to: api}}\n",
    )

    decision = policy.decide(WEB, API)

    assert decision.expected_reachable is expected
    assert decision.basis is not None
    assert decision.basis.startswith("policy rule 1 (line 5)")


def test_deny_with_ports_only_closes_those_ports(tmp_path):
    """A deny listing ports says nothing of reachability: the topology decides,
    and only the listed ports must be closed."""
    policy = policy_of(
        tmp_path,
        "groups:\n  web: {services: [web]}\n  api: {services: [api]}\n"
        "rules:\n  - deny: {from: web, to: api, ports: [22]}\n",
    )

    decision = policy.decide(WEB, API)

    assert (decision.expected_reachable, decision.basis) == (None, None)
    assert dict(decision.ports) == {22: False}


def test_deny_with_ports_lets_a_later_rule_decide_reachability(tmp_path):
    """After a port deny, the next rule naming the pair decides reachability."""
    policy = policy_of(
        tmp_path,
        "groups:\n  web: {services: [web]}\n  api: {services: [api]}\n"
        "rules:\n"
        "  - deny: {from: web, to: api, ports: [22]}\n"
        "  - allow: {from: web, to: api}\n",
    )

    decision = policy.decide(WEB, API)

    assert decision.expected_reachable is True
    assert decision.basis == "policy rule 2 (line 6) allows"
    assert dict(decision.ports) == {22: False}


def test_allow_with_ports_makes_them_must_be_open_and_judges_no_other(tmp_path):
    """An allow with ports requires exactly those open; ports it does not list
    are left to later rules (here none)."""
    policy = policy_of(
        tmp_path,
        "groups:\n  web: {services: [web]}\n  db: {services: [db]}\n"
        "rules:\n  - allow: {from: web, to: db, ports: [5432, 6432]}\n",
    )

    decision = policy.decide(WEB, DB)

    assert decision.expected_reachable is True
    assert dict(decision.ports) == {5432: True, 6432: True}


def test_allow_without_ports_stops_the_search_for_port_rules(tmp_path):
    """An allow without ports that matches first leaves every port unjudged,
    even when a later deny would close it."""
    policy = policy_of(
        tmp_path,
        "groups:\n  web: {services: [web]}\n  api: {services: [api]}\n"
        "rules:\n"
        "  - allow: {from: web, to: api}\n"
        "  - deny: {from: web, to: api, ports: [8080]}\n",
    )

    decision = policy.decide(WEB, API)

    assert decision.expected_reachable is True
    assert dict(decision.ports) == {}


def test_ports_named_by_a_rule_are_judged_even_when_not_exposed(tmp_path):
    """A port a rule names is decided although the destination exposes none."""
    bare_db = container("shop-db-2", service="db")
    policy = policy_of(
        tmp_path,
        "groups:\n  api: {services: [api]}\n  db: {services: [db]}\n"
        "rules:\n"
        "  - allow: {from: api, to: db, ports: [5432]}\n"
        "  - deny: {from: api, to: db, ports: [22]}\n",
    )

    decision = policy.decide(API, bare_db)

    assert dict(decision.ports) == {5432: True, 22: False}


def test_ports_of_rules_naming_other_pairs_are_not_added(tmp_path):
    """Only rules naming the pair contribute ports to it."""
    policy = policy_of(
        tmp_path,
        "groups:\n  api: {services: [api]}\n  db: {services: [db]}\n"
        "rules:\n  - allow: {from: api, to: db, ports: [5432]}\n",
    )

    decision = policy.decide(WEB, DB)

    assert dict(decision.ports) == {}


@pytest.mark.parametrize(
    ("sources", "destinations"),
    [
        ("web", "api"),
        ("[web]", "[api]"),
        ("[web, db]", "api"),
        ("web", "[db, api]"),
        ("'*'", "api"),
        ("web", "'*'"),
        ("['*']", "['*']"),
    ],
)
def test_from_and_to_take_a_name_a_list_or_any(tmp_path, sources, destinations):
    """`from` and `to` take one group, a list of groups, or "*"."""
    policy = policy_of(
        tmp_path,
        "groups:\n"
        "  web: {services: [web]}\n  api: {services: [api]}\n  db: {services: [db]}\n"
        f"rules:\n  - deny: {{from: {sources}, to: {destinations}}}\n",
    )

    decision = policy.decide(WEB, API)

    assert decision.expected_reachable is False
    assert decision.basis == "policy rule 1 (line 6) denies"


def test_a_list_names_each_of_its_groups_and_no_other(tmp_path):
    """`from: [web, db]` names web and db as sources and nothing else."""
    policy = policy_of(
        tmp_path,
        "groups:\n"
        "  web: {services: [web]}\n  api: {services: [api]}\n  db: {services: [db]}\n"
        "rules:\n  - deny: {from: [web, db], to: api}\n",
    )

    named = [policy.decide(src, API).expected_reachable for src in (WEB, DB)]
    unnamed = policy.decide(OTHER, API)

    assert named == [False, False]
    assert unnamed.expected_reachable is None


def test_any_names_containers_in_no_group(tmp_path):
    """ "*" names every container, including those no group matches."""
    policy = policy_of(
        tmp_path,
        "groups:\n  db: {services: [db]}\nrules:\n  - deny: {from: '*', to: '*'}\n",
    )

    decision = policy.decide(OTHER, WEB)

    assert decision.expected_reachable is False


def test_members_lists_every_matching_group(tmp_path):
    """A container belongs to every group it matches."""
    policy = policy_of(
        tmp_path,
        "groups:\n"
        "  shop: {names: ['shop-*']}\n"
        "  db: {labels: {tier: db}}\n"
        "  api: {services: [api]}\n",
    )

    members = policy.members(DB)

    assert members == frozenset({"shop", "db"})


# Group matching.


@pytest.mark.parametrize(
    ("spec", "info", "matches"),
    [
        ({"names": ["shop-api-*"]}, API, True),
        ({"names": ["shop-api-*"]}, WEB, False),
        ({"names": ["Shop-API-*"]}, API, False),
        ({"names": ["web", "shop-?eb-1"]}, WEB, True),
        ({"services": ["ap*"]}, API, True),
        ({"services": ["web"]}, API, False),
        ({"services": ["shop-api-1"]}, API, False),
        ({"labels": {"tier": "db"}}, DB, True),
        ({"labels": {"tier": "d*"}}, DB, True),
        ({"labels": {"tier": "web"}}, DB, False),
        ({"labels": {"tier": "*"}}, API, False),
        ({"labels": {"tier": "db", "env": "prod"}}, DB, False),
        ({"labels": {"tier": "db"}, "names": ["shop-db-*"]}, DB, True),
        ({"labels": {"tier": "db"}, "names": ["other"]}, DB, False),
        ({"names": ["other"], "services": ["db"]}, DB, True),
    ],
    ids=[
        "name-glob",
        "name-glob-miss",
        "name-glob-is-case-sensitive",
        "any-of-several-names",
        "service-glob",
        "service-miss",
        "name-is-not-a-service",
        "label-value",
        "label-value-glob",
        "label-value-miss",
        "label-missing",
        "every-label-must-match",
        "labels-and-name",
        "labels-but-not-name",
        "name-or-service",
    ],
)
def test_group_matching(spec, info, matches):
    """Any name or service glob matches, and every label's value glob must."""
    group = GroupSpec.model_validate(spec)

    assert group.matches(info) is matches


def test_service_glob_does_not_match_a_container_outside_compose():
    """A container with no Compose service is in no group defined by services,
    just as a missing label matches no label glob."""
    group = GroupSpec.model_validate({"services": ["*"]})

    assert group.matches(OTHER) is False


# Loading and its errors.


def test_empty_file_is_refused(tmp_path):
    """An empty file, or one of comments only, says nothing: refused, so a
    wrong or truncated file is noticed."""
    empty = write(tmp_path, "")

    with pytest.raises(ConfigError) as raised:
        load_policy(empty)

    assert raised.value.problems == [
        f"{empty}: the policy is empty; write groups and rules, or leave it out"
    ]


def test_file_of_comments_is_refused_like_an_empty_one(tmp_path):
    """A file with only comments is as empty as an empty one."""
    path = write(tmp_path, "# nothing decided yet\n")

    with pytest.raises(ConfigError):
        load_policy(path)


def test_duplicate_keys_are_refused_with_both_lines(tmp_path):
    """A group written twice is an error, not the last one silently winning."""
    path = write(tmp_path, "groups:\n  web: {names: [a]}\n  web: {names: [b]}\n")

    with pytest.raises(ConfigError) as raised:
        load_policy(path)

    assert raised.value.problems == [f"{path}:3: duplicate key 'web' (first on line 2)"]


def test_a_single_port_needs_no_list(tmp_path):
    """`ports: 5432` means `ports: [5432]`."""
    path = write(
        tmp_path,
        "groups:\n  web: {names: [web]}\n"
        "rules:\n  - allow: {from: web, to: web, ports: 5432}\n",
    )

    policy = load_policy(path)

    assert policy.rules[0].ports == (5432,)


def test_source_names_the_file(tmp_path):
    """The policy remembers the file it came from."""
    path = write(tmp_path, THREE_TIER)

    policy = load_policy(path)

    assert policy.source == str(path)


@pytest.mark.parametrize(
    ("text", "line", "key", "message"),
    [
        pytest.param(
            "groups:\n  web: {names: [web]}\nrulez: []\n",
            3,
            "rulez",
            "unknown key",
            id="unknown-top-key",
        ),
        pytest.param(
            "groups:\n  web:\n    names: [web]\n    service: [web]\n",
            4,
            "groups.web.service",
            "unknown key",
            id="unknown-group-key",
        ),
        pytest.param(
            "groups:\n  web: {names: [web]}\n"
            "rules:\n  - allow: {from: web, to: web, port: [80]}\n",
            4,
            "rule 1: allow.port",
            "unknown key",
            id="unknown-edge-key",
        ),
        pytest.param(
            "groups:\n  web: {names: [web]}\n"
            "rules:\n  - allow: {from: web, to: web}\n    deny: {from: web, to: web}\n",
            4,
            "rule 1",
            "either",
            id="allow-and-deny",
        ),
        pytest.param(
            "groups:\n  web: {names: [web]}\nrules:\n  - {}\n",
            4,
            "rule 1",
            "either",
            id="neither-allow-nor-deny",
        ),
        pytest.param(
            "groups:\n  web: {names: [web]}\nrules:\n  - allow:\n      from: web\n",
            4,
            "rule 1: allow.to",
            "Field required",
            id="missing-to",
        ),
        pytest.param(
            "groups:\n  web: {names: [web]}\n"
            "rules:\n  - allow:\n      from: web\n      to: dbb\n",
            6,
            "rule 1: allow.to",
            "no group named 'dbb' (groups: web)",
            id="unknown-group-to",
        ),
        pytest.param(
            "groups:\n  web: {names: [web]}\n"
            "rules:\n  - deny:\n      from: [web, wbe]\n      to: web\n",
            5,
            "rule 1: deny.from",
            "no group named 'wbe'",
            id="unknown-group-in-list",
        ),
        pytest.param(
            "rules:\n  - deny: {from: '*', to: db}\n",
            2,
            "rule 1: deny.to",
            "no group named 'db' (groups: none)",
            id="unknown-group-no-groups",
        ),
        pytest.param(
            "groups:\n  web: {names: [web]}\n"
            "rules:\n  - deny:\n      from: web\n      to: web\n      ports: [http]\n",
            7,
            "rule 1: deny.ports.0",
            "valid integer",
            id="port-not-a-number",
        ),
        pytest.param(
            "groups:\n  web: {names: [web]}\n"
            "rules:\n  - deny: {from: web, to: web, ports: {http: 80}}\n",
            4,
            "rule 1: deny",
            "a list of port numbers",
            id="ports-not-a-list",
        ),
        pytest.param(
            "groups:\n  web: {names: web}\n",
            2,
            "groups.web.names",
            "valid tuple",
            id="names-not-a-list",
        ),
        pytest.param(
            "groups:\n  web:\n    names: [5]\n",
            3,
            "groups.web.names.0",
            "valid string",
            id="name-not-a-string",
        ),
        pytest.param(
            "groups:\n  db:\n    labels:\n      tier: 1\n",
            4,
            "groups.db.labels.tier",
            "valid string",
            id="label-value-not-a-string",
        ),
        pytest.param(
            "groups:\n  - web\n",
            1,
            "groups",
            "valid dictionary",
            id="groups-a-list",
        ),
        pytest.param(
            "groups:\n  web: {names: [web]}\nrules:\n  allow: {from: web, to: web}\n",
            3,
            "rules",
            "valid tuple",
            id="rules-a-mapping",
        ),
        pytest.param(
            "groups:\n  web: {names: [web]}\nrules:\n  - allow: {from: 5, to: web}\n",
            4,
            "rule 1: allow.from",
            "valid tuple",
            id="from-a-number",
        ),
        pytest.param(
            "groups:\n  web: {names: [web]}\ndefault: maybe\n",
            3,
            "default",
            "'topology', 'allow' or 'deny'",
            id="bad-default",
        ),
        pytest.param(
            "groups:\n  web: {}\n",
            2,
            "groups.web",
            "a group needs names, services or labels",
            id="group-without-selectors",
        ),
        pytest.param(
            "groups:\n  web:\n    names: []\n    labels: {}\n",
            2,
            "groups.web",
            "a group needs names, services or labels",
            id="group-with-empty-selectors",
        ),
        pytest.param(
            "groups:\n  web: {names: [web]}\n  '*': {names: [x]}\n",
            3,
            "groups",
            "'*' means any container",
            id="group-named-any",
        ),
    ],
)
def test_invalid_policy_names_file_line_key_and_problem(
    tmp_path, text, line, key, message
):
    """Each mistake is one problem reading FILE:LINE: KEY: PROBLEM."""
    path = write(tmp_path, text)

    found = problems(path)

    assert len(found) == 1
    assert found[0].startswith(f"{path}:{line}: {key}: ")
    assert message in found[0]


@pytest.mark.parametrize("port", [70000, 65536, 0, -1])
def test_port_out_of_range_is_refused(tmp_path, port):
    """A port outside 1-65535 is refused as FILE:LINE: rule 1: allow...: why."""
    path = write(
        tmp_path,
        "groups:\n  web: {names: [web]}\n"
        f"rules:\n  - allow:\n      from: web\n      to: web\n      ports: [{port}]\n",
    )

    found = problems(path)

    assert len(found) == 1
    where = rf"{re.escape(str(path))}:\d+: rule 1: allow(\.ports(\.0)?)?: \S"
    assert re.match(where, found[0])


def test_port_out_of_range_names_the_port_and_its_line(tmp_path):
    """The problem points at the bad port itself: rule 1: allow.ports.1 on
    the line of `ports`, like every other bad port value."""
    path = write(
        tmp_path,
        "groups:\n  web: {names: [web]}\n"
        "rules:\n  - allow:\n      from: web\n      to: web\n"
        "      ports: [80, 70000]\n",
    )

    found = problems(path)

    assert found[0].startswith(f"{path}:7: rule 1: allow.ports.1: ")


def test_boolean_is_not_a_port(tmp_path):
    """`ports: [true]` is a wrong type, not port 1."""
    path = write(
        tmp_path,
        "groups:\n  web: {names: [web]}\n"
        "rules:\n  - deny: {from: web, to: web, ports: [true]}\n",
    )

    found = problems(path)

    assert found[0].startswith(f"{path}:4: rule 1: deny.ports.0: ")


def test_every_problem_is_reported(tmp_path):
    """Several mistakes give one problem each, each with its own line."""
    path = write(
        tmp_path,
        "groups:\n"
        "  web: {names: [web]}\n"
        "rules:\n"
        "  - allow: {from: web, to: api}\n"
        "  - deny: {from: dbb, to: web}\n",
    )

    found = problems(path)

    assert found == [
        f"{path}:4: rule 1: allow.to: no group named 'api' (groups: web)",
        f"{path}:5: rule 2: deny.from: no group named 'dbb' (groups: web)",
    ]


def test_invalid_yaml_names_its_line(tmp_path):
    """A YAML syntax error is reported as FILE:LINE: not valid YAML."""
    path = write(tmp_path, "groups:\n  web: {names: [web\nrules: []\n")

    found = problems(path)

    assert len(found) == 1
    assert found[0].startswith(f"{path}:3: not valid YAML: ")


@pytest.mark.parametrize("text", ["- web\n- db\n", "just words\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    """A list or a scalar at the top level is refused, naming file and line."""
    path = write(tmp_path, text)

    found = problems(path)

    assert found == [f"{path}:1: a policy is a mapping with groups and rules"]


def test_missing_file_is_reported(tmp_path):
    """A policy file that cannot be read is an error naming the file."""
    path = tmp_path / "absent.yaml"

    found = problems(path)

    assert found[0].startswith(f"{path}: cannot read")


# The YAML reader.


def test_read_yaml_gives_data_and_the_line_of_every_key(tmp_path):
    """read_yaml returns the plain data and the line of each key and item."""
    path = write(tmp_path, THREE_TIER)

    data, lines = read_yaml(path)

    assert data["groups"]["api"] == {"names": ["shop-api-*"]}
    assert data["rules"][1] == {"deny": {"from": "*", "to": "db"}}
    assert lines[("groups",)] == 1
    assert lines[("groups", "db", "labels", "tier")] == 4
    assert lines[("rules", 0)] == 6
    assert lines[("rules", 2, "allow", "to")] == 8
    assert lines[("rules", 0, "allow", "ports", 0)] == 6
    assert lines[("default",)] == 9


def test_read_yaml_gives_the_key_line_of_a_block_value(tmp_path):
    """A key whose value starts on later lines is placed on the key's line."""
    path = write(tmp_path, "rules:\n  - allow:\n      from: a\n      to: b\n")

    _, lines = read_yaml(path)

    assert lines[("rules",)] == 1
    assert lines[("rules", 0, "allow")] == 2
    assert lines[("rules", 0, "allow", "to")] == 4


def test_read_yaml_of_an_empty_file_is_none(tmp_path):
    """An empty file reads as None with no lines."""
    path = write(tmp_path, "")

    assert read_yaml(path) == (None, {})


def test_read_yaml_keeps_scalar_types(tmp_path):
    """Scalars keep the types YAML gives them."""
    path = write(tmp_path, "a: 1\nb: 'x'\nc: [1.5, true, null]\n")

    data, _ = read_yaml(path)

    assert data == {"a": 1, "b": "x", "c": [1.5, True, None]}


@pytest.mark.parametrize(
    ("location", "line"),
    [
        (("rules", 0, "allow", "to"), 4),
        (("rules", 0, "allow", "ports", 3), 2),
        (("rules", 0, "allow", "nothing", "deeper"), 2),
        (("rules", 5), 1),
        (("elsewhere",), 1),
        ((), 1),
    ],
    ids=["exact", "missing-item", "missing-key", "missing-index", "root", "empty"],
)
def test_line_of_falls_back_to_the_nearest_parent(tmp_path, location, line):
    """A location the file lacks is placed on its nearest parent's line."""
    path = write(tmp_path, "rules:\n  - allow:\n      from: a\n      to: b\n")
    _, lines = read_yaml(path)

    assert line_of(lines, location) == line


def test_line_of_matches_numeric_keys_written_as_text(tmp_path):
    """A key given as a number in the file is found by its text."""
    path = write(tmp_path, "ports:\n  5432: db\n  80: web\n")
    _, lines = read_yaml(path)

    assert line_of(lines, ("ports", "80")) == 3


def test_line_of_with_no_lines_is_none():
    """With nothing read there is no line to give."""
    assert line_of({}, ("rules", 0)) is None


def test_read_yaml_reports_a_file_it_cannot_read(tmp_path):
    """A missing file is a ConfigError naming the file."""
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigError, match="cannot read"):
        read_yaml(path)


def test_read_yaml_reports_bad_yaml_with_its_line(tmp_path):
    """A YAML syntax error names the file and its line."""
    path = write(tmp_path, "a: 1\nb: [2\nc: 3\n")

    with pytest.raises(ConfigError) as caught:
        read_yaml(path)

    assert caught.value.problems[0].startswith(f"{path}:3: not valid YAML")

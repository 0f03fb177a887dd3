"""What a reload changes at once, and what waits for the next start."""

from __future__ import annotations

import pytest

from netwatch.config import Config
from netwatch.daemon import Daemon
from netwatch.reload import ReloadOutcome, merge_reloaded


def config(**sections: object) -> Config:
    return Config.model_validate(sections)


def test_new_values_apply_and_the_changed_sections_are_named():
    """Sections whose values differ are listed; others are not."""
    running = config()
    loaded = config(matrix={"loss_window": 4}, probes={"tcp": {"enabled": False}})

    merged = merge_reloaded(running, loaded)

    assert merged.config.matrix.loss_window == 4
    assert merged.config.probes.tcp.enabled is False
    assert merged.changed == {"matrix", "probes"}
    assert merged.needs_restart == ()


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"docker": {"host": "tcp://127.0.0.1:2375"}}, "docker"),
        ({"http": {"listen": "127.0.0.1:9999"}}, "http.listen"),
        ({"probes": {"engine": "exec"}}, "probes.engine"),
        ({"log": {"format": "console"}}, "log.format"),
    ],
    ids=["docker", "listen", "engine", "log-format"],
)
def test_settings_bound_to_startup_keep_their_running_value(sections, key):
    """A new value for a restart-only key is named and not applied."""
    running = config()

    merged = merge_reloaded(running, config(**sections))

    assert merged.needs_restart == (key,)
    assert merged.config == running
    assert merged.changed == frozenset()


def test_a_restart_only_key_does_not_hold_back_its_section():
    """probes.engine waits, while the rest of probes applies."""
    running = config()
    loaded = config(probes={"engine": "netns", "ping": {"count": 5}})

    merged = merge_reloaded(running, loaded)

    assert merged.config.probes.engine == "auto"
    assert merged.config.probes.ping.count == 5
    assert merged.changed == {"probes"}
    assert merged.needs_restart == ("probes.engine",)


def test_outcomes_read_as_sentences():
    """A failure lists every problem; a success names what changed and what
    waits for a restart."""
    failed = ReloadOutcome.failed(["matrix.los_window: unknown key"])
    done = ReloadOutcome(ok=True, changed=("policy",), needs_restart=("docker",))

    assert failed.describe() == (
        "reload failed; the running configuration stays:\n"
        "  matrix.los_window: unknown key\n"
    )
    assert done.describe() == (
        "configuration reloaded; changed: policy\n"
        "these take effect at the next start: docker\n"
    )


async def test_a_reader_that_fails_unexpectedly_is_a_failed_reload():
    """Whatever goes wrong reading the files, the reload fails, is counted
    and logged, and the running configuration stays."""
    config = Config.model_validate({})

    def broken() -> tuple[Config, None]:
        raise RecursionError("maximum recursion depth exceeded")

    daemon = Daemon(config, reload_from=broken)  # type: ignore[arg-type]

    outcome = await daemon.reload()

    assert not outcome.ok
    assert "RecursionError" in outcome.describe()
    assert daemon.config is config
    registry = daemon.registry
    assert (
        registry.get_sample_value("netwatch_config_reloads_total", {"result": "failed"})
        == 1
    )
    assert registry.get_sample_value("netwatch_config_last_reload_successful") == 0

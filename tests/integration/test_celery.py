"""The render farm's Celery app on the real Redis broker: a task sent here runs on a worker."""

from __future__ import annotations

import threading

import pytest
from celery.contrib.testing.worker import start_worker

from core.errors import ConfigError
from render_farm.celery_app import RENDER_QUEUE, create_celery, worker_argv
from tests.conftest import SettingsFactory


def test_worker_configuration_is_at_least_once(make_settings: SettingsFactory) -> None:
    app = create_celery(make_settings(redis_url="redis://127.0.0.1:6379/0", redis_prefix="p:"))
    conf = app.conf
    assert conf.task_default_queue == RENDER_QUEUE
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (300, 330)
    options = conf.broker_transport_options
    assert options["visibility_timeout"] > conf.task_time_limit
    assert options["global_keyprefix"] == "p:celery:"
    assert worker_argv(concurrency=2, log_level="INFO")[:3] == ["worker", "--queues", "render"]


def test_worker_needs_redis(make_settings: SettingsFactory) -> None:
    with pytest.raises(ConfigError, match="REDIS_URL"):
        create_celery(make_settings())


def test_time_limits_must_be_ordered(make_settings: SettingsFactory) -> None:
    with pytest.raises(ValueError, match="RENDER_SOFT_TIME_LIMIT must be below"):
        make_settings(render_soft_time_limit=400, render_time_limit=300)


def test_a_task_round_trips_through_redis(
    make_settings: SettingsFactory, redis_url: str, redis_prefix: str
) -> None:
    app = create_celery(make_settings(redis_url=redis_url, redis_prefix=redis_prefix))
    ran = threading.Event()
    seen: list[str] = []

    @app.task(name="tests.record")
    def record(value: str) -> None:
        seen.append(value)
        ran.set()

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        record.apply_async(args=["hello"], queue=RENDER_QUEUE)
        assert ran.wait(10), "the worker did not run the task"
    assert seen == ["hello"]

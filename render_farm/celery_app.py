"""The Celery application of the render farm (production; embedded mode renders in-process).

Built from `Settings` at worker start, never at import. Redis is the broker; job state lives in
the database, so there is no result backend. Delivery is at-least-once: `acks_late` with
`reject_on_worker_lost` hands a task whose worker died to another worker, and the visibility
timeout is kept above the hard time limit so a slow task is not delivered twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.errors import ConfigError
from core.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

RENDER_QUEUE = "render"
RENDER_TASK = "render_farm.render_job"


def create_celery(settings: Settings) -> Celery:
    """The Celery app. The hub only sends tasks (by name); a worker adds the render task with
    `render_farm.tasks.register_tasks` once its start-up probe has chosen a backend."""
    if settings.redis_url is None:
        raise ConfigError(
            "REDIS_URL: the Celery worker needs Redis as its broker "
            "(without it, renders run in the hub's local process pool)",
            setting="REDIS_URL",
        )
    from celery import Celery  # only where Celery is used: embedded mode never loads it

    app = Celery("ideinstein", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_default_queue=RENDER_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_soft_time_limit=settings.render_soft_time_limit,
        task_time_limit=settings.render_time_limit,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "global_keyprefix": f"{settings.redis_prefix}celery:",
            "visibility_timeout": settings.render_time_limit * 2,
            # A killed worker's unacknowledged task comes back in ~10 s, not ~90 s.
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
            "socket_timeout": 30,
            "socket_connect_timeout": 5,
            "health_check_interval": 30,
        },
    )
    return app


def worker_argv(*, concurrency: int | None, log_level: str) -> list[str]:
    argv = [
        "worker",
        "--queues",
        RENDER_QUEUE,
        "--loglevel",
        log_level,
        "--without-gossip",
        "--without-mingle",
    ]
    if concurrency is not None:
        argv += ["--concurrency", str(concurrency)]
    return argv

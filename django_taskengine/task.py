"""``@task``: turning functions into registered tasks, and enqueueing jobs for them."""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack, overload

from .conf import taskengine_settings
from .context import ContextChannel, TaskContext
from .core.dedup import SKIP
from .core.flow import Limits, check_concurrency, lane, parse_rate
from .enqueue_options import EnqueueOptions, check_option, updated
from .registry import TaskNotRegistered, find_task, get_task, registered_tasks
from .registry import tasks as registry
from .serialization import check_arguments
from .signals import job_enqueued, listened

if TYPE_CHECKING:
    from .models import Job
    from .store import ClaimedJob, NewJobs

__all__ = [
    "BoundTask",
    "EnqueueOptions",
    "Task",
    "TaskNotRegistered",
    "find_task",
    "get_task",
    "registered_tasks",
    "task",
]

OnOrphan = Literal["retry", "park"]


class TaskOptions(TypedDict, total=False):
    """The keyword options of ``@task(...)``: those of :class:`Task`, all optional."""

    name: str | None
    queue: str | None
    priority: int | None
    max_attempts: int | None
    retry_backoff: float | None
    timeout: float | None
    takes_context: bool
    atomic: bool
    on_orphan: OnOrphan
    concurrency: int | None
    rate_limit: str | None
    group_concurrency: int | None


_NO_OPTIONS = EnqueueOptions()

#: Call shapes a task remembers having bound (see :meth:`Task.check_call`); more are bound
#: every time.
MAX_CALL_SHAPES = 64
_NO_KEYWORDS: frozenset[Any] = frozenset()


class Task:
    """A registered function. Call it to run it here and now; ``enqueue`` it to run in a worker."""

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        name: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        retry_backoff: float | None = None,
        timeout: float | None = None,
        takes_context: bool = False,
        atomic: bool = False,
        on_orphan: OnOrphan = "retry",
        concurrency: int | None = None,
        rate_limit: str | None = None,
        group_concurrency: int | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"@task needs a function, got {func!r}")
        self.func = func
        self.name = name or f"{func.__module__}.{func.__qualname__}"
        self._queue = queue
        self._priority = priority
        self._max_attempts = max_attempts
        self._retry_backoff = retry_backoff
        self.timeout = timeout
        self.takes_context = takes_context
        self.atomic = atomic
        self.on_orphan = on_orphan
        check_option("max_attempts", max_attempts, int, minimum=1, name=self.name)
        check_option("priority", priority, int, name=self.name)
        check_option("retry_backoff", retry_backoff, (int, float), minimum=0, name=self.name)
        check_option("timeout", timeout, (int, float), minimum=0, name=self.name)
        #: Flow control, fleet-wide (see django_taskengine.core.flow): at most ``concurrency``
        #: jobs of this task running across every queue, at most ``rate_limit`` starts, and at
        #: most ``group_concurrency`` running per group (``.using(group=...)``).
        self.limits = Limits(
            concurrency=check_concurrency(concurrency, f"@task {self.name}: concurrency"),
            rate=parse_rate(rate_limit, f"@task {self.name}: rate_limit"),
            group_concurrency=check_concurrency(
                group_concurrency, f"@task {self.name}: group_concurrency"
            ),
        )
        if on_orphan not in ("retry", "park"):
            raise ValueError(
                f"@task {self.name}: on_orphan must be 'retry' or 'park', not {on_orphan!r}"
            )
        signature = inspect.signature(func)
        if takes_context:
            params = list(signature.parameters.values())
            if not params:
                raise TypeError(
                    f"@task(takes_context=True) {self.name} must accept a context argument first"
                )
            signature = signature.replace(parameters=params[1:])
        self.signature = signature
        #: The call shapes (how many positional arguments, which keywords) the signature took.
        self._accepted_shapes: set[tuple[int, frozenset[Any]]] = set()
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", self.name)
        self.__module__ = func.__module__
        self.__wrapped__ = func
        self._unbound = BoundTask(self, _NO_OPTIONS)

    def check_call(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Raise ``TypeError`` if the function could not take ``args`` and ``kwargs``.

        Whether a call binds depends on its shape alone (how many positional arguments, which
        keywords), never on the values: a shape that bound once is not bound again, so a bulk
        enqueue of a thousand alike calls binds one (binding each cost a bulk enqueue a tenth of
        its rate).
        """
        shape = (len(args), frozenset(kwargs) if kwargs else _NO_KEYWORDS)
        if shape in self._accepted_shapes:
            return
        self.signature.bind(*args, **kwargs)
        if len(self._accepted_shapes) < MAX_CALL_SHAPES:
            self._accepted_shapes.add(shape)

    # Defaults are read when used, so TASKENGINE settings overridden in tests apply.
    @property
    def queue(self) -> str:
        return self._queue or taskengine_settings.DEFAULT_QUEUE

    @property
    def priority(self) -> int:
        return (
            self._priority if self._priority is not None else taskengine_settings.DEFAULT_PRIORITY
        )

    @property
    def max_attempts(self) -> int:
        if self._max_attempts is not None:
            return self._max_attempts
        return taskengine_settings.DEFAULT_MAX_ATTEMPTS

    @property
    def retry_backoff(self) -> float:
        if self._retry_backoff is not None:
            return float(self._retry_backoff)
        return taskengine_settings.DEFAULT_RETRY_BACKOFF

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def invoke(self, job: ClaimedJob, channel: ContextChannel | None) -> Any:
        """Run the function for one attempt of ``job`` (a worker calls this).

        Returns what the function returns (an ``async def`` task's awaitable is run by the
        caller). Integrations that wrap other task APIs override this.
        """
        if self.takes_context:
            context = TaskContext(job, channel, atomic=self.atomic)
            return self.func(context, *job.args, **job.kwargs)
        return self.func(*job.args, **job.kwargs)

    def using(
        self,
        *,
        queue: str | None = None,
        priority: int | None = None,
        run_after: dt.datetime | dt.timedelta | float | None = None,
        dedup_key: str | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        database: str | None = None,
        group: str | None = None,
        sequence: str | None = None,
        dedup: str | None = None,
        dedup_window: float | dt.timedelta | None = None,
        after: Iterable[Job | int] | None = None,
        on_dependency_failure: str | None = None,
    ) -> BoundTask:
        """Return this task with per-call options for ``enqueue`` and ``bulk_enqueue``.

        ``run_after`` is an aware datetime, a timedelta from now or a number of seconds from now.
        ``dedup_key``: while a queued, running or paused job has this key, enqueueing returns
        that job (with ``job.created`` False) instead of adding another; ``dedup`` ("skip",
        "replace", "debounce" or "throttle", with ``dedup_window`` in seconds for the last two)
        changes what it does (django_taskengine/core/dedup.py). ``timeout``: seconds
        each attempt of these jobs may run (instead of the task's ``timeout``). ``group``: the
        jobs' group (a tenant, say): with ``@task(group_concurrency=N)``, at most N jobs of one
        group run at once, and groups take turns. ``sequence``: jobs that share it run one at
        a time, in enqueue order, across the fleet. ``after``: jobs (or job ids) these wait
        for: they run once all succeeded, or end cancelled if one did not, unless
        ``on_dependency_failure="run"`` (django_taskengine/core/dependencies.py).
        """
        return BoundTask(self, EnqueueOptions()).using(
            queue=queue,
            priority=priority,
            run_after=run_after,
            dedup_key=dedup_key,
            max_attempts=max_attempts,
            timeout=timeout,
            database=database,
            group=group,
            sequence=sequence,
            dedup=dedup,
            dedup_window=dedup_window,
            after=after,
            on_dependency_failure=on_dependency_failure,
        )

    def enqueue(self, *args: Any, **kwargs: Any) -> Job:
        """Add one job that will call this task with these JSON arguments; return it."""
        return self._unbound.enqueue(*args, **kwargs)

    def bulk_enqueue(self, calls: Iterable[tuple[Sequence[Any], dict[str, Any]]]) -> list[Job]:
        """Add many jobs in one statement: ``calls`` is an iterable of ``(args, kwargs)`` pairs."""
        return self._unbound.bulk_enqueue(calls)


class BoundTask:
    """A task with enqueue options attached, as returned by :meth:`Task.using`."""

    def __init__(self, task: Task, options: EnqueueOptions) -> None:
        self.task = task
        self.options = options

    def using(self, **changes: Any) -> BoundTask:
        return BoundTask(self.task, updated(self.options, changes, self.task.name))

    def enqueue(self, *args: Any, **kwargs: Any) -> Job:
        self._check(args, kwargs)
        return self._insert([(args, kwargs)])[0]

    def enqueue_call(
        self, args: Sequence[Any], kwargs: dict[str, Any], *, run_eagerly: bool = True
    ) -> Job:
        """:meth:`enqueue` for integrations: with ``run_eagerly=False``, eager mode does not run
        the job here (the caller says it was enqueued first, then runs it: see
        :func:`django_taskengine.worker.inprocess.run_enqueued_eagerly`)."""
        args = tuple(args)
        self._check(args, kwargs)
        return self._insert([(args, kwargs)], run_eagerly=run_eagerly)[0]

    def bulk_enqueue(self, calls: Iterable[tuple[Sequence[Any], dict[str, Any]]]) -> list[Job]:
        checked: list[tuple[Sequence[Any], dict[str, Any]]] = []
        for call in calls:
            try:
                args, kwargs = call
                args = tuple(args)
                kwargs = dict(kwargs)
            except (TypeError, ValueError):
                raise TypeError(
                    f"bulk_enqueue({self.task.name}) takes (args, kwargs) pairs such as "
                    f"((1, 2), {{'width': 320}}), got {call!r}"
                ) from None
            self._check(args, kwargs)
            checked.append((args, kwargs))
        return self._insert(checked)

    def _check(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Refuse a call the function could not take, or arguments JSON cannot store."""
        task = self.task
        try:
            task.check_call(args, kwargs)
        except TypeError as exc:
            raise TypeError(
                f"Cannot enqueue {task.name}{task.signature}: {exc}. Nothing was enqueued."
            ) from None
        check_arguments(task.name, args, kwargs)

    def _insert(
        self, calls: list[tuple[Sequence[Any], dict[str, Any]]], *, run_eagerly: bool = True
    ) -> list[Job]:
        """Write checked ``(args, kwargs)`` calls as jobs with this task's options."""
        # Imported here: the package's __init__ imports this module while Django populates
        # its app registry, and the store imports the models, which cannot load before that.
        from .store import get_store
        from .worker.inprocess import run_enqueued_eagerly

        options = self.options
        store = get_store(options.database)
        new = self.new_jobs(calls)
        if options.after:
            from .store.orm_dependencies import enqueue_after

            jobs = enqueue_after(store, new, options.after, options.on_dependency_failure)
        else:
            if options.on_dependency_failure is not None:
                raise ValueError(
                    f"{self.task.name}: on_dependency_failure applies to jobs enqueued with "
                    "after=[…]"
                )
            jobs = store.enqueue(new)
        if listened(job_enqueued):
            for job in jobs:
                job_enqueued.send(sender=self.task, job=job, created=job.created)
        if run_eagerly and taskengine_settings.EAGER:
            jobs = run_enqueued_eagerly(jobs, store.alias)
        return jobs

    def new_jobs(self, calls: list[tuple[Sequence[Any], dict[str, Any]]]) -> NewJobs:
        """What an enqueue of checked ``calls`` writes, with this task's options."""
        from .store import NewJobs

        task = self.task
        options = self.options
        queue = options.queue or task.queue
        return NewJobs(
            task_name=task.name,
            queue=queue,
            priority=options.priority if options.priority is not None else task.priority,
            run_after=options.run_after,
            dedup_key=options.dedup_key,
            max_attempts=options.max_attempts or task.max_attempts,
            retry_backoff=task.retry_backoff,
            timeout=options.timeout if options.timeout is not None else task.timeout,
            calls=calls,
            group_key=options.group,
            sequence_key=options.sequence,
            dedup_mode=options.dedup or SKIP,
            dedup_window=options.dedup_window,
            # The queue's lane, if it has a limit, is the store's to add.
            flow_key=lane(
                task.limits,
                task.name,
                group=options.group,
                sequence=options.sequence,
                queue=queue,
                queue_limited=False,
            ),
        )


@overload
def task(func: Callable[..., Any], /) -> Task: ...


@overload
def task(**options: Unpack[TaskOptions]) -> Callable[[Callable[..., Any]], Task]: ...


def task(func: Callable[..., Any] | None = None, /, **options: Any) -> Any:
    """Register a function as a task: ``@task`` or ``@task(queue=..., max_attempts=...)``.

    Options: ``name`` (default ``module.qualname``), ``queue``, ``priority`` (higher runs
    first), ``max_attempts``, ``retry_backoff`` (seconds before the first retry; doubles each
    time, with jitter), ``timeout`` (seconds), ``takes_context``, ``atomic``, ``on_orphan``.
    """

    def register(function: Callable[..., Any]) -> Task:
        new = Task(function, **options)
        registry.register(new)
        return new

    if func is not None:
        return register(func)
    return register

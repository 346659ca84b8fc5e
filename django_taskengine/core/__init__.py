"""The job lifecycle, decided in one place.

Everything here is pure: it imports nothing of the package but the settings, touches no
database and starts no thread. Callers (the worker, the in-process runner, the rescuer, the
operations) ask the core what a job's next state is; the stores only *write* the states they are
handed, each write fenced by the attempt's token.

- :mod:`.statuses`: the job statuses and attempt outcomes, which of them are active or terminal.
- :mod:`.lifecycle`: :class:`~.lifecycle.Outcome` and the functions that build one from how an
  attempt ended (success, error, timeout, snooze, stop request, shutdown, a dead worker),
  including the retry-or-fail decision and the backoff.
- :mod:`.ownership`: the fields that say who owns a running job, and their released values.
- :mod:`.limits`: the bounds of stored values (queue names, 32-bit integers) and their checks.
- :mod:`.durations`: one grammar for durations written by people (``90s``, ``1h30m``, ``2w``),
  and seconds written back for people.
"""

"""Running jobs. :mod:`.process` is a worker process's main loop, composed of its parts:
:mod:`.claimer` (what to claim), :mod:`.runner_pool` and :mod:`.runner` (running attempts),
:mod:`.completer` (writing outcomes in batches), :mod:`.state_sync` (checkpoints, progress),
:mod:`.stopping` (timeouts, shutdown), :mod:`.liveness` (session, heartbeats, rescue, duties),
:mod:`.report` (log line and signal per attempt). :mod:`.supervisor` starts and watches worker
processes; :mod:`.maintenance` registers housekeeping duties."""

"""Running jobs: :mod:`.runner` runs one attempt, :mod:`.worker` is a worker process's claim
loop, :mod:`.supervisor` starts and watches worker processes."""

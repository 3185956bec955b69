"""Running one piece of work from many threads at the same moment, each on a database connection of its own."""

import threading

from django.db import connection


def at_once(work, items, *, timeout: float = 60) -> None:
    """Call ``work(item)`` for every item, each in a thread of its own, all
    released together by a barrier; each thread closes its connection."""
    items = list(items)
    start = threading.Barrier(len(items))

    def run(item) -> None:
        try:
            start.wait(timeout=30)
            work(item)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)

"""Settings of the admin's exports (the ``exports`` app), read from the environment."""

from shop.project.envconfig import env_int

# An export matching at most this many rows is streamed to the browser at once;
# a larger one is written by background jobs behind a progress page.
EXPORT_STREAM_MAX_ROWS = env_int("EXPORT_STREAM_MAX_ROWS", 5000)
# Rows one export job writes before handing on to the next (a job stays well
# inside the worker's minute, and deliveries go between two jobs).
EXPORT_SLICE_ROWS = env_int("EXPORT_SLICE_ROWS", 20000)
# Minutes a finished export waits for its one download before it is deleted.
EXPORT_FILE_MINUTES = env_int("EXPORT_FILE_MINUTES", 60)

"""Component ids of the Dash pages. The contract names the public ones; tests and
callbacks import these constants instead of spelling the strings again."""

# Public ids: users and tests address the pages by these; renaming one breaks them.
ROWS_INPUT = "rows-input"
SECONDS_INPUT = "seconds-input"
MODE_SELECT = "mode-select"
RUN_BUTTON = "run-button"
CANCEL_BUTTON = "cancel-button"
RUN_PROGRESS = "run-progress"
APP_STATUS = "app-status"
SCHEDULE_INFO = "schedule-info"
DATA_TOTAL = "data-total"
DATA_GRID = "data-grid"
HISTORY_GRID = "history-grid"
HISTORY_CHART = "history-chart"

# Internal ids.
URL = "url"
PAGE = "page"
ROWS_ERROR = "rows-error"
SECONDS_ERROR = "seconds-error"
RUN_PROGRESS_TEXT = "run-progress-text"
BG_REQUEST = "bg-request"  # validated parameters that start the background callback
BG_RUN = "bg-run"  # id of the background run in flight (sent with its progress)
BG_DONE = "bg-done"  # the finished background run
QUEUED_RUN = "queued-run"  # {"id": ...} of the queued run being polled
POLL_INTERVAL = "poll-interval"
DATA_VERSION = "data-version"
DATA_INTERVAL = "data-interval"
GRID_REFRESHED = "grid-refreshed"
SCHEDULE_INTERVAL = "schedule-interval"
HISTORY_STATE = "history-state"
HISTORY_SOURCE = "history-source"
HISTORY_TASK = "history-task"
HISTORY_INTERVAL = "history-interval"
HISTORY_SIG = "history-signature"  # fingerprint of the rows last sent
HISTORY_CREATED_BY = "history-created-by"
HISTORY_RERUN = "history-rerun"  # "Run again" for the row selected in the grid
HISTORY_STATUS = "history-status"

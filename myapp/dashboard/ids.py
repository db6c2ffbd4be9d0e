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
# The task pages (/dash/tasks/<name>); mode, buttons, progress and status are the
# ids above, shared with the main page.
RESULT_VIEW = "result-view"
RESULT_GRID = "result-grid"
RESULT_GRAPH = "result-graph"
TASK_RUNS_GRID = "task-runs-grid"
RUN_LOG = "run-log"  # the followed run's log lines (ctx.log), live
TASK_SCHEDULES = "task-schedules"  # this task's schedules and their next fire
TASK_LIST = "task-list"  # /dash/tasks


def param_id(name: str) -> str:
    """The control of a task parameter on its task's page."""
    return f"param-{name}"


def param_error_id(name: str) -> str:
    """Where the message about that parameter's value is shown."""
    return f"param-{name}-error"


# Internal ids.
URL = "url"
PAGE = "page"
ROWS_ERROR = "rows-error"
SECONDS_ERROR = "seconds-error"
RUN_PROGRESS_TEXT = "run-progress-text"
BG_REQUEST = "bg-request"  # validated parameters that start the background callback
BG_RUN = "bg-run"  # id of the background run in flight (sent with its progress)
BG_DONE = "bg-done"  # {"id": …} of the finished background run
QUEUED_DONE = "queued-done"  # {"id": …} of the queued run once it has ended
RUN_PAGE = "run-page"  # {"task": …, "form": …}: which task the page's form starts
RUN_FORM = "run-form"  # the container of the page's parameter controls
RUN_LOG_STATE = "run-log-state"  # {"run": id, "next": seq} of the lines shown
RUN_LOG_INTERVAL = "run-log-interval"
RUN_SHOWN = "run-shown"  # the ended run the page has shown (its result, its status)
START_REASON = "start-reason"  # why the signed-in user may not start the task
TASK_RUNS_INTERVAL = "task-runs-interval"
TASK_RUNS_SIG = "task-runs-signature"
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

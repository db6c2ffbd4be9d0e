"""Task modules a team could get wrong, one mistake each: every one must stop the app
at start with a message naming the module, the task and the parameter
(tests/test_task_modules.py names them in TASK_MODULES)."""

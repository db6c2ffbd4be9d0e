"""Hostile and careless requests to Dash's endpoints: a 4xx or a normal answer,
never a 5xx, and at most one log line without a traceback.

The inputs named below were each a 500 once. Then a fuzz built from the app's own
callback map: each example picks one callback of `dash_app.callback_map` and sends
`POST /dash/_dash-update-component` with its inputs and state set to JSON of many
shapes (NaN and Infinity included, as Python's JSON parser reads them), sometimes
with the body itself broken (a key dropped or replaced, another output, not an
object) and sometimes with forged background-callback handles in the query.
Real Redis and database; no worker (a background job is only queued).
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from myapp.dashboard import ids
from myapp.dashboard.site import VERSION_KEYS
from myapp.web.guards import MAX_JSON_DEPTH

ENDPOINT = "/dash/_dash-update-component"
# The `run-page` store of the main page, as the router writes it.
MAIN_PAGE = {"task": "generate_data", "form": "main"}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        ["", "0", "1", "abc", "queued", "background", "/dash/history", "SUCCESS"]
    )
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Objects with the keys our callbacks read (a grid request, a run reference), each
# holding anything.
keyed = st.fixed_dictionaries(
    {},
    optional={
        key: json_values
        for key in ("startRow", "endRow", "sortModel", "filterModel", "id", "run_id")
    },
)
sort_models = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "colId": st.sampled_from(["value", "created_at", "id"]) | json_values,
            "sort": st.sampled_from(["asc", "desc"]) | json_values,
        },
    ),
    max_size=3,
)
grid_requests = st.fixed_dictionaries(
    {
        "startRow": st.integers() | st.floats() | json_values,
        "endRow": st.integers() | st.floats() | json_values,
        "sortModel": sort_models | json_values,
    }
)
values = json_values | keyed | grid_requests


def callback_bodies(callback_map: dict[str, Any]) -> st.SearchStrategy:
    """A well-formed request for one callback, its values drawn from `values`."""

    def body_for(output: str) -> st.SearchStrategy:
        callback = callback_map[output]

        def dependencies(declared: list[dict[str, Any]]) -> st.SearchStrategy:
            return st.tuples(*[values for _ in declared]).map(
                lambda drawn: [
                    {"id": d["id"], "property": d["property"], "value": v}
                    for d, v in zip(declared, drawn, strict=True)
                ]
            )

        return st.fixed_dictionaries(
            {
                "output": st.just(output),
                "outputs": st.just(declared_outputs(output)),
                "inputs": dependencies(callback["inputs"]),
                "state": dependencies(callback["state"]),
                "changedPropIds": st.just(
                    [f"{d['id']}.{d['property']}" for d in callback["inputs"][:1]]
                ),
            }
        )

    return st.sampled_from(sorted(callback_map)).flatmap(body_for)


def declared_outputs(output: str) -> Any:
    """`outputs` as the renderer sends them for a callback map key."""

    def one(spec: str) -> dict[str, str]:
        ident, prop = spec.rsplit(".", 1)
        return {"id": ident, "property": prop}

    if output.startswith(".."):
        return [one(s) for s in output[2:-2].split("...")]
    return one(output)


@st.composite
def broken(draw: st.DrawFn, bodies: st.SearchStrategy) -> Any:
    """Mostly a well-formed body, else one with a part missing or wrong."""
    body = draw(bodies)
    how = draw(st.sampled_from(["none"] * 6 + ["drop", "replace", "whole", "output"]))
    key = draw(st.sampled_from(sorted(body)))
    if how == "drop":
        del body[key]
    elif how == "replace":
        body[key] = draw(json_values)
    elif how == "whole":
        return draw(json_values)
    elif how == "output":
        body["output"] = draw(st.text(max_size=30) | st.just("nope.children"))
    return body


def body_of(app, output: str, *values: Any) -> dict[str, Any]:
    """The renderer's request for the callback whose (first) output is `output`
    (`id.property`), inputs then state set to `values`."""
    callback_map = app.extensions["dash"].callback_map
    key = next(
        k
        for k in callback_map
        if k.split("@")[0] == output
        or k.startswith(f"..{output}@")
        or k.startswith(f"..{output}...")
    )
    callback = callback_map[key]
    declared = callback["inputs"] + callback["state"]
    assert len(values) == len(declared), [d["id"] for d in declared]
    filled = [dict(d, value=v) for d, v in zip(declared, values, strict=True)]
    return {
        "output": key,
        "outputs": declared_outputs(key),
        "inputs": filled[: len(callback["inputs"])],
        "state": filled[len(callback["inputs"]) :],
        "changedPropIds": [
            f"{callback['inputs'][0]['id']}.{callback['inputs'][0]['property']}"
        ],
    }


def post(log_records, client, body: Any, query: str = "", raw: str | None = None):
    """One request; it leaves at most one log line, without a traceback."""
    log_records.clear()
    response = client.post(
        ENDPOINT + query,
        data=raw if raw is not None else json.dumps(body),
        content_type="application/json",
    )
    assert quiet(log_records), [r.getMessage() for r in log_records.records]
    return response


def quiet(log_records) -> bool:
    """At most one log line, and no traceback or error in it."""
    records = log_records.records
    return len(records) <= 1 and all(
        r.exc_info is None and r.levelno < logging.ERROR for r in records
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "output"),
        ([], "body"),
        ("abc", "body"),
        ({"output": "nope.children", "outputs": {}, "inputs": []}, "output"),
        ({"output": "page.children"}, "outputs"),
        (
            {
                "output": "page.children",
                "outputs": {"id": "page", "property": "children"},
            },
            "inputs",
        ),
        (
            {
                "output": "page.children",
                "outputs": {"id": "page", "property": "children"},
                "inputs": [{"id": "url", "property": "pathname"}],
                "changedPropIds": [["url.pathname"]],
            },
            "changedPropIds",
        ),
        # A callback that runs in the browser has no server side.
        (
            {
                "output": "grid-refreshed.data",
                "outputs": {"id": "grid-refreshed", "property": "data"},
                "inputs": [{"id": "data-version", "property": "data", "value": 1}],
                "state": [{"id": "grid-refreshed", "property": "data", "value": 1}],
            },
            "output",
        ),
    ],
)
def test_malformed_callback_requests_get_a_400_naming_the_field(
    client, log_records, body, field
):
    response = post(log_records, client, body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "invalid_dash_request" and field in error["fields"]
    assert error["message"].startswith(field)


def test_odd_values_in_callback_inputs_get_ordinary_answers(app, client, log_records):
    grid = f"{ids.DATA_GRID}.getRowsResponse"
    for request in (
        [1, 2],
        {"startRow": 0, "endRow": 10, "sortModel": "abc"},
        {"startRow": 0, "endRow": 10, "sortModel": [1, None, {"colId": [1]}]},
        {"startRow": "x", "endRow": {}},
    ):
        response = post(log_records, client, body_of(app, grid, request))
        assert response.status_code == 200, request
        assert response.get_json()["response"][ids.DATA_GRID]["getRowsResponse"] == {
            "rowData": [],
            "rowCount": 0,
        }
    # Python reads Infinity and NaN in JSON; the grid request must too.
    raw = json.dumps(body_of(app, grid, {"startRow": 0, "endRow": 5})).replace(
        '"startRow": 0', '"startRow": Infinity'
    )
    assert post(log_records, client, None, raw=raw).status_code == 200
    # The router: a path that is not text is the main page.
    response = post(
        log_records, client, body_of(app, f"{ids.PAGE}.children", ["/dash/history"])
    )
    assert response.status_code == 200
    assert ids.RUN_BUTTON in json.dumps(response.get_json())
    # A queued run that is not {"id": <run id>}: nothing to follow, polling stops.
    for queued in ("abc", {"id": ["x"]}, {"id": "\x00"}, [1]):
        response = post(
            log_records,
            client,
            body_of(app, f"{ids.RUN_PROGRESS}.value", 1, queued, MAIN_PAGE),
        )
        assert response.status_code == 200, queued
        outputs = response.get_json()["response"]
        assert outputs[ids.POLL_INTERVAL]["disabled"] is True
    # Cancel with odd run references cancels nothing.
    response = post(
        log_records,
        client,
        body_of(app, f"{ids.APP_STATUS}.children", 1, {"a": 1}, "abc", [1]),
    )
    assert response.status_code == 200
    # History filters that are not one of the choices change nothing.
    for state in (["SUCCESS"], {"a": 1}, "bogus", 5):
        response = post(
            log_records,
            client,
            body_of(
                app, f"{ids.HISTORY_GRID}.rowData", 1, state, None, None, None, None
            ),
        )
        assert response.status_code == 204, state
    # So does a "started by" that is not a name.
    grid = f"{ids.HISTORY_GRID}.rowData"
    for created_by in (["admin"], {"a": 1}, 5, "x" * 65):
        response = post(
            log_records,
            client,
            body_of(app, grid, 1, None, None, None, created_by, None),
        )
        assert response.status_code == 204, created_by
    # The run form with values of any type says what is wrong with them, next to
    # the field, on the main page and on a task page.
    for page, control, error in (
        (MAIN_PAGE, ids.ROWS_INPUT, ids.ROWS_ERROR),
        (
            {"task": "generate_data", "form": "task"},
            ids.param_id("rows"),
            ids.param_error_id("rows"),
        ),
    ):
        for rows in ([1], {"a": 1}, True, 1e300):
            form = [{"type": "Input", "props": {"id": control, "value": rows}}]
            response = post(
                log_records,
                client,
                body_of(app, f"{ids.APP_STATUS}.children", 1, form, ["queued"], page),
            )
            assert response.status_code == 200
            assert response.get_json()["sideUpdate"][error]["children"]
    # A page store the router never writes starts nothing; a form of any shape is
    # read as far as it holds the page's controls (none: the defaults).
    for page, form, started in (
        ("abc", [], False),
        ({"task": "nope", "form": "task"}, [], False),
        (
            MAIN_PAGE,
            [[[[{"props": {"id": ids.ROWS_INPUT, "value": {"a": 1}}}]]]],
            False,
        ),
        (MAIN_PAGE, {"props": {"children": [{"props": "x"}, 5, None]}}, True),
    ):
        response = post(
            log_records,
            client,
            body_of(app, f"{ids.APP_STATUS}.children", 1, form, "queued", page),
        )
        assert response.status_code == 200, page
        status = response.get_json()["response"][ids.APP_STATUS]["children"]
        assert status.startswith("Not started") is not started, status


def test_background_job_requests_that_the_page_never_sends_start_no_job(
    app, client, log_records
):
    broker = app.extensions["redis"]
    for request in ("abc", [1], {"run_id": ["x"]}, {"run_id": "x", "more": 1}, None):
        response = post(
            log_records, client, body_of(app, f"{ids.BG_DONE}.data", request, None)
        )
        assert response.status_code == 400, request
        assert response.get_json()["error"]["fields"] == {
            "inputs": "bg-request.data is not a job request"
        }
    assert broker.llen("celery") == 0  # no Celery message was sent
    # What the page does send starts a job (the worker then finds no such run).
    request = {"run_id": "9b2f3c1e-0000-4000-8000-000000000000", "click": 1}
    body = body_of(app, f"{ids.BG_DONE}.data", request, MAIN_PAGE)
    response = post(log_records, client, body)
    assert response.status_code == 200 and "job" in response.get_json()
    assert broker.llen("celery") == 1


def test_forged_background_handles_are_refused_or_ignored(app, client, log_records):
    body = body_of(app, f"{ids.BG_DONE}.data", None, None)
    # Dash's signature check raises on non-ASCII text: refused before it.
    assert post(log_records, client, body, "?cacheKey=%C2%80&job=x").status_code == 400
    assert post(log_records, client, body, "?cancelJob=~%C2%80").status_code == 400
    # Well-formed but not signed by this app: Dash reads nothing, kills nothing.
    assert post(log_records, client, body, "?cacheKey=abc~def&job=1~2").status_code in (
        200,
        204,
    )


def test_deeply_nested_bodies_are_refused_before_parsing(client, log_records):
    for raw in (
        "[" * 5000 + "]" * 5000,
        '{"a":' * 3000 + "1" + "}" * 3000,
        "[" * 5000,  # unbalanced: the parser would still recurse 5,000 deep
        # A string that never closes, full of escaped quotes: not JSON.
        "[" * 40 + '"' + '\\"' * 20000,
    ):
        response = post(log_records, client, None, raw=raw)
        assert response.status_code == 400
        assert response.get_json()["error"]["fields"] == {
            "body": f"must be JSON nested at most {MAX_JSON_DEPTH} levels deep"
        }
    # Brackets inside strings are text, not nesting.
    body = {"output": "[" * 200, "outputs": "{" * 200}
    assert post(log_records, client, body).get_json()["error"]["fields"].keys() == {
        "output"
    }


def test_component_suite_paths_dash_does_not_serve_are_404(client, log_records):
    for path in (
        "/dash/_dash-component-suites/nonexistent/x.js",
        "/dash/_dash-component-suites/dash/nonexistent.js",
        "/dash/_dash-component-suites/dash/../../../etc/passwd",
    ):
        log_records.clear()
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"
        assert quiet(log_records)


def test_dash_page_does_not_announce_versions(client):
    response = client.get("/dash/")
    page = response.get_data(as_text=True)
    start = page.index('<script id="_dash-config" type="application/json">')
    config = json.loads(
        page[page.index(">", start) + 1 : page.index("</script>", start)]
    )
    assert config["url_base_pathname"] == "/dash/"  # the config Dash's page needs
    assert not set(VERSION_KEYS) & config.keys()
    assert sys.version not in page and sys.version.split()[0] not in page
    assert not any("python" in v.lower() for v in response.headers.values())


handles = st.dictionaries(
    st.sampled_from(["cacheKey", "job", "oldJob", "cancelJob", "endId"]),
    st.text(max_size=30),
    max_size=3,
)


@pytest.fixture
def log_records(caplog) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


def test_no_callback_request_gets_a_5xx_or_a_traceback(app, log_records):
    client = app.test_client()
    callback_map = app.extensions["dash"].callback_map
    # Every callback of both pages (and Dash's own cancel callback) is fuzzed.
    assert f"{ids.DATA_GRID}.getRowsResponse" in callback_map
    assert len(callback_map) >= 10

    @given(body=broken(callback_bodies(callback_map)), query=handles)
    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    def check(body: Any, query: dict[str, str]) -> None:
        log_records.clear()
        url = ENDPOINT + ("?" + urlencode(query) if query else "")
        response = client.post(
            url, data=json.dumps(body), content_type="application/json"
        )
        assert response.status_code < 500, (body, response.get_data(as_text=True))
        for record in log_records.records:
            assert record.exc_info is None and record.levelno < logging.ERROR, (
                body,
                record.getMessage(),
            )
        if response.status_code >= 400:
            assert response.get_json()["error"]["code"]
            assert len(log_records.records) <= 1, [
                r.getMessage() for r in log_records.records
            ]

    check()

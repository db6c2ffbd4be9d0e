"""build_report: the built-in task that shows what lists, booleans and the result
views are for. Real worker, real Redis."""

from __future__ import annotations

from tests.support import wait_for_state


def add_rows(client, rows: int) -> None:
    run = client.post(
        "/api/tasks/generate_data/runs", json={"rows": rows, "seconds": 0}
    )
    assert wait_for_state(client, run.get_json()["id"], ("SUCCESS",))["state"]


def test_report_is_a_table_and_a_chart_per_period_and_category(client, worker):
    add_rows(client, 40)
    add_rows(client, 20)
    run = client.post(
        "/api/tasks/build_report/runs",
        json={"period": "day", "categories": ["alpha", "beta"]},
    ).get_json()
    done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"))
    assert done["state"] == "SUCCESS", done["error"]
    table = done["result"]["table"]
    assert {row["category"] for row in table} <= {"alpha", "beta"}
    all_rows = client.get("/api/data?limit=1000").get_json()["rows"]
    wanted = [r for r in all_rows if r["category"] in ("alpha", "beta")]
    assert sum(row["rows"] for row in table) == len(wanted)
    figure = done["result"]["figure"]
    assert {trace["name"] for trace in figure["data"]} <= {"alpha", "beta"}

    page = client.get(f"/runs/{run['id']}").get_data(as_text=True)
    assert 'id="result-table"' in page and '<th scope="col">category</th>' in page
    assert 'id="result-figure"' in page and "/vendor/plotly.min.js" in page
    assert client.get("/vendor/plotly.min.js").status_code == 200


def test_report_without_a_chart_and_a_bad_category(client, worker):
    run = client.post(
        "/api/tasks/build_report/runs", json={"include_chart": False}
    ).get_json()
    done = wait_for_state(client, run["id"], ("SUCCESS", "FAILURE"))
    assert "figure" not in done["result"] and done["result"]["table"] == []
    refused = client.post(
        "/api/tasks/build_report/runs", json={"categories": ["alpha", "zeta"]}
    )
    assert refused.status_code == 422
    assert refused.get_json()["error"]["fields"] == {
        "categories": "item 2: must be one of alpha, beta, gamma, delta"
    }

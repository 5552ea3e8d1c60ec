"""GET /api/jobs/<jobId>/events (and the dashboard's /api/queues/events) over a real socket:
snapshot at once, progress rising, the final event, reconnects, heartbeats, idle cost; and the
queue admin JSON API."""

from __future__ import annotations

import itertools
import time

import redis
import requests

from heavylift.queue import Priority, QueueName
from tests.api_server import A_READ, API_KEY
from tests.live_stack import Stack, stack_fixture  # noqa: F401 - fixture
from tests.sse_client import messages, open_stream, read_until

DIAG = QueueName.DIAGNOSTICS


def add(stack: Stack, name: str, **data: object) -> str:
    return stack.queues.run(lambda q: q.add(DIAG, name, dict(data), Priority.REGULAR))


def events_url(stack: Stack, job_id: str, queue: str = "diagnostics") -> str:
    return stack.api.url(f"/api/jobs/{job_id}/events?queue={queue}")


def test_progress_rises_and_the_stream_ends_with_the_result(stack: Stack) -> None:
    job_id = add(stack, "sleep", seconds=1.5)
    started = time.monotonic()
    with open_stream(stack.api.session, events_url(stack, job_id)) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        stream = messages(response)
        first = next(stream)
        assert first.event == "state" and first.data["id"] == job_id
        assert first.at - started < 1.0  # the current state comes at once
        seen = read_until(stream, "completed", "failed")
        assert next(stream, None) is None  # the server ends the stream after the final event
    final = seen[-1]
    assert final.event == "completed"
    assert final.data["result"] == {"slept": 1.5} and final.data["progress"] == 100
    progress = [m.data["progress"] for m in seen if m.event == "progress"]
    assert len(set(progress)) >= 3 and progress == sorted(progress)
    assert all(m.id for m in [first, *seen] if m.event != "comment")


def test_a_failed_job_ends_with_its_reason_after_the_retries(stack: Stack) -> None:
    job_id = add(stack, "fail", message="boom")
    with open_stream(stack.api.session, events_url(stack, job_id)) as response:
        seen = read_until(messages(response), "completed", "failed")
    final = seen[-1]
    assert final.event == "failed"
    assert final.data["failedReason"] == "boom", seen
    # Seen once: attemptsMade 2 in the final view (bullmq's counter); the retries did happen.
    assert final.data["attemptsMade"] >= 2, [(m.event, m.data) for m in seen]
    # Retries in between are state changes (delayed, waiting, active), not the end.
    assert {m.data["state"] for m in seen if m.event == "state"} & {"delayed", "waiting", "active"}


def test_a_reconnect_gets_the_current_state_at_once(stack: Stack) -> None:
    job_id = add(stack, "sleep", seconds=3)
    url = events_url(stack, job_id)
    with open_stream(stack.api.session, url) as response:
        stream = messages(response)
        seen = read_until(stream, "progress")
        while seen[-1].data["progress"] < 30:
            seen += read_until(stream, "progress")
    last = seen[-1]
    started = time.monotonic()
    with open_stream(stack.api.session, url, **{"Last-Event-ID": str(last.id)}) as response:
        stream = messages(response)
        first = next(stream)
        assert first.at - started < 1.0
        assert first.event == "state" and first.data["state"] == "active"
        assert first.data["progress"] >= last.data["progress"]
        assert read_until(stream, "completed")[-1].data["result"] == {"slept": 3.0}


def test_a_finished_job_answers_with_its_end_at_once(stack: Stack) -> None:
    job_id = add(stack, "noop")
    stack.wait_state(DIAG, job_id, "completed")
    response = stack.api.session.get(events_url(stack, job_id), timeout=5)
    events = list(messages(response))
    assert [m.event for m in events] == ["completed"]


def test_heartbeats_while_idle_and_no_tight_polling(stack: Stack) -> None:
    client = redis.Redis.from_url(stack.redis.url)
    stack.api.session.post(stack.api.url("/api/queues/diagnostics/pause"), timeout=5)
    try:
        job_id = add(stack, "noop")
        with open_stream(stack.api.session, events_url(stack, job_id)) as response:
            stream = messages(response)
            assert next(stream).data["state"] == "waiting"
            before = client.info("commandstats")
            seen = read_until(stream, "comment")
            seen += read_until(stream, "comment")
            seen += read_until(stream, "comment")  # three heartbeats: ~3 s at SSE_HEARTBEAT_S=1
            after = client.info("commandstats")
            assert [m.event for m in seen] == ["comment"] * 3
            gaps = [b.at - a.at for a, b in itertools.pairwise(seen)]
            assert all(0.7 < gap < 1.5 for gap in gaps), gaps

            def calls(stats: dict[str, dict[str, int]], name: str) -> int:
                return stats.get(f"cmdstat_{name}", {}).get("calls", 0)

            # One blocking XREAD per heartbeat, not a loop (the idle worker adds a few).
            assert calls(after, "xread") - calls(before, "xread") <= 5
            total = sum(s["calls"] for s in after.values()) - sum(
                s["calls"] for s in before.values())
            assert total < 40, total
            stack.api.session.post(stack.api.url("/api/queues/diagnostics/resume"), timeout=5)
            assert read_until(stream, "completed")[-1].data["id"] == job_id
    finally:
        stack.api.session.post(stack.api.url("/api/queues/diagnostics/resume"), timeout=5)


def test_unknown_job_bad_queue_and_keys(stack: Stack) -> None:
    plain = requests.Session()
    missing = stack.api.session.get(events_url(stack, "no-such-job"), timeout=5)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    bad = stack.api.session.get(events_url(stack, "1", queue="nope"), timeout=5)
    assert bad.status_code == 400 and bad.json()["field"] == "queue"
    job_id = add(stack, "noop")
    assert plain.get(events_url(stack, job_id), timeout=5).status_code == 401
    # EventSource cannot send headers: the key as a query parameter, or the page's cookie.
    with plain.get(events_url(stack, job_id) + f"&key={API_KEY}", stream=True, timeout=10) as r:
        assert r.status_code == 200
    plain.cookies.set("heavylift_key", API_KEY)
    with plain.get(events_url(stack, job_id), stream=True, timeout=10) as r:
        assert r.status_code == 200


def test_the_dashboard_stream_moves_counts_and_progress(stack: Stack) -> None:
    url = stack.api.url("/api/queues/events")
    with open_stream(stack.api.session, url) as response, \
            open_stream(stack.api.as_key(A_READ), url) as reader_response:
        stream, reader_stream = messages(response), messages(reader_response)
        first = next(stream)
        assert first.event == "counts"
        assert [q["name"] for q in first.data["queues"]] == ["documents", "datasets", "diagnostics"]
        completed = first.data["queues"][2]["counts"]["completed"]
        assert next(reader_stream).event == "counts"
        job_id = add(stack, "sleep", seconds=1)
        for messages_of, seen in ((stream, []), (reader_stream, [])):
            while not any(m.event == "counts" and m.data["queues"][2]["counts"]["completed"]
                          > completed for m in seen):
                seen += read_until(messages_of, "counts", timeout=10)
            progress = [m.data for m in seen if m.event == "progress"]
            if messages_of is stream:  # the admin sees every job's progress
                assert {"queue": "diagnostics", "id": job_id, "progress": 50} in progress
            else:  # a read key gets counts only: the ids would be other tenants' jobs
                assert progress == []


def test_queue_admin_json_api(stack: Stack) -> None:
    api, session = stack.api, stack.api.session
    overview = session.get(api.url("/api/queues"), timeout=5).json()
    assert {q["name"]: q["paused"] for q in overview["queues"]} == {
        "documents": False, "datasets": False, "diagnostics": False}
    earlier = add(stack, "flaky", failures=3)  # so paging has more than one failed job
    stack.wait_state(DIAG, earlier, "failed")
    failed = add(stack, "flaky", failures=3)
    stack.wait_state(DIAG, failed, "failed")
    page = session.get(api.url("/api/queues/diagnostics/jobs?state=failed&pageSize=1"),
                       timeout=5).json()
    assert page["total"] >= 2 and len(page["jobs"]) == 1 and page["jobs"][0]["id"] == failed
    detail = session.get(api.url(f"/api/queues/diagnostics/jobs/{failed}"), timeout=5).json()
    assert detail["failedReason"] == "flaky failure 3 of 3" and detail["stacktrace"]
    assert detail["data"] == {"failures": 3} and detail["attempts"] == 3
    retried = session.post(api.url(f"/api/queues/diagnostics/jobs/{failed}/retry"), timeout=5)
    assert retried.status_code == 200
    assert retried.json()["job"]["state"] in {"waiting", "active", "completed"}
    stack.wait_state(DIAG, failed, "completed")
    again = session.post(api.url(f"/api/queues/diagnostics/jobs/{failed}/retry"), timeout=5)
    assert again.status_code == 409
    assert session.get(api.url("/api/queues/nope/jobs?state=failed"), timeout=5).status_code == 404
    assert session.get(api.url("/api/queues/diagnostics/jobs/none"), timeout=5).status_code == 404
    bad_state = session.get(api.url("/api/queues/diagnostics/jobs?state=gone"), timeout=5)
    assert bad_state.status_code == 422 and bad_state.json()["field"] == "state"
    bad_clean = session.post(api.url("/api/queues/diagnostics/clean"),
                             json={"state": "active"}, timeout=5)
    assert bad_clean.status_code == 422
    malformed = session.post(api.url("/api/queues/diagnostics/clean"), data=b"{", timeout=5,
                             headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400
    all_failed = session.post(api.url("/api/queues/diagnostics/retry-failed"), timeout=5).json()
    assert all_failed["success"] and all_failed["retried"] >= 1
    cleaned = session.post(api.url("/api/queues/diagnostics/clean"),
                           json={"state": "completed", "olderThanMs": 0}, timeout=5).json()
    assert cleaned["removed"] >= 1
    paused = session.post(api.url("/api/queues/datasets/pause"), timeout=5).json()
    assert paused == {"success": True, "queue": "datasets", "paused": True}
    assert session.post(api.url("/api/queues/datasets/resume"), timeout=5).json()["paused"] is False
    assert requests.get(api.url("/api/queues"), timeout=5).status_code == 401

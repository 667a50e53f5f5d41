"""The dashboard in a real browser: Playwright for Python driving Debian's Chromium.

Run by `.ci/run` against the `server` example (built with the `dashboard` feature):

    python3 tests/browser/dashboard.py http://127.0.0.1:18082 target/dashboard-screenshots

It seeds jobs through the JSON API, then visits every page as `ops` (every tenant, every
action) and checks: each page renders with no script error, the job page follows a job
live until it completes, the Retry button retries and leaves an operator event, a POST
without its CSRF token is refused, another tenant's job is not found for `acme-key`, no
login is a 401 with a Basic challenge, and /metrics answers operators only. Every page is
saved as a screenshot (wide, and the jobs page narrow too).
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

from playwright.sync_api import sync_playwright

BASE = sys.argv[1].rstrip("/")
SHOTS = sys.argv[2] if len(sys.argv) > 2 else "target/dashboard-screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def api(method, path, token, body=None):
    """One JSON API call: (status, headers, parsed body or text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + "/v1" + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=40) as r:
            raw, status, headers = r.read(), r.status, r.headers
    except urllib.error.HTTPError as e:
        raw, status, headers = e.read(), e.code, e.headers
    try:
        return status, headers, json.loads(raw)
    except ValueError:
        return status, headers, raw.decode()


def submit(token, job_type, job_input):
    status, _, job = api("POST", "/jobs", token, {"type": job_type, "input": job_input})
    assert status == 202, (status, job)
    return job["id"]


def wait_terminal(token, job_id):
    status, _, job = api("GET", f"/jobs/{job_id}?wait=30", token)
    deadline = time.time() + 30
    while job["status"] not in ("completed", "failed", "cancelled"):
        assert time.time() < deadline, job
        status, _, job = api("GET", f"/jobs/{job_id}?wait=10", token)
    return job


def check(condition, message):
    if not condition:
        raise AssertionError(message)
    print("ok -", message)


def main():
    os.makedirs(SHOTS, exist_ok=True)

    # Seed: a completed and a failed job of acme, a job of globex, a workflow, a schedule.
    done = submit("demo-acme", "ECHO", {"hello": "world"})
    wait_terminal("demo-acme", done)
    broken = submit("demo-acme", "FLAKY", {"permanent": True})
    wait_terminal("demo-acme", broken)
    theirs = submit("demo-globex", "ECHO", {"tenant": "globex"})
    wait_terminal("demo-globex", theirs)
    status, _, flow = api("POST", "/workflows", "demo-acme", {
        "name": "ingest",
        "jobs": [
            {"key": "fetch", "type": "ECHO", "input": {}},
            {"key": "parse", "type": "ECHO", "input": {}, "depends_on": ["fetch"]},
            {"key": "score", "type": "FLAKY", "input": {"permanent": True}, "depends_on": ["fetch"]},
            {"key": "report", "type": "ECHO", "input": {}, "depends_on": ["parse", "score"]},
        ],
        "finalizer": {"type": "ECHO", "input": {}},
    })
    check(status == 202, "a workflow is submitted")
    status, _, _ = api("POST", "/schedules", "demo-acme-admin", {
        "name": "nightly cleanup", "cron": "0 3 * * *", "timezone": "Europe/Berlin",
        "job": {"type": "ECHO", "input": {"cleanup": True}},
    })
    check(status == 201, "a schedule is created")

    # No login: 401 with a Basic challenge. Metrics: operators only.
    try:
        urllib.request.urlopen(BASE + "/dashboard", timeout=10)
        raise AssertionError("no login was let in")
    except urllib.error.HTTPError as e:
        check(e.code == 401, "no login is 401")
        check(e.headers.get("WWW-Authenticate") == 'Basic realm="jobworks"',
              "the 401 carries a Basic challenge")
    status, headers, text = api("GET", "/metrics", "demo-operator")
    check(status == 200 and "jobworks_jobs_submitted_total" in text
          and headers["Content-Type"].startswith("text/plain"), "/metrics answers an operator")
    status, _, _ = api("GET", "/metrics", "demo-acme")
    check(status == 403, "/metrics refuses a principal without the operator scope")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        ops = browser.new_context(
            http_credentials={"username": "ops", "password": "ops-secret"},
            viewport={"width": 1280, "height": 900},
        )
        page = ops.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

        def visit(path, shot, heading):
            answer = page.goto(BASE + "/dashboard" + path)
            check(answer.status == 200, f"{path or '/'} answers 200")
            page.wait_for_load_state("networkidle") if "/jobs/" not in path else None
            title = page.locator("h1").inner_text()
            check(heading in title, f"{path or '/'} is headed {heading!r}")
            page.screenshot(path=os.path.join(SHOTS, shot), full_page=True)

        visit("", "01-overview.png", "Overview")
        visit("/queues", "02-queues.png", "Queues")
        visit("/jobs", "03-jobs.png", "Jobs")
        visit("/failed", "04-failed.png", "Failed jobs")
        visit("/schedules", "05-schedules.png", "Schedules")
        visit(f"/workflows/{flow['id']}", "06-workflow.png", "Workflow ingest")
        visit(f"/jobs/{done}", "07-job-completed.png", "Job")
        check(page.get_by_text('"hello"').count() > 0, "a job page shows its input")

        # The job page follows a running job until it completes, without a reload by hand.
        slow = submit("demo-acme", "SLEEP", {"ms": 2500})
        page.goto(BASE + f"/dashboard/jobs/{slow}")
        first = page.locator("#job-status .status").inner_text()
        check(first in ("queued", "running"), f"the job page opens on a live job ({first})")
        page.screenshot(path=os.path.join(SHOTS, "08-job-live.png"), full_page=True)
        page.wait_for_function(
            "() => document.querySelector('#job-status .status')?.textContent === 'completed'",
            timeout=20000,
        )
        # Once it finished the page reloads itself for the outcome, and follows no more.
        page.wait_for_selector("#timeline:not([data-live])", timeout=10000)
        check(page.locator("#timeline tbody tr", has_text="succeeded").count() == 1,
              "the timeline shows the job's success")
        check(page.get_by_text("Result").count() > 0, "the finished page shows the result")
        page.screenshot(path=os.path.join(SHOTS, "09-job-finished.png"), full_page=True)

        # Retry through its form: the job is queued again and an operator event says who.
        page.goto(BASE + f"/dashboard/jobs/{broken}")
        page.screenshot(path=os.path.join(SHOTS, "10-job-failed.png"), full_page=True)
        page.get_by_role("button", name="Retry").click()
        page.wait_for_url(f"**/dashboard/jobs/{broken}?done=retry")
        check(page.get_by_role("status").first.inner_text().startswith("Queued again"),
              "the page says the job was queued again")
        _, _, events = api("GET", f"/jobs/{broken}/events?limit=100", "demo-acme")
        operator = [e for e in events["events"] if e["kind"] == "operator"]
        check(len(operator) == 1 and "ops" in operator[0]["message"],
              "the retry left an operator event naming ops")

        # A POST without the page's CSRF token changes nothing and is refused.
        refused = ops.request.post(BASE + f"/dashboard/jobs/{theirs}/discard",
                                   form={"note": "no token"})
        check(refused.status == 403, "an action without its CSRF token is 403")
        status, _, still = api("GET", f"/jobs/{theirs}", "demo-globex")
        check(status == 200, "the refused discard left the job in place")

        # A narrow window keeps the pages usable.
        narrow = ops.new_page()
        narrow.set_viewport_size({"width": 390, "height": 844})
        narrow.goto(BASE + "/dashboard/jobs")
        narrow.screenshot(path=os.path.join(SHOTS, "11-jobs-narrow.png"), full_page=True)
        narrow.goto(BASE + f"/dashboard/jobs/{broken}")
        narrow.screenshot(path=os.path.join(SHOTS, "12-job-narrow.png"), full_page=True)

        check(not errors, f"no script errors ({errors})")

        # acme-key sees acme only: globex's job is not found, and it may not retry.
        acme = browser.new_context(
            http_credentials={"username": "acme-key", "password": "acme-secret"},
            viewport={"width": 1280, "height": 900},
        )
        mine = acme.new_page()
        answer = mine.goto(BASE + f"/dashboard/jobs/{theirs}")
        check(answer.status == 404, "another tenant's job is 404")
        mine.goto(BASE + "/dashboard/jobs")
        check(mine.get_by_text(theirs).count() == 0, "another tenant's job is not listed")
        mine.screenshot(path=os.path.join(SHOTS, "13-jobs-acme.png"), full_page=True)
        browser.close()
    print("the dashboard passed in Chromium; screenshots in", SHOTS)


if __name__ == "__main__":
    main()

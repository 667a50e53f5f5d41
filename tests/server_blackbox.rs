//! A black-box suite: the `server` example, run as its own process on loopback, driven
//! through the wire contract only. Queues and flow control (pause and resume, running
//! intervals under `max_running` and per key, start times under a rate limit, a small
//! tenant against a large backlog), operator actions (retry, requeue, discard, bulk with a
//! dry run), scopes, tenant quotas, and bad input answered with the canonical envelope.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

/// The `server` example, killed when dropped.
struct Server {
    child: Child,
    base: String,
    http: Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod example {
    include!("support/example.rs");
}

/// The built `server` example.
fn example_binary() -> std::path::PathBuf {
    let features = if cfg!(feature = "s3") {
        "http sqlite s3"
    } else {
        "http sqlite"
    };
    example::binary("server", features)
}

impl Server {
    /// Starts the example on a free loopback port with an in-memory store and `flags`,
    /// and waits until it answers.
    async fn start(flags: &[&str]) -> Server {
        Self::start_with(flags, &[]).await
    }

    /// [`start`](Self::start) with `env` set for the server's process.
    async fn start_with(flags: &[&str], env: &[(&str, &str)]) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(example_binary())
            .args([
                "--store",
                "memory",
                "--addr",
                &addr,
                "--retry-base-ms",
                "10",
            ])
            .args(flags)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts");
        let server = Server {
            child,
            base: format!("http://{addr}/v1"),
            http: Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while server
            .http
            .get(format!("{}/openapi.json", server.base))
            .send()
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server
    }

    /// Sends `body` (if any) to `path` as `token`, answering status, headers and JSON.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        assert!(!status.is_server_error(), "{path}: {status}");
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, headers, json)
    }

    async fn submit(&self, token: &str, job: Value) -> Value {
        let (status, _, body) = self.call(Method::POST, "/jobs", token, Some(job)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    async fn job(&self, token: &str, id: &str) -> Value {
        let (status, _, body) = self
            .call(Method::GET, &format!("/jobs/{id}"), token, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Polls job `id` until it is in `status`.
    async fn wait_for(&self, token: &str, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let job = self.job(token, id).await;
            if job["status"] == status {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} never became {status}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn operator(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, _, body) = self.call(method, path, "demo-operator", body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }
}

fn id(job: &Value) -> String {
    job["id"].as_str().expect("an id").to_owned()
}

fn time(job: &Value, field: &str) -> DateTime<Utc> {
    let text = job[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} of {job}"));
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .to_utc()
}

/// The most jobs that ran at once, from their started and completed times.
fn most_at_once(jobs: &[&Value]) -> usize {
    let spans: Vec<_> = jobs
        .iter()
        .map(|j| (time(j, "started_at"), time(j, "completed_at")))
        .collect();
    spans
        .iter()
        .map(|&(start, _)| {
            spans
                .iter()
                .filter(|&&(s, e)| s <= start && start < e)
                .count()
        })
        .max()
        .unwrap_or(0)
}

fn assert_envelope(body: &Value, status: u16, kind: &str) {
    assert_eq!(body["code"], status, "{body}");
    assert_eq!(body["type"], kind, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_and_flow_control_over_the_wire() {
    let s = Server::start(&[
        "--queue",
        "held:4",
        "--queue",
        "limited:8",
        "--queue",
        "keyed:8",
        "--queue",
        "rated:4",
        "--queue",
        "fair:4",
    ])
    .await;

    // Scopes: queues are for operators.
    let (status, _, body) = s.call(Method::GET, "/queues", "demo-acme", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_envelope(&body, 403, "permission_denied");

    // Pause and resume: a paused queue's job stays queued; a resume runs it at once.
    let held = s.operator(Method::POST, "/queues/held/pause", None).await;
    assert_eq!(held["paused"], true);
    let job = s
        .submit(
            "demo-acme",
            json!({"type": "ECHO", "queue": "held", "input": {}}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(s.job("demo-acme", &id(&job)).await["status"], "queued");
    let resumed = Instant::now();
    s.operator(Method::POST, "/queues/held/resume", None).await;
    s.wait_for("demo-acme", &id(&job), "completed").await;
    assert!(
        resumed.elapsed() < Duration::from_secs(5),
        "the resume did not wake the engine"
    );

    // max_running = 2: never more than two of eight run at once, and two do.
    s.operator(
        Method::PATCH,
        "/queues/limited",
        Some(json!({"max_running": 2})),
    )
    .await;
    let mut jobs = Vec::new();
    for _ in 0..8 {
        let sleep = json!({"type": "SLEEP", "queue": "limited", "input": {"ms": 150}});
        jobs.push(s.submit("demo-acme", sleep).await);
    }
    let mut done = Vec::new();
    for j in &jobs {
        done.push(s.wait_for("demo-acme", &id(j), "completed").await);
    }
    let most = most_at_once(&done.iter().collect::<Vec<_>>());
    assert_eq!(most, 2, "{most} ran at once under max_running = 2");

    // max_running_per_key = 1: one job per key at a time, keys side by side.
    let keyed = s
        .operator(
            Method::PATCH,
            "/queues/keyed",
            Some(json!({"max_running_per_key": 1})),
        )
        .await;
    assert_eq!(keyed["max_running_per_key"], 1);
    let mut jobs = Vec::new();
    for i in 0..8 {
        let key = format!("k{}", i % 2);
        let sleep = json!({"type": "SLEEP", "queue": "keyed", "concurrency_key": key,
            "input": {"ms": 120}});
        jobs.push(s.submit("demo-acme", sleep).await);
    }
    let mut by_key: HashMap<String, Vec<Value>> = HashMap::new();
    for j in &jobs {
        let done = s.wait_for("demo-acme", &id(j), "completed").await;
        let key = done["concurrency_key"].as_str().expect("a key").to_owned();
        by_key.entry(key).or_default().push(done);
    }
    for (key, jobs) in &by_key {
        let most = most_at_once(&jobs.iter().collect::<Vec<_>>());
        assert_eq!(most, 1, "{most} jobs of {key} ran at once");
    }
    let all: Vec<&Value> = by_key.values().flatten().collect();
    assert_eq!(
        most_at_once(&all),
        2,
        "the two keys did not run side by side"
    );

    // A rate limit of 4 per second, no burst: starts about 250 ms apart.
    s.operator(
        Method::PATCH,
        "/queues/rated",
        Some(json!({"rate": {"limit": 4, "period_ms": 1000, "burst": 1}})),
    )
    .await;
    let mut jobs = Vec::new();
    for _ in 0..5 {
        let echo = json!({"type": "ECHO", "queue": "rated", "input": {}});
        jobs.push(s.submit("demo-acme", echo).await);
    }
    let mut starts = Vec::new();
    for j in &jobs {
        starts.push(time(
            &s.wait_for("demo-acme", &id(j), "completed").await,
            "started_at",
        ));
    }
    starts.sort();
    for pair in starts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= chrono::Duration::milliseconds(240),
            "two starts {gap} apart under 4 per second"
        );
    }
    assert!(
        starts[4] - starts[0] < chrono::Duration::seconds(3),
        "the limit slowed more than it should"
    );

    // Fairness: a backlog of 150 of globex, then 5 of acme, one at a time.
    s.operator(Method::POST, "/queues/fair/pause", None).await;
    s.operator(
        Method::PATCH,
        "/queues/fair",
        Some(json!({"max_running": 1})),
    )
    .await;
    for _ in 0..150 {
        let echo = json!({"type": "ECHO", "queue": "fair", "input": {}});
        s.submit("demo-globex", echo).await;
    }
    let mut small = Vec::new();
    for _ in 0..5 {
        let echo = json!({"type": "ECHO", "queue": "fair", "input": {}});
        small.push(s.submit("demo-acme", echo).await);
    }
    s.operator(Method::POST, "/queues/fair/resume", None).await;
    let mut last_small = None;
    for j in &small {
        let done = s.wait_for("demo-acme", &id(j), "completed").await;
        last_small = last_small.max(Some(time(&done, "started_at")));
    }
    let last_small = last_small.expect("five");
    let mut before = 0;
    let mut cursor = String::new();
    loop {
        let path = format!("/jobs?queue=fair&limit=100{cursor}");
        let (_, _, page) = s.call(Method::GET, &path, "demo-globex", None).await;
        for job in page["jobs"].as_array().expect("jobs") {
            let j = s.wait_for("demo-globex", &id(job), "completed").await;
            before += usize::from(time(&j, "started_at") < last_small);
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert!(
        before <= 8,
        "{before} of globex's backlog started before acme's five had all started"
    );

    // The queue list has them all, with their settings and counts.
    let list = s.operator(Method::GET, "/queues", None).await;
    let names: Vec<&str> = list["queues"]
        .as_array()
        .expect("queues")
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    for name in ["fair", "held", "keyed", "limited", "rated"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }

    // Bad settings: 422 with the field's location; never a 5xx.
    for (bad, loc) in [
        (json!({"max_running": 0}), json!(["body", "max_running"])),
        (
            json!({"max_running_per_key": "1"}),
            json!(["body", "max_running_per_key"]),
        ),
        (
            json!({"rate": {"limit": 1}}),
            json!(["body", "rate", "period_ms"]),
        ),
        (json!({"colour": "red"}), json!(["body", "colour"])),
    ] {
        let (status, _, body) = s
            .call(
                Method::PATCH,
                "/queues/limited",
                "demo-operator",
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_envelope(&body, 422, "validation_error");
        assert_eq!(body["errors"][0]["loc"], loc, "{bad}");
    }
    let (status, _, body) = s
        .call(Method::GET, "/queues/NOT%20A%20NAME", "demo-operator", None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_actions_over_the_wire() {
    let s = Server::start(&[]).await;
    let admin = "demo-acme-admin";

    // Retry: a failed job queued again with a fresh budget; not for a plain credential.
    let failing = json!({"type": "FLAKY", "input": {"permanent": true}, "max_attempts": 1});
    let job = s.submit("demo-acme", failing).await;
    let failed = s.wait_for("demo-acme", &id(&job), "failed").await;
    assert_eq!(failed["attempts"], 1);
    let retry = format!("/jobs/{}/retry", id(&job));
    let (status, _, body) = s.call(Method::POST, &retry, "demo-acme", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, body) = s
        .call(Method::POST, &retry, "demo-globex-admin", None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another tenant's job: {body}"
    );
    let (status, _, body) = s.call(Method::POST, &retry, admin, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "queued");
    let again = s.wait_for("demo-acme", &id(&job), "failed").await;
    assert_eq!(again["attempts"], 1, "the retry had a fresh budget");
    let (_, _, events) = s
        .call(
            Method::GET,
            &format!("/jobs/{}/events", id(&job)),
            "demo-acme",
            None,
        )
        .await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"operator"), "{kinds:?}");

    // Requeue: a job due in an hour runs now.
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let job = s
        .submit(
            "demo-acme",
            json!({"type": "ECHO", "input": {}, "run_at": later}),
        )
        .await;
    let (status, _, body) = s
        .call(
            Method::POST,
            &format!("/jobs/{}/requeue", id(&job)),
            admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    s.wait_for("demo-acme", &id(&job), "completed").await;

    // Discard: a finished job goes, with its timeline; not an unfinished one.
    let path = format!("/jobs/{}", id(&job));
    let (status, _, _) = s
        .call(Method::DELETE, &path, "demo-globex-admin", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = s.call(Method::DELETE, &path, admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, body) = s.call(Method::GET, &path, "demo-acme", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, 404, "job_not_found");
    let queued = s
        .submit(
            "demo-acme",
            json!({"type": "ECHO", "input": {}, "run_at": later}),
        )
        .await;
    let (status, _, body) = s
        .call(
            Method::DELETE,
            &format!("/jobs/{}", id(&queued)),
            admin,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Bulk: a dry run counts, the real run changes.
    let failing = json!({"type": "FLAKY", "input": {"permanent": true}, "max_attempts": 1});
    let second = s.submit("demo-acme", failing).await;
    s.wait_for("demo-acme", &id(&second), "failed").await;
    let bulk = json!({"action": "retry", "filter": {"status": ["failed"]}, "dry_run": true});
    let (status, _, body) = s.call(Method::POST, "/jobs/bulk", admin, Some(bulk)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (body["matched"].as_u64(), body["applied"].as_u64()),
        (Some(2), Some(0))
    );
    let bulk = json!({"action": "cancel", "filter": {"status": ["queued"]}, "reason": "tidy"});
    let (status, _, body) = s.call(Method::POST, "/jobs/bulk", admin, Some(bulk)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["applied"], 1, "{body}");
    assert_eq!(
        s.job("demo-acme", &id(&queued)).await["status"],
        "cancelled"
    );
    for bad in [
        json!({"action": "explode"}),
        json!({"action": "retry", "limit": 0}),
        json!({"action": "retry", "filter": {"status": ["nope"]}}),
        json!({"action": "retry", "filter": "all"}),
    ] {
        let (status, _, body) = s
            .call(Method::POST, "/jobs/bulk", admin, Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_envelope(&body, 422, "validation_error");
    }
    let (status, _, _) = s
        .call(
            Method::POST,
            "/jobs/bulk",
            "demo-acme",
            Some(json!({"action": "retry"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_quotas_over_the_wire() {
    let s = Server::start(&["--tenant-quota", "2"]).await;
    let long = json!({"type": "SLEEP", "input": {"ms": 20_000}});
    let first = s.submit("demo-acme", long.clone()).await;
    s.submit("demo-acme", long.clone()).await;
    let (status, headers, body) = s
        .call(Method::POST, "/jobs", "demo-acme", Some(long.clone()))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_envelope(&body, 429, "quota_exceeded");
    assert!(headers.contains_key("retry-after"));
    let (_, _, page) = s
        .call(Method::GET, "/jobs?limit=100", "demo-acme", None)
        .await;
    assert_eq!(
        page["jobs"].as_array().expect("jobs").len(),
        2,
        "the refused job was created"
    );
    s.submit("demo-globex", long.clone()).await;
    let cancel = format!("/jobs/{}/cancel", id(&first));
    let (status, _, _) = s.call(Method::POST, &cancel, "demo-acme", None).await;
    assert!(status.is_success());
    s.wait_for("demo-acme", &id(&first), "cancelled").await;
    s.submit("demo-acme", long).await;
}

impl Server {
    /// Reads workflow `id` until every job ended.
    async fn workflow_done(&self, token: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, _, flow) = self
                .call(Method::GET, &format!("/workflows/{id}"), token, None)
                .await;
            assert_eq!(status, StatusCode::OK, "{flow}");
            if flow["status"] != "running" {
                return flow;
            }
            assert!(
                Instant::now() < deadline,
                "workflow {id} never finished: {flow}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_over_the_wire() {
    let s = Server::start(&[]).await;
    let token = "demo-acme";

    // A diamond with a finalizer: each job starts after its parents completed.
    let diamond = json!({
        "name": "diamond",
        "jobs": [
            {"key": "top", "type": "SLEEP", "input": {"ms": 30}},
            {"key": "left", "type": "SLEEP", "input": {"ms": 30}, "depends_on": ["top"]},
            {"key": "right", "type": "ECHO", "input": {"side": "right"}, "depends_on": ["top"]},
            {"key": "bottom", "type": "ECHO", "depends_on": ["left", "right"]}
        ],
        "finalizer": {"type": "ECHO", "input": {"done": true}}
    });
    let (status, headers, flow) = s
        .call(Method::POST, "/workflows", token, Some(diamond))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{flow}");
    assert!(headers.contains_key("location"));
    assert_eq!(flow["finalizer"]["status"], "waiting");
    let flow_id = flow["id"].as_str().expect("an id").to_owned();
    let done = s.workflow_done(token, &flow_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let nodes: Vec<&Value> = done["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .chain([&done["finalizer"]])
        .collect();
    let mut jobs = HashMap::new();
    for node in &nodes {
        let job = s.job(token, node["id"].as_str().expect("an id")).await;
        jobs.insert(node["key"].as_str().expect("a key").to_owned(), job);
    }
    let ended = |key: &str| time(&jobs[key], "completed_at");
    let began = |key: &str| time(&jobs[key], "started_at");
    assert!(began("left") >= ended("top") && began("right") >= ended("top"));
    assert!(began("bottom") >= ended("left") && began("bottom") >= ended("right"));
    for key in ["top", "left", "right", "bottom"] {
        assert!(
            began("finalizer") >= ended(key),
            "the finalizer ran before {key} ended"
        );
    }
    assert_eq!(jobs["bottom"]["workflow_id"], flow_id.as_str());
    assert_eq!(
        jobs["bottom"]["parents"].as_array().expect("parents").len(),
        2
    );

    // A failure skips what depends on it; a job that runs anyway and the finalizer run.
    let failing = json!({
        "jobs": [
            {"key": "a", "type": "FLAKY", "input": {"permanent": true}, "max_attempts": 1},
            {"key": "b", "type": "ECHO", "depends_on": ["a"]},
            {"key": "c", "type": "ECHO", "depends_on": ["b"]},
            {"key": "cleanup", "type": "ECHO", "depends_on": ["a"], "run_if_parents_fail": true}
        ],
        "finalizer": {"type": "ECHO"}
    });
    let (_, _, flow) = s
        .call(Method::POST, "/workflows", token, Some(failing))
        .await;
    let failed_id = flow["id"].as_str().expect("an id").to_owned();
    let done = s.workflow_done(token, &failed_id).await;
    assert_eq!(done["status"], "failed", "{done}");
    let statuses: Vec<&str> = done["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter_map(|n| n["status"].as_str())
        .collect();
    assert_eq!(statuses, ["failed", "cancelled", "cancelled", "completed"]);
    assert_eq!(done["finalizer"]["status"], "completed");
    let (_, _, events) = s
        .call(
            Method::GET,
            &format!(
                "/jobs/{}/events",
                done["jobs"][1]["id"].as_str().expect("id")
            ),
            token,
            None,
        )
        .await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        ["waiting", "cancelled"],
        "the skip is on the timeline"
    );

    // Validation names the place of the fault.
    let cycle = json!({"jobs": [
        {"key": "x", "type": "ECHO", "depends_on": ["y"]},
        {"key": "y", "type": "ECHO", "depends_on": ["x"]}
    ]});
    let (status, _, body) = s.call(Method::POST, "/workflows", token, Some(cycle)).await;
    assert_envelope(&body, status.as_u16(), "validation_error");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        body["errors"][0]["loc"],
        json!(["body", "jobs", "1", "depends_on", "0"])
    );
    let unknown = json!({"jobs": [{"key": "x", "type": "ECHO", "depends_on": ["nope"]}]});
    let (status, _, body) = s
        .call(Method::POST, "/workflows", token, Some(unknown))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["errors"][0]["loc"],
        json!(["body", "jobs", "0", "depends_on", "0"])
    );
    let twice = json!({"jobs": [{"key": "x", "type": "ECHO"}, {"key": "x", "type": "ECHO"}]});
    let (status, _, body) = s.call(Method::POST, "/workflows", token, Some(twice)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        body["errors"][0]["loc"],
        json!(["body", "jobs", "1", "key"])
    );

    // Tenancy: another tenant's workflow is not found, to read or to cancel.
    for (method, path) in [
        (Method::GET, format!("/workflows/{flow_id}")),
        (Method::POST, format!("/workflows/{flow_id}/cancel")),
    ] {
        let (status, _, body) = s.call(method, &path, "demo-globex", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["type"], "workflow_not_found");
    }
    let (_, _, page) = s
        .call(
            Method::GET,
            &format!("/jobs?workflow_id={flow_id}"),
            "demo-globex",
            None,
        )
        .await;
    assert_eq!(page["jobs"], json!([]));
    let (_, _, page) = s
        .call(
            Method::GET,
            &format!("/jobs?workflow_id={flow_id}"),
            token,
            None,
        )
        .await;
    assert_eq!(page["jobs"].as_array().expect("jobs").len(), 5);
}

/// Every job of schedule `id`, oldest tick first (one page holds them here).
async fn schedule_jobs(s: &Server, id: &str) -> Vec<Value> {
    let path = format!("/jobs?schedule_id={id}&limit=1000");
    let (status, _, page) = s.call(Method::GET, &path, "demo-acme", None).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut jobs = page["jobs"].as_array().expect("jobs").clone();
    jobs.sort_by_key(|j| time(j, "scheduled_for"));
    jobs
}

/// Ticks one second apart, each once.
fn assert_one_per_second(jobs: &[Value]) {
    for pair in jobs.windows(2) {
        let gap = time(&pair[1], "scheduled_for") - time(&pair[0], "scheduled_for");
        assert_eq!(
            gap,
            chrono::Duration::seconds(1),
            "{} then {}",
            pair[0],
            pair[1]
        );
    }
    for job in jobs {
        assert!(
            time(job, "created_at") >= time(job, "scheduled_for"),
            "made early: {job}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_over_the_wire() {
    // Two servers on one SQLite file: each tick is made once between them.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = format!("sqlite:{}", dir.path().join("jobs.db").display());
    let artifacts = dir.path().join("artifacts").display().to_string();
    let flags = ["--store", &store, "--artifacts", &artifacts];
    let a = Server::start(&flags).await;
    let b = Server::start(&flags).await;
    let admin = "demo-acme-admin";

    let bad = json!({"name": "bad", "cron": "* * * * * * * *", "job": {"type": "ECHO"}});
    let (status, _, body) = a.call(Method::POST, "/schedules", admin, Some(bad)).await;
    assert_envelope(&body, 422, "validation_error");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["errors"][0]["loc"], json!(["body", "cron"]));
    let every_second = json!({
        "name": "heartbeat",
        "cron": "* * * * * *",
        "timezone": "Europe/Berlin",
        "job": {"type": "ECHO", "input": {"beat": true}}
    });
    let (status, _, schedule) = a
        .call(Method::POST, "/schedules", admin, Some(every_second))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{schedule}");
    let id = schedule["id"].as_str().expect("an id").to_owned();
    let path = format!("/schedules/{id}");
    let (status, _, body) = b.call(Method::GET, &path, "demo-globex", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_envelope(&body, 404, "schedule_not_found");

    tokio::time::sleep(Duration::from_millis(5500)).await;
    let jobs = schedule_jobs(&b, &id).await;
    assert!(
        (4..=7).contains(&jobs.len()),
        "{} jobs in 5.5 s",
        jobs.len()
    );
    assert_one_per_second(&jobs);
    let first = time(&jobs[0], "scheduled_for");
    let created = time(&schedule, "created_at");
    assert!(
        first > created && first - created <= chrono::Duration::seconds(1),
        "the first tick is the first second after creation"
    );
    for job in &jobs {
        assert_eq!(job["schedule_id"], id.as_str());
        assert_eq!(job["input"], json!({"beat": true}));
    }

    // Paused through the other server: no later tick is made by either.
    let pause = json!({"paused": true});
    let (status, _, paused) = b.call(Method::PATCH, &path, admin, Some(pause)).await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    let paused_at = time(&paused, "updated_at");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let after = schedule_jobs(&a, &id).await;
    assert_one_per_second(&after);
    let last = time(after.last().expect("jobs"), "scheduled_for");
    // A look that read the schedule just before the pause may still make the tick of
    // that second.
    let slack = chrono::Duration::milliseconds(500);
    assert!(
        last <= paused_at + slack,
        "a tick after the pause: {last} > {paused_at}"
    );
    let (_, _, read) = a.call(Method::GET, &path, "demo-acme", None).await;
    assert_eq!(read["paused"], true);
    assert_eq!(read["next_run_at"], Value::Null);
    assert_eq!(time(&read, "last_run_at"), last);

    // Resumed, it ticks on from now; deleted, it stops and its jobs stay.
    let resume = json!({"paused": false});
    let (status, _, _) = a.call(Method::PATCH, &path, admin, Some(resume)).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let resumed = schedule_jobs(&b, &id).await;
    assert!(resumed.len() > after.len(), "it ticks again");
    let mut ticks: Vec<_> = resumed.iter().map(|j| time(j, "scheduled_for")).collect();
    ticks.dedup();
    assert_eq!(ticks.len(), resumed.len(), "no tick twice");
    let (status, _, _) = b.call(Method::DELETE, &path, admin, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = a.call(Method::GET, &path, "demo-acme", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Artifacts in S3: the `server` example with `--artifacts s3://BUCKET` against an
/// S3-speaking server (`moto_server`, which `.ci/run` starts) named by
/// `JOBWORKS_TEST_S3_ENDPOINT`.
#[cfg(feature = "s3")]
mod s3 {
    use super::*;

    fn endpoint() -> String {
        std::env::var("JOBWORKS_TEST_S3_ENDPOINT").expect("JOBWORKS_TEST_S3_ENDPOINT")
    }

    /// In CI (`CI` set) the S3 test must run, never show as ignored.
    #[test]
    fn s3_tests_are_not_ignored_in_ci() {
        if std::env::var_os("CI").is_some() && !cfg!(jobworks_s3_tests) {
            panic!("CI must set JOBWORKS_TEST_S3_ENDPOINT: the S3 test would be ignored");
        }
    }

    /// The expiry a presigned S3 URL states: `X-Amz-Date` + `X-Amz-Expires`.
    fn stated_expiry(url: &str) -> DateTime<Utc> {
        let query = url.split_once('?').expect("a query").1;
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|p| p.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} in {url}"))
        };
        let signed = chrono::NaiveDateTime::parse_from_str(param("X-Amz-Date"), "%Y%m%dT%H%M%SZ")
            .expect("an X-Amz-Date")
            .and_utc();
        signed + chrono::Duration::seconds(param("X-Amz-Expires").parse().expect("seconds"))
    }

    /// Every string of `body` outside a `url` field, and every field name.
    fn texts<'a>(body: &'a Value, out: &mut Vec<&'a str>) {
        match body {
            Value::String(s) => out.push(s),
            Value::Array(items) => items.iter().for_each(|v| texts(v, out)),
            Value::Object(fields) => {
                for (name, value) in fields {
                    out.push(name);
                    if name != "url" {
                        texts(value, out);
                    }
                }
            }
            _ => {}
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[cfg_attr(
        not(jobworks_s3_tests),
        ignore = "set JOBWORKS_TEST_S3_ENDPOINT (a moto_server) to run the S3 test"
    )]
    async fn artifacts_live_in_s3_behind_presigned_urls() {
        let endpoint = endpoint();
        let http = Client::new();
        let bucket = format!(
            "jobworks-{}",
            jobworks::JobId::new().to_string().to_lowercase()
        );
        let made = http
            .put(format!("{endpoint}/{bucket}"))
            .send()
            .await
            .unwrap();
        assert!(
            made.status().is_success(),
            "the bucket is made: {}",
            made.status()
        );
        let server = Server::start_with(
            &["--artifacts", &format!("s3://{bucket}")],
            &[
                ("AWS_ENDPOINT_URL", &endpoint),
                ("AWS_ACCESS_KEY_ID", "jobworks-test"),
                ("AWS_SECRET_ACCESS_KEY", "jobworks-test-secret"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_ALLOW_HTTP", "true"),
            ],
        )
        .await;

        let job = server
            .submit(
                "demo-acme",
                json!({"type": "RENDER", "input": {"title": "s3"}}),
            )
            .await;
        let id = id(&job);
        server.wait_for("demo-acme", &id, "completed").await;
        let before = Utc::now();
        let (status, headers, job) = server
            .call(Method::GET, &format!("/jobs/{id}"), "demo-acme", None)
            .await;
        let after = Utc::now();
        assert_eq!(status, StatusCode::OK);
        let output = job["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "output.txt")
            .expect("the rendered artifact");
        let url = output["url"].as_str().unwrap();

        // The URL is S3's own: a plain client downloads the bytes from the bucket.
        assert!(url.starts_with(&format!("{endpoint}/{bucket}/")), "{url}");
        let download = http.get(url).send().await.unwrap();
        assert_eq!(download.status(), StatusCode::OK);
        assert_eq!(
            download.text().await.unwrap(),
            "rendered {\"title\":\"s3\"}\n"
        );

        // `url_expires_at` is the signature's own expiry, never past the TTL (an hour).
        let expires = DateTime::parse_from_rfc3339(output["url_expires_at"].as_str().unwrap())
            .unwrap()
            .to_utc();
        assert_eq!(expires, stated_expiry(url));
        let ttl = chrono::Duration::hours(1);
        assert!(expires <= after + ttl, "{expires} is past the TTL");
        assert!(
            expires >= before + ttl - chrono::Duration::minutes(5) - chrono::Duration::seconds(1)
        );

        // Polls in one window see the same URLs: one ETag, and 304 for it.
        let etag = headers["etag"].clone();
        let (_, again, second) = server
            .call(Method::GET, &format!("/jobs/{id}"), "demo-acme", None)
            .await;
        assert_eq!(again["etag"], etag);
        assert_eq!(second, job);
        let unchanged = http
            .get(format!("{}/jobs/{id}", server.base))
            .bearer_auth("demo-acme")
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);

        // No storage key in the body, outside the URLs themselves.
        let mut seen = Vec::new();
        texts(&job, &mut seen);
        let key_part = format!("acme/{id}");
        for text in seen {
            assert!(
                !text.contains(&key_part),
                "a storage key in the body: {text}"
            );
            assert!(!["key", "path", "storage_key", "object_key", "bucket"].contains(&text));
        }

        // Discarding the job removes its objects from the bucket.
        let (status, _, body) = server
            .call(
                Method::DELETE,
                &format!("/jobs/{id}"),
                "demo-acme-admin",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
        let gone = http.get(url).send().await.unwrap();
        assert_eq!(gone.status(), StatusCode::NOT_FOUND);
        let listing = http
            .get(format!("{endpoint}/{bucket}?list-type=2&prefix=acme/{id}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(listing.contains("<KeyCount>0</KeyCount>"), "{listing}");
    }
}

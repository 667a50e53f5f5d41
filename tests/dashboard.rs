//! The dashboard over a real loopback socket: logins, every page, tenancy, CSRF, the
//! read-only switch, actions and their operator events, bulk confirmation and the live
//! feed. (The browser suite in `.ci/run` drives the same pages in Chromium.)

use std::time::Duration;

use jobworks::dashboard::{Action, BasicLogins, Dashboard, Part, Viewer};
use jobworks::{
    Engine, EventKind, EventParams, JobContext, JobError, JobStatus, JobType, NewJob, NewSchedule,
    NewWorkflow, ScheduleJob, TenantId, Tenants, WorkflowJob, from_fn,
};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn tenant(name: &str) -> TenantId {
    TenantId::new(name).unwrap()
}

fn logins() -> BasicLogins {
    BasicLogins::new()
        .login(
            "acme-key",
            "acme-secret",
            Viewer::new("acme-key", Tenants::only([tenant("acme")])).may(Action::Cancel),
        )
        .login(
            "ops",
            "ops-secret",
            Viewer::new("ops", Tenants::All).may_do_everything(),
        )
}

fn engine() -> Engine {
    let engine = Engine::builder()
        .executor(
            "ECHO",
            from_fn(|_c: JobContext, v: Value| async move { Ok::<_, JobError>(v) }),
        )
        .executor(
            "BROKEN",
            from_fn(|_c: JobContext, _v: Value| async move {
                Err::<Value, _>(JobError::fail("the <b>input</b> is broken"))
            }),
        )
        .build()
        .unwrap();
    engine.start().unwrap();
    engine
}

struct Site {
    base: String,
    client: reqwest::Client,
    engine: Engine,
}

impl Site {
    async fn start(configure: impl FnOnce(Dashboard) -> Dashboard) -> Site {
        let engine = engine();
        let dashboard = configure(Dashboard::new(engine.clone(), logins()));
        let app = axum::Router::new().nest_service("/dashboard", dashboard.router());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(jobworks::http::Server::new().serve(listener, app));
        Site {
            base: format!("http://{addr}/dashboard"),
            client: reqwest::Client::builder()
                .redirect(Policy::none())
                .build()
                .unwrap(),
            engine,
        }
    }

    async fn get(&self, path: &str, login: Option<(&str, &str)>) -> (StatusCode, String) {
        let mut rb = self.client.get(format!("{}{path}", self.base));
        if let Some((user, password)) = login {
            rb = rb.basic_auth(user, Some(password));
        }
        let r = rb.send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    }

    async fn post(
        &self,
        path: &str,
        login: (&str, &str),
        form: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .basic_auth(login.0, Some(login.1))
            .form(form)
            .send()
            .await
            .unwrap();
        let location = r
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned());
        (r.status(), r.text().await.unwrap(), location)
    }

    /// The CSRF token in a page of `login`'s.
    async fn token(&self, login: (&str, &str)) -> String {
        let (_, html) = self.get("/jobs", Some(login)).await;
        let start = html
            .find("name=\"csrf\" value=\"")
            .expect("a form with a token")
            + 19;
        html[start..].split('"').next().unwrap().to_owned()
    }

    async fn run(&self, tenant_name: &str, ty: &str) -> jobworks::Job {
        let t = tenant(tenant_name);
        let job = NewJob::new(JobType::new(ty).unwrap(), json!({"secret": "hunter2"}));
        let id = self.engine.submit(&t, job).await.unwrap().job.id;
        self.engine.wait_until_terminal(&t, id, WAIT).await.unwrap()
    }
}

const OPS: (&str, &str) = ("ops", "ops-secret");
const ACME: (&str, &str) = ("acme-key", "acme-secret");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_login_is_a_401_with_a_basic_challenge() {
    let site = Site::start(|d| d).await;
    for login in [None, Some(("ops", "wrong")), Some(("nobody", "x"))] {
        let mut rb = site.client.get(format!("{}/jobs", site.base));
        if let Some((user, password)) = login {
            rb = rb.basic_auth(user, Some(password));
        }
        let r = rb.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()["www-authenticate"],
            "Basic realm=\"jobworks\"",
            "a browser asks for a login"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_renders_for_an_operator() {
    let site = Site::start(|d| d).await;
    let failed = site.run("acme", "BROKEN").await;
    let done = site.run("globex", "ECHO").await;
    let flow = NewWorkflow::new()
        .name("nightly")
        .job(WorkflowJob::new(
            "fetch",
            NewJob::new(JobType::new("ECHO").unwrap(), json!(1)),
        ))
        .job(
            WorkflowJob::new("load", NewJob::new(JobType::new("ECHO").unwrap(), json!(2)))
                .depends_on(["fetch"]),
        );
    let workflow = site
        .engine
        .submit_workflow(&tenant("acme"), flow)
        .await
        .unwrap();
    site.engine
        .create_schedule(
            &tenant("globex"),
            NewSchedule::new(
                "hourly report",
                "0 * * * *",
                ScheduleJob::new(JobType::new("ECHO").unwrap(), json!({})),
            ),
        )
        .await
        .unwrap();
    let traced = NewJob::new(JobType::new("ECHO").unwrap(), json!(3)).trace(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let traced = site
        .engine
        .submit(&tenant("acme"), traced)
        .await
        .unwrap()
        .job;
    let (failed_id, done_id) = (failed.id.to_string(), done.id.to_string());
    let pages = [
        (
            &format!("/jobs/{}", traced.id)[..],
            vec!["Trace", "4bf92f3577b34da6a3ce929d0e0e4736"],
        ),
        (
            "",
            vec!["Overview", "Open jobs", "The last hour", "Recent failures"],
        ),
        ("/", vec!["Overview"]),
        ("/queues", vec!["default", "Pause"]),
        ("/jobs", vec![&failed_id[..], "globex", "Review"]),
        ("/jobs?status=completed&tenant=globex", vec![&done_id[..]]),
        (
            "/failed",
            vec!["the &lt;b&gt;input&lt;/b&gt; is broken", "Retry"],
        ),
        ("/schedules", vec!["hourly report", "0 * * * *"]),
        (
            &format!("/jobs/{}", failed.id),
            vec!["Retry", "Discard", "Timeline", "hunter2"],
        ),
        (
            &format!("/workflows/{}", workflow.id),
            vec!["nightly", "<svg", "fetch", "load"],
        ),
    ];
    for (path, needles) in pages {
        let (status, html) = site.get(path, Some(OPS)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        assert!(html.starts_with("<!DOCTYPE html>"), "{path}");
        for needle in needles {
            assert!(html.contains(needle), "{path} lacks {needle:?}");
        }
        assert!(!html.contains("<b>input</b>"), "{path}: text is escaped");
    }
    for (asset, kind) in [
        ("dashboard.css", "text/css"),
        ("dashboard.js", "text/javascript"),
    ] {
        let r = site
            .client
            .get(format!("{}/assets/{asset}", site.base))
            .basic_auth("ops", Some("ops-secret"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
    }
    let (status, _) = site.get("/jobs?status=sleeping", Some(OPS)).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a bad filter is a clear 400"
    );
    let (status, _) = site.get("/nowhere", Some(OPS)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_job_is_not_found() {
    let site = Site::start(|d| d).await;
    let theirs = site.run("globex", "BROKEN").await;
    let mine = site.run("acme", "ECHO").await;
    let (status, html) = site.get(&format!("/jobs/{}", mine.id), Some(ACME)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!html.contains("globex"));
    for path in [
        format!("/jobs/{}", theirs.id),
        format!("/jobs/{}/live", theirs.id),
        format!("/jobs/{}", jobworks::JobId::new()),
    ] {
        let (status, _) = site.get(&path, Some(ACME)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (_, list) = site.get("/jobs", Some(ACME)).await;
    assert!(!list.contains(&theirs.id.to_string()));
    let (_, list) = site.get("/jobs?tenant=globex", Some(ACME)).await;
    assert!(
        !list.contains(&theirs.id.to_string()),
        "a filter cannot widen"
    );
    let token = site.token(ACME).await;
    let (status, _, _) = site
        .post(
            &format!("/jobs/{}/cancel", theirs.id),
            ACME,
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_needs_its_csrf_token_and_leaves_an_operator_event() {
    let site = Site::start(|d| d).await;
    let failed = site.run("acme", "BROKEN").await;
    let retry = format!("/jobs/{}/retry", failed.id);
    for form in [vec![], vec![("csrf", "forged")]] {
        let (status, html, _) = site.post(&retry, OPS, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("nothing was changed"));
    }
    let still = site.engine.get(&tenant("acme"), failed.id).await.unwrap();
    assert_eq!(
        still.status,
        JobStatus::Failed,
        "a refused form changes nothing"
    );
    // Another viewer's token is not this one's.
    let theirs = site.token(ACME).await;
    let (status, _, _) = site.post(&retry, OPS, &[("csrf", &theirs)]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let token = site.token(OPS).await;
    let (status, _, location) = site.post(&retry, OPS, &[("csrf", &token)]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location.unwrap(),
        format!("/dashboard/jobs/{}?done=retry", failed.id)
    );
    site.engine
        .wait_until_terminal(&tenant("acme"), failed.id, WAIT)
        .await
        .unwrap();
    let events = site
        .engine
        .events(
            &tenant("acme"),
            failed.id,
            EventParams::default().limit(100),
        )
        .await
        .unwrap()
        .events;
    let operator = events
        .iter()
        .find(|e| e.kind == EventKind::Operator)
        .expect("an operator event");
    assert!(operator.message.contains("ops"), "{}", operator.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_only_the_buttons_of_its_actions() {
    let site = Site::start(|d| d).await;
    let failed = site.run("acme", "BROKEN").await;
    let (_, html) = site.get(&format!("/jobs/{}", failed.id), Some(ACME)).await;
    assert!(!html.contains(">Retry<"), "acme-key may not retry");
    let token = site.token(ACME).await;
    let (status, _, _) = site
        .post(
            &format!("/jobs/{}/retry", failed.id),
            ACME,
            &[("csrf", &token)],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, queues) = site.get("/queues", Some(ACME)).await;
    assert!(!queues.contains(">Pause<"));
    let (status, _, _) = site
        .post("/queues/default/pause", ACME, &[("csrf", &token)])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_dashboard_offers_and_takes_no_action() {
    let site = Site::start(|d| {
        d.read_only(true)
            .redact(|_job, part, _value| json!(format!("hidden {part:?}")))
    })
    .await;
    let failed = site.run("acme", "BROKEN").await;
    let (_, html) = site.get(&format!("/jobs/{}", failed.id), Some(OPS)).await;
    assert!(!html.contains("method=\"post\""), "no forms at all");
    assert!(html.contains("read only"));
    assert!(html.contains("hidden Input") && !html.contains("hunter2"));
    let (status, _, _) = site
        .post(
            &format!("/jobs/{}/retry", failed.id),
            OPS,
            &[("csrf", "whatever")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let _ = Part::Result;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_actions_are_confirmed_first_and_capped() {
    let site = Site::start(|d| d).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(site.run("acme", "BROKEN").await.id);
    }
    let token = site.token(OPS).await;
    let form = [
        ("csrf", token.as_str()),
        ("action", "retry"),
        ("scope", "filter"),
        ("status", "failed"),
        ("limit", "2"),
    ];
    let (status, html, _) = site.post("/jobs/bulk", OPS, &form).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("Confirm: Retry 2 jobs"), "{html}");
    let failed_now = |site: &Site| {
        let engine = site.engine.clone();
        async move {
            let page = engine
                .list(
                    &tenant("acme"),
                    jobworks::ListParams::default().status(JobStatus::Failed),
                )
                .await
                .unwrap();
            page.jobs.len()
        }
    };
    assert_eq!(failed_now(&site).await, 3, "a review changes nothing");
    let mut confirmed = form.to_vec();
    confirmed.push(("confirm", "yes"));
    let (status, html, _) = site.post("/jobs/bulk", OPS, &confirmed).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("2 of 2"), "{html}");
    let (status, _, _) = site
        .post(
            "/jobs/bulk",
            OPS,
            &[
                ("csrf", token.as_str()),
                ("action", "discard"),
                ("scope", "selected"),
                ("limit", "100000"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the cap has a ceiling");
    let selected = [
        ("csrf", token.as_str()),
        ("action", "cancel"),
        ("scope", "selected"),
        ("ids", &ids[0].to_string()),
        ("ids", &ids[1].to_string()),
        ("confirm", "yes"),
    ];
    let (status, html, _) = site.post("/jobs/bulk", OPS, &selected).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("of 2 selected jobs"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_answers_new_events_and_the_status() {
    let site = Site::start(|d| d).await;
    let done = site.run("acme", "ECHO").await;
    let r = site
        .client
        .get(format!("{}/jobs/{}/live?after=1", site.base, done.id))
        .basic_auth("acme-key", Some("acme-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "completed");
    assert_eq!(body["terminal"], true);
    let events = body["events"].as_array().unwrap();
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e["seq"].as_u64().unwrap() > 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_draws_the_last_hour_and_warns_when_no_engine_runs() {
    let site = Site::start(|d| d).await;
    site.run("acme", "ECHO").await;
    site.run("acme", "BROKEN").await;
    let (_, html) = site.get("", Some(OPS)).await;
    assert!(html.contains("The last hour") && html.contains("class=\"spark"));
    assert!(html.contains("Jobs finished each minute of the last hour: 2 in all"));
    assert!(html.contains("Engines") && !html.contains("No engine is running"));
    let (_, html) = site.get("", Some(ACME)).await;
    assert!(
        html.contains("1 running."),
        "a tenant's viewer sees a count, not hosts"
    );

    // A dashboard over an engine that was never started, on a store no engine beats in.
    let idle = Engine::builder().build().unwrap();
    let app =
        axum::Router::new().nest_service("/dashboard", Dashboard::new(idle, logins()).router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(jobworks::http::Server::new().serve(listener, app));
    let html = site
        .client
        .get(format!("http://{addr}/dashboard"))
        .basic_auth("ops", Some("ops-secret"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("No engine is running"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessed_logins_are_throttled_per_client_address() {
    let limit = std::num::NonZeroU32::new(3).unwrap();
    let site = Site::start(|d| d.login_failure_limit(Some((limit, Duration::from_secs(60))))).await;
    for _ in 0..3 {
        let (status, _) = site.get("/jobs", Some(("ops", "guess"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let r = site
        .client
        .get(format!("{}/jobs", site.base))
        .basic_auth("ops", Some("ops-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "blocked, right login or not"
    );
    assert!(r.headers().contains_key("retry-after"));
}

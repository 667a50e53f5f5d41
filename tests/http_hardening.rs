//! What a hostile client can push against the HTTP adapter and its [`Server`]: slow and
//! stalled connections, connection floods, oversized declarations, undecodable paths,
//! ids over 128 bits, ambiguous and guessed credentials. Real loopback sockets.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jobworks::http::{JobsApi, Principal, Server, StaticCredentials};
use jobworks::{Engine, JobContext, JobError, TenantId, from_fn};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn app() -> axum::Router {
    let engine = Engine::builder()
        .executor(
            "ECHO",
            from_fn(|_c: JobContext, v: Value| async move { Ok::<_, JobError>(v) }),
        )
        .build()
        .unwrap();
    let acme = TenantId::new("acme").unwrap();
    let credentials = StaticCredentials::new().bearer("acme", Principal::new(acme, "a"));
    let api = JobsApi::new(engine, credentials).body_limit(64 * 1024);
    axum::Router::new().nest("/v1", api.router())
}

/// Serves [`app`] with `server`'s limits on a fresh loopback port.
async fn start(server: Server) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server.serve(listener, app()));
    addr
}

/// A connection to `addr` from the loopback address `from` (all of 127/8 is loopback).
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Everything the server sends until it closes the connection, which it must do within
/// `limit`.
async fn until_closed(stream: &mut TcpStream, limit: Duration) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.expect("the server kept the connection open");
    String::from_utf8_lossy(&got).into_owned()
}

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().get(format!("http://{addr}/v1{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn quick() -> Server {
    Server::new()
        .header_read_timeout(Duration::from_millis(400))
        .body_read_timeout(Duration::from_millis(400))
}

#[tokio::test]
async fn slow_headers_idle_keep_alives_and_stalled_bodies_are_closed() {
    let addr = start(quick()).await;
    let limit = Duration::from_secs(3);

    // Headers that trickle in, one byte at a time, never finish in time.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let writer = async {
        for b in b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nX-Slow: "
            .iter()
            .cycle()
        {
            if trickle.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            if started.elapsed() > limit {
                panic!("still writing headers after {limit:?}");
            }
        }
    };
    writer.await;

    // A connection that opens and says nothing.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    until_closed(&mut silent, limit).await;

    // A keep-alive connection left idle after a complete exchange.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut idle, limit).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.40}");

    // A body that stalls after 10 of its 100 bytes.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer acme\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\": \"",
        )
        .await
        .unwrap();
    let answer = until_closed(&mut stalled, limit).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"type\":\"request_timeout\""), "{answer}");
}

#[tokio::test]
async fn one_address_holding_sockets_does_not_lock_others_out() {
    let addr = start(Server::new().max_connections_per_client(8)).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect_from("127.0.0.2", addr).await);
    }
    // Over its cap, the same address is closed at accept, before it sends anything.
    for _ in 0..20 {
        let mut extra = connect_from("127.0.0.2", addr).await;
        assert_eq!(
            until_closed(&mut extra, Duration::from_secs(2)).await,
            "",
            "refused without an answer"
        );
    }
    // Everyone else is served meanwhile.
    let (status, _) = get(addr, "/jobs", Some("acme")).await;
    assert_eq!(status, StatusCode::OK);
    // A closed connection frees its place.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = connect_from("127.0.0.2", addr).await;
    again
        .write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = until_closed(&mut again, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.40}");
}

#[tokio::test]
async fn connections_are_capped_in_all() {
    let addr = start(Server::new().max_connections(4)).await;
    let mut held = Vec::new();
    for i in 0..4 {
        held.push(connect_from(&format!("127.0.1.{}", i + 1), addr).await);
    }
    let mut extra = connect_from("127.0.2.1", addr).await;
    assert_eq!(until_closed(&mut extra, Duration::from_secs(2)).await, "");
    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _) = get(addr, "/jobs", Some("acme")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_it_is_read() {
    let addr = start(Server::new()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer acme\r\n\
              Content-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n",
        )
        .await
        .unwrap();
    // No body byte is sent: the answer cannot wait for one.
    let answer = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"type\":\"payload_too_large\""),
        "{answer}"
    );
}

#[tokio::test]
async fn undecodable_path_parameters_are_bad_requests() {
    let addr = start(Server::new()).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}/v1{path}");
    for (method, path, kind) in [
        ("GET", "/jobs/%FF", "invalid_id"),
        ("GET", "/jobs/%FF/events", "invalid_id"),
        ("POST", "/jobs/%FF/cancel", "invalid_id"),
        ("GET", "/jobs/%C3%28", "invalid_id"),
        ("GET", "/artifacts/%FF", "invalid_request"),
    ] {
        let r = client
            .request(method.parse().unwrap(), url(path))
            .bearer_auth("acme")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["type"], kind, "{method} {path}: {body}");
        assert_eq!(body["code"], 400);
    }
}

#[tokio::test]
async fn ids_over_128_bits_are_not_read_as_other_ids() {
    let addr = start(Server::new()).await;
    let client = reqwest::Client::new();
    let job: Value = client
        .post(format!("http://{addr}/v1/jobs"))
        .bearer_auth("acme")
        .json(&json!({"type": "ECHO"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = job["id"].as_str().unwrap();
    let (status, _) = get(addr, &format!("/jobs/{id}"), Some("acme")).await;
    assert_eq!(status, StatusCode::OK);
    for first in ['8', 'F', 'Z'] {
        let overflow = format!("{first}{}", &id[1..]);
        let (status, body) = get(addr, &format!("/jobs/{overflow}"), Some("acme")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{overflow}");
        assert_eq!(body["type"], "invalid_id");
    }
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let addr = start(Server::new()).await;
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/v1/jobs"))
        .header("authorization", "Bearer acme")
        .header("authorization", "Bearer acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "authentication_error");
}

#[tokio::test]
async fn guessed_credentials_are_throttled_per_address() {
    let addr = start(Server::new()).await;
    let mut statuses = Vec::new();
    for i in 0..60 {
        let (status, _) = get(addr, "/jobs", Some(&format!("guess-{i}"))).await;
        statuses.push(status.as_u16());
    }
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(unauthorized, 20, "{statuses:?}");
    assert!(statuses[20..].iter().all(|s| *s == 429), "{statuses:?}");
    // Blocked for the rest of the minute: even good credentials are not checked.
    let r = reqwest::Client::new()
        .get(format!("http://{addr}/v1/jobs"))
        .bearer_auth("acme")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "rate_limited");
    // Other addresses are not blocked.
    let mut other = connect_from("127.0.0.3", addr).await;
    other
        .write_all(
            b"GET /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer acme\r\n\
              Connection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let answer = until_closed(&mut other, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.40}");
}

#[tokio::test]
async fn busy_and_active_connections_are_not_cut() {
    let addr = start(quick()).await;
    let client = reqwest::Client::new();
    // A job due in the year 2999, long-polled for longer than
    // the 400 ms read timeout: a request in flight is not idleness.
    let response = client
        .post(format!("http://{addr}/v1/jobs"))
        .bearer_auth("acme")
        .json(&json!({"type": "ECHO", "run_at": "2999-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    let job: Value = response.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    let started = Instant::now();
    let (status, _) = get(addr, &format!("/jobs/{id}?wait=1"), Some("acme")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A keep-alive connection that asks every 150 ms outlives the timeout many times.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for _ in 0..8 {
        stream
            .write_all(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut head = vec![0u8; 64 * 1024];
        let n = stream.read(&mut head).await.unwrap();
        assert!(n > 0 && head.starts_with(b"HTTP/1.1 200"), "closed early");
        // Drain the rest of this answer before the next request.
        let text = String::from_utf8_lossy(&head[..n]).into_owned();
        let length: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let body_start = text.find("\r\n\r\n").unwrap() + 4;
        let mut left = length - (n - body_start);
        while left > 0 {
            left -= stream.read(&mut head).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

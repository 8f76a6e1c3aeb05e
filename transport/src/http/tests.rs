//! Tests of the HTTP client: canned answers over in-memory pipes, a tiny
//! server on a local TCP port (real sockets, answers written in pieces), and
//! TLS with a throw-away CA as the day-2 commands use it.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// Long enough for any answer here; a test that hits it has hung.
const NO_HANG: Duration = Duration::from_secs(10);

/// Reads one request (head, then `Content-Length` bytes of body) from
/// `stream`; whatever arrived when the stream ended.
async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut req = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&req).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if req.len() >= end + 4 + length {
                return text;
            }
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return text,
            Ok(n) => req.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends `method /patroni` over an in-memory pipe whose far end answers
/// `raw` and hangs up; the response and the request as the server saw it.
async fn answer(raw: &'static [u8], method: &str) -> (Result<Response, HttpError>, String) {
    let (client, mut server) = tokio::io::duplex(1 << 16);
    let server_task = tokio::spawn(async move {
        let req = read_request(&mut server).await;
        server.write_all(raw).await.expect("write");
        drop(server);
        req
    });
    let body = (method == "POST").then_some("{\"a\":1}");
    let res = request(client, method, "127.0.0.1:8008", "/patroni", body).await;
    (res, server_task.await.expect("server"))
}

#[tokio::test]
async fn content_length_body() {
    let (res, req) = answer(
        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"x\": true}extra",
        "GET",
    )
    .await;
    let res = res.expect("response");
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "{\"x\": true}");
    assert_eq!(res.header("Content-Type"), Some("application/json"));
    assert!(
        req.starts_with("GET /patroni HTTP/1.1\r\nHost: 127.0.0.1:8008\r\n"),
        "{req}"
    );
    assert!(req.contains("User-Agent: pgdeploy\r\n"), "{req}");
    assert!(req.contains("Connection: close\r\n"), "{req}");
    assert!(!req.contains("Content-Length"), "a GET has no body: {req}");
    assert!(req.ends_with("\r\n\r\n"));
}

#[tokio::test]
async fn chunked_and_until_close_bodies() {
    let (res, _) = answer(
        b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n",
        "GET",
    )
    .await;
    let res = res.expect("response");
    assert_eq!(res.status, 503);
    assert_eq!(res.text(), "abcdefg");
    let (res, req) = answer(b"HTTP/1.0 202 Accepted\r\n\r\nswitched over", "POST").await;
    let res = res.expect("response");
    assert_eq!((res.status, res.text().as_str()), (202, "switched over"));
    assert!(req.starts_with("POST /patroni HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("Content-Length: 7\r\n"), "{req}");
    assert!(req.contains("Content-Type: application/json\r\n"), "{req}");
    assert!(req.ends_with("\r\n\r\n{\"a\":1}"), "{req}");
}

#[tokio::test]
async fn no_body_for_head_204_and_interim_answers_skipped() {
    let (res, req) = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "HEAD").await;
    let res = res.expect("response");
    assert_eq!((res.status, res.body.len()), (200, 0));
    assert!(req.contains("Content-Length: 0\r\n"), "{req}");
    let (res, _) = answer(b"HTTP/1.1 204 No Content\r\n\r\n", "GET").await;
    assert_eq!(res.expect("response").status, 204);
    let (res, _) = answer(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        "GET",
    )
    .await;
    let res = res.expect("response");
    assert_eq!((res.status, res.text().as_str()), (200, "ok"));
}

#[tokio::test]
async fn malformed_answers_are_errors() {
    for raw in [
        &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..],
        &b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"[..],
        &b"HTTP/1.1 200"[..],
        &b""[..],
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nab"[..],
        &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..],
        &b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"[..],
    ] {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        tokio::spawn(async move {
            let _ = read_request(&mut server).await;
            let _ = server.write_all(raw).await;
        });
        let res = tokio::time::timeout(NO_HANG, request(client, "GET", "h", "/", None))
            .await
            .expect("no hang");
        assert!(
            matches!(res, Err(HttpError::Malformed(_))),
            "{:?} for {:?}",
            res,
            String::from_utf8_lossy(raw)
        );
    }
}

#[tokio::test]
async fn requests_http_cannot_carry_are_refused_before_sending() {
    for (method, path) in [("GE T", "/"), ("GET", "no spaces allowed")] {
        let (client, _server) = tokio::io::duplex(1 << 16);
        let res = request(client, method, "h", path, None).await;
        match res {
            Err(HttpError::Request {
                method: m, path: p, ..
            }) => assert_eq!((m.as_str(), p.as_str()), (method, path)),
            other => panic!("{other:?} for {method} {path}"),
        }
    }
}

/// A stream that takes every write and fails every read.
struct Resetting;

impl AsyncRead for Resetting {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by test");
        std::task::Poll::Ready(Err(reset))
    }
}

impl AsyncWrite for Resetting {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_failing_stream_is_an_io_error_of_its_own() {
    let res = tokio::time::timeout(NO_HANG, request(Resetting, "GET", "h", "/", None))
        .await
        .expect("no hang");
    match res {
        Err(e @ HttpError::Io(_)) => {
            assert_eq!(e.to_string(), "HTTP I/O: reset by test");
            let HttpError::Io(io) = e else { unreachable!() };
            assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_request_is_send_for_send_streams() {
    fn is_send<T: Send>(_: T) {}
    let (client, _server) = tokio::io::duplex(64);
    is_send(request(client, "GET", "h", "/", None));
}

#[test]
fn error_texts_are_unchanged() {
    let io = HttpError::Io(std::io::Error::other("reset"));
    assert_eq!(io.to_string(), "HTTP I/O: reset");
    let bad = HttpError::Malformed("status line".into());
    assert_eq!(bad.to_string(), "malformed HTTP response: status line");
}

#[test]
fn headers_are_found_without_case() {
    let res = Response {
        status: 200,
        headers: vec![("x-a".into(), "1".into()), ("x-a".into(), "2".into())],
        body: b"\xffok".to_vec(),
    };
    assert_eq!(res.header("X-A"), Some("1"));
    assert_eq!(res.header("x-b"), None);
    assert_eq!(res.text(), "\u{fffd}ok");
}

/// What the local server does with each connection, after reading the
/// request.
#[derive(Clone)]
enum Script {
    /// Writes these pieces, flushing and pausing between them, then hangs up.
    Answer(Vec<&'static [u8]>),
    /// Hangs up without a word.
    Close,
    /// Holds the connection open and says nothing.
    Stall,
}

/// Serves `script` to every connection on a fresh local port; the port and
/// the requests as received, one per connection.
async fn serve(script: Script) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (script, seen) = (script.clone(), seen.clone());
            tokio::spawn(async move { play(stream, script, seen).await });
        }
    });
    (port, requests)
}

async fn play<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    script: Script,
    seen: tokio::sync::mpsc::UnboundedSender<String>,
) {
    let _ = seen.send(read_request(&mut stream).await);
    match script {
        Script::Answer(pieces) => {
            for piece in pieces {
                if stream.write_all(piece).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = stream.shutdown().await;
        }
        Script::Close => {
            let _ = stream.shutdown().await;
        }
        Script::Stall => tokio::time::sleep(NO_HANG * 2).await,
    }
}

/// One request to the local server on `port`.
async fn get(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<Response, HttpError> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let authority = format!("127.0.0.1:{port}");
    tokio::time::timeout(NO_HANG, request(stream, method, &authority, path, body))
        .await
        .expect("no hang")
}

#[tokio::test]
async fn local_server_json_200() {
    let (port, mut requests) = serve(Script::Answer(vec![
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 33\r\n\r\n",
        b"{\"state\": \"running\", ",
        b"\"role\": \"x\"}",
    ]))
    .await;
    let res = get(port, "GET", "/patroni", None).await.expect("response");
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.header("content-length"), Some("33"));
    assert_eq!(res.text(), "{\"state\": \"running\", \"role\": \"x\"}");
    let req = requests.recv().await.expect("request");
    assert!(req.starts_with(&format!(
        "GET /patroni HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    )));
}

#[tokio::test]
async fn local_server_error_status_with_body() {
    let (port, mut requests) = serve(Script::Answer(vec![
        b"HTTP/1.1 412 Precondition Failed\r\nContent-Length: 26\r\n\r\nleader name does not match",
    ]))
    .await;
    let res = get(port, "POST", "/switchover", Some("{\"leader\":\"a\"}"))
        .await
        .expect("a status is not an error");
    assert_eq!(res.status, 412);
    assert_eq!(res.text(), "leader name does not match");
    let req = requests.recv().await.expect("request");
    assert!(req.ends_with("\r\n\r\n{\"leader\":\"a\"}"), "{req}");
}

/// Basic authentication: the header Patroni's unsafe methods want; a
/// request without it has none.
#[tokio::test]
async fn basic_auth_is_sent_when_given() {
    let (port, mut requests) = serve(Script::Answer(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ]))
    .await;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let res = request_as(
        stream,
        "POST",
        "127.0.0.1",
        "/reload",
        None,
        Some(("patroni", "s3cr:t")),
    )
    .await
    .expect("response");
    assert_eq!(res.status, 200);
    let req = requests.recv().await.expect("request");
    // base64("patroni:s3cr:t")
    assert!(
        req.contains("\r\nAuthorization: Basic cGF0cm9uaTpzM2NyOnQ=\r\n"),
        "{req}"
    );
    let (port, mut requests) = serve(Script::Answer(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ]))
    .await;
    get(port, "POST", "/reload", None).await.expect("response");
    let req = requests.recv().await.expect("request");
    assert!(!req.contains("Authorization"), "{req}");
}

#[tokio::test]
async fn local_server_chunked_in_pieces() {
    let (port, _) = serve(Script::Answer(vec![
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"F\r\n# pxna",
        b"me,svname\r\n",
        b"B\r\npostgres_r",
        b"w\r\n0\r\n\r\n",
    ]))
    .await;
    let res = get(port, "GET", "/;csv", None).await.expect("response");
    assert_eq!(
        (res.status, res.text().as_str()),
        (200, "# pxname,svnamepostgres_rw")
    );
    assert_eq!(res.header("Transfer-Encoding"), Some("chunked"));
}

#[tokio::test]
async fn local_server_body_until_close() {
    let (port, _) = serve(Script::Answer(vec![
        b"HTTP/1.0 200 OK\r\n\r\n",
        b"first ",
        b"second",
    ]))
    .await;
    let res = get(port, "GET", "/", None).await.expect("response");
    assert_eq!(res.text(), "first second");
}

#[tokio::test]
async fn local_server_closing_early_is_an_error_not_a_hang() {
    let (port, _) = serve(Script::Close).await;
    let res = get(port, "GET", "/health", None).await;
    assert!(matches!(res, Err(HttpError::Malformed(_))), "{res:?}");
    let (port, _) = serve(Script::Answer(vec![
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        b"only ten b",
    ]))
    .await;
    let res = get(port, "GET", "/health", None).await;
    assert!(matches!(res, Err(HttpError::Malformed(_))), "{res:?}");
    let (port, _) = serve(Script::Answer(vec![
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"5\r\nab",
    ]))
    .await;
    let res = get(port, "GET", "/health", None).await;
    assert!(matches!(res, Err(HttpError::Malformed(_))), "{res:?}");
}

#[tokio::test]
async fn a_silent_server_is_cut_off_by_the_callers_timeout() {
    let (port, mut requests) = serve(Script::Stall).await;
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let started = std::time::Instant::now();
    let res = tokio::time::timeout(
        Duration::from_millis(300),
        request(stream, "GET", "h", "/patroni", None),
    )
    .await;
    assert!(res.is_err(), "{res:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The request was sent whole before the wait.
    let req = requests.recv().await.expect("request");
    assert!(req.starts_with("GET /patroni HTTP/1.1\r\n"), "{req}");
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let (client, mut server) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let _ = read_request(&mut server).await;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_RESPONSE + 1
        );
        let _ = server.write_all(head.as_bytes()).await;
        let block = vec![b'x'; 1 << 16];
        for _ in 0..=(MAX_RESPONSE >> 16) {
            if server.write_all(&block).await.is_err() {
                return;
            }
        }
    });
    let res = tokio::time::timeout(NO_HANG, request(client, "GET", "h", "/", None))
        .await
        .expect("no hang");
    match res {
        Err(HttpError::Malformed(m)) => assert!(m.contains("too big"), "{m}"),
        other => panic!("{other:?}"),
    }
}

/// A CA, and a server certificate for `name` signed by it.
struct Pki {
    ca: rustls::pki_types::CertificateDer<'static>,
    server: rustls::ServerConfig,
}

fn make_pki(name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test cluster CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("certificate");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server config");
    Pki {
        ca: ca.der().clone(),
        server,
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts only `ca`, as `src/tls.rs` makes it.
fn client(ca: &rustls::pki_types::CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Serves `script` over TLS with `server` on a fresh local port.
async fn serve_tls(server: rustls::ServerConfig, script: Script) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, script) = (acceptor.clone(), script.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(stream).await {
                    let (seen, _) = tokio::sync::mpsc::unbounded_channel();
                    play(tls, script, seen).await;
                }
            });
        }
    });
    port
}

/// etcd's `/health` over TLS verified with the cluster CA and the host's
/// name, the way `Cluster::api` reaches it; a stranger's CA or another
/// name is refused.
#[tokio::test]
async fn tls_with_the_cluster_ca() {
    let pki = make_pki("node1");
    let port = serve_tls(
        pki.server,
        Script::Answer(vec![
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 29\r\n\r\n",
            b"{\"health\":\"true\",\"reason\":\"\"}",
        ]),
    )
    .await;
    let name = |n: &str| rustls::pki_types::ServerName::try_from(n.to_string()).expect("name");
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let tls = client(&pki.ca)
        .connect(name("node1"), tcp)
        .await
        .expect("TLS");
    let authority = format!("127.0.0.1:{port}");
    let res = tokio::time::timeout(NO_HANG, request(tls, "GET", &authority, "/health", None))
        .await
        .expect("no hang")
        .expect("response");
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "{\"health\":\"true\",\"reason\":\"\"}");

    // A body read to the end of the stream, ended by TLS close_notify.
    let pki2 = make_pki("node2");
    let port2 = serve_tls(
        pki2.server,
        Script::Answer(vec![
            b"HTTP/1.0 200 OK\r\n\r\n",
            b"{\"state\": \"running\"}",
        ]),
    )
    .await;
    let tcp = TcpStream::connect(("127.0.0.1", port2))
        .await
        .expect("connect");
    let tls = client(&pki2.ca)
        .connect(name("node2"), tcp)
        .await
        .expect("TLS");
    let res = tokio::time::timeout(NO_HANG, request(tls, "GET", "h", "/patroni", None))
        .await
        .expect("no hang")
        .expect("response");
    assert_eq!(res.text(), "{\"state\": \"running\"}");

    let stranger = make_pki("node1");
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let refused = client(&stranger.ca).connect(name("node1"), tcp).await;
    assert!(
        refused.is_err(),
        "a certificate from another CA was accepted"
    );
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let refused = client(&pki.ca).connect(name("node9"), tcp).await;
    assert!(
        refused.is_err(),
        "a certificate for another name was accepted"
    );
}

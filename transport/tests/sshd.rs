//! Integration tests against a real, private OpenSSH sshd on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Sshd, SshdSettings};
use pgdeploy_transport::{quote, ConnectOptions, Session, TransportError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn connect(sshd: &Sshd, opts: &ConnectOptions) -> Session {
    match Session::connect(&sshd.target(), opts).await {
        Ok(s) => s,
        Err(e) => panic!("connect failed: {e}\nsshd log:\n{}", sshd.log()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stdout_stderr_status_stdin() {
    require_sshd!();
    let sshd = Sshd::start();
    let s = connect(&sshd, &sshd.trusting_options()).await;

    let out = s
        .exec("echo hello; echo oops >&2; exit 3", false, None)
        .await
        .expect("exec");
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.stderr, b"oops\n");
    assert_eq!(out.status, 3);
    assert!(!out.success());

    let out = s
        .exec("tr a-z A-Z", false, Some(b"some input\n"))
        .await
        .expect("stdin");
    assert_eq!(out.stdout_str(), "SOME INPUT\n");
    assert_eq!(out.status, 0);

    // No stdin: the command sees EOF immediately instead of hanging.
    let out = s.exec("cat; echo done", false, None).await.expect("eof");
    assert_eq!(out.stdout_str(), "done\n");

    // Big stdin and big stdout (beyond SSH window sizes), at the same time.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let out = s.exec("cat", false, Some(&big)).await.expect("big cat");
    assert_eq!(out.stdout.len(), big.len());
    assert!(out.stdout == big, "echoed bytes differ");

    let out = s
        .exec("head -c 5000000 /dev/zero", false, None)
        .await
        .expect("big out");
    assert_eq!(out.stdout.len(), 5_000_000);

    // Killed by a signal: 128 + n.
    let out = s.exec("kill -TERM $$", false, None).await.expect("signal");
    assert_eq!(out.status, 143, "{out:?}");

    // Multi-line scripts with shell syntax.
    let out = s
        .exec("set -e\nfor i in 1 2 3; do\n  printf '%s,' \"$i\"\ndone\nif [ -n \"${HOME}\" ]; then echo ok; fi\n", false, None)
        .await
        .expect("multi-line");
    assert_eq!(out.stdout_str(), "1,2,3,ok\n");
    s.close().await.expect("close");
}

/// With a time limit (the engine always sets one): the same output, status
/// and stdin, and a script past its limit stopped on the host, said so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_exec_behaves_the_same_and_stops_at_its_limit() {
    require_sshd!();
    let sshd = Sshd::start();
    let s = connect(&sshd, &sshd.trusting_options()).await;
    let limit = Some(Duration::from_secs(60));
    let run = |script: &'static str, stdin: Option<&'static [u8]>, limit| {
        let s = s.clone();
        async move { s.exec_limited(script, false, stdin, &|_| {}, limit).await }
    };
    let out = run("echo hello; echo oops >&2; exit 3", None, limit)
        .await
        .expect("exec");
    assert_eq!(
        (out.stdout_str().as_ref(), out.stderr_str().as_ref()),
        ("hello\n", "oops\n")
    );
    assert_eq!(out.status, 3);
    assert!(!out.timed_out);
    let out = run("tr a-z A-Z", Some(b"some input\n"), limit)
        .await
        .expect("stdin");
    assert_eq!(out.stdout_str(), "SOME INPUT\n");
    let out = run("cat; echo done", None, limit).await.expect("eof");
    assert_eq!(out.stdout_str(), "done\n");
    let out = run("kill -TERM $$", None, limit).await.expect("signal");
    assert_eq!(out.status, 143, "{out:?}");

    let started = Instant::now();
    let out = run(
        "sleep 50 & echo $! > \"$HOME/limited.pid\"; wait; echo not stopped",
        None,
        Some(Duration::from_secs(1)),
    )
    .await
    .expect("limited");
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.status, 124, "{out:?}");
    assert!(!out.stdout_str().contains("not stopped"));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let out = s
        .exec("sleep 0.5; p=$(cat \"$HOME/limited.pid\"); ps -o stat= -p \"$p\" | grep -v Z || echo gone", false, None)
        .await
        .expect("check");
    assert_eq!(
        out.stdout_str().trim(),
        "gone",
        "the background sleep still runs"
    );
    s.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_scripts_reach_remote_verbatim() {
    require_sshd!();
    let sshd = Sshd::start();
    let s = connect(&sshd, &sshd.trusting_options()).await;
    let marker = sshd.path("pwned");
    let m = marker.display().to_string();
    let payloads = [
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("; touch {m}"),
        format!("' ; touch {m} ; '"),
        format!("\"; touch {m}; \""),
        format!("a\nb\n touch {m}\n"),
        format!("\\'; touch {m} #"),
        "'''  \t $HOME ~ * !! %s".to_string(),
    ];
    for p in &payloads {
        let out = s
            .exec(&format!("printf %s {}", quote(p)), false, None)
            .await
            .expect("exec");
        assert_eq!(out.status, 0, "{p:?}: {}", out.stderr_str());
        assert_eq!(out.stdout_str(), *p);
        assert!(
            !marker.exists(),
            "payload {p:?} executed code on the remote"
        );
    }
    // The payload as the script itself is parsed by the remote `sh -c` only.
    let out = s
        .exec("echo \"it's\" 'a \"test\"'", false, None)
        .await
        .expect("exec");
    assert_eq!(out.stdout_str(), "it's a \"test\"\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_execs_one_connection() {
    require_sshd!();
    let sshd = Sshd::start(); // MaxSessions 10, max_channels 8
    let s = connect(&sshd, &sshd.trusting_options()).await;
    let slots = sshd.path("slots");
    std::fs::create_dir_all(&slots).expect("slots dir");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        let slots = slots.display().to_string();
        tasks.push(tokio::spawn(async move {
            let script = format!(
                "touch {slots}/run.$$; ls {slots} | grep -c '^run' > {slots}/count.{i}; sleep 0.3; rm {slots}/run.$$; echo {i}"
            );
            s.exec(&script, false, None).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let out = t
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("exec {i}: {e}\n{}", sshd.log()));
        assert_eq!(out.status, 0);
        assert_eq!(out.stdout_str().trim(), i.to_string());
    }
    let max = (0..20)
        .map(|i| std::fs::read_to_string(slots.join(format!("count.{i}"))).expect("count"))
        .map(|c| c.trim().parse::<usize>().expect("number"))
        .max()
        .expect("max");
    assert!(max <= 8, "{max} commands ran at once, cap is 8");
    assert!(max >= 2, "commands did not run concurrently (max {max})");
    // Exactly one SSH connection served all of this.
    let accepted = sshd.log().matches("Accepted publickey").count();
    assert_eq!(accepted, 1, "sshd log:\n{}", sshd.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cap_keeps_below_tight_max_sessions() {
    require_sshd!();
    // sshd allows only 2 sessions per connection: without the cap, 20
    // concurrent execs would get "open failed" errors.
    let sshd = Sshd::start_with(SshdSettings {
        max_sessions: 2,
        ..Default::default()
    });
    let mut opts = sshd.trusting_options();
    opts.max_channels = 2;
    let s = connect(&sshd, &opts).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.exec(&format!("sleep 0.05; echo {i}"), false, None).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let out = t
            .await
            .expect("join")
            .unwrap_or_else(|e| panic!("exec {i}: {e}\n{}", sshd.log()));
        assert_eq!(out.stdout_str().trim(), i.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_key_is_refused() {
    require_sshd!();
    let sshd = Sshd::start();
    let kh = sshd.path("known_hosts");
    std::fs::write(&kh, "# empty\n").expect("kh");
    let err = Session::connect(&sshd.target(), &sshd.options(kh.clone()))
        .await
        .expect_err("must refuse unknown key");
    let fp = common::fingerprint_of(&sshd.host_pub);
    match &err {
        TransportError::HostKeyUnknown {
            host, fingerprint, ..
        } => {
            assert_eq!(fingerprint, &fp);
            assert_eq!(host, "testnode (127.0.0.1)");
        }
        other => panic!("expected HostKeyUnknown, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&fp) && msg.contains("testnode") && !msg.contains('\n'),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(&kh).expect("kh"),
        "# empty\n",
        "file must not change"
    );
    // Also when the file does not exist at all.
    let err = Session::connect(&sshd.target(), &sshd.options(sshd.path("nope/known_hosts")))
        .await
        .expect_err("must refuse");
    assert!(
        matches!(err, TransportError::HostKeyUnknown { .. }),
        "{err:?}"
    );
    assert!(!sshd.path("nope").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_new_records_the_key() {
    require_sshd!();
    let sshd = Sshd::start();
    let kh = sshd.path("ssh/known_hosts"); // directory created on demand
    let mut opts = sshd.options(kh.clone());
    opts.accept_new_host_keys = true;
    let s = connect(&sshd, &opts).await;
    assert_eq!(s.exec("true", false, None).await.expect("exec").status, 0);
    s.close().await.expect("close");
    let lines = common::lines(&kh);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0], sshd.known_hosts_line());
    // OpenSSH agrees with what we wrote.
    let found = common::run(
        std::process::Command::new("ssh-keygen")
            .arg("-F")
            .arg(format!("[127.0.0.1]:{}", sshd.port))
            .arg("-f")
            .arg(&kh),
    );
    assert!(found.contains("ssh-ed25519"), "{found}");
    // Now known: strict mode connects, and nothing more is appended.
    let s = connect(&sshd, &sshd.options(kh.clone())).await;
    assert_eq!(
        s.exec("echo hi", false, None)
            .await
            .expect("exec")
            .stdout_str(),
        "hi\n"
    );
    let s2 = connect(&sshd, &opts).await;
    drop(s2);
    assert_eq!(common::lines(&kh).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_known_hosts_entry_is_accepted() {
    require_sshd!();
    let sshd = Sshd::start();
    let kh = sshd.path("known_hosts");
    std::fs::write(&kh, format!("{}\n", sshd.known_hosts_line())).expect("kh");
    common::run(
        std::process::Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&kh),
    );
    let text = std::fs::read_to_string(&kh).expect("kh");
    assert!(text.starts_with("|1|"), "{text}");
    let s = connect(&sshd, &sshd.options(kh)).await;
    assert_eq!(
        s.exec("echo ok", false, None)
            .await
            .expect("exec")
            .stdout_str(),
        "ok\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_a_hard_error() {
    require_sshd!();
    let sshd = Sshd::start();
    let other = sshd.path("other_key");
    common::keygen(&other, "ed25519");
    let other_pub = std::fs::read_to_string(sshd.path("other_key.pub")).expect("pub");
    let mut parts = other_pub.split_whitespace();
    let line = format!(
        "# header\nunrelated.example {}\n[127.0.0.1]:{} {} {}\n",
        sshd.known_hosts_line().split_once(' ').expect("line").1,
        sshd.port,
        parts.next().expect("type"),
        parts.next().expect("key")
    );
    let kh = sshd.path("known_hosts");
    std::fs::write(&kh, &line).expect("kh");
    let expected_fp = common::fingerprint_of(&sshd.path("other_key.pub"));
    let found_fp = common::fingerprint_of(&sshd.host_pub);
    for accept_new in [false, true] {
        let mut opts = sshd.options(kh.clone());
        opts.accept_new_host_keys = accept_new;
        let err = Session::connect(&sshd.target(), &opts)
            .await
            .expect_err("must refuse changed key");
        match &err {
            TransportError::HostKeyChanged {
                host,
                expected,
                found,
                line,
                ..
            } => {
                assert_eq!(host, "testnode (127.0.0.1)");
                assert_eq!(expected, &expected_fp);
                assert_eq!(found, &found_fp);
                assert_eq!(*line, 3);
            }
            other => panic!("expected HostKeyChanged, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains(&expected_fp) && msg.contains(&found_fp),
            "{msg}"
        );
        assert!(
            msg.contains("host key changed") && msg.contains(&kh.display().to_string()),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        eprintln!("message: {msg}");
    }
    assert_eq!(
        std::fs::read_to_string(&kh).expect("kh"),
        line,
        "file must not change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn become_as_root_runs_without_sudo() {
    require_sshd!();
    let sshd = Sshd::start();
    if sshd.user != "root" {
        eprintln!("!!! skipping become test: not running as root");
        return;
    }
    let s = connect(&sshd, &sshd.trusting_options()).await;
    // With user root no sudo is involved: this works even where sudo is absent.
    let out = s
        .exec("id -u; ps -o comm= -p $PPID", true, None)
        .await
        .expect("exec");
    assert_eq!(out.status, 0, "{}", out.stderr_str());
    let text = out.stdout_str();
    assert!(text.starts_with("0\n"), "{text}");
    assert!(!text.contains("sudo"), "{text}");
    assert!(pgdeploy_transport::command_line(5, true, "root", None).starts_with("sh -c "));
    // The sudo form, run through the real remote shell, as root (sudo lets
    // root in without a password): proves the command line parses and the
    // loader reads its script from the input that follows.
    if std::path::Path::new("/usr/bin/sudo").exists() {
        let inner = "id -u; echo \"$0\"";
        let cmd = pgdeploy_transport::command_line(inner.len(), true, "someone", None);
        assert!(cmd.starts_with("sudo -n -- sh -c "), "{cmd}");
        let out = s
            .exec(&cmd, false, Some(inner.as_bytes()))
            .await
            .expect("exec sudo");
        assert_eq!(out.status, 0, "{}", out.stderr_str());
        assert_eq!(out.stdout_str(), "0\nsh\n");
    }
}

/// A TCP listener on a free loopback port, and that port.
async fn local_listener() -> (tokio::net::TcpListener, u16) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_to_local_echo_server() {
    require_sshd!();
    let sshd = Sshd::start();
    let (listener, port) = local_listener().await;
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (mut sock, _) = listener.accept().await.expect("accept");
            tokio::spawn(async move {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let s = connect(&sshd, &sshd.trusting_options()).await;
    let mut t1 = s.tunnel("127.0.0.1", port).await.expect("tunnel");
    let mut t2 = s.tunnel("localhost", port).await.expect("tunnel 2");
    t1.write_all(b"hello through ssh").await.expect("write");
    t2.write_all(b"second").await.expect("write");
    let mut buf = vec![0u8; 17];
    tokio::time::timeout(Duration::from_secs(10), t1.read_exact(&mut buf))
        .await
        .expect("timely")
        .expect("read");
    assert_eq!(&buf, b"hello through ssh");
    let mut buf2 = vec![0u8; 6];
    tokio::time::timeout(Duration::from_secs(10), t2.read_exact(&mut buf2))
        .await
        .expect("timely")
        .expect("read");
    assert_eq!(&buf2, b"second");
    // Big payload round trip.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let big2 = big.clone();
    let (mut r, mut w) = tokio::io::split(t1);
    let writer = tokio::spawn(async move {
        w.write_all(&big2).await.expect("write big");
        w
    });
    let mut back = vec![0u8; big.len()];
    tokio::time::timeout(Duration::from_secs(20), r.read_exact(&mut back))
        .await
        .expect("timely")
        .expect("read big");
    assert!(back == big);
    let _ = writer.await;
    server.await.expect("server");
    // exec still works alongside tunnels.
    assert_eq!(
        s.exec("echo x", false, None)
            .await
            .expect("exec")
            .stdout_str(),
        "x\n"
    );
    // A closed port yields an error, not a hang.
    let dead = common::free_port();
    let res = tokio::time::timeout(Duration::from_secs(10), s.tunnel("127.0.0.1", dead))
        .await
        .expect("timely");
    assert!(
        matches!(res, Err(TransportError::Channel { .. })),
        "{:?}",
        res.err()
    );
}

/// HTTP over a tunnel, as pgdeploy talks to Patroni's REST API: a tiny
/// local HTTP server answers a GET and a POST (with body) through sshd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_through_a_tunnel() {
    require_sshd!();
    let sshd = Sshd::start();
    let (listener, port) = local_listener().await;
    let server = tokio::spawn(async move {
        for _ in 0..2 {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            // Read the head and, for the POST, its 9-byte body.
            loop {
                let n = sock.read(&mut buf).await.expect("read");
                req.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&req).into_owned();
                if text.starts_with("GET") && text.ends_with("\r\n\r\n") {
                    break;
                }
                if text.ends_with("{\"to\": 2}") || n == 0 {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&req).into_owned();
            let body = format!("{{\"seen\": {:?}}}", text.lines().next().unwrap_or(""));
            let answer = format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            sock.write_all(answer.as_bytes()).await.expect("write");
        }
    });
    let s = connect(&sshd, &sshd.trusting_options()).await;
    let t = s.tunnel("127.0.0.1", port).await.expect("tunnel");
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        pgdeploy_transport::http::request(t, "GET", "127.0.0.1", "/patroni", None),
    )
    .await
    .expect("timely")
    .expect("GET");
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "{\"seen\": \"GET /patroni HTTP/1.1\"}");
    let t = s.tunnel("127.0.0.1", port).await.expect("tunnel");
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        pgdeploy_transport::http::request(
            t,
            "POST",
            "127.0.0.1",
            "/switchover",
            Some("{\"to\": 2}"),
        ),
    )
    .await
    .expect("timely")
    .expect("POST");
    assert_eq!(res.text(), "{\"seen\": \"POST /switchover HTTP/1.1\"}");
    server.await.expect("server");
}

/// A rustls server for `name`, with a certificate from a fresh rcgen CA,
/// and a client that trusts only that CA (as `src/tls.rs` makes it).
fn tls_pair(name: &str) -> (tokio_rustls::TlsAcceptor, tokio_rustls::TlsConnector) {
    let provider = || Arc::new(rustls::crypto::ring::default_provider());
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
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
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        tokio_rustls::TlsConnector::from(Arc::new(client)),
    )
}

/// HTTPS over a tunnel, as the day-2 commands reach Patroni and etcd: TLS
/// verified with the cluster CA and the host's name, a chunked answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_requests_through_a_tunnel() {
    require_sshd!();
    let sshd = Sshd::start();
    let (listener, port) = local_listener().await;
    let (acceptor, connector) = tls_pair("node1");
    let server = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.expect("accept");
        let mut tls = acceptor.accept(sock).await.expect("TLS accept");
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.ends_with(b"\r\n\r\n") {
            let n = tls.read(&mut buf).await.expect("read");
            assert!(n > 0, "the request ended early");
            req.extend_from_slice(&buf[..n]);
        }
        tls.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .expect("write");
        for piece in ["10\r\n{\"health\":\"true\"\r\n", "1\r\n}\r\n", "0\r\n\r\n"] {
            tls.write_all(piece.as_bytes()).await.expect("write");
            tls.flush().await.expect("flush");
        }
        tls.shutdown().await.expect("close_notify");
        String::from_utf8_lossy(&req).into_owned()
    });
    let s = connect(&sshd, &sshd.trusting_options()).await;
    let t = s.tunnel("127.0.0.1", port).await.expect("tunnel");
    let name = rustls::pki_types::ServerName::try_from("node1").expect("name");
    let res = tokio::time::timeout(Duration::from_secs(10), async {
        let tls = connector.connect(name, t).await.expect("TLS");
        pgdeploy_transport::http::request(tls, "GET", "127.0.0.1:2379", "/health", None).await
    })
    .await
    .expect("timely")
    .expect("GET");
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "{\"health\":\"true\"}");
    let req = server.await.expect("server");
    assert!(
        req.starts_with("GET /health HTTP/1.1\r\nHost: 127.0.0.1:2379\r\n"),
        "{req}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_sshd_mid_exec_is_an_error_not_a_hang() {
    require_sshd!();
    let mut sshd = Sshd::start();
    let s = connect(&sshd, &sshd.trusting_options()).await;
    let s2 = s.clone();
    let running = tokio::spawn(async move { s2.exec("echo started; sleep 60", false, None).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let t0 = Instant::now();
    sshd.kill();
    let res = tokio::time::timeout(Duration::from_secs(25), running)
        .await
        .expect("exec hung after sshd was killed")
        .expect("join");
    let err = res.expect_err("exec must fail");
    assert!(
        matches!(
            err,
            TransportError::Disconnected { .. } | TransportError::Channel { .. }
        ),
        "{err:?}"
    );
    eprintln!("error after {:?}: {err}", t0.elapsed());
    // Later execs on the dead session fail fast.
    let res = tokio::time::timeout(Duration::from_secs(5), s.exec("true", false, None))
        .await
        .expect("exec on dead session hung");
    assert!(
        matches!(res, Err(TransportError::Disconnected { .. })),
        "{res:?}"
    );
}

/// A TCP relay that can be frozen: it stops forwarding in both directions
/// but keeps the sockets open, like a host that vanished from the network.
struct FreezableRelay {
    port: u16,
    frozen: Arc<std::sync::atomic::AtomicBool>,
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen.load(std::sync::atomic::Ordering::SeqCst) {
            // Swallow everything and keep the sockets open (bounded).
            tokio::time::sleep(Duration::from_secs(60)).await;
            break;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

async fn relay(to_port: u16) -> FreezableRelay {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fz = frozen.clone();
    tokio::spawn(async move {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", to_port)).await else {
            return;
        };
        let (cr, cw) = client.into_split();
        let (sr, sw) = server.into_split();
        let a = tokio::spawn(pump(cr, sw, fz.clone()));
        let b = tokio::spawn(pump(sr, cw, fz));
        let _ = tokio::join!(a, b);
    });
    FreezableRelay { port, frozen }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_host_detected_by_keepalives() {
    require_sshd!();
    let sshd = Sshd::start();
    let relay = relay(sshd.port).await;
    let mut target = sshd.target();
    target.port = relay.port;
    // known_hosts entry for the relay's port.
    let kh = sshd.path("known_hosts_relay");
    let line = sshd.known_hosts_line().replacen(
        &format!(":{}", sshd.port),
        &format!(":{}", relay.port),
        1,
    );
    std::fs::write(&kh, format!("{line}\n")).expect("kh");
    let opts = sshd.options(kh); // keepalive every 1 s, 3 unanswered -> dead
    let s = Session::connect(&target, &opts)
        .await
        .expect("connect via relay");
    assert_eq!(
        s.exec("echo ok", false, None)
            .await
            .expect("exec")
            .stdout_str(),
        "ok\n"
    );
    let s2 = s.clone();
    let running = tokio::spawn(async move { s2.exec("sleep 60", false, None).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    relay
        .frozen
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let t0 = Instant::now();
    let res = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("exec hung on a vanished host")
        .expect("join");
    assert!(res.is_err(), "{res:?}");
    let waited = t0.elapsed();
    eprintln!(
        "vanished host detected after {waited:?}: {}",
        res.err().map(|e| e.to_string()).unwrap_or_default()
    );
    assert!(waited < Duration::from_secs(12), "took {waited:?}");
    let res = tokio::time::timeout(Duration::from_secs(5), s.exec("true", false, None))
        .await
        .expect("exec on dead session hung");
    assert!(
        matches!(res, Err(TransportError::Disconnected { .. })),
        "{res:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_key_errors() {
    require_sshd!();
    let sshd = Sshd::start();
    let opts = sshd.trusting_options();
    // A key the server does not know.
    let stranger = sshd.path("stranger");
    common::keygen(&stranger, "ed25519");
    let mut target = sshd.target();
    target.key_file = Some(stranger.clone());
    let err = Session::connect(&target, &opts)
        .await
        .expect_err("must fail");
    assert!(matches!(err, TransportError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains(&sshd.user), "{err}");
    // Missing key file.
    target.key_file = Some(sshd.path("does-not-exist"));
    let err = Session::connect(&target, &opts)
        .await
        .expect_err("must fail");
    assert!(matches!(err, TransportError::Key { .. }), "{err:?}");
    // Garbage key file.
    std::fs::write(sshd.path("garbage"), "not a key\n").expect("write");
    target.key_file = Some(sshd.path("garbage"));
    let err = Session::connect(&target, &opts)
        .await
        .expect_err("must fail");
    assert!(matches!(err, TransportError::Key { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_client_key_works() {
    require_sshd!();
    let sshd = Sshd::start();
    let rsa = sshd.path("id_rsa");
    common::keygen(&rsa, "rsa");
    let pubkey = std::fs::read_to_string(sshd.path("id_rsa.pub")).expect("pub");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(sshd.path("authorized_keys"))
        .expect("ak");
    std::io::Write::write_all(&mut f, pubkey.as_bytes()).expect("append");
    let mut target = sshd.target();
    target.key_file = Some(rsa);
    let s = Session::connect(&target, &sshd.trusting_options())
        .await
        .expect("rsa auth");
    assert_eq!(
        s.exec("echo rsa", false, None)
            .await
            .expect("exec")
            .stdout_str(),
        "rsa\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_errors_and_timeouts() {
    require_sshd!();
    // Nothing listening.
    let port = common::free_port();
    let mut target = pgdeploy_transport::Target::new("ghost", "127.0.0.1", "root");
    target.port = port;
    let dir = tempfile::tempdir().expect("tmp");
    let mut opts = ConnectOptions {
        known_hosts: dir.path().join("known_hosts"),
        connect_timeout: Duration::from_secs(2),
        ..ConnectOptions::default()
    };
    let err = Session::connect(&target, &opts).await.expect_err("refused");
    assert!(matches!(err, TransportError::Refused { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("host ghost (127.0.0.1): connection refused at 127.0.0.1:{port}")
    );
    // A server that accepts but never speaks: bounded by connect_timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    target.port = listener.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(sock);
    });
    opts.connect_timeout = Duration::from_secs(1);
    let t0 = Instant::now();
    let err = Session::connect(&target, &opts).await.expect_err("timeout");
    assert!(matches!(err, TransportError::Timeout { .. }), "{err:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    hold.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_then_exec_fails() {
    require_sshd!();
    let sshd = Sshd::start();
    let s = connect(&sshd, &sshd.trusting_options()).await;
    s.close().await.expect("close");
    let res = tokio::time::timeout(Duration::from_secs(5), s.exec("true", false, None))
        .await
        .expect("no hang");
    assert!(
        matches!(res, Err(TransportError::Disconnected { .. })),
        "{res:?}"
    );
    let res = tokio::time::timeout(Duration::from_secs(5), s.tunnel("127.0.0.1", 1))
        .await
        .expect("no hang");
    assert!(res.is_err());
    // Closing twice is fine.
    s.close().await.expect("close again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_process_holding_stdout_does_not_hang_exec() {
    require_sshd!();
    // Few session slots: each exec must release its slot although the
    // background process keeps the remote output open.
    let sshd = Sshd::start_with(SshdSettings {
        max_sessions: 2,
        ..Default::default()
    });
    let mut opts = sshd.trusting_options();
    opts.max_channels = 2;
    let s = connect(&sshd, &opts).await;
    for _ in 0..4 {
        let t0 = Instant::now();
        let out = tokio::time::timeout(
            Duration::from_secs(20),
            s.exec("sleep 30 & echo started; exit 4", false, None),
        )
        .await
        .expect("exec waited for the background process")
        .unwrap_or_else(|e| panic!("exec: {e}\n{}", sshd.log()));
        assert_eq!(out.status, 4);
        assert_eq!(out.stdout_str(), "started\n");
        assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    }
    // The session is still usable afterwards.
    let out = s.exec("echo next", false, None).await.expect("exec");
    assert_eq!(out.stdout_str(), "next\n");
}

/// A target reached through a jump host: the SSH session to the target
/// runs in a `direct-tcpip` channel of the jump host's session. Both host
/// keys are checked; a jump host that refuses forwarding fails the connect
/// with a message naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_host_carries_the_connection_and_both_host_keys_are_checked() {
    require_sshd!();
    let bastion = Sshd::start();
    let target_sshd = Sshd::start();
    // One known_hosts file knowing the target only, at first.
    let known_hosts = target_sshd.dir.path().join("kh_both");
    std::fs::write(
        &known_hosts,
        format!("{}\n", target_sshd.known_hosts_line()),
    )
    .expect("kh");
    let opts = target_sshd.options(known_hosts.clone());
    let mut target = target_sshd.target();
    target.jump = Some(Box::new(bastion.target()));
    match Session::connect(&target, &opts).await {
        Err(TransportError::HostKeyUnknown { host, .. }) => {
            assert!(
                host.contains(&bastion.port.to_string()) || host.contains("testnode"),
                "{host}"
            )
        }
        other => panic!("the jump host's key is checked: {other:?}"),
    }
    std::fs::write(
        &known_hosts,
        format!(
            "{}\n{}\n",
            target_sshd.known_hosts_line(),
            bastion.known_hosts_line()
        ),
    )
    .expect("kh");
    let session = Session::connect(&target, &opts)
        .await
        .unwrap_or_else(|e| panic!("{e}\nbastion log:\n{}", bastion.log()));
    let out = session
        .exec("echo through", false, None)
        .await
        .expect("exec");
    assert_eq!(out.stdout_str(), "through\n");
    session.close().await.expect("close");
    // The target's key is checked too: a wrong one is refused.
    std::fs::write(
        &known_hosts,
        format!(
            "{}\n{}\n",
            bastion.known_hosts_line(),
            bastion
                .known_hosts_line()
                .replace(&bastion.port.to_string(), &target_sshd.port.to_string())
        ),
    )
    .expect("kh");
    match Session::connect(&target, &opts).await {
        Err(TransportError::HostKeyChanged { .. }) => {}
        other => panic!("the target's key is checked: {other:?}"),
    }
    // A jump host that does not forward: the connect fails, naming it.
    let closed = Sshd::start_with(SshdSettings {
        tcp_forwarding: false,
        ..Default::default()
    });
    std::fs::write(
        &known_hosts,
        format!(
            "{}\n{}\n",
            target_sshd.known_hosts_line(),
            closed.known_hosts_line()
        ),
    )
    .expect("kh");
    let mut jump = closed.target();
    jump.name = "bastion".into();
    target.jump = Some(Box::new(jump));
    match Session::connect(&target, &opts).await {
        Err(TransportError::Connect { reason, .. }) => {
            assert!(reason.contains("jump host bastion"), "{reason}")
        }
        other => panic!("a jump host without forwarding: {other:?}"),
    }
}

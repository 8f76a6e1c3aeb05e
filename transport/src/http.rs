//! An HTTP/1.1 client for any byte stream, typically a [`Tunnel`] to a
//! host's local port (Patroni's REST API, etcd's `/health`, HAProxy's stats
//! page), plain or wrapped in TLS by the caller.
//!
//! The protocol is hyper's client connection (`hyper::client::conn::http1`):
//! one request per stream (`Connection: close`), the response read to its end
//! (`Content-Length`, `chunked`, or end of stream) and at most
//! [`MAX_RESPONSE`] bytes long. There is no timeout here: callers bound the
//! whole exchange (tunnel, TLS and request) with one `tokio::time::timeout`,
//! and dropping the future drops the connection.
//!
//! [`Tunnel`]: crate::Tunnel

use std::error::Error as StdError;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT,
};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest response body accepted (status pages are a few kilobytes).
pub const MAX_RESPONSE: usize = 16 << 20;

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Header names (lower case) and values, in the order received (the
    /// values of a repeated header follow its first one).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// HTTP failures.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Reading or writing the stream failed (TLS failures come as these too).
    #[error("HTTP I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The answer is not a well-formed HTTP/1.x response: not HTTP at all,
    /// cut short before its end, or larger than [`MAX_RESPONSE`].
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// The request cannot be sent as given: a method or path that HTTP does
    /// not allow, or a header value with control characters.
    #[error("invalid HTTP request {method} {path}: {reason}")]
    Request {
        /// The method asked for.
        method: String,
        /// The path asked for.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Sends one request (`method path`, an optional JSON body) for `host` over
/// `stream` and reads the whole response.
///
/// The request carries `Host: host`, `User-Agent: pgdeploy`, `Accept: */*`
/// and `Connection: close`; with a body, or for any method but GET, also
/// `Content-Type: application/json` and its `Content-Length`. Interim `1xx`
/// answers are skipped; answers to HEAD, 204 and 304 have no body.
pub async fn request<S>(
    stream: S,
    method: &str,
    host: &str,
    path: &str,
    json_body: Option<&str>,
) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    request_as(stream, method, host, path, json_body, None).await
}

/// [`request`] with HTTP basic authentication as `(user, password)`, when
/// given.
pub async fn request_as<S>(
    stream: S,
    method: &str,
    host: &str,
    path: &str,
    json_body: Option<&str>,
    basic_auth: Option<(&str, &str)>,
) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let req = build_request(method, host, path, json_body, basic_auth)?;
    let stream = Watched::new(stream);
    let failure = Arc::clone(&stream.failure);
    let sort = |e: hyper::Error| sort_failure(e, &failure, method, path);
    let (sender, conn) = http1::Builder::new()
        // Patroni and etcd do not care, but logs and captures read better.
        .title_case_headers(true)
        .handshake::<_, Full<Bytes>>(TokioIo::new(stream))
        .await
        .map_err(sort)?;
    let exchange = exchange(sender, req, sort);
    // The connection must be polled for the exchange to progress; it is not
    // spawned, so `stream` needs neither `Send` nor `'static`. Whichever ends
    // first decides: a connection that fails ends the request, one that ends
    // cleanly has handed over everything (the exchange then finishes at once).
    tokio::pin!(conn, exchange);
    tokio::select! {
        answer = &mut exchange => answer,
        ended = &mut conn => match ended {
            Ok(()) => exchange.await,
            Err(e) => Err(sort(e)),
        },
    }
}

/// Sends `req` and reads the whole answer (at most [`MAX_RESPONSE`] bytes
/// of body); `sort` turns hyper's failures into ours.
async fn exchange(
    mut sender: http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
    sort: impl Fn(hyper::Error) -> HttpError,
) -> Result<Response, HttpError> {
    let (parts, body) = sender.send_request(req).await.map_err(&sort)?.into_parts();
    let body = match Limited::new(body, MAX_RESPONSE).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return Err(match e.downcast::<hyper::Error>() {
                Ok(e) => sort(*e),
                Err(_) => HttpError::Malformed(format!(
                    "body of more than {MAX_RESPONSE} bytes is too big"
                )),
            })
        }
    };
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            (k.as_str().to_string(), value)
        })
        .collect();
    Ok(Response {
        status: parts.status.as_u16(),
        headers,
        body: body.to_vec(),
    })
}

/// The request for [`request`].
fn build_request(
    method: &str,
    host: &str,
    path: &str,
    json_body: Option<&str>,
    basic_auth: Option<(&str, &str)>,
) -> Result<Request<Full<Bytes>>, HttpError> {
    let invalid = |reason: String| HttpError::Request {
        method: method.to_string(),
        path: path.to_string(),
        reason,
    };
    let verb = Method::from_bytes(method.as_bytes()).map_err(|e| invalid(e.to_string()))?;
    let host = HeaderValue::from_str(host).map_err(|e| invalid(format!("host {host:?}: {e}")))?;
    let mut builder = Request::builder()
        .method(verb)
        .uri(path)
        .header(HOST, host)
        .header(USER_AGENT, "pgdeploy")
        .header(ACCEPT, "*/*")
        .header(CONNECTION, "close");
    if let Some((user, password)) = basic_auth {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut value = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|e| invalid(format!("authorization: {e}")))?;
        value.set_sensitive(true);
        builder = builder.header(AUTHORIZATION, value);
    }
    let body = json_body.unwrap_or("");
    if json_body.is_some() || method != "GET" {
        builder = builder
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_LENGTH, body.len());
    }
    builder
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .map_err(|e| invalid(e.to_string()))
}

/// Sorts a failure of hyper's into [`HttpError`]: the stream's own error
/// when the stream failed ([`HttpError::Io`]), a refused request when hyper
/// would not send it, and otherwise an answer that is not HTTP or was cut
/// short ([`HttpError::Malformed`]).
fn sort_failure(
    e: hyper::Error,
    failure: &Mutex<Option<std::io::Error>>,
    method: &str,
    path: &str,
) -> HttpError {
    if let Some(io) = failure.lock().ok().and_then(|mut f| f.take()) {
        return HttpError::Io(io);
    }
    if e.is_user() {
        return HttpError::Request {
            method: method.to_string(),
            path: path.to_string(),
            reason: chain(&e),
        };
    }
    HttpError::Malformed(chain(&e))
}

/// `e` and its causes, `: `-separated (hyper's own text leaves the cause out).
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

/// A stream that keeps its first I/O error for [`HttpError::Io`], handing
/// hyper a stand-in of the same kind and text: hyper reports every failure
/// as its own error, and this is how a failing stream (a reset, a TLS alert)
/// is told from a peer that answered nonsense or hung up too soon.
struct Watched<S> {
    inner: S,
    failure: Arc<Mutex<Option<std::io::Error>>>,
}

impl<S> Watched<S> {
    fn new(inner: S) -> Self {
        Watched {
            inner,
            failure: Arc::new(Mutex::new(None)),
        }
    }

    /// Keeps `e` (the first one only) and returns its stand-in.
    fn keep(&self, e: std::io::Error) -> std::io::Error {
        let stand_in = std::io::Error::new(e.kind(), e.to_string());
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(e);
        }
        stand_in
    }

    fn watch<T>(&self, poll: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match poll {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.keep(e))),
            other => other,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.watch(poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(poll)
    }
}

#[cfg(test)]
mod tests;

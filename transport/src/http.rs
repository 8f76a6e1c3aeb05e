//! A minimal HTTP/1.1 client for any byte stream, typically a [`Tunnel`]
//! to a host's local port (Patroni's REST API, HAProxy's stats page).
//!
//! One request per stream (`Connection: close`); the response is read to
//! its end (`Content-Length`, `chunked`, or end of stream).
//!
//! [`Tunnel`]: crate::Tunnel

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest response accepted (status pages are a few kilobytes).
const MAX_RESPONSE: usize = 16 << 20;

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Header names (lower case) and values, in order.
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
    /// Reading or writing the stream failed.
    #[error("HTTP I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The answer is not a well-formed HTTP/1.x response.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
}

/// Sends one request (`method path`, an optional JSON body) for `host` over
/// `stream` and reads the whole response.
pub async fn request<S>(
    mut stream: S,
    method: &str,
    host: &str,
    path: &str,
    json_body: Option<&str>,
) -> Result<Response, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: pgdeploy\r\nAccept: */*\r\nConnection: close\r\n"
    );
    let body = json_body.unwrap_or("");
    if json_body.is_some() || method != "GET" {
        head.push_str("Content-Type: application/json\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await?;
    read_response(&mut stream, method == "HEAD").await
}

/// Reads a response from `stream`; `no_body` for answers to HEAD.
async fn read_response<S>(stream: &mut S, no_body: bool) -> Result<Response, HttpError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::new();
    let header_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if read_more(stream, &mut buf).await? == 0 {
            return Err(HttpError::Malformed(
                "the stream ended before the headers did".into(),
            ));
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed(format!("status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| HttpError::Malformed(format!("status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| HttpError::Malformed(format!("header line {line:?}")))?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let mut rest = buf.split_off(header_end + 4);
    if no_body || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(response);
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = response
        .header("content-length")
        .map(|v| {
            v.parse::<usize>()
                .map_err(|_| HttpError::Malformed(format!("content-length {v:?}")))
        })
        .transpose()?;
    response.body = if chunked {
        read_chunked(stream, rest).await?
    } else if let Some(n) = length {
        if n > MAX_RESPONSE {
            return Err(HttpError::Malformed(format!(
                "body of {n} bytes is too big"
            )));
        }
        while rest.len() < n {
            if read_more(stream, &mut rest).await? == 0 {
                return Err(HttpError::Malformed(format!(
                    "body ended after {} of {n} bytes",
                    rest.len()
                )));
            }
        }
        rest.truncate(n);
        rest
    } else {
        while read_more(stream, &mut rest).await? > 0 {}
        rest
    };
    Ok(response)
}

/// De-chunks a `Transfer-Encoding: chunked` body; `buf` holds what was
/// already read past the headers.
async fn read_chunked<S>(stream: &mut S, mut buf: Vec<u8>) -> Result<Vec<u8>, HttpError>
where
    S: AsyncRead + Unpin,
{
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(i) = find(&buf, b"\r\n") {
                break i;
            }
            if read_more(stream, &mut buf).await? == 0 {
                return Err(HttpError::Malformed("chunk size line cut short".into()));
            }
        };
        let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| HttpError::Malformed(format!("chunk size {size_text:?}")))?;
        buf.drain(..line_end + 2);
        if size == 0 {
            return Ok(body);
        }
        if body.len() + size > MAX_RESPONSE {
            return Err(HttpError::Malformed("chunked body is too big".into()));
        }
        while buf.len() < size + 2 {
            if read_more(stream, &mut buf).await? == 0 {
                return Err(HttpError::Malformed("chunk cut short".into()));
            }
        }
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

async fn read_more<S>(stream: &mut S, buf: &mut Vec<u8>) -> Result<usize, HttpError>
where
    S: AsyncRead + Unpin,
{
    if buf.len() > MAX_RESPONSE {
        return Err(HttpError::Malformed("response is too big".into()));
    }
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(raw: &'static [u8], method: &str) -> (Result<Response, HttpError>, String) {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let server_task = tokio::spawn(async move {
            let mut req = vec![0u8; 4096];
            let n = server.read(&mut req).await.expect("read request");
            server.write_all(raw).await.expect("write");
            drop(server);
            String::from_utf8_lossy(&req[..n]).into_owned()
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
        assert!(req.starts_with("GET /patroni HTTP/1.1\r\nHost: 127.0.0.1:8008\r\n"));
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
        assert!(req.contains("Content-Length: 7\r\n"), "{req}");
        assert!(req.ends_with("\r\n\r\n{\"a\":1}"), "{req}");
    }

    #[tokio::test]
    async fn malformed_answers_are_errors() {
        for raw in [
            &b"SSH-2.0-OpenSSH\r\n\r\n"[..],
            &b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"[..],
            &b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n"[..],
            &b"HTTP/1.1 200"[..],
        ] {
            let (client, mut server) = tokio::io::duplex(1 << 16);
            tokio::spawn(async move {
                let mut req = vec![0u8; 4096];
                let _ = server.read(&mut req).await;
                let _ = server.write_all(raw).await;
            });
            let res = request(client, "GET", "h", "/", None).await;
            assert!(
                matches!(res, Err(HttpError::Malformed(_))),
                "{:?} for {:?}",
                res,
                String::from_utf8_lossy(raw)
            );
        }
    }
}

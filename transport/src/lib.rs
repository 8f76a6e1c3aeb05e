//! pgdeploy's SSH transport.
//!
//! One [`Session`] is one SSH connection to one host, kept for the whole run
//! and shared by every task that targets the host (it is `Clone`, `Send` and
//! `Sync`; all methods take `&self`). Concurrent commands are multiplexed as
//! SSH channels on that connection, at most [`ConnectOptions::max_channels`]
//! at a time so sshd's `MaxSessions` (10 by default) is never exceeded.
//!
//! Host keys are checked strictly against an OpenSSH `known_hosts` file (see
//! [`known_hosts`]); a changed key is always a hard error. Authentication uses
//! an explicit key file, or the ssh-agent and then `~/.ssh/id_ed25519` and
//! `~/.ssh/id_rsa`. Keepalives detect hosts that vanish mid-run.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pgdeploy_transport::TransportError> {
//! use pgdeploy_transport::{ConnectOptions, Session, Target};
//! let target = Target::new("node1", "10.0.0.11", "admin");
//! let session = Session::connect(&target, &ConnectOptions::default()).await?;
//! let out = session.exec("id -u", true, None).await?;
//! assert_eq!(out.stdout, b"0\n");
//! session.close().await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod http;
pub mod known_hosts;
pub mod ssh_config;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelStream, Disconnect, Preferred, Sig};
use tokio::sync::Semaphore;

use crate::known_hosts::{HostKeyStatus, KnownHosts};

pub use tokio::io::{AsyncRead, AsyncWrite};

/// Where and how to reach one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Inventory name of the host (used in messages), e.g. `node2`.
    pub name: String,
    /// Address or DNS name to connect to; also the name looked up in
    /// `known_hosts`.
    pub address: String,
    /// SSH port (22 usually).
    pub port: u16,
    /// Remote login user.
    pub user: String,
    /// Private key file (OpenSSH or PEM format, unencrypted, ed25519 or rsa).
    /// `None`: use the ssh-agent via `SSH_AUTH_SOCK`, then
    /// `~/.ssh/id_ed25519`, then `~/.ssh/id_rsa`.
    pub key_file: Option<PathBuf>,
    /// The jump host (bastion) the connection goes through, itself maybe
    /// reached through another: SSH to it, then a `direct-tcpip` channel
    /// from it to `address:port` carries this target's SSH session. Both
    /// host keys are checked against `known_hosts`.
    pub jump: Option<Box<Target>>,
}

impl Target {
    /// A target on port 22 authenticating with the agent / default keys.
    pub fn new(
        name: impl Into<String>,
        address: impl Into<String>,
        user: impl Into<String>,
    ) -> Target {
        Target {
            name: name.into(),
            address: address.into(),
            port: 22,
            user: user.into(),
            key_file: None,
            jump: None,
        }
    }

    /// `node2 (10.213.47.12)`, or just the address when the name is empty
    /// or equal to it.
    pub fn label(&self) -> String {
        if self.name.is_empty() || self.name == self.address {
            self.address.clone()
        } else {
            format!("{} ({})", self.name, self.address)
        }
    }
}

/// How to connect; shared by all hosts of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// OpenSSH `known_hosts` file. Default `~/.ssh/known_hosts`.
    pub known_hosts: PathBuf,
    /// Trust and record keys of hosts absent from `known_hosts` (like
    /// `StrictHostKeyChecking=accept-new`). A changed key is refused anyway.
    pub accept_new_host_keys: bool,
    /// Limit for TCP connect + handshake + authentication. Default 10 s.
    pub connect_timeout: Duration,
    /// Send a keepalive after this much silence from the server. Default 5 s.
    pub keepalive_interval: Duration,
    /// Drop the connection after this many unanswered keepalives. Default 3.
    pub keepalive_max: usize,
    /// Maximum concurrent `exec` channels on one connection. Default 8; keep
    /// it below sshd's `MaxSessions` (10 by default).
    pub max_channels: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            known_hosts: home_dir().join(".ssh").join("known_hosts"),
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(5),
            keepalive_max: 3,
            max_channels: 8,
        }
    }
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// Result of a remote command.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    /// Exit status; a command killed by signal N gives 128+N (-1 for a
    /// signal without a known number).
    pub status: i32,
    /// Everything the command wrote on stdout.
    pub stdout: Vec<u8>,
    /// Everything the command wrote on stderr.
    pub stderr: Vec<u8>,
    /// The command was stopped on the host at its time limit
    /// ([`Session::exec_limited`]).
    pub timed_out: bool,
}

impl ExecOutput {
    /// True when the exit status is 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }

    /// stdout as (lossy) UTF-8.
    pub fn stdout_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    /// stderr as (lossy) UTF-8.
    pub fn stderr_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }
}

/// Transport failures. `host` is the target's label, e.g. `node2 (10.213.47.12)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// TCP connection or SSH handshake failed.
    #[error("host {host}: cannot connect: {reason}")]
    Connect {
        /// Host label.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// Nothing listens on the SSH port (the host is up: it refused the TCP
    /// connection). sshd re-executes itself on reload, so this can be brief.
    #[error("host {host}: connection refused at {address}")]
    Refused {
        /// Host label.
        host: String,
        /// The `address:port` that refused.
        address: String,
    },
    /// Connecting (TCP + handshake + authentication) took too long.
    #[error("host {host}: connection timed out")]
    Timeout {
        /// Host label.
        host: String,
    },
    /// The host's key is not in `known_hosts` and new keys are not accepted.
    #[error(
        "host {host}: unknown host key {fingerprint}, not in {}; verify it and add it (e.g. ssh-keyscan), or allow accepting new host keys",
        known_hosts.display()
    )]
    HostKeyUnknown {
        /// Host label.
        host: String,
        /// `SHA256:...` fingerprint of the offered key.
        fingerprint: String,
        /// The `known_hosts` file consulted.
        known_hosts: PathBuf,
    },
    /// The host offered a key different from the recorded one. Never ignored.
    #[error(
        "host {host}: host key changed! known {expected}, offered {found}; remove the old line from {}:{line} if the change is expected",
        known_hosts.display()
    )]
    HostKeyChanged {
        /// Host label.
        host: String,
        /// `SHA256:...` fingerprint recorded in `known_hosts`.
        expected: String,
        /// `SHA256:...` fingerprint the server offered.
        found: String,
        /// The `known_hosts` file consulted.
        known_hosts: PathBuf,
        /// Line of the recorded key in that file.
        line: usize,
    },
    /// No key was accepted by the server for this user.
    #[error("host {host}: authentication failed for user {user} (tried: {tried})")]
    Auth {
        /// Host label.
        host: String,
        /// Remote user.
        user: String,
        /// Which keys were offered (key file, agent, default files).
        tried: String,
    },
    /// A private key file could not be loaded.
    #[error("cannot load private key {}: {reason}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A channel could not be opened or used (the connection is alive).
    #[error("host {host}: channel error: {reason}")]
    Channel {
        /// Host label.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// The connection is gone (closed, host vanished, keepalives unanswered).
    #[error("host {host}: connection lost")]
    Disconnected {
        /// Host label.
        host: String,
    },
}

/// POSIX shell quoting, the one every pgdeploy crate shares: words made of
/// safe characters stay bare, anything else is single-quoted.
pub use pgdeploy_text::quote;

/// The command string sent in the SSH `exec` request for a script of
/// `script_len` bytes: `sh -c LOADER`, or `sudo -n -- sh -c LOADER` when
/// `become_` and `user` is not root. The script itself is not in it (scripts
/// may hold secrets, and sudo logs its command lines while `ps` shows them
/// to every user): it comes first on stdin, followed by the command's own
/// input. The loader reads exactly `script_len` bytes, refuses to run a
/// script that did not arrive whole (exit 125), and evaluates it.
///
/// With a `limit`, the script runs under coreutils `timeout` instead, read
/// by `sh` from a pipe on fd 3 (its stdin stays the command's input):
/// `timeout` puts it in a process group of its own and, at the limit, sends
/// TERM to all of it, KILL 10 s later; the status is then 124 (or 137).
pub fn command_line(
    script_len: usize,
    become_: bool,
    user: &str,
    limit: Option<Duration>,
) -> String {
    let run = match limit {
        None => "eval \"${pgdeploy_script%.}\"".to_string(),
        Some(limit) => format!(
            "exec 4<&0; printf %s \"${{pgdeploy_script%.}}\" | \
             timeout -k 10 {} sh /dev/fd/3 3<&0 <&4 4<&-",
            limit.as_secs().max(1)
        ),
    };
    let loader = format!(
        "pgdeploy_script=$(head -c {script_len}; echo .); \
         if [ \"$(printf %s \"$pgdeploy_script\" | wc -c)\" -ne {} ]; then \
         echo 'pgdeploy: the script did not arrive whole; nothing was run' >&2; exit 125; fi; \
         {run}",
        script_len + 1
    );
    if become_ && user != "root" {
        format!("sudo -n -- sh -c {}", quote(&loader))
    } else {
        format!("sh -c {}", quote(&loader))
    }
}

/// A direct-tcpip tunnel through a [`Session`]: a byte stream to a
/// `host:port` as seen from the remote host.
pub type Tunnel = ChannelStream<client::Msg>;

/// Error type of the russh handler: lets a host-key verdict travel out of
/// `check_server_key` intact.
#[derive(Debug)]
enum HandlerError {
    Ssh(russh::Error),
    HostKey(TransportError),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

/// russh client handler: host key verification.
struct Client {
    label: String,
    address: String,
    port: u16,
    known_hosts_path: PathBuf,
    known: KnownHosts,
    accept_new: bool,
    /// Key accepted at the first key exchange; re-keying must present it again.
    accepted: Arc<Mutex<Option<PublicKey>>>,
}

impl Client {
    fn verify(&mut self, key: &PublicKey) -> Result<(), TransportError> {
        if let Ok(guard) = self.accepted.lock() {
            if let Some(prev) = guard.as_ref() {
                if prev.key_data() == key.key_data() {
                    return Ok(());
                }
            }
        }
        let found = known_hosts::fingerprint(key);
        match self.known.check(&self.address, self.port, key) {
            HostKeyStatus::Known => {}
            HostKeyStatus::Changed(known) => {
                let first = known.into_iter().next();
                return Err(TransportError::HostKeyChanged {
                    host: self.label.clone(),
                    expected: first
                        .as_ref()
                        .map(|k| k.fingerprint.clone())
                        .unwrap_or_default(),
                    found,
                    known_hosts: self.known_hosts_path.clone(),
                    line: first.map(|k| k.line).unwrap_or_default(),
                });
            }
            HostKeyStatus::Revoked(line) => {
                return Err(TransportError::Connect {
                    host: self.label.clone(),
                    reason: format!(
                        "host key {found} is marked @revoked in {}:{line}",
                        self.known_hosts_path.display()
                    ),
                });
            }
            HostKeyStatus::Unknown if self.accept_new => {
                known_hosts::append_entry(&self.known_hosts_path, &self.address, self.port, key)
                    .map_err(|e| TransportError::Connect {
                        host: self.label.clone(),
                        reason: format!(
                            "cannot record new host key {found} in {}: {e}",
                            self.known_hosts_path.display()
                        ),
                    })?;
                log::warn!(
                    "host {}: new host key {found} recorded in {}",
                    self.label,
                    self.known_hosts_path.display()
                );
            }
            HostKeyStatus::Unknown => {
                return Err(TransportError::HostKeyUnknown {
                    host: self.label.clone(),
                    fingerprint: found,
                    known_hosts: self.known_hosts_path.clone(),
                });
            }
        }
        if let Ok(mut guard) = self.accepted.lock() {
            *guard = Some(key.clone());
        }
        Ok(())
    }
}

impl client::Handler for Client {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                self.verify(key).map_err(HandlerError::HostKey)?;
                Ok(true)
            }
            // We never advertise certificate host-key algorithms.
            PublicKeyOrCertificate::Certificate(_) => {
                Err(HandlerError::HostKey(TransportError::Connect {
                    host: self.label.clone(),
                    reason: "server presented a host certificate, which is not supported".into(),
                }))
            }
        }
    }
}

struct Inner {
    handle: Handle<Client>,
    permits: Arc<Semaphore>,
    label: String,
    user: String,
    /// The jump host's session carrying this one (kept open while it is).
    via: Option<Session>,
}

/// One authenticated SSH connection to one host. Cheap to clone; clones share
/// the connection and the channel cap.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("host", &self.inner.label)
            .field("user", &self.inner.user)
            .field("closed", &self.inner.handle.is_closed())
            .finish()
    }
}

/// Host-key algorithms, those already recorded for the host first (as
/// OpenSSH does), so a host known by its ecdsa key is asked for that key.
fn preferred_key_algorithms(known: &KnownHosts, host: &str, port: u16) -> Preferred {
    let default = Preferred::default();
    let recorded = known.known_algorithms(host, port);
    let mut keys: Vec<_> = default
        .key
        .iter()
        .filter(|a| recorded.iter().any(|r| known_hosts::same_family(r, a)))
        .cloned()
        .collect();
    for a in default.key.iter() {
        if !keys.contains(a) {
            keys.push(a.clone());
        }
    }
    Preferred {
        key: Cow::Owned(keys),
        ..default
    }
}

/// A jump host's failure, said as the target's: `host node2 (10.0.0.12):
/// cannot connect: through jump host bastion: ...`. Host key errors stay
/// as they are (they name the jump host and must not be mistaken for
/// something else).
fn through(target: &Target, jump: &Target, e: TransportError) -> TransportError {
    match e {
        TransportError::HostKeyUnknown { .. }
        | TransportError::HostKeyChanged { .. }
        | TransportError::Key { .. } => e,
        other => TransportError::Connect {
            host: target.label(),
            reason: format!("through jump host {}: {other}", jump.label()),
        },
    }
}

/// The TCP connection to `target`'s SSH port.
async fn tcp_connect(
    target: &Target,
    label: &str,
) -> Result<tokio::net::TcpStream, TransportError> {
    let stream = tokio::net::TcpStream::connect((target.address.as_str(), target.port))
        .await
        .map_err(|e| {
            let address = format!("{}:{}", target.address, target.port);
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                TransportError::Refused {
                    host: label.to_string(),
                    address,
                }
            } else {
                TransportError::Connect {
                    host: label.to_string(),
                    reason: format!("{address}: {e}"),
                }
            }
        })?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The SSH handshake (host key checked by `handler`) over `stream`.
async fn handshake<S>(
    config: Arc<client::Config>,
    stream: S,
    handler: Client,
    label: &str,
) -> Result<Handle<Client>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    client::connect_stream(config, stream, handler)
        .await
        .map_err(|e| match e {
            HandlerError::HostKey(err) => err,
            HandlerError::Ssh(err) => TransportError::Connect {
                host: label.to_string(),
                reason: format!("ssh handshake: {err}"),
            },
        })
}

fn load_key(path: &Path) -> Result<PrivateKey, TransportError> {
    russh::keys::load_secret_key(path, None).map_err(|e| TransportError::Key {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl Session {
    /// Connects, verifies the host key and authenticates, through the
    /// target's jump hosts when it has any (each connected the same way,
    /// host key checked). Bounded by `opts.connect_timeout` per host.
    pub async fn connect(
        target: &Target,
        opts: &ConnectOptions,
    ) -> Result<Session, TransportError> {
        let via = match &target.jump {
            Some(jump) => Some(
                Box::pin(Session::connect(jump, opts))
                    .await
                    .map_err(|e| through(target, jump, e))?,
            ),
            None => None,
        };
        let label = target.label();
        let known = KnownHosts::load(&opts.known_hosts).map_err(|e| TransportError::Connect {
            host: label.clone(),
            reason: format!("cannot read {}: {e}", opts.known_hosts.display()),
        })?;
        // An explicit key that cannot be loaded is a configuration error:
        // report it before touching the network.
        let explicit_key = match &target.key_file {
            Some(path) => Some((path.clone(), load_key(path)?)),
            None => None,
        };
        let config = Arc::new(client::Config {
            preferred: preferred_key_algorithms(&known, &target.address, target.port),
            keepalive_interval: Some(opts.keepalive_interval),
            keepalive_max: opts.keepalive_max,
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        });
        let handler = Client {
            label: label.clone(),
            address: target.address.clone(),
            port: target.port,
            known_hosts_path: opts.known_hosts.clone(),
            known,
            accept_new: opts.accept_new_host_keys,
            accepted: Arc::new(Mutex::new(None)),
        };
        let fut = async {
            let mut handle = match &via {
                None => {
                    let stream = tcp_connect(target, &label).await?;
                    handshake(config, stream, handler, &label).await?
                }
                Some(bastion) => {
                    let stream = bastion
                        .inner
                        .handle
                        .channel_open_direct_tcpip(
                            target.address.as_str(),
                            u32::from(target.port),
                            "127.0.0.1",
                            0,
                        )
                        .await
                        .map_err(|e| TransportError::Connect {
                            host: label.clone(),
                            reason: format!(
                                "jump host {} cannot open a connection to {}:{}: {e}",
                                bastion.host(),
                                target.address,
                                target.port
                            ),
                        })?
                        .into_stream();
                    handshake(config, stream, handler, &label).await?
                }
            };
            authenticate(&mut handle, target, &label, explicit_key).await?;
            Ok::<_, TransportError>(handle)
        };
        let handle = match tokio::time::timeout(opts.connect_timeout, fut).await {
            Ok(res) => res?,
            Err(_) => return Err(TransportError::Timeout { host: label }),
        };
        Ok(Session {
            inner: Arc::new(Inner {
                handle,
                permits: Arc::new(Semaphore::new(opts.max_channels.max(1))),
                label,
                user: target.user.clone(),
                via,
            }),
        })
    }

    /// The host label used in messages, e.g. `node2 (10.213.47.12)`.
    pub fn host(&self) -> &str {
        &self.inner.label
    }

    /// True once the connection is known to be gone.
    pub fn is_closed(&self) -> bool {
        self.inner.handle.is_closed()
    }

    fn disconnected(&self) -> TransportError {
        TransportError::Disconnected {
            host: self.inner.label.clone(),
        }
    }

    fn channel_error(&self, what: &str, e: impl std::fmt::Display) -> TransportError {
        if self.inner.handle.is_closed() {
            self.disconnected()
        } else {
            TransportError::Channel {
                host: self.inner.label.clone(),
                reason: format!("{what}: {e}"),
            }
        }
    }

    /// Opens a session channel. sshd frees a session slot only after it has
    /// processed our reply to its channel close, so right after another
    /// exec finished the server may still count it and refuse the open
    /// ("no more sessions"): retry such refusals a few times with backoff.
    async fn open_session_channel(&self) -> Result<russh::Channel<client::Msg>, TransportError> {
        let mut delay = Duration::from_millis(20);
        let mut attempt = 1;
        loop {
            match self.inner.handle.channel_open_session().await {
                Ok(ch) => return Ok(ch),
                Err(russh::Error::ChannelOpenFailure(reason))
                    if attempt < 8 && reason != russh::ChannelOpenFailure::UnknownChannelType =>
                {
                    log::debug!(
                        "host {}: session channel refused ({reason:?}), retry {attempt} in {delay:?}",
                        self.inner.label
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                    attempt += 1;
                }
                Err(e) => return Err(self.channel_error("open session channel", e)),
            }
        }
    }

    /// Runs SCRIPT with `sh` on the host, sent on stdin ahead of `stdin`'s
    /// bytes (see [`command_line`]: no script appears in sudo's log or `ps`).
    /// With `become_` and a non-root user through `sudo -n` (passwordless
    /// sudo required). `stdin` bytes are sent, then EOF. Waits for the exit
    /// status and collects stdout and stderr. At most `max_channels` execs run
    /// at once per session; others wait for a slot.
    pub async fn exec(
        &self,
        script: &str,
        become_: bool,
        stdin: Option<&[u8]>,
    ) -> Result<ExecOutput, TransportError> {
        self.exec_watching_stderr(script, become_, stdin, &|_| {})
            .await
    }

    /// Like [`Session::exec`], and calls `on_stderr_line` with each complete
    /// line of stderr as soon as it arrives (for live progress); the lines
    /// are in the returned stderr too.
    pub async fn exec_watching_stderr(
        &self,
        script: &str,
        become_: bool,
        stdin: Option<&[u8]>,
        on_stderr_line: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<ExecOutput, TransportError> {
        self.exec_limited(script, become_, stdin, on_stderr_line, None)
            .await
    }

    /// Like [`Session::exec_watching_stderr`]; with a `limit`, the script is
    /// stopped on the host when it runs longer (all its processes, see
    /// [`command_line`]) and the output says [`ExecOutput::timed_out`].
    pub async fn exec_limited(
        &self,
        script: &str,
        become_: bool,
        stdin: Option<&[u8]>,
        on_stderr_line: &(dyn Fn(&str) + Send + Sync),
        limit: Option<Duration>,
    ) -> Result<ExecOutput, TransportError> {
        if script.contains('\0') {
            return Err(TransportError::Channel {
                host: self.inner.label.clone(),
                reason: "script contains a NUL byte".into(),
            });
        }
        let command = command_line(script.len(), become_, &self.inner.user, limit);
        let started = std::time::Instant::now();
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| self.disconnected())?;
        if self.inner.handle.is_closed() {
            return Err(self.disconnected());
        }
        let channel = self.open_session_channel().await?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.channel_error("exec request", e))?;
        let (mut reader, writer) = channel.split();
        let pumped = self
            .pump(&mut reader, &writer, script, stdin, on_stderr_line)
            .await;
        if !pumped.closed {
            // Release sshd's session slot: a channel is only freed on close.
            let _ = writer.close().await;
        }
        let mut out = self.exec_result(pumped).await?;
        out.timed_out = limit
            .is_some_and(|limit| matches!(out.status, 124 | 137) && started.elapsed() >= limit);
        Ok(out)
    }

    /// Sends the script and `stdin` while collecting the command's output,
    /// until the channel closes, the command exited and its output lingers
    /// open, or the server refuses the exec request.
    async fn pump(
        &self,
        reader: &mut russh::ChannelReadHalf,
        writer: &russh::ChannelWriteHalf<client::Msg>,
        script: &str,
        stdin: Option<&[u8]>,
        on_stderr_line: &(dyn Fn(&str) + Send + Sync),
    ) -> Pumped {
        // Feed stdin concurrently with reading output, so a command that
        // writes a lot before reading its input cannot deadlock us.
        let feed = async {
            writer.data(script.as_bytes()).await?;
            if let Some(data) = stdin {
                writer.data(data).await?;
            }
            writer.eof().await
        };
        tokio::pin!(feed);
        let mut feeding = true;

        let mut out = ExecOutput::default();
        let mut status: Option<i32> = None;
        let mut refused = false;
        let closed = loop {
            tokio::select! {
                res = &mut feed, if feeding => {
                    feeding = false;
                    if let Err(e) = res {
                        // The command may have exited without reading stdin;
                        // its status tells the story. Only log here.
                        log::debug!("host {}: sending stdin: {e}", self.inner.label);
                    }
                }
                next = next_msg(reader, status.is_some()) => match next {
                    Next::Closed | Next::Msg(ChannelMsg::Close) => break true,
                    Next::Lingering => {
                        log::debug!(
                            "host {}: command exited but its output stays open \
                             (background process?); not waiting longer",
                            self.inner.label
                        );
                        break false;
                    }
                    Next::Msg(ChannelMsg::Data { data }) => out.stdout.extend_from_slice(&data),
                    Next::Msg(ChannelMsg::ExtendedData { data, ext: 1 }) => {
                        let seen = out.stderr.len();
                        out.stderr.extend_from_slice(&data);
                        report_lines(&out.stderr, seen, &data, on_stderr_line);
                    }
                    Next::Msg(ChannelMsg::ExitStatus { exit_status }) => {
                        status = Some(i32::try_from(exit_status).unwrap_or(-1));
                    }
                    Next::Msg(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        status = Some(signal_status(&signal_name));
                    }
                    Next::Msg(ChannelMsg::Failure) if status.is_none() => {
                        refused = true;
                        break false;
                    }
                    Next::Msg(_) => {}
                },
            }
        };
        Pumped {
            out,
            status,
            refused,
            closed,
        }
    }

    /// The output with its exit status, or why there is none.
    async fn exec_result(&self, pumped: Pumped) -> Result<ExecOutput, TransportError> {
        let Pumped {
            mut out,
            status,
            refused,
            ..
        } = pumped;
        if refused {
            return Err(TransportError::Channel {
                host: self.inner.label.clone(),
                reason: "the server refused the exec request".into(),
            });
        }
        match status {
            Some(s) => {
                out.status = s;
                Ok(out)
            }
            None => {
                // Give the session task a moment to notice a dead socket, so
                // we report "connection lost" rather than a vague channel error.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(self.channel_error("command ended without exit status", "channel closed"))
            }
        }
    }

    /// Opens a direct-tcpip tunnel to `host`:`port` as seen from the remote
    /// host (e.g. `127.0.0.1:5432`). The returned stream implements
    /// `AsyncRead + AsyncWrite`; dropping it closes the channel. Tunnels do
    /// not count against `max_channels` (sshd's `MaxSessions` only limits
    /// session channels).
    pub async fn tunnel(&self, host: &str, port: u16) -> Result<Tunnel, TransportError> {
        if self.inner.handle.is_closed() {
            return Err(self.disconnected());
        }
        let channel = self
            .inner
            .handle
            .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
            .await
            .map_err(|e| self.channel_error(&format!("tunnel to {host}:{port}"), e))?;
        Ok(channel.into_stream())
    }

    /// Closes the connection (SSH disconnect message), then the jump
    /// host's that carried it. Later calls on this session (and its clones)
    /// fail with [`TransportError::Disconnected`].
    pub async fn close(&self) -> Result<(), TransportError> {
        self.inner.permits.close();
        let result = if self.inner.handle.is_closed() {
            Ok(())
        } else {
            self.inner
                .handle
                .disconnect(Disconnect::ByApplication, "pgdeploy done", "en")
                .await
                .map_err(|_| self.disconnected())
        };
        if let Some(via) = &self.inner.via {
            let _ = Box::pin(via.close()).await;
        }
        result
    }
}

/// What [`Session::pump`] collected from one exec's channel.
struct Pumped {
    /// stdout and stderr (the status is set by [`Session::exec_result`]).
    out: ExecOutput,
    /// The exit status, or 128 + signal.
    status: Option<i32>,
    /// The server refused the exec request.
    refused: bool,
    /// The channel closed; when not, it must be closed to free sshd's slot.
    closed: bool,
}

/// Calls `on_line` with every line that `data`, just appended to `all`
/// (which held `seen` bytes before), completed.
fn report_lines(all: &[u8], seen: usize, data: &[u8], on_line: &(dyn Fn(&str) + Send + Sync)) {
    let Some(last_newline) = data.iter().rposition(|b| *b == b'\n') else {
        return;
    };
    let start = all[..seen]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    let complete = &all[start..seen + last_newline];
    for line in complete.split(|b| *b == b'\n') {
        on_line(&String::from_utf8_lossy(line));
    }
}

/// How long to keep reading after the exit status arrived while the channel
/// stays open: a background process that inherited stdout/stderr (e.g.
/// `pg_ctl start` without `-l`) would otherwise keep the channel open forever.
/// Output still in flight arrives well within this; each message restarts it.
const LINGER_AFTER_EXIT: Duration = Duration::from_secs(2);

enum Next {
    Msg(ChannelMsg),
    Closed,
    Lingering,
}

async fn next_msg(reader: &mut russh::ChannelReadHalf, exited: bool) -> Next {
    if exited {
        match tokio::time::timeout(LINGER_AFTER_EXIT, reader.wait()).await {
            Ok(Some(m)) => Next::Msg(m),
            Ok(None) => Next::Closed,
            Err(_) => Next::Lingering,
        }
    } else {
        match reader.wait().await {
            Some(m) => Next::Msg(m),
            None => Next::Closed,
        }
    }
}

/// 128 + signal number, as a shell reports it; -1 when unknown.
fn signal_status(sig: &Sig) -> i32 {
    let n = match sig {
        Sig::HUP => 1,
        Sig::INT => 2,
        Sig::QUIT => 3,
        Sig::ILL => 4,
        Sig::ABRT => 6,
        Sig::FPE => 8,
        Sig::KILL => 9,
        Sig::USR1 => 10,
        Sig::SEGV => 11,
        Sig::PIPE => 13,
        Sig::ALRM => 14,
        Sig::TERM => 15,
        Sig::Custom(name) => match name.as_str() {
            "BUS" => 7,
            "USR2" => 12,
            "CHLD" => 17,
            "CONT" => 18,
            "STOP" => 19,
            "TSTP" => 20,
            "XCPU" => 24,
            "XFSZ" => 25,
            "SYS" => 31,
            _ => return -1,
        },
    };
    128 + n
}

/// Public-key authentication: the explicit key, or agent keys then default
/// key files.
async fn authenticate(
    handle: &mut Handle<Client>,
    target: &Target,
    label: &str,
    explicit_key: Option<(PathBuf, PrivateKey)>,
) -> Result<(), TransportError> {
    let user = target.user.as_str();
    let mut tried: Vec<String> = Vec::new();
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| during_auth(label, e))?
        .flatten();

    if let Some((path, key)) = explicit_key {
        tried.push(path.display().to_string());
        if try_key(handle, user, key, rsa_hash, label).await? {
            return Ok(());
        }
        return Err(TransportError::Auth {
            host: label.to_string(),
            user: user.to_string(),
            tried: tried.join(", "),
        });
    }
    if std::env::var_os("SSH_AUTH_SOCK").is_some()
        && try_agent(handle, user, rsa_hash, label, &mut tried).await?
    {
        return Ok(());
    }
    if try_default_keys(handle, user, rsa_hash, label, &mut tried).await? {
        return Ok(());
    }
    Err(TransportError::Auth {
        host: label.to_string(),
        user: user.to_string(),
        tried: if tried.is_empty() {
            "no key: no ssh-agent and no ~/.ssh/id_ed25519 or id_rsa".into()
        } else {
            tried.join(", ")
        },
    })
}

/// A connection error during authentication.
fn during_auth(label: &str, e: russh::Error) -> TransportError {
    TransportError::Connect {
        host: label.to_string(),
        reason: format!("during authentication: {e}"),
    }
}

/// Offers one private key; true when the server accepted it.
async fn try_key(
    handle: &mut Handle<Client>,
    user: &str,
    key: PrivateKey,
    rsa_hash: Option<russh::keys::HashAlg>,
    label: &str,
) -> Result<bool, TransportError> {
    let res = handle
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), rsa_hash))
        .await
        .map_err(|e| during_auth(label, e))?;
    Ok(res.success())
}

/// Offers each key of the ssh-agent (`SSH_AUTH_SOCK`) in turn, adding them
/// to `tried`; true when the server accepted one. An agent that cannot be
/// reached or listed is logged and skipped.
async fn try_agent(
    handle: &mut Handle<Client>,
    user: &str,
    rsa_hash: Option<russh::keys::HashAlg>,
    label: &str,
    tried: &mut Vec<String>,
) -> Result<bool, TransportError> {
    let mut agent = match AgentClient::connect_env().await {
        Ok(agent) => agent,
        Err(e) => {
            log::warn!("ssh-agent (SSH_AUTH_SOCK): {e}");
            return Ok(false);
        }
    };
    if let Some(binding) = handle.agent_session_binding() {
        if let Err(e) = agent.bind_session(binding, false).await {
            log::debug!("ssh-agent session-bind: {e}");
        }
    }
    let ids = match agent.request_identities().await {
        Ok(ids) => ids,
        Err(e) => {
            log::warn!("ssh-agent: cannot list keys: {e}");
            return Ok(false);
        }
    };
    for id in ids {
        let AgentIdentity::PublicKey { key, comment } = id else {
            continue;
        };
        tried.push(format!(
            "agent key {}",
            if comment.is_empty() {
                known_hosts::fingerprint(&key)
            } else {
                comment
            }
        ));
        let hash = if key.algorithm().is_rsa() {
            rsa_hash
        } else {
            None
        };
        match handle
            .authenticate_publickey_with(user, key, hash, &mut agent)
            .await
        {
            Ok(res) if res.success() => return Ok(true),
            Ok(_) => {}
            Err(e) => log::debug!("ssh-agent signing failed: {e}"),
        }
        if handle.is_closed() {
            return Err(TransportError::Disconnected {
                host: label.to_string(),
            });
        }
    }
    Ok(false)
}

/// Offers `~/.ssh/id_ed25519` then `~/.ssh/id_rsa`, those that exist and
/// load, adding them to `tried`; true when the server accepted one.
async fn try_default_keys(
    handle: &mut Handle<Client>,
    user: &str,
    rsa_hash: Option<russh::keys::HashAlg>,
    label: &str,
    tried: &mut Vec<String>,
) -> Result<bool, TransportError> {
    let ssh_dir = home_dir().join(".ssh");
    for name in ["id_ed25519", "id_rsa"] {
        let path = ssh_dir.join(name);
        if !path.exists() {
            continue;
        }
        let key = match load_key(&path) {
            Ok(k) => k,
            Err(e) => {
                log::warn!("{e}");
                continue;
            }
        };
        tried.push(path.display().to_string());
        if try_key(handle, user, key, rsa_hash, label).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn assert_send_sync<T: Send + Sync>() {}

    fn assert_stream<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>() {}

    #[test]
    fn session_is_send_sync() {
        assert_send_sync::<Session>();
        assert_send_sync::<TransportError>();
        assert_stream::<Tunnel>();
    }

    #[test]
    fn quote_basics() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("abc"), "abc", "safe words stay bare");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert!(command_line(2, false, "admin", None)
            .starts_with("sh -c 'pgdeploy_script=$(head -c 2;"));
        assert!(
            command_line(2, true, "admin", None).starts_with("sudo -n -- sh -c 'pgdeploy_script=")
        );
        assert!(command_line(2, true, "root", None).starts_with("sh -c '"));
    }

    /// Runs `sh -c COMMAND_LINE` here with `input` on stdin.
    fn run_loader(command: &str, input: &[u8]) -> std::process::Output {
        use std::io::Write as _;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run sh");
        let mut pipe = child.stdin.take().expect("stdin");
        let _ = pipe.write_all(input);
        drop(pipe);
        child.wait_with_output().expect("wait")
    }

    #[test]
    fn the_script_comes_on_stdin_before_the_input_and_only_whole() {
        let script = "set -e\nread -r first\nsecret=s3cr3t\nprintf '%s|' \"$first\"\ncat\n";
        let command = command_line(script.len(), false, "u", None);
        assert!(
            !command.contains("s3cr3t"),
            "the script is not in the command line"
        );
        let out = run_loader(&command, format!("{script}one\ntwo\n").as_bytes());
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "one|two\n");
        // Cut short (a dropped connection): nothing of it runs.
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("ran");
        let script = format!(
            "touch {}\nrm -rf /nonexistent/deep/path\n",
            marker.display()
        );
        let command = command_line(script.len(), false, "u", None);
        let out = run_loader(&command, &script.as_bytes()[..script.len() - 12]);
        assert_eq!(out.status.code(), Some(125), "{out:?}");
        assert!(!marker.exists(), "a partial script ran");
    }

    /// With a limit: the same stdin, the status passed through, and a
    /// script that runs too long stopped with every process it started.
    #[test]
    fn a_limited_script_keeps_its_input_and_is_stopped_whole_at_its_limit() {
        let script = "set -e\nread -r first\nprintf '%s|' \"$first\"\ncat\nexit 3\n";
        let command = command_line(script.len(), false, "u", Some(Duration::from_secs(20)));
        let out = run_loader(&command, format!("{script}one\ntwo\n").as_bytes());
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "one|two\n");

        let dir = tempfile::tempdir().expect("tempdir");
        let pid = dir.path().join("pid");
        let script = format!(
            "sleep 60 &\necho $! > {}\nwait\necho not stopped\n",
            pid.display()
        );
        let command = command_line(script.len(), false, "u", Some(Duration::from_secs(1)));
        let started = std::time::Instant::now();
        let out = run_loader(&command, script.as_bytes());
        assert_eq!(out.status.code(), Some(124), "{out:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        let child = std::fs::read_to_string(&pid)
            .expect("pid")
            .trim()
            .to_string();
        // Gone, or a zombie its new parent has not reaped yet.
        let running = || {
            std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|stat| {
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                !state.starts_with('Z')
            })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!running(), "the script's child {child} still runs");
    }

    /// Round-trips hostile strings through a real `sh`, the way the remote
    /// login shell parses the exec command (`sh -c "sh -c 'LOADER'"`) and
    /// the loader its script from stdin, where SCRIPT is
    /// `printf %s 'PAYLOAD'`. The output must be PAYLOAD, byte for
    /// byte, and nothing may be executed.
    #[test]
    fn quote_is_shell_safe() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("pwned");
        let m = marker.display().to_string();
        let hostile = [
            format!("$(touch {m})"),
            format!("`touch {m}`"),
            format!("; touch {m}"),
            format!("' ; touch {m} ; '"),
            format!("\"; touch {m}; \""),
            format!("'\"'\"'; touch {m}"),
            format!("a\nb\ntouch {m}\n"),
            format!("\\'; touch {m} #"),
            format!("${{IFS}}touch${{IFS}}{m}"),
            "!!  *  ~ $HOME %s \\ \t end".to_string(),
            "'''".to_string(),
            String::new(),
            "ünïcødé ✓".to_string(),
        ];
        for payload in &hostile {
            let script = format!("printf %s {}", quote(payload));
            let remote = command_line(script.len(), false, "u", None);
            let out = run_loader(&remote, script.as_bytes());
            assert!(out.status.success(), "sh failed for {payload:?}: {out:?}");
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                *payload,
                "remote command: {remote}"
            );
            assert!(!marker.exists(), "payload {payload:?} executed code");
        }
    }

    #[test]
    fn stderr_lines_are_reported_when_complete() {
        let seen = Mutex::new(Vec::new());
        let on_line = |l: &str| seen.lock().expect("lock").push(l.to_string());
        let mut all = Vec::new();
        for chunk in [&b"wai"[..], b"ting 1\nwaiting", b" 2\n", b"a\nb\nrest"] {
            let before = all.len();
            all.extend_from_slice(chunk);
            report_lines(&all, before, chunk, &on_line);
        }
        assert_eq!(
            *seen.lock().expect("lock"),
            vec!["waiting 1", "waiting 2", "a", "b"]
        );
    }

    #[test]
    fn signals_map_to_shell_status() {
        assert_eq!(signal_status(&Sig::KILL), 137);
        assert_eq!(signal_status(&Sig::TERM), 143);
        assert_eq!(signal_status(&Sig::Custom("USR2".into())), 140);
        assert_eq!(signal_status(&Sig::Custom("WEIRD".into())), -1);
    }

    #[test]
    fn error_messages_are_one_line() {
        let e = TransportError::HostKeyChanged {
            host: "node2 (10.213.47.12)".into(),
            expected: "SHA256:old".into(),
            found: "SHA256:new".into(),
            known_hosts: PathBuf::from("/root/.ssh/known_hosts"),
            line: 7,
        };
        let s = e.to_string();
        assert_eq!(
            s,
            "host node2 (10.213.47.12): host key changed! known SHA256:old, offered SHA256:new; remove the old line from /root/.ssh/known_hosts:7 if the change is expected"
        );
        assert!(!s.contains('\n'));
    }

    #[test]
    fn target_label() {
        let mut t = Target::new("node2", "10.213.47.12", "admin");
        assert_eq!(t.label(), "node2 (10.213.47.12)");
        t.name = t.address.clone();
        assert_eq!(t.label(), "10.213.47.12");
    }
}

//! Day-2 operations: pgdeploy talks to a running cluster itself, through
//! SSH tunnels (direct-tcpip channels) over its own connections to the
//! hosts, so the workstation needs nothing but SSH access.
//!
//! [`Cluster`] knows the hosts and ports from the inventory (and the
//! playbook's role defaults); it reaches Patroni's REST API with a small
//! HTTP client, PostgreSQL with tokio-postgres (`connect_raw` over the
//! tunnel), etcd's `/health`, and HAProxy's stats page, each on the host's
//! own loopback. Patroni, etcd and PostgreSQL are reached over TLS verified
//! with the cluster CA (`tls_ca_cert`) and the host's inventory name. [`status`] reports the cluster's health, [`ops`] performs
//! switchover, restart and reinit, and [`rolling`] restarts members for
//! restart-only parameter changes, replicas first and the leader last.

pub mod backup;
pub mod dynamic;
pub mod etcd;
pub mod major;
pub mod ops;
pub mod page;
pub mod restore;
pub mod rolling;
pub mod status;
pub mod update;
pub mod upgrade_os;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use pgdeploy_transport::{http, ConnectOptions, Session};
use serde::Deserialize;
use serde_json::Value as Json;

use pgdeploy_engine::inventory::Inventory;

use crate::contract::{self, Group, Stack, Var};

/// Failures of day-2 operations, each naming the host or member concerned.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A host could not be reached over SSH or a tunnel could not be opened.
    #[error("{0}")]
    Transport(#[from] pgdeploy_transport::TransportError),
    /// An HTTP exchange with a host's service failed.
    #[error("{host}: {service}: {reason}")]
    Http {
        /// The host.
        host: String,
        /// `Patroni GET /cluster`, `etcd /health`, ...
        service: String,
        /// What went wrong.
        reason: String,
    },
    /// A PostgreSQL query through a tunnel failed.
    #[error("{host}: PostgreSQL: {reason}")]
    Sql {
        /// The host.
        host: String,
        /// What went wrong.
        reason: String,
    },
    /// The inventory lacks something the operation needs.
    #[error("{0}")]
    Input(String),
    /// The last [`Cluster::probe`] found the host unreachable; it is not
    /// asked again until a probe reaches it.
    #[error("{host}: unreachable ({reason})")]
    Unreachable {
        /// The host.
        host: String,
        /// Why the probe failed.
        reason: String,
    },
    /// A pre-check or a service of the cluster refused the operation, or
    /// the cluster did not reach the expected state in time.
    #[error("{0}")]
    Refused(String),
    /// A command run on a host exited with a failure.
    #[error("{host}: `{command}` failed (exit {status}): {stderr}")]
    CommandFailed {
        /// The host.
        host: String,
        /// The command (its first line, for a script).
        command: String,
        /// Its exit status.
        status: i32,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The dynamic configuration is refused, or not in force after apply.
    #[error("{0}")]
    Dynamic(#[from] dynamic::DynamicError),
    /// A service answered, but not in the form pgdeploy reads.
    #[error("{host}: {service}: could not parse the answer ({reason}): {answer}")]
    Unparsable {
        /// The host.
        host: String,
        /// `Patroni GET /cluster`, `etcd member list`, ...
        service: String,
        /// The parser's complaint.
        reason: String,
        /// The answer (shortened).
        answer: String,
    },
}

/// At most 300 characters of a service's answer, for an error message.
pub fn shortened(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// A contract variable the inventory lacks or gives wrongly.
impl From<contract::VarError> for ClusterError {
    fn from(e: contract::VarError) -> Self {
        ClusterError::Input(e.to_string())
    }
}

/// One Patroni member as `GET /cluster` lists it.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct PatroniMember {
    /// Member name (the inventory name).
    pub name: String,
    /// `leader`, `replica`, `sync_standby`, ...
    pub role: String,
    /// `running`, `streaming`, `starting`, `stopped`, `start failed`, ...
    pub state: String,
    /// The member's address.
    #[serde(default)]
    pub host: String,
    /// The timeline it is on.
    #[serde(default)]
    pub timeline: Option<u64>,
    /// Replication lag in bytes (replicas; Patroni may say `"unknown"`).
    #[serde(default)]
    pub lag: Option<Json>,
    /// A parameter change waits for a restart.
    #[serde(default)]
    pub pending_restart: bool,
}

impl PatroniMember {
    /// Whether this member holds the leader lock.
    pub fn is_leader(&self) -> bool {
        matches!(self.role.as_str(), "leader" | "standby_leader")
    }

    /// The lag in bytes when Patroni knows it.
    pub fn lag_bytes(&self) -> Option<u64> {
        self.lag.as_ref().and_then(Json::as_u64)
    }
}

/// `GET /cluster`.
#[derive(Debug, Clone, Deserialize)]
pub struct PatroniCluster {
    /// The members that hold a key in the DCS.
    pub members: Vec<PatroniMember>,
}

impl PatroniCluster {
    /// The leader, if there is one.
    pub fn leader(&self) -> Option<&PatroniMember> {
        self.members.iter().find(|m| m.is_leader())
    }

    /// A member by name.
    pub fn member(&self, name: &str) -> Option<&PatroniMember> {
        self.members.iter().find(|m| m.name == name)
    }
}

/// `GET /patroni` of one member (the fields pgdeploy reads).
#[derive(Debug, Clone, Deserialize)]
pub struct PatroniNode {
    /// `running`, `starting`, ...
    pub state: String,
    /// `master`/`primary` or `replica`.
    pub role: String,
    /// When its PostgreSQL last started.
    #[serde(default)]
    pub postmaster_start_time: Option<String>,
    /// Timeline.
    #[serde(default)]
    pub timeline: Option<u64>,
    /// A parameter change waits for a restart.
    #[serde(default)]
    pub pending_restart: bool,
    /// On the leader: its walsenders.
    #[serde(default)]
    pub replication: Vec<WalSender>,
    /// The running server's version number (`150020` for 15.20).
    #[serde(default)]
    pub server_version: Option<u64>,
}

/// One walsender on the leader, as `GET /patroni` lists it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct WalSender {
    /// The replica's member name.
    pub application_name: String,
    /// `streaming`, `catchup`, ...
    pub state: String,
    /// `async`, `sync`, `quorum`, `potential`.
    #[serde(default)]
    pub sync_state: String,
}

/// A running cluster as the inventory describes it, with one SSH
/// connection per host (opened on first use, kept for the whole command).
pub struct Cluster {
    stack: Stack,
    options: ConnectOptions,
    sessions: tokio::sync::Mutex<BTreeMap<String, Session>>,
    unreachable: std::sync::Mutex<BTreeMap<String, String>>,
    /// Each host's facts, read once when a variable needs them.
    facts: tokio::sync::Mutex<BTreeMap<String, Json>>,
    /// Trusts the cluster CA (`tls_ca_cert`) only: Patroni, etcd and
    /// PostgreSQL are verified with it. `None` without a CA (a cluster
    /// deployed before TLS); an error when the CA certificate is unusable.
    tls: Result<Option<Arc<rustls::ClientConfig>>, String>,
}

/// One HTTP request of [`Cluster::exchange`].
struct Call<'a> {
    method: &'a str,
    path: &'a str,
    body: Option<&'a str>,
    /// Basic authentication (user, password).
    auth: Option<(&'a str, &'a str)>,
    /// How long the exchange may take.
    limit: Duration,
}

/// How long one HTTP exchange or query through a tunnel may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Patroni may take to answer an operation (restart, switchover,
/// reinitialize): it answers when the operation is done, and a restart on
/// a busy host takes longer than a plain answer.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(180);

impl Cluster {
    /// A cluster as the stack contract describes it (inventory, role
    /// defaults, extra vars and secrets).
    pub fn new(stack: Stack) -> Cluster {
        let tls = match stack
            .extra()
            .get(crate::tls::CA_CERT_VAR)
            .and_then(Json::as_str)
        {
            Some(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => {
                crate::tls::client_config(pem).map(Some)
            }
            _ => Ok(None),
        };
        Cluster {
            stack,
            options: ConnectOptions::default(),
            sessions: tokio::sync::Mutex::new(BTreeMap::new()),
            unreachable: std::sync::Mutex::new(BTreeMap::new()),
            facts: tokio::sync::Mutex::new(BTreeMap::new()),
            tls,
        }
    }

    /// Records unknown host keys instead of refusing them.
    pub fn accept_new_host_keys(&mut self, accept: bool) {
        self.options.accept_new_host_keys = accept;
    }

    /// The stack contract's view of this cluster.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// A contract variable as `host` sees it.
    pub fn var(&self, host: &str, var: Var) -> Option<Json> {
        self.stack.var(host, var)
    }

    /// A string contract variable; `None` when unset or not a string.
    pub fn var_str(&self, host: &str, var: Var) -> Option<String> {
        self.stack.string(host, var)
    }

    /// A port of the contract; missing or malformed is an input error.
    pub fn port(&self, host: &str, var: Var) -> Result<u16, ClusterError> {
        Ok(self.stack.port(host, var)?)
    }

    /// The hosts of an inventory group (empty when it does not exist).
    pub fn group(&self, group: Group) -> Vec<String> {
        self.stack.hosts(group)
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        self.stack.inventory()
    }

    /// The cluster's name (`cluster_name`).
    pub fn name(&self) -> String {
        self.group(Group::Postgres)
            .first()
            .and_then(|h| self.var_str(h, contract::CLUSTER_NAME))
            .unwrap_or_default()
    }

    /// The SSH connection to `host`, opened on first use; refused at once
    /// while the last [`Cluster::probe`] found the host unreachable.
    pub async fn session(&self, host: &str) -> Result<Session, ClusterError> {
        let down = self
            .unreachable
            .lock()
            .map(|d| d.get(host).cloned())
            .unwrap_or_default();
        if let Some(reason) = down {
            return Err(ClusterError::Unreachable {
                host: host.to_string(),
                reason,
            });
        }
        self.connect(host).await
    }

    /// The cached connection to `host`, or a new one (connected without
    /// holding the cache's lock, so that a host that does not answer holds
    /// up no other host).
    async fn connect(&self, host: &str) -> Result<Session, ClusterError> {
        if let Some(s) = self
            .sessions
            .lock()
            .await
            .get(host)
            .filter(|s| !s.is_closed())
        {
            return Ok(s.clone());
        }
        let h = self
            .inventory()
            .host(host)
            .ok_or_else(|| ClusterError::Input(format!("no host `{host}` in the inventory")))?;
        let target = h.connection.target(host);
        let options = h.connection.options(&self.options);
        let session = Session::connect(&target, &options).await?;
        self.sessions
            .lock()
            .await
            .insert(host.to_string(), session.clone());
        Ok(session)
    }

    /// Checks every inventory host at once with a round trip over its SSH
    /// connection (reconnecting when it was lost), each within `limit`.
    /// Hosts that fail are remembered as unreachable, so that the calls
    /// after it fail at once instead of each waiting for a timeout; their
    /// connection is dropped and the next probe connects afresh. Returns
    /// the unreachable hosts with why.
    pub async fn probe(&self, limit: Duration) -> BTreeMap<String, String> {
        let hosts: Vec<String> = self
            .inventory()
            .hosts
            .iter()
            .map(|h| h.name.clone())
            .collect();
        let checks = hosts.iter().map(|host| async move {
            let round_trip = async {
                let session = self.connect(host).await?;
                session.exec("true", false, None).await?;
                Ok::<_, ClusterError>(())
            };
            let failure = match tokio::time::timeout(limit, round_trip).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {}s", limit.as_secs())),
            };
            (host.clone(), failure)
        });
        let mut down = BTreeMap::new();
        for (host, failure) in futures::future::join_all(checks).await {
            if let Some(reason) = failure {
                if let Some(session) = self.sessions.lock().await.remove(&host) {
                    let _ = tokio::time::timeout(Duration::from_secs(1), session.close()).await;
                }
                down.insert(host, reason);
            }
        }
        if let Ok(mut remembered) = self.unreachable.lock() {
            remembered.clone_from(&down);
        }
        down
    }

    /// A string variable as `host` sees it with its facts (read from the
    /// host once per command), for those whose defaults read facts: the
    /// PostgreSQL major a member runs and its paths.
    pub async fn host_string(&self, host: &str, var: Var) -> Result<String, ClusterError> {
        let facts = self.facts(host).await?;
        Ok(self.stack.required_string_with_facts(host, &facts, var)?)
    }

    /// A variable as `host` sees it with its facts; `None` when unset.
    pub async fn host_var(&self, host: &str, var: Var) -> Result<Option<Json>, ClusterError> {
        let facts = self.facts(host).await?;
        Ok(self.stack.var_with_facts(host, &facts, var)?)
    }

    /// Drops what this command knows of `host` (its connection, its facts):
    /// after a reboot, or once its release changed.
    pub async fn forget(&self, host: &str) {
        self.facts.lock().await.remove(host);
        if let Some(session) = self.sessions.lock().await.remove(host) {
            let _ = tokio::time::timeout(Duration::from_secs(1), session.close()).await;
        }
    }

    /// `host`'s facts, read once per command.
    pub async fn facts(&self, host: &str) -> Result<Json, ClusterError> {
        if let Some(facts) = self.facts.lock().await.get(host) {
            return Ok(facts.clone());
        }
        // Not locked while reading: other hosts' facts are read meanwhile.
        let out = self.exec(host, pgdeploy_engine::facts::SCRIPT).await?;
        let facts = pgdeploy_engine::facts::parse(&out);
        self.facts
            .lock()
            .await
            .insert(host.to_string(), facts.clone());
        Ok(facts)
    }

    /// Runs a shell command on `host` (as root when the inventory says
    /// `become`); returns stdout, or an error with stderr on failure.
    pub async fn exec(&self, host: &str, script: &str) -> Result<String, ClusterError> {
        let become_root = self
            .inventory()
            .host(host)
            .is_some_and(|h| h.connection.become_root);
        let out = self
            .session(host)
            .await?
            .exec(script, become_root, None)
            .await?;
        if out.success() {
            Ok(out.stdout_str().into_owned())
        } else {
            Err(ClusterError::CommandFailed {
                host: host.to_string(),
                command: script.lines().next().unwrap_or_default().to_string(),
                status: out.status,
                stderr: out.stderr_str().trim().to_string(),
            })
        }
    }

    /// Runs a shell script of the stack (`src/sh/`) on `host` with its
    /// arguments (`set --`, each quoted), as [`Cluster::exec`] does.
    pub async fn script(
        &self,
        host: &str,
        body: &str,
        args: &[&str],
    ) -> Result<String, ClusterError> {
        let args: Vec<String> = args.iter().map(|a| pgdeploy_text::quote(a)).collect();
        let done = self
            .exec(host, &format!("set -- {}\n{body}", args.join(" ")))
            .await;
        // A failure names the script by its first comment line, not `set --`.
        done.map_err(|e| match e {
            ClusterError::CommandFailed {
                host,
                status,
                stderr,
                ..
            } => ClusterError::CommandFailed {
                host,
                command: body
                    .lines()
                    .find_map(|l| l.strip_prefix("# "))
                    .unwrap_or("script")
                    .to_string(),
                status,
                stderr,
            },
            other => other,
        })
    }

    /// One plain HTTP request to `port` on `host`'s loopback, through a
    /// tunnel (HAProxy's stats page).
    pub async fn http(
        &self,
        host: &str,
        port: u16,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<http::Response, ClusterError> {
        let call = Call {
            method,
            path,
            body,
            auth: None,
            limit: EXCHANGE_TIMEOUT,
        };
        self.exchange(host, port, call, None).await
    }

    /// One request to a TLS service (Patroni's REST API, etcd) on `host`'s
    /// loopback, through a tunnel: HTTPS verified with the cluster CA and the
    /// host's inventory name, or plain HTTP when there is no CA.
    pub async fn api(
        &self,
        host: &str,
        port: u16,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<http::Response, ClusterError> {
        let call = Call {
            method,
            path,
            body,
            auth: None,
            limit: EXCHANGE_TIMEOUT,
        };
        self.tls_exchange(host, port, call).await
    }

    /// A request to `host`'s Patroni; an unsafe method (anything but GET)
    /// carries the REST API's basic authentication
    /// (`patroni_restapi_user`, `patroni_restapi_password`).
    pub async fn patroni_request(
        &self,
        host: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Result<http::Response, ClusterError> {
        let port = self.patroni_port(host)?;
        let auth = if method == "GET" {
            None
        } else {
            Some((
                self.stack
                    .required_string(host, contract::PATRONI_RESTAPI_USER)?,
                self.stack
                    .required_string(host, contract::PATRONI_RESTAPI_PASSWORD)?,
            ))
        };
        let call = Call {
            method,
            path,
            body,
            auth: auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str())),
            limit: if method == "GET" {
                EXCHANGE_TIMEOUT
            } else {
                OPERATION_TIMEOUT
            },
        };
        self.tls_exchange(host, port, call).await
    }

    /// `call` to a TLS service on `host`'s loopback ([`Cluster::api`]).
    async fn tls_exchange(
        &self,
        host: &str,
        port: u16,
        call: Call<'_>,
    ) -> Result<http::Response, ClusterError> {
        let tls = self.tls.clone().map_err(|reason| ClusterError::Http {
            host: host.to_string(),
            service: format!("{} 127.0.0.1:{port}{}", call.method, call.path),
            reason,
        })?;
        self.exchange(host, port, call, tls).await
    }

    /// The name a host's certificate is verified against (its inventory name).
    fn server_name(host: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
        rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("`{host}` cannot be checked against a certificate: {e}"))
    }

    async fn exchange(
        &self,
        host: &str,
        port: u16,
        call: Call<'_>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<http::Response, ClusterError> {
        let Call {
            method,
            path,
            body,
            auth,
            limit,
        } = call;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let service = format!("{method} {scheme}://127.0.0.1:{port}{path}");
        let err = |reason: String| ClusterError::Http {
            host: host.to_string(),
            service: service.clone(),
            reason,
        };
        let session = self.session(host).await?;
        let exchange = async {
            let tunnel = session
                .tunnel("127.0.0.1", port)
                .await
                .map_err(|e| err(e.to_string()))?;
            let authority = format!("127.0.0.1:{port}");
            let answer = match tls {
                Some(config) => {
                    let name = Self::server_name(host).map_err(&err)?;
                    let stream = tokio_rustls::TlsConnector::from(config)
                        .connect(name, tunnel)
                        .await
                        .map_err(|e| err(format!("TLS: {e}")))?;
                    http::request_as(stream, method, &authority, path, body, auth).await
                }
                None => http::request_as(tunnel, method, &authority, path, body, auth).await,
            };
            answer.map_err(|e| err(e.to_string()))
        };
        tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| err(format!("no answer within {}s", limit.as_secs())))?
    }

    /// Patroni's REST port on `host`.
    pub fn patroni_port(&self, host: &str) -> Result<u16, ClusterError> {
        self.port(host, contract::PATRONI_RESTAPI_PORT)
    }

    /// `GET path` on `host`'s Patroni, parsed as JSON. Patroni answers
    /// health endpoints with 503 and a JSON body; both are accepted.
    pub async fn patroni_get<T: serde::de::DeserializeOwned>(
        &self,
        host: &str,
        path: &str,
    ) -> Result<T, ClusterError> {
        let res = self
            .api(host, self.patroni_port(host)?, "GET", path, None)
            .await?;
        serde_json::from_slice(&res.body).map_err(|e| ClusterError::Unparsable {
            host: host.into(),
            service: format!("Patroni GET {path} (status {})", res.status),
            reason: e.to_string(),
            answer: shortened(&res.text()),
        })
    }

    /// `POST path` with a JSON body to `host`'s Patroni; an answer other
    /// than 2xx is an error carrying Patroni's message.
    pub async fn patroni_post(
        &self,
        host: &str,
        path: &str,
        body: &Json,
    ) -> Result<String, ClusterError> {
        let res = self
            .patroni_request(host, "POST", path, Some(&body.to_string()))
            .await?;
        if (200..300).contains(&res.status) {
            Ok(res.text().trim().to_string())
        } else {
            Err(ClusterError::Refused(format!(
                "{host}: Patroni POST {path} answered {}: {}",
                res.status,
                res.text().trim()
            )))
        }
    }

    /// The cluster as the first reachable postgres member's Patroni sees it.
    pub async fn patroni_cluster(&self) -> Result<(String, PatroniCluster), ClusterError> {
        self.patroni_any("/cluster").await
    }

    /// `GET path` on the first postgres member whose Patroni answers: that
    /// member and the answer.
    pub async fn patroni_any<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(String, T), ClusterError> {
        let mut last = ClusterError::Input(format!(
            "the inventory's `{}` group is empty",
            Group::Postgres.name()
        ));
        for host in self.group(Group::Postgres) {
            match self.patroni_get::<T>(&host, path).await {
                Ok(c) => return Ok((host, c)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Runs `sql` as the superuser on `host`'s PostgreSQL (through a tunnel
    /// to its loopback) and returns the rows as text columns.
    pub async fn query(&self, host: &str, sql: &str) -> Result<Vec<Vec<String>>, ClusterError> {
        let sql_err = sql_error(host);
        let password = self
            .stack
            .required_string(host, contract::SUPERUSER_PASSWORD)?;
        let user = self
            .stack
            .required_string(host, contract::PATRONI_SUPERUSER)?;
        let port = self.port(host, contract::POSTGRES_PORT)?;
        let tls = self.tls.clone().map_err(&sql_err)?;
        let session = self.session(host).await?;
        let work = async {
            let tunnel = session
                .tunnel("127.0.0.1", port)
                .await
                .map_err(|e| sql_err(e.to_string()))?;
            let mut config = tokio_postgres::Config::new();
            config
                .user(&user)
                .password(&password)
                .dbname(contract::MAINTENANCE_DATABASE)
                .application_name("pgdeploy");
            let (client, driver) = Self::sql_connect(host, config, tunnel, tls).await?;
            Self::simple_query_table(host, client, driver, sql).await
        };
        tokio::time::timeout(EXCHANGE_TIMEOUT * 3, work)
            .await
            .map_err(|_| sql_err("no answer within 30s".into()))?
    }

    /// A PostgreSQL client over `tunnel`, with TLS (verify-full) when the
    /// cluster has a CA, and the task driving its connection.
    async fn sql_connect(
        host: &str,
        mut config: tokio_postgres::Config,
        tunnel: pgdeploy_transport::Tunnel,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<(tokio_postgres::Client, SqlDriver), ClusterError> {
        let sql_err = sql_error(host);
        match tls {
            Some(tls) => {
                // verify-full: the cluster CA and the host's inventory name.
                config.ssl_mode(tokio_postgres::config::SslMode::Require);
                Self::server_name(host).map_err(&sql_err)?;
                let connector = tokio_postgres::tls::MakeTlsConnect::<
                    pgdeploy_transport::Tunnel,
                >::make_tls_connect(
                    &mut tokio_postgres_rustls::MakeRustlsConnect::new((*tls).clone()),
                    host,
                )
                .map_err(|e| sql_err(e.to_string()))?;
                let (client, connection) = config
                    .connect_raw(tunnel, connector)
                    .await
                    .map_err(|e| sql_err(e.to_string()))?;
                Ok((
                    client,
                    tokio::spawn(async move { connection.await.map(drop) }),
                ))
            }
            None => {
                let (client, connection) = config
                    .connect_raw(tunnel, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| sql_err(e.to_string()))?;
                Ok((
                    client,
                    tokio::spawn(async move { connection.await.map(drop) }),
                ))
            }
        }
    }

    /// Runs `sql` (simple query protocol), closes the client and waits for
    /// its connection to end; returns the rows as text columns.
    async fn simple_query_table(
        host: &str,
        client: tokio_postgres::Client,
        driver: SqlDriver,
        sql: &str,
    ) -> Result<Vec<Vec<String>>, ClusterError> {
        let rows = client
            .simple_query(sql)
            .await
            .map_err(|e| sql_error(host)(e.to_string()));
        drop(client);
        let _ = driver.await;
        let mut table = Vec::new();
        for message in rows? {
            if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                table.push(
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or("").to_string())
                        .collect(),
                );
            }
        }
        Ok(table)
    }

    /// Closes every connection.
    pub async fn close(&self) {
        for session in self.sessions.lock().await.values() {
            let _ = session.close().await;
        }
    }
}

/// The task driving a PostgreSQL connection of [`Cluster::query`].
type SqlDriver = tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>;

/// An SQL error on `host`, from its reason.
fn sql_error(host: &str) -> impl Fn(String) -> ClusterError + '_ {
    move |reason| ClusterError::Sql {
        host: host.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_json_of_patroni_3() {
        let text = r#"{"members": [{"name": "node1", "role": "leader", "state": "running", "api_url": "http://10.0.0.11:8008/patroni", "host": "10.0.0.11", "port": 5432, "timeline": 1},
            {"name": "node2", "role": "replica", "state": "running", "host": "10.0.0.12", "port": 5432, "timeline": 1, "lag": 0, "pending_restart": true},
            {"name": "node3", "role": "replica", "state": "stopped", "host": "10.0.0.13", "port": 5432, "lag": "unknown"}]}"#;
        let c: PatroniCluster = serde_json::from_str(text).expect("parses");
        assert_eq!(c.leader().map(|m| m.name.as_str()), Some("node1"));
        let n2 = c.member("node2").expect("node2");
        assert!(n2.pending_restart);
        assert_eq!(n2.lag_bytes(), Some(0));
        assert_eq!(c.member("node3").and_then(|m| m.lag_bytes()), None);
        assert_eq!(c.member("node3").and_then(|m| m.timeline), None);
    }

    #[test]
    fn patroni_node_json() {
        let text = r#"{"state": "running", "postmaster_start_time": "2026-11-24 04:19:09.086314+00:00", "role": "master", "server_version": 150020, "xlog": {"location": 117440608}, "timeline": 1, "replication": [{"usename": "replicator", "application_name": "node3", "client_addr": "10.213.52.13", "state": "streaming", "sync_state": "async", "sync_priority": 0}], "dcs_last_seen": 1795494062, "patroni": {"version": "3.0.2", "scope": "lab"}}"#;
        let n: PatroniNode = serde_json::from_str(text).expect("parses");
        assert_eq!(n.replication[0].application_name, "node3");
        assert!(!n.pending_restart);
        assert_eq!(n.timeline, Some(1));
    }
}

//! `restore --into`: the backups of one cluster restored onto another,
//! deployed one, while the first keeps running. The first cluster's backup
//! host lets the restoring member read its repository for the bootstrap
//! only; the new cluster's own repository keeps its old stanza aside.

use super::{Cluster, ClusterError, Group};
use serde::Serialize;

/// Adds or removes the temporary SSH trust line.
const TRUST: &str = include_str!("../../sh/restore-into-trust.sh");

/// The postgres account's SSH files (role pgbackrest's).
const AUTHORIZED_KEYS: &str = "/var/lib/postgresql/.ssh/authorized_keys";
const KNOWN_HOSTS: &str = "/var/lib/postgresql/.ssh/known_hosts";
const POSTGRES_PUBLIC_KEY: &str = "/var/lib/postgresql/.ssh/id_ed25519.pub";
const HOST_KEY: &str = "/etc/ssh/ssh_host_ed25519_key.pub";

/// `restore --into`: where the backups come from, and what happens to the
/// new cluster's own repository.
#[derive(Debug, Clone, Serialize)]
pub struct Origin {
    /// The cluster whose backups are restored (its pgBackRest stanza).
    pub cluster: String,
    /// Its backup host, as its inventory names it.
    pub repo_host: String,
    /// The address the new cluster's member reaches it at.
    pub repo_address: String,
    /// The new cluster's backup host, when it has one: its stanza is kept
    /// aside (in `repo_aside`) and created anew.
    pub new_repo: Option<String>,
    /// Where that stanza is kept.
    pub repo_aside: String,
}

/// A host (by address) both clusters have in the stack's groups (an
/// inventory may list other hosts).
pub(super) fn shared_host(a: &Cluster, b: &Cluster) -> Option<String> {
    let hosts = |c: &Cluster| -> Vec<(String, String)> {
        let mut names: Vec<String> = Group::ALL.iter().flat_map(|g| c.group(*g)).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|n| address(c, &n).ok().map(|a| (n, a)))
            .collect()
    };
    let theirs = hosts(b);
    hosts(a).into_iter().find_map(|(name, address)| {
        theirs
            .iter()
            .any(|(_, other)| *other == address)
            .then(|| format!("{name} ({address})"))
    })
}

/// Where `--into`'s backups come from, and where the new cluster's own
/// stanza goes.
pub(super) fn origin(
    cluster: &Cluster,
    dest: &Cluster,
    repo_host: &str,
    stamp: &str,
) -> Result<Origin, ClusterError> {
    let new_repo = dest.group(Group::Backup).into_iter().next();
    let repo_aside = match &new_repo {
        Some(host) => format!(
            "{}-before-restore-{stamp}",
            dest.stack()
                .required_string(host, crate::contract::PGBACKREST_REPO_PATH)?
                .trim_end_matches('/')
        ),
        None => String::new(),
    };
    Ok(Origin {
        cluster: cluster.name(),
        repo_host: repo_host.to_string(),
        repo_address: address(cluster, repo_host)?,
        new_repo,
        repo_aside,
    })
}

/// A host's address in its inventory.
fn address(cluster: &Cluster, host: &str) -> Result<String, ClusterError> {
    cluster
        .stack()
        .inventory()
        .host(host)
        .map(|h| h.connection.address.clone())
        .ok_or_else(|| ClusterError::Input(format!("{host} is not in the inventory")))
}

/// The marker of `--into`'s lines, naming the new cluster: by it they (and
/// an interrupted restore's) are removed.
fn marker(dest: &Cluster) -> String {
    format!("pgdeploy-restore-into@{}", dest.name())
}

/// Lets `member` (of `dest`) read the repository on `origin`'s backup
/// host: the backup host accepts `member`'s postgres key from `member`'s
/// address only, without forwarding or a terminal; `member` pins the
/// backup host's key, read over pgdeploy's own verified connection.
pub(super) async fn grant(
    source: &Cluster,
    dest: &Cluster,
    member: &str,
    origin: &Origin,
) -> Result<(), ClusterError> {
    let marker = marker(dest);
    let text = dest
        .exec(member, &format!("cat {POSTGRES_PUBLIC_KEY}"))
        .await?;
    let member_key = public_key(member, POSTGRES_PUBLIC_KEY, &text)?;
    let text = source
        .exec(&origin.repo_host, &format!("cat {HOST_KEY}"))
        .await?;
    let host_key = public_key(&origin.repo_host, HOST_KEY, &text)?;
    let member_address = address(dest, member)?;
    source
        .script(
            &origin.repo_host,
            TRUST,
            &[
                "add",
                AUTHORIZED_KEYS,
                &marker,
                &format!(
                    "from=\"{member_address}\",no-agent-forwarding,no-X11-forwarding,no-port-forwarding,no-pty {member_key} {marker}"
                ),
            ],
        )
        .await?;
    dest.script(
        member,
        TRUST,
        &[
            "add",
            KNOWN_HOSTS,
            &marker,
            &format!("{} {host_key} {marker}", origin.repo_address),
        ],
    )
    .await?;
    Ok(())
}

/// Takes back what [`grant`] gave: both lines, by their marker.
pub(super) async fn revoke(
    source: &Cluster,
    dest: &Cluster,
    member: &str,
    origin: &Origin,
) -> Result<(), ClusterError> {
    let marker = marker(dest);
    source
        .script(
            &origin.repo_host,
            TRUST,
            &["remove", AUTHORIZED_KEYS, &marker],
        )
        .await?;
    dest.script(member, TRUST, &["remove", KNOWN_HOSTS, &marker])
        .await?;
    Ok(())
}

/// The type and key of an SSH public key file's text (`ssh-ed25519 AAAA…`).
pub(super) fn public_key(host: &str, file: &str, text: &str) -> Result<String, ClusterError> {
    let fields: Vec<&str> = text.split_whitespace().take(2).collect();
    match fields[..] {
        [kind, key] if kind.starts_with("ssh-") && !key.is_empty() => Ok(format!("{kind} {key}")),
        _ => Err(ClusterError::Unparsable {
            host: host.to_string(),
            service: file.to_string(),
            reason: "not an SSH public key".into(),
            answer: crate::cluster::shortened(text),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_are_read_or_refused() {
        assert_eq!(
            public_key("h", "f", "ssh-ed25519 AAAAC3Nz pgbackrest@lab\n").ok(),
            Some("ssh-ed25519 AAAAC3Nz".to_string())
        );
        for bad in ["", "cat: f: No such file", "ssh-ed25519"] {
            assert!(public_key("h", "f", bad).is_err(), "{bad}");
        }
    }
}

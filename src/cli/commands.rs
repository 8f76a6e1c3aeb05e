//! The subcommands and their arguments, as clap parses them; `main.rs`
//! dispatches each to its module.

use std::path::PathBuf;

use clap::Subcommand;

use super::args::{ApplyArgs, ClusterArgs, GraphFormat, InputArgs, OutputFormat, WatchArgs};

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Apply a playbook to the inventory's hosts.
    Apply(ApplyArgs),
    /// Show what apply would change (`apply --check --diff`), as a plan.
    Plan {
        #[command(flatten)]
        args: ApplyArgs,
        /// Exit 0 when nothing would change, 2 when changes are pending.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Print the task DAG as text or Graphviz dot.
    Graph {
        #[command(flatten)]
        inputs: InputArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
    },
    /// Check inventory, playbook, roles and templates without contacting any host.
    Validate {
        #[command(flatten)]
        inputs: InputArgs,
    },
    /// Print a host's facts.
    Facts {
        /// Inventory file.
        #[arg(short, long)]
        inventory: PathBuf,
        /// The host.
        host: String,
        /// Record unknown host keys in known_hosts.
        #[arg(long)]
        accept_new_host_keys: bool,
    },
    /// Encrypted secrets (see `secrets init --help`).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// The cluster's health: Patroni members, etcd, HAProxy, VIP, backups.
    /// Exit 0 when healthy, 1 and a one-line reason when degraded.
    Status {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Largest acceptable age of the newest backup, in hours.
        #[arg(long, default_value_t = 26.0)]
        max_backup_age_hours: f64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Human)]
        output: OutputFormat,
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// One self-contained HTML page: topology, status, last apply, backups.
    Report {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// Largest acceptable age of the newest backup, in hours.
        #[arg(long, default_value_t = 26.0)]
        max_backup_age_hours: f64,
        /// Write the page here instead of to stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// A planned switchover with pre-checks, each step printed.
    Switchover {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The member to lead (default: the streaming replica with the least lag).
        #[arg(long)]
        to: Option<String>,
    },
    /// Restart one member's PostgreSQL through Patroni.
    Restart {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The member.
        member: String,
    },
    /// Rebuild a replica from the leader (Patroni reinitialize).
    Reinit {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The member.
        member: String,
    },
    /// Take a backup now on the backup host (pgBackRest), with its
    /// progress; prints the new backup's label. Refused while another
    /// backup runs; exit 1 when it fails.
    Backup {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// full, diff (changes since the last full) or incr (since the last
        /// backup).
        #[arg(long = "type", default_value = "full", value_parser = ["full", "diff", "incr"])]
        kind: String,
    },
    /// Point-in-time recovery of the whole cluster from the repository:
    /// shows the plan (what stops, what is kept, the recoverable window),
    /// asks, then stops every member, restores one, rebuilds the others
    /// from the repository. A target outside the window is refused before
    /// anything stops.
    Restore {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// `latest`, a time (`2026-11-30 14:30:00`, UTC unless a zone such
        /// as `+01` follows), a backup label or an LSN (`0/6000050`).
        #[arg(long)]
        to: String,
        /// Restore onto the hosts of this inventory instead (a clone, or a
        /// new site, deployed first with `apply`): its cluster is replaced,
        /// the inventory's own keeps running.
        #[arg(long, value_name = "INVENTORY")]
        into: Option<PathBuf>,
        /// Go on without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Rolling point-release update of the stack's packages (held between
    /// runs): shows the plan (which packages move from which version to
    /// which, per host), asks, then updates one host at a time: hosts
    /// that are not PostgreSQL members, the replicas, then the leader's
    /// host after a switchover; each waits for its member streaming on the
    /// new binary, the etcd quorum and the balancers.
    Update {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The components to update (default: all): postgresql, patroni,
        /// etcd, haproxy, keepalived, pgbackrest, pgbouncer.
        #[arg(long, value_delimiter = ',')]
        packages: Vec<String>,
        /// Show the plan only (apt's lists are refreshed; no package moves).
        #[arg(long)]
        check: bool,
        /// Go on without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Move a running cluster to the next Debian release (bookworm →
    /// trixie), PostgreSQL kept on its major: shows the plan (per host,
    /// from apt's own answer: the components' moves, the package counts,
    /// the disk room), asks, then moves one host at a time: the replicas,
    /// a switchover, the other hosts, the old leader; each host drained,
    /// upgraded, rebooted, and serving again before the next.
    UpgradeOs {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The release to move to (trixie).
        #[arg(long, value_name = "RELEASE")]
        to: String,
        /// Show the plan only (nothing on the hosts changes).
        #[arg(long)]
        check: bool,
        /// Go on without asking.
        #[arg(long)]
        yes: bool,
    },
    /// Move a running cluster to a new PostgreSQL major with `pg_upgrade
    /// --link`: pre-checks with nothing stopped (the new packages installed
    /// and held, extensions, settings, room, `pg_upgrade --check`, a recent
    /// backup), the plan, a question, then the upgrade on the leader and the
    /// cut-over; the replicas are rebuilt on the new major afterwards. A
    /// failure before the cut-over puts the old major back.
    Upgrade {
        #[command(flatten)]
        cluster: ClusterArgs,
        /// The major to move to (17).
        #[arg(long, value_name = "MAJOR")]
        to: String,
        /// The pre-checks and the plan only (the new packages are installed
        /// and held; nothing stops).
        #[arg(long)]
        check: bool,
        /// Go on without asking.
        #[arg(long)]
        yes: bool,
        /// Go on without a backup of the last 24 hours.
        #[arg(long)]
        no_backup_check: bool,
        /// Put the old major back on the members an upgrade that failed
        /// before its cut-over could not reach then.
        #[arg(long, conflicts_with_all = ["check", "no_backup_check"])]
        rollback: bool,
        /// Once the cluster runs the new major: remove what the old one
        /// left (its data directories, its packages). No rollback to it
        /// afterwards. With --check, the list only.
        #[arg(long, conflicts_with_all = ["rollback", "no_backup_check"])]
        finish: bool,
    },
    /// Write a starter project into DIR: a commented inventory with the
    /// stack's groups, a .gitignore and a README of next steps (with
    /// --hosts: addresses filled in and `secrets init` run). Never
    /// overwrites a file.
    Init {
        /// The project folder (made when missing).
        dir: PathBuf,
        /// Host addresses, comma-separated (four or more: the last one holds
        /// the backups).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
    },
    /// The roles a run uses (built-in or from disk) and writing the
    /// built-in ones out for customisation.
    Roles {
        #[command(subcommand)]
        command: RolesCommand,
    },
    /// Print a shell completion script (`pgdeploy completions bash >
    /// /etc/bash_completion.d/pgdeploy`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, roff (`pgdeploy man > /usr/local/share/man/man1/pgdeploy.1`).
    Man,
    /// Bring up, inspect and break the built-in lab of container hosts.
    Lab {
        #[command(subcommand)]
        command: pgdeploy_lab::LabCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Generate the cluster's passwords once into an age-encrypted file
    /// (missing ones only; existing values are kept). The identity is
    /// $PGDEPLOY_AGE_IDENTITY or ~/.config/pgdeploy/age-identity.txt, created
    /// when missing.
    Init {
        /// Inventory file; the secrets file is `secrets.age` beside it.
        #[arg(short, long)]
        inventory: PathBuf,
        /// The secrets file instead of `secrets.age` beside the inventory.
        #[arg(long)]
        secrets: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum RolesCommand {
    /// Every role a run would use: its name, where it comes from (built-in
    /// or a folder on disk, which wins) and the first line of its README.
    List {
        /// Inventory file (roles/ beside it win over the built-in ones).
        #[arg(short, long)]
        inventory: Option<PathBuf>,
        /// Folders of roles that win over the built-in ones.
        #[arg(long, value_delimiter = ':')]
        roles_path: Vec<PathBuf>,
    },
    /// Write the built-in roles and playbooks into DIR (as `roles/` and
    /// `playbooks/`) to customise them; refuses to overwrite a file.
    Export {
        /// The folder to write into (the inventory's folder makes them win).
        dir: PathBuf,
        /// Overwrite files that exist.
        #[arg(long)]
        force: bool,
    },
}

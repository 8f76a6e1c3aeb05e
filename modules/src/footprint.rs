//! What a resource's probe reads and what its actions may change on a host.
//!
//! The engine caches probe answers (many are fetched ahead in one round
//! trip). After an action runs, it drops only the cached answers whose
//! probe *reads* something the action's resource *writes*: a changed
//! template does not make the next hundred file probes go back to the host.
//! A resource that cannot say (a command, a package, a service that may
//! write anywhere) reads or writes [`Footprint::Everything`], the default.
//!
//! Paths are compared as written, component by component: a write to
//! `/etc/patroni` overlaps a read of `/etc/patroni/config.yml` and the other
//! way round. A write through a symbolic link to a path probed under another
//! name is not seen, so modules only declare paths they were given.

/// One thing on a host that probes read and actions change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// A path and everything below it.
    Path(String),
    /// State outside the file system: a kind (`sysctl`, `ufw`, `unit`) and,
    /// optionally, one name within it; no name means all of that kind.
    State(&'static str, Option<String>),
}

impl Object {
    /// A path and everything below it.
    pub fn path(path: impl Into<String>) -> Self {
        Object::Path(path.into())
    }

    /// Whether a change to `self` can change what a probe of `other` sees.
    pub fn overlaps(&self, other: &Object) -> bool {
        match (self, other) {
            (Object::Path(a), Object::Path(b)) => is_within(a, b) || is_within(b, a),
            (Object::State(k1, n1), Object::State(k2, n2)) => {
                k1 == k2 && (n1.is_none() || n2.is_none() || n1 == n2)
            }
            _ => false,
        }
    }
}

/// Whether `inner` is `outer` or lies below it, component by component.
fn is_within(inner: &str, outer: &str) -> bool {
    let mut inner = components(inner);
    components(outer).all(|c| inner.next() == Some(c))
}

fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// The objects a probe reads or an action may change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Footprint {
    /// Anything on the host.
    #[default]
    Everything,
    /// Only these objects (none at all for a resource that changes nothing).
    Only(Vec<Object>),
}

impl Footprint {
    /// Only these objects.
    pub fn only(objects: impl IntoIterator<Item = Object>) -> Self {
        Footprint::Only(objects.into_iter().collect())
    }

    /// One path and everything below it: what writing a file changes.
    pub fn path(path: &str) -> Self {
        Footprint::only([Object::path(path)])
    }

    /// What probing a file reads: its path, and the user and group
    /// databases its owner and group names come from.
    pub fn file_probe(path: &str) -> Self {
        Footprint::only([
            Object::path(path),
            Object::path("/etc/passwd"),
            Object::path("/etc/group"),
        ])
    }

    /// This footprint and `object` too (everything stays everything).
    pub fn and(self, object: Object) -> Self {
        match self {
            Footprint::Everything => Footprint::Everything,
            Footprint::Only(mut objects) => {
                objects.push(object);
                Footprint::Only(objects)
            }
        }
    }

    /// Whether anything written in `self` can change what a probe reading
    /// `reads` sees.
    pub fn affects(&self, reads: &Footprint) -> bool {
        match (self, reads) {
            (Footprint::Everything, _) => true,
            (Footprint::Only(written), _) if written.is_empty() => false,
            (_, Footprint::Everything) => true,
            (Footprint::Only(written), Footprint::Only(read)) => {
                written.iter().any(|w| read.iter().any(|r| w.overlaps(r)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_overlap_along_their_components() {
        let dir = Object::path("/etc/patroni");
        let file = Object::path("/etc/patroni/config.yml");
        assert!(dir.overlaps(&file));
        assert!(file.overlaps(&dir));
        assert!(file.overlaps(&Object::path("/etc//patroni/./config.yml/")));
        assert!(!file.overlaps(&Object::path("/etc/patroni/config.yml.bak")));
        assert!(!Object::path("/etc/pat").overlaps(&file));
        assert!(!file.overlaps(&Object::path("/etc/haproxy/haproxy.cfg")));
    }

    #[test]
    fn states_overlap_by_kind_and_name() {
        let swappiness = Object::State("sysctl", Some("vm.swappiness".into()));
        let all = Object::State("sysctl", None);
        assert!(swappiness.overlaps(&all));
        assert!(all.overlaps(&swappiness));
        assert!(!swappiness.overlaps(&Object::State("sysctl", Some("kernel.panic".into()))));
        assert!(!swappiness.overlaps(&Object::State("ufw", None)));
        assert!(!swappiness.overlaps(&Object::path("/proc/sys/vm/swappiness")));
    }

    #[test]
    fn everything_and_nothing() {
        let motd = Footprint::path("/etc/motd");
        let nothing = Footprint::only([]);
        assert!(Footprint::Everything.affects(&Footprint::file_probe("/etc/motd")));
        assert!(motd.affects(&Footprint::Everything));
        assert!(!nothing.affects(&Footprint::Everything));
        assert!(motd.affects(&Footprint::file_probe("/etc/motd")));
        assert!(!motd.affects(&Footprint::file_probe("/etc/issue")));
        // A new user can change the owner name a file probe prints.
        assert!(Footprint::path("/etc/passwd").affects(&Footprint::file_probe("/etc/issue")));
        let live = Object::State("sysctl", Some("vm.swappiness".into()));
        assert_eq!(
            Footprint::path("/etc/motd").and(live.clone()),
            Footprint::only([Object::path("/etc/motd"), live.clone()])
        );
        assert_eq!(Footprint::Everything.and(live), Footprint::Everything);
    }
}

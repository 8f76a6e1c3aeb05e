"""The benchmark's synthetic workload for pyinfra: the same objects as
roles/bench_synthetic (bench/README.md). Run from bench/synthetic with --sudo."""

from pathlib import Path

import yaml
from pyinfra import host
from pyinfra.operations import apt, files, systemd

ROLE = Path("roles/bench_synthetic")
WANTED = yaml.safe_load((ROLE / "defaults.yaml").read_text())


def template(label, src, dest, item):
    """The role's template `src` rendered with the variables pgdeploy and Ansible give it."""
    return files.template(name=f"{label} {item}", src=str(ROLE / "templates" / src), dest=dest, mode="644",
                          inventory_hostname=host.name, item=item)


for d in WANTED["bench_dirs"]:
    files.directory(name=f"directory {d}", path=f"/opt/bench/{d}", mode="755")

for c in WANTED["bench_configs"]:
    template("configuration", "app.conf.j2", f"/opt/bench/{c}.conf", c)

for k in WANTED["bench_settings"]:
    files.line(name=f"setting {k}", path="/opt/bench/settings.conf", line=f"^{k} =", replace=f"{k} = on")

apt.packages(name="packages present", packages=WANTED["bench_packages"], update=True, cache_time=86400)

units = [template("unit", "worker.service.j2", f"/etc/systemd/system/{w}.service", w) for w in WANTED["bench_workers"]]
systemd.daemon_reload(name="systemd reloaded", _if=lambda: any(u.did_change() for u in units))

for w in WANTED["bench_workers"]:
    systemd.service(name=f"worker {w}", service=w, running=True, enabled=True)

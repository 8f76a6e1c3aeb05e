"""Failover benchmark (bench/README.md, "Failover"; results in docs/ha.md).

A writer opens a fresh connection through the VIP's read-write port every
0.1 s and inserts one row; every attempt is logged with its time and
outcome. An event is then done to the Patroni leader and timed as the
client sees it:

  crash       `pgdeploy lab kill LEADER` (SIGKILL of the host's init), then
              `lab start` and a wait for the old leader to rejoin;
  switchover  `pgdeploy switchover` (planned, with its pre-checks);
  stop        `systemctl poweroff` on the leader's host (a graceful stop),
              then `lab start` and a wait for the rejoin.

For each event: `back` = seconds from the event to the first write that
succeeds after writes failed; `gap` = seconds between the last write that
succeeded before the failure and that first one after it. Between rounds
the cluster must be healthy again (three members running, one leader, two
streaming replicas) and a random pause of 0-loop_wait seconds puts the next
event at a random point of Patroni's loop.

`--soak SECONDS` watches an idle cluster (and with `--pgbench`, one under a
pgbench load of 2 client jobs) and fails if the leader or the timeline
changes: a false failover.

Needs a deployed lab (`pgdeploy lab up --nodes 4`, `pgdeploy apply`), the
superuser password in PGPASSWORD, psql and pgbench on this machine. Not run
by CI.
"""

import argparse
import json
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release/pgdeploy"
INVENTORY = ROOT / "inventories/lab.yaml"
MEMBERS = ["node1", "node2", "node3"]


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


def lab_dir():
    instance = os.environ.get("PGDEPLOY_LAB_INSTANCE", "0")
    return "/var/lib/pgdeploy/lab" if instance in ("", "0") else f"/var/lib/pgdeploy/lab-{instance}"


def lab_net():
    instance = int(os.environ.get("PGDEPLOY_LAB_INSTANCE", "0") or "0")
    return "10.213.47" if instance == 0 else f"10.213.{50 + instance}"


def address(host):
    return f"{lab_net()}.{10 + int(host.removeprefix('node'))}"


def vip():
    return f"{lab_net()}.250"


def ssh(host, command, timeout=30):
    """Runs command as root (admin with sudo) on a lab host; returns (exit code, stdout)."""
    argv = [
        "ssh", "-i", f"{lab_dir()}/id_ed25519",
        "-o", f"UserKnownHostsFile={lab_dir()}/known_hosts",
        "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
        f"admin@{address(host)}", "sudo sh -c " + shlex.quote(command),
    ]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, ""
    return proc.returncode, proc.stdout


def pgdeploy(*args):
    proc = subprocess.run([str(BIN), *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"pgdeploy {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def psql(port, sql, timeout=1.0):
    """One fresh connection through the VIP; returns stdout or None on any failure."""
    try:
        proc = subprocess.run(
            ["psql", "-h", vip(), "-p", str(port), "-U", "postgres", "-d", "postgres", "-Atqc", sql],
            capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "PGCONNECT_TIMEOUT": "2"},
        )
    except subprocess.TimeoutExpired:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def members(seen_from):
    """Patroni's members as {name: (role, state, timeline, lag)} from one host's REST API."""
    code, out = ssh(seen_from, "curl -s --max-time 3 --cacert /etc/pgdeploy/tls/ca.crt "
                    f"https://{address(seen_from)}:8008/cluster", timeout=10)
    if code != 0 or not out:
        return None
    try:
        cluster = json.loads(out)
    except json.JSONDecodeError:
        return None
    return {m["name"]: (m["role"], m["state"], m.get("timeline"), m.get("lag", 0))
            for m in cluster.get("members", [])}


def healthy():
    """The leader's name when three members run, one leads and two stream with no lag."""
    for host in MEMBERS:
        got = members(host)
        if not got:
            continue
        leaders = [n for n, (role, state, _, _) in got.items() if role == "leader" and state == "running"]
        streaming = [n for n, (role, state, _, lag) in got.items()
                     if role in ("replica", "sync_standby") and state in ("running", "streaming")
                     and lag in (0, "0")]
        if len(got) == 3 and len(leaders) == 1 and len(streaming) == 2:
            return leaders[0]
        return None
    return None


def wait_healthy(limit=300):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        leader = healthy()
        if leader and psql(5000, "select 1") == "1":
            return leader
        time.sleep(2)
    raise BenchError(f"the cluster was not healthy again within {limit} s")


def etcd_leader():
    """The lab host whose etcd member leads the raft group (None if unknown)."""
    code, out = ssh("node1", "etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/pgdeploy/tls/ca.crt "
                    "endpoint status --cluster -w json")
    try:
        status = json.loads(out) if code == 0 else []
    except json.JSONDecodeError:
        return None
    for member in status:
        if member["Status"]["leader"] == member["Status"]["header"]["member_id"]:
            found = re.search(r"//([0-9.]+):", member["Endpoint"])
            return next((h for h in MEMBERS if found and address(h) == found.group(1)), None)
    return None


def loop_wait():
    code, out = ssh("node1", "patronictl -c /etc/patroni/config.yml show-config")
    found = re.search(r"^loop_wait:\s*(\d+)", out, re.M) if code == 0 else None
    return int(found.group(1)) if found else 10


class Writer:
    """Inserts one row per fresh connection through VIP:5000 every 0.1 s; logs (t, ok)."""

    def __init__(self):
        self.log = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            ok = psql(5000, "insert into bench_failover default values") is not None
            self.log.append((t, ok))
            time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    def outage(self, event, limit):
        """(back, gap) of the first outage at or after `event`, waiting up to `limit` s."""
        deadline = event + limit
        while time.monotonic() < deadline:
            log = list(self.log)
            fail = next((i for i, (t, ok) in enumerate(log) if t >= event - 1 and not ok), None)
            if fail is not None:
                back = next((t for t, ok in log[fail:] if ok), None)
                if back is not None:
                    before = max((t for t, ok in log[:fail] if ok), default=event)
                    return back - event, back - before
            time.sleep(0.2)
        raise BenchError(f"writes did not come back within {limit} s")


def rejoin(host):
    """Boots a crashed or stopped host again (after a poweroff, once it is down)."""
    deadline = time.monotonic() + 120
    while not re.search(rf"^{host}\s+\S+\s+stopped", pgdeploy("lab", "status"), re.M):
        if time.monotonic() > deadline:
            raise BenchError(f"{host} did not stop within 120 s")
        time.sleep(2)
    pgdeploy("lab", "start", host)


def crash(leader):
    pgdeploy("lab", "kill", leader)


def switchover(_leader):
    pgdeploy("switchover", "-i", str(INVENTORY))


def stop(leader):
    ssh(leader, "systemctl poweroff", timeout=10)


EVENTS = {"crash": (crash, True), "switchover": (switchover, False), "stop": (stop, True)}


def rounds(kind, runs):
    action, restart = EVENTS[kind]
    figures = []
    for n in range(runs):
        leader = wait_healthy()
        time.sleep(5 + random.uniform(0, loop_wait()))
        etcd = etcd_leader()
        with Writer() as writer:
            time.sleep(1)
            event = time.monotonic()
            action(leader)
            back, gap = writer.outage(event, 90)
        print(f"{kind} {n + 1}/{runs}: leader {leader} (etcd leader {etcd}): writes back after {back:.1f} s "
              f"(gap {gap:.1f} s)", flush=True)
        figures.append({"leader": leader, "etcd_leader": etcd, "back": round(back, 2), "gap": round(gap, 2)})
        if restart:
            rejoin(leader)
    return figures


def timeline_and_leader():
    leader = wait_healthy(60)
    return leader, psql(5000, "select timeline_id from pg_control_checkpoint()")


def soak(seconds, load):
    before = timeline_and_leader()
    bench = None
    if load:
        subprocess.run(["pgbench", "-h", vip(), "-p", "5000", "-U", "postgres", "-i", "-s", "10", "postgres"],
                       capture_output=True, check=True)
        bench = subprocess.Popen(
            ["pgbench", "-h", vip(), "-p", "5000", "-U", "postgres", "-c", "4", "-j", "2", "-T", str(seconds),
             "-P", "60", "postgres"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + seconds
    leaders = set()
    while time.monotonic() < deadline:
        got = members("node1") or {}
        leaders.update(n for n, (role, _, _, _) in got.items() if role == "leader")
        time.sleep(2)
    output = bench.communicate()[0] if bench else ""
    after = timeline_and_leader()
    print(output.strip()[-400:])
    verdict = "no failover" if before == after and len(leaders) == 1 else "FALSE FAILOVER"
    print(f"soak {seconds} s{' under pgbench' if load else ' idle'}: leader/timeline {before} -> {after}, "
          f"leaders seen {sorted(leaders)}: {verdict}")
    return {"seconds": seconds, "load": load, "before": before, "after": after, "verdict": verdict}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", default="crash,switchover,stop", help="comma-separated: crash, switchover, stop")
    parser.add_argument("--runs", type=int, default=5, help="rounds of each event (the median is reported)")
    parser.add_argument("--soak", type=int, default=0, help="seconds of a soak (no event): fails on a failover")
    parser.add_argument("--pgbench", action="store_true", help="the soak runs under a pgbench load")
    parser.add_argument("--output", help="write the figures as JSON to this file")
    args = parser.parse_args()
    if "PGPASSWORD" not in os.environ:
        raise BenchError("set PGPASSWORD to the cluster's superuser password")
    psql(5000, "create table if not exists bench_failover (id bigserial primary key, at timestamptz default now())",
         timeout=10)
    results = {}
    if args.soak:
        results["soak"] = soak(args.soak, args.pgbench)
    else:
        for kind in args.events.split(","):
            figures = rounds(kind, args.runs)
            median = statistics.median(f["back"] for f in figures)
            gap = statistics.median(f["gap"] for f in figures)
            print(f"{kind}: median writes back {median:.1f} s, median gap {gap:.1f} s "
                  f"({', '.join(str(f['back']) for f in figures)})", flush=True)
            results[kind] = {"runs": figures, "median_back": median, "median_gap": gap}
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results.get("soak", {}).get("verdict", "no failover") == "no failover" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench/failover: {e}", file=sys.stderr)
        sys.exit(1)

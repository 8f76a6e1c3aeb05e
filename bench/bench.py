"""The benchmark of converged runs (bench/README.md); started by bench/run.

For each host count: `pgdeploy lab up --nodes N`, converge every workload
(untimed; the synthetic one by all three tools, then `pgdeploy plan` must
see nothing to do, which proves they agree on the end state), record the
limit script's answer on the converged hosts, then time rounds of
limit, pgdeploy, Ansible and pyinfra (interleaved, so machine noise hits
all tools alike). Every timed run must find nothing to change. Results are
kept in bench/results.json (merged with earlier runs of other host counts)
and the tables in bench/README.md are rewritten from it.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
BIN = ROOT / "target/release/pgdeploy"
INVENTORY = ROOT / "inventories/lab.yaml"
RESULTS = BENCH / "results.json"
README = BENCH / "README.md"
SYNTHETIC = BENCH / "synthetic"
SITE_EXTRA = [
    "-e", "postgres_superuser_password=bench-superuser-pass",
    "-e", "postgres_replication_password=bench-replication-pass",
]
TOOLS = ["limit", "pgdeploy", "ansible", "pyinfra"]
WORKLOADS = {
    # workload: (tools that run it, limit script, pgdeploy playbook, extra vars, fewest hosts)
    "synthetic": (TOOLS, BENCH / "limit/synthetic.sh", SYNTHETIC / "pgdeploy.yaml", [], 1),
    # The site playbook needs a backup host besides the three cluster members.
    "site": (["limit", "pgdeploy"], BENCH / "limit/site.sh", ROOT / "playbooks/site.yaml", SITE_EXTRA, 4),
}


class BenchError(Exception):
    """A step of the benchmark failed; the message says which and why."""


def lab_dir():
    instance = os.environ.get("PGDEPLOY_LAB_INSTANCE", "0")
    return Path("/var/lib/pgdeploy/lab" if instance in ("", "0") else f"/var/lib/pgdeploy/lab-{instance}")


def run(argv, what, cwd=ROOT, env=None, stdin=None, ok_codes=(0,)):
    """Runs argv; returns (seconds, CompletedProcess); raises on an exit code not in ok_codes."""
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=cwd, env=env, input=stdin, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode not in ok_codes:
        raise BenchError(f"{what} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return elapsed, proc


def lab_hosts():
    inv = yaml.safe_load(INVENTORY.read_text())
    return [(name, h["ansible_host"]) for name, h in inv["all"]["hosts"].items()]


def ssh_argv(address):
    lab = lab_dir()
    return ["ssh", "-i", str(lab / "id_ed25519"), "-o", f"UserKnownHostsFile={lab / 'known_hosts'}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
            f"admin@{address}", "sudo -n sh -s"]


def limit(script, hosts):
    """Plain ssh to every host at once, one script each; returns (seconds, answers by host)."""
    text = script.read_text()
    started = time.monotonic()
    procs = {name: subprocess.Popen(ssh_argv(addr), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name, addr in hosts}
    answers = {}
    for name, proc in procs.items():
        out, err = proc.communicate(text)
        if proc.returncode != 0:
            raise BenchError(f"limit script on {name} exited {proc.returncode}: {err}")
        answers[name] = out
    return time.monotonic() - started, answers


def pgdeploy(playbook, extra, check_converged=True):
    """One `pgdeploy apply`; returns (seconds, peak RSS in KiB, CPU seconds)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        argv = ["/usr/bin/time", "-f", "%M %U %S", "-o", stats.name, str(BIN), "apply", "-i", str(INVENTORY),
                str(playbook), *extra]
        elapsed, proc = run(argv, f"pgdeploy apply {playbook.name}")
        rss, user, system = stats.read().split()[-3:]
    if check_converged and "No changes: the hosts match the playbook." not in proc.stdout:
        raise BenchError(f"pgdeploy changed something in a converged run:\n{proc.stdout[-3000:]}")
    return elapsed, int(rss), float(user) + float(system)


def ansible_env(venv, hosts):
    lab = lab_dir()
    home = Path(tempfile.gettempdir()) / "pgdeploy-bench-ansible"
    env = dict(os.environ)
    env.update({
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_FORKS": str(max(len(hosts), 5)),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        # Ansible's default multiplexing (ControlPersist 60s) is kept: it favours Ansible.
        "ANSIBLE_SSH_ARGS": f"-o ControlMaster=auto -o ControlPersist=60s "
                            f"-o UserKnownHostsFile={lab / 'known_hosts'} -o StrictHostKeyChecking=yes",
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_STDOUT_CALLBACK": "default",
        "PATH": f"{venv}/bin:{env['PATH']}",
    })
    return env


def ansible(venv, hosts, check_converged=True):
    elapsed, proc = run([f"{venv}/bin/ansible-playbook", "-i", str(INVENTORY), "ansible.yaml"],
                        "ansible-playbook", cwd=SYNTHETIC, env=ansible_env(venv, hosts))
    recap = re.findall(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", proc.stdout, re.M)
    if len(recap) != len(hosts):
        raise BenchError(f"ansible recap lists {len(recap)} hosts, not {len(hosts)}:\n{proc.stdout[-3000:]}")
    if check_converged and any(c != "0" for _, c, _, _ in recap):
        raise BenchError(f"Ansible changed something in a converged run:\n{proc.stdout[-3000:]}")
    return elapsed


def pyinfra_inventory(hosts):
    lab = lab_dir()
    path = Path(tempfile.gettempdir()) / f"pgdeploy-bench-pyinfra-{os.environ.get('PGDEPLOY_LAB_INSTANCE', '0')}.py"
    data = {"ssh_user": "admin", "ssh_key": str(lab / "id_ed25519"),
            "ssh_known_hosts_file": str(lab / "known_hosts"), "ssh_strict_host_key_checking": "yes"}
    entries = [(name, {"ssh_hostname": addr, **data}) for name, addr in hosts]
    path.write_text(f"# Written by bench/bench.py from {INVENTORY}\nhosts = {entries!r}\n")
    return path


def pyinfra(venv, hosts, check_converged=True):
    argv = [f"{venv}/bin/pyinfra", "-y", "--sudo", "--parallel", str(len(hosts)), str(pyinfra_inventory(hosts)),
            "pyinfra_deploy.py"]
    elapsed, proc = run(argv, "pyinfra", cwd=SYNTHETIC)
    output = proc.stdout + proc.stderr
    if check_converged and re.search(r"No changes", output) is None:
        raise BenchError(f"pyinfra changed something in a converged run:\n{output[-3000:]}")
    return elapsed


def converge(workload, venv, hosts, tool_runs):
    """Untimed: makes the hosts match the workload and checks all tools agree."""
    _, limit_script, playbook, extra, _ = WORKLOADS[workload]
    for attempt in range(3):
        try:
            pgdeploy(playbook, extra, check_converged=False)
            break
        except BenchError as e:
            if attempt == 2:
                raise
            print(f"  converge attempt {attempt + 1} failed, again: {str(e)[:300]}", flush=True)
    if workload == "synthetic":
        if tool_runs.get("ansible", 1):
            ansible(venv, hosts, check_converged=False)
        if tool_runs.get("pyinfra", 1):
            pyinfra(venv, hosts, check_converged=False)
    _, proc = run([str(BIN), "plan", "-i", str(INVENTORY), str(playbook), *extra, "--detailed-exitcode"],
                  "pgdeploy plan", ok_codes=(0, 2))
    if proc.returncode != 0:
        raise BenchError(f"the tools disagree on the end state of {workload}:\n{proc.stdout[-3000:]}")
    _, answers = limit(limit_script, hosts)
    return answers


def measure(workload, venv, hosts, runs, tool_runs, reference):
    tools, limit_script, playbook, extra, _ = WORKLOADS[workload]
    times = {t: [] for t in tools}
    rss, cpu = [], []
    for r in range(runs):
        for tool in [t for t in tools if r < tool_runs.get(t, runs)]:
            if tool == "limit":
                seconds, answers = limit(limit_script, hosts)
                if answers != reference:
                    raise BenchError("the limit script's answer changed between runs")
            elif tool == "pgdeploy":
                seconds, peak, cpu_s = pgdeploy(playbook, extra)
                rss.append(peak)
                cpu.append(cpu_s)
            elif tool == "ansible":
                seconds = ansible(venv, hosts)
            else:
                seconds = pyinfra(venv, hosts)
            times[tool].append(round(seconds, 3))
        print(f"  round {r + 1}/{runs}: " + ", ".join(f"{t} {v[-1]:.2f}s" for t, v in times.items() if len(v) > r),
              flush=True)
    return {"times": times, "pgdeploy_peak_rss_kib": rss, "pgdeploy_cpu_s": cpu,
            "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_average": os.getloadavg()[0]}


def table(results):
    rows = ["| hosts | workload | tool | runs | median (s) | min-max (s) | × limit | × pgdeploy |",
            "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    resources = ["| hosts | workload | pgdeploy peak RSS (MB) | pgdeploy CPU (s, user+sys) | CPU per host (ms) "
                 "| measured | machine load average |",
                 "| ---: | --- | ---: | ---: | ---: | --- | ---: |"]
    for key in sorted(results, key=lambda k: (int(k.split("/")[0]), k)):
        entry = results[key]
        hosts, workload = key.split("/")
        med = {t: statistics.median(v) for t, v in entry["times"].items() if v}
        for tool, values in [(t, v) for t, v in entry["times"].items() if v]:
            rows.append(f"| {hosts} | {workload} | {tool} | {len(values)} | {med[tool]:.2f} | {min(values):.2f}-{max(values):.2f} | "
                        f"{med[tool] / med['limit']:.1f} | {med[tool] / med['pgdeploy']:.2f} |")
        cpu = statistics.median(entry["pgdeploy_cpu_s"])
        resources.append(f"| {hosts} | {workload} | {max(entry['pgdeploy_peak_rss_kib']) / 1024:.1f} | {cpu:.2f} | "
                         f"{cpu * 1000 / int(hosts):.0f} | {entry.get('measured', '')} | "
                         f"{entry.get('load_average', 0):.1f} |")
    return "\n".join(rows) + "\n\n" + "\n".join(resources) + "\n"


def write_readme(results, meta):
    text = README.read_text()
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    body = (f"{begin}\n{meta}\n\n{table(results)}{end}")
    if begin in text and end in text:
        text = text[:text.index(begin)] + body + text[text.index(end) + len(end):]
    else:
        text += "\n" + body + "\n"
    README.write_text(text)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", required=True, help="virtualenv with ansible-core and pyinfra")
    parser.add_argument("--hosts", default="3,30", help="host counts, comma-separated (default 3,30)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool (default 5; the median is kept)")
    parser.add_argument("--workloads", default="synthetic,site", help="synthetic, site or both (default)")
    parser.add_argument("--tool-runs", default="",
                        help="fewer runs for slow tools, e.g. ansible=1,pyinfra=3 (default: --runs for all)")
    parser.add_argument("--keep-others", action="store_true",
                        help="keep earlier times of the tools given no runs by --tool-runs")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    versions = {
        "ansible-core": run([f"{args.venv}/bin/ansible", "--version"], "ansible")[1].stdout.split("\n")[0],
        "pyinfra": run([f"{args.venv}/bin/pyinfra", "--version"], "pyinfra")[1].stdout.strip(),
    }
    try:
        for count in [int(c) for c in args.hosts.split(",")]:
            for workload in args.workloads.split(","):
                tool_runs = {t: int(n) for t, n in (p.split("=") for p in args.tool_runs.split(",") if p)}
                nodes = max(count, WORKLOADS[workload][4])
                print(f"== lab up --nodes {nodes}", flush=True)
                run([str(BIN), "lab", "up", "--nodes", str(nodes)], "pgdeploy lab up")
                hosts = lab_hosts()
                print(f"== {nodes} hosts, {workload}: converging (untimed)", flush=True)
                reference = converge(workload, args.venv, hosts, tool_runs)
                print(f"== {nodes} hosts, {workload}: {args.runs} timed rounds", flush=True)
                measured = measure(workload, args.venv, hosts, args.runs, tool_runs, reference)
                earlier = results.get(f"{nodes}/{workload}")
                if earlier and args.keep_others:
                    for tool, values in earlier["times"].items():
                        if not measured["times"].get(tool):
                            measured["times"][tool] = values
                    if not measured["pgdeploy_cpu_s"]:
                        for key in ("pgdeploy_peak_rss_kib", "pgdeploy_cpu_s", "measured", "load_average"):
                            measured[key] = earlier.get(key)
                results[f"{nodes}/{workload}"] = measured
                RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 1
    finally:
        meta = (f"Written by `bench/run` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
                f"{os.cpu_count()} cores shared with other work (load average in the second table); "
                f"{versions['ansible-core']}, {versions['pyinfra']}; medians of the "
                f"converged runs (count in the table).")
        if results:
            write_readme(results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())

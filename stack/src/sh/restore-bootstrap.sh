#!/bin/sh
# Writes Patroni's configuration with a custom bootstrap method (the restore
# from the repository) merged into its `bootstrap` section; the original is
# kept beside it as CONFIG.pgdeploy-restore until restore-finish.sh puts it
# back. Patroni reads a bootstrap method only when it creates the cluster.
# Arguments (set -- by stack/src/cluster/restore.rs): CONFIG BOOTSTRAP_JSON
set -eu
config=$1
[ -e "$config.pgdeploy-restore" ] || cp -p "$config" "$config.pgdeploy-restore"
python3 - "$config.pgdeploy-restore" "$config" "$2" <<'PY'
import json, os, sys, yaml
source, dest, method = sys.argv[1:4]
with open(source) as f:
    config = yaml.safe_load(f)
config.setdefault("bootstrap", {}).update(json.loads(method))
tmp = dest + ".pgdeploy-tmp"
fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
with os.fdopen(fd, "w") as f:
    yaml.safe_dump(config, f, default_flow_style=False)
st = os.stat(source)
os.chown(tmp, st.st_uid, st.st_gid)
os.chmod(tmp, st.st_mode & 0o7777)
os.rename(tmp, dest)
PY

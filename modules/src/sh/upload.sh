# shellcheck shell=sh
# Installs a file atomically (shell.rs, Action::upload): stdin goes to a
# temporary file beside the destination, which must then hold exactly the
# expected bytes (size and sha256), gets owner, group and mode, passes the
# validate command if any, and is renamed over the destination. On any
# failure the temporary file goes and the destination is left as it was.
# Arguments: the destination, the temporary files' prefix, the size in
# bytes, the sha256, the owner, the group and the mode (each may be empty:
# no chown/chgrp; without a mode, the replaced file's, else 0644), then the
# validate command's words, if any, in which %s stands for the temporary
# file.
set -e
dest=$1 prefix=$2 size=$3 sha=$4 owner=$5 group=$6 mode=$7
shift 7
dir=$(dirname "$dest")
rm -f "$dir/$prefix".*
tmp=$(mktemp "$dir/$prefix.XXXXXXXX")
trap 'rm -f "$tmp"' EXIT
trap 'rm -f "$tmp"; exit 129' HUP
trap 'rm -f "$tmp"; exit 130' INT
trap 'rm -f "$tmp"; exit 141' PIPE
trap 'rm -f "$tmp"; exit 143' TERM
if ! err=$(cat 2>&1 > "$tmp"); then
  rm -f "$tmp"
  case $err in *'No space left'*) err="no space left on device (ENOSPC)";; esac
  echo "cannot write $dest: $err ($(df -Pk "$dir" | awk 'NR == 2 { print $4 }') KiB free in $dir, $size bytes needed); $dest was not changed" >&2
  exit 1
fi
got=$(wc -c < "$tmp")
if [ "$got" -ne "$size" ] || [ "$(sha256sum < "$tmp" | cut -c1-64)" != "$sha" ]; then
  rm -f "$tmp"
  echo "upload of $dest incomplete: $got of $size bytes arrived intact (connection lost?); $dest was not changed" >&2
  exit 1
fi
if [ -n "$owner" ]; then
  chown "$owner${group:+:$group}" "$tmp"
elif [ -n "$group" ]; then
  chgrp "$group" "$tmp"
fi
if [ -n "$mode" ]; then
  chmod "$mode" "$tmp"
elif [ -e "$dest" ]; then
  chmod "$(stat -c %a "$dest")" "$tmp"
else
  chmod 0644 "$tmp"
fi
if [ $# -gt 0 ]; then
  # Every %s in the validate command's words becomes the temporary file.
  for word do
    shift
    done_part=
    while :; do
      case $word in
        *%s*) done_part=$done_part${word%%%s*}$tmp; word=${word#*%s} ;;
        *) break ;;
      esac
    done
    set -- "$@" "$done_part$word"
  done
  if ! "$@" >&2; then echo "validation failed: $dest was not changed" >&2; exit 1; fi
fi
sync "$tmp" 2>/dev/null || true
mv -f "$tmp" "$dest"
trap - EXIT

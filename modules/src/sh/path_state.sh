# shellcheck shell=sh
# Describes one path (probe.rs, path_snippet): prints `type=`, and for an
# existing path `owner=`, `uid=`, `group=`, `gid=`, `mode=`, `size=`; for a
# regular file `content=` (base64) when smaller than the content limit, else
# `sha256=` (a limit of 0 prints neither); for a symlink `target=` (base64).
# Arguments: the path, a prefix for the keys, the content limit in bytes.
# Leaves $p (the path) and $t (its type) set for what follows it.
p=$1
key_prefix=$2
content_limit=$3
if [ -L "$p" ]; then t='link'; elif [ -d "$p" ]; then t='directory'; elif [ -f "$p" ]; then t='file'; elif [ -e "$p" ]; then t='other'; else t='absent'; fi
echo "${key_prefix}type=$t"
size=0
if [ "$t" != absent ]; then
  s=$(stat --printf "${key_prefix}owner=%U\n${key_prefix}uid=%u\n${key_prefix}group=%G\n${key_prefix}gid=%g\n${key_prefix}mode=%a\n${key_prefix}size=%s" -- "$p")
  printf '%s\n' "$s"
  size=${s##*size=}
fi
if [ "$t" = link ]; then printf '%starget=' "$key_prefix"; printf %s "$(readlink -- "$p")" | base64 -w0; echo; fi
if [ "$t" = file ] && [ "$content_limit" -gt 0 ]; then
  if [ "$size" -lt "$content_limit" ]; then printf '%scontent=' "$key_prefix"; base64 -w0 < "$p"; echo
  else sum=$(sha256sum < "$p"); printf '%ssha256=%s\n' "$key_prefix" "${sum%% *}"; fi
fi

# shellcheck shell=sh
# The package module's probe: `dpkg=NAME STATUS VERSION` lines from dpkg,
# then for the packages wanted (every package for `latest`, those not
# installed for `present`, none for `absent`) `policy=NAME:` and
# `candidate=VERSION` lines from apt's cache, which is slow to load.
# Arguments: the state (present, latest or absent), then the package names.
state=$1
shift
# shellcheck disable=SC2016 # dpkg-query's own ${field} format
out=$(dpkg-query -W -f='dpkg=${Package} ${Status} ${Version}\n' "$@")
printf '%s\n' "$out"
case $state in
  latest) wanted="$*" ;;
  present) wanted=$(printf '%s\n' "$out" | awk -v names="$*" 'BEGIN { n = split(names, w, " ") } /^dpkg=/ && $4 == "installed" { ok[substr($1, 6)] = 1 } END { for (i = 1; i <= n; i++) { split(w[i], b, ":"); if (!(b[1] in ok)) print w[i] } }') ;;
  *) wanted= ;;
esac
if [ -n "$wanted" ]; then
  # One word per package name.
  # shellcheck disable=SC2086
  LC_ALL=C apt-cache policy $wanted | sed -n 's/^\([^ ].*\):$/policy=\1/p; s/^  Candidate: /candidate=/p'
fi

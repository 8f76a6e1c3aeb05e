# shellcheck shell=sh
# The user module's probe: the user's `passwd=` line, its primary group's
# name as `primary=` and its groups as `groups=`; nothing when the user does
# not exist. Arguments: the user's name.
n=$1
if u=$(getent passwd "$n"); then
  echo "passwd=$u"
  echo "primary=$(getent group "$(echo "$u" | cut -d: -f4)" | cut -d: -f1)"
  echo "groups=$(id -Gn "$n")"
fi

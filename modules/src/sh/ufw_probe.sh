# shellcheck shell=sh
# The ufw module's probe: `installed=yes` when ufw is there, the rules of
# both families as `v4=`/`v6=` tuples, the default policies as
# `default_CHAIN=POLICY` and `enabled=`. No arguments.
command -v ufw >/dev/null && echo installed=yes
sed -n 's/^### tuple ### /v4=/p' /etc/ufw/user.rules
sed -n 's/^### tuple ### /v6=/p' /etc/ufw/user6.rules
sed -n 's/^DEFAULT_\([A-Z]*\)_POLICY="\{0,1\}\([A-Z]*\)"\{0,1\}.*/default_\1=\2/p' /etc/default/ufw
sed -n 's/^ENABLED=\(.*\)/enabled=\1/p' /etc/ufw/ufw.conf

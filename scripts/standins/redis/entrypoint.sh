#!/bin/sh
# The official redis image's entry point, for Debian's redis-server (protected mode is a
# command-line default here, since Debian's binary keeps it on when no config file is given).
set -e
# Options (`--save ""`) or a config file as first argument: they are redis-server's.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "${2%.conf}" = "${2:-}" ]; then
  shift
  set -- redis-server --protected-mode no "$@"  # later arguments still override it
fi
# Started as root (`--user` not given): drop to the redis user, as the official image does.
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
um="$(umask)"
[ "$um" = 0022 ] && umask 0077
exec "$@"

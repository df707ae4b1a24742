#!/bin/sh
# Points nginx's resolver at the container's DNS server (the first
# `nameserver` in /etc/resolv.conf), then runs the command. nginx does not
# read resolv.conf itself, and the address differs between runtimes, so it
# is read at start. 127.0.0.11 (Docker's embedded DNS) is the fallback.
set -eu

ns=""
if [ -r /etc/resolv.conf ]; then
    while read -r key value _rest; do
        if [ "$key" = nameserver ] && [ -n "$value" ]; then
            ns=$value
            break
        fi
    done < /etc/resolv.conf
fi
ns=${ns:-127.0.0.11}

# An IPv6 address must be bracketed in nginx's resolver directive.
case $ns in
    *:*) ns="[$ns]" ;;
esac

echo "resolver $ns valid=10s ipv6=off;" > /etc/nginx/resolver.conf

exec "$@"

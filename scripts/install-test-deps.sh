#!/usr/bin/env bash
# Debian packages the end-to-end tests drive as independent clients. Idempotent: installs only
# what is missing, and only when it can (root or sudo); otherwise says what is missing and
# lets the tests that need a tool skip with that message (outside CI).
set -euo pipefail
need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
command -v fetchmail >/dev/null 2>&1 || need+=(fetchmail)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# swaks speaks TLS through Perl's Net::SSLeay (a "recommends" that --no-install-recommends skips).
perl -MNet::SSLeay -e1 >/dev/null 2>&1 || need+=(libnet-ssleay-perl libio-socket-ssl-perl)
# Postfix's smtp-sink plays remote servers that answer 4xx/5xx in the outbound tests.
command -v smtp-sink >/dev/null 2>&1 || [ -x /usr/sbin/smtp-sink ] || need+=(postfix)
# The webmail browser tests drive Debian's Chromium through Playwright (never `playwright
# install`: no browser is downloaded); CJK fonts so that screenshots show Japanese.
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -d /usr/share/fonts/opentype/noto ] || need+=(fonts-noto-cjk)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
    echo "install-test-deps: missing ${need[*]} and cannot install (not root, no sudo)" >&2
    [ "${CI:-}" = true ] && exit 1 || exit 0
fi
echo "install-test-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# "No configuration": the package brings its tools, and no mail system is set up or started.
echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

#!/usr/bin/env bash
# Install the system binaries Watchloop's real-server tests and demo need, and only those
# that are missing. Safe to run repeatedly; meant for Debian 12 (root, or sudo available).
#
#   java                     -> openjdk-17-jre-headless   (TorchServe needs Java 11+)
#   redis-server             -> redis-server
#   prometheus, promtool     -> prometheus
#   prometheus-alertmanager,
#   amtool                   -> prometheus-alertmanager
#   chromium                 -> chromium                  (headless screenshots of the console)
#   initdb, postgres         -> postgresql                (MLflow's production backend store)
#   (a colour emoji font)    -> fonts-noto-color-emoji    (the console's status icons)
set -euo pipefail

# command:package pairs; a package is installed when its command is not on PATH.
REQUIRED=(
    "java:openjdk-17-jre-headless"
    "redis-server:redis-server"
    "prometheus:prometheus"
    "promtool:prometheus"
    "prometheus-alertmanager:prometheus-alertmanager"
    "amtool:prometheus-alertmanager"
    "chromium:chromium"
)

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "system-deps: run as root or install sudo" >&2
    exit 1
fi

missing=()
for pair in "${REQUIRED[@]}"; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    if ! command -v "$cmd" >/dev/null 2>&1; then
        # skip duplicates (prometheus provides two of the commands above)
        if [[ " ${missing[*]-} " != *" $pkg "* ]]; then
            missing+=("$pkg")
        fi
    fi
done

# The console's status icons are emoji: without a colour emoji font the browser draws boxes.
if [[ ! -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]]; then
    missing+=("fonts-noto-color-emoji")
fi

# Debian keeps PostgreSQL's server binaries off PATH, in /usr/lib/postgresql/<major>/bin.
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null 2>&1; then
    missing+=("postgresql")
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "system-deps: everything present"
    exit 0
fi

echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -q
# Debian's postinst scripts try to start daemons; in containers without an init system that
# fails harmlessly, and policy-rc.d 101 keeps it from trying at all.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod +x "$policy"
    created_policy=1
fi
cleanup() {
    if [[ $created_policy -eq 1 ]]; then
        "${SUDO[@]}" rm -f "$policy"
    fi
}
trap cleanup EXIT
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"

for pair in "${REQUIRED[@]}"; do
    cmd=${pair%%:*}
    if ! command -v "$cmd" >/dev/null 2>&1; then
        echo "system-deps: $cmd still missing after install" >&2
        exit 1
    fi
done
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null 2>&1; then
    echo "system-deps: initdb still missing after install" >&2
    exit 1
fi
echo "system-deps: done"

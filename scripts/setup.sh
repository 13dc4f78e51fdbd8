#!/usr/bin/env bash
# Installs and starts what steward's tests need on a fresh machine, and only
# what is missing: a second run just checks. Called by `cargo xtask setup`,
# `cargo xtask test` and `cargo xtask ci`.
#
# - ALSA headers and pkg-config (cpal builds against libasound), and the
#   PipeWire headers and libclang for steward-audio's `pipewire` feature;
# - a PulseAudio daemon with a null sink and a null source: real-time paced
#   audio devices on a machine without a sound card, where steward-audio's
#   native PulseAudio client finds it (see XDG_RUNTIME_DIR below);
# - redis-server, started by the tests themselves on free loopback ports;
# - the Python `websockets` package in a virtualenv under target/, the
#   independent WebSocket implementation steward-ws is tested against.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libasound2-dev pkg-config alsa-utils pulseaudio pulseaudio-utils libasound2-plugins redis-server
  libpipewire-0.3-dev libclang-dev clang)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The sound server: null devices are paced like real hardware. The native
# PulseAudio client reads only the environment ($PULSE_SERVER or
# $XDG_RUNTIME_DIR/pulse/native, no client.conf, no fallback path). A desktop
# session has XDG_RUNTIME_DIR; elsewhere .cargo/config.toml sets it to
# target/pa for every cargo command, so the server started here listens at
# target/pa/pulse/native and every test process finds it with no variable
# exported by hand.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$PWD/target/pa}"
mkdir -p "$XDG_RUNTIME_DIR"
chmod 700 "$XDG_RUNTIME_DIR"
if ! pactl info >/dev/null 2>&1; then
  echo "setup: starting PulseAudio with a null sink and source"
  pulseaudio --daemonize=yes --exit-idle-time=-1 -n \
    --load="module-native-protocol-unix" \
    --load="module-null-sink sink_name=steward_null_sink" \
    --load="module-null-source source_name=steward_null_source" \
    --load="module-always-sink" 2>/dev/null || true
  for _ in $(seq 1 50); do
    pactl info >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
pactl info >/dev/null 2>&1 || { echo "setup: PulseAudio did not start" >&2; exit 1; }
pactl set-default-sink steward_null_sink >/dev/null 2>&1 || true
pactl set-default-source steward_null_source >/dev/null 2>&1 || true

# The independent WebSocket peer.
venv=target/pyenv
if ! "$venv/bin/python" -c "import websockets" >/dev/null 2>&1; then
  echo "setup: creating $venv with the websockets package"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "websockets>=12"
fi
echo "setup: ready (PulseAudio, redis-server, $venv)"

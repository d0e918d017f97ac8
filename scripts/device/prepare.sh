#!/usr/bin/env bash
# Prepares, on this machine, what a GPU host lent by the `device` tool needs and cannot fetch (it reaches no
# network): the Deno binary, xz-compressed under the 64 MiB a call carries, and the Vulkan loader packages.
# Both land in folders that git ignores (.device/, .gl/); carry them: run(carry: [".device", ".gl"], ...).
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >>.git/info/exclude
grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo '/.gl/' >>.git/info/exclude
mkdir -p .device .gl
deno=$(npx --yes deno@2.9.6 eval 'console.log(Deno.execPath())')
xz -T0 -6 -c "$deno" >.device/deno.xz
ls -l .device/deno.xz
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
mkdir -p /tmp/amd64/partial
# shellcheck disable=SC2086
apt-get $o update >/dev/null
# shellcheck disable=SC2086
(cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
ls .gl

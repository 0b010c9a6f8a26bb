#!/bin/sh
# Start the single-user server as the uid the container was started with (the user's host uid).
# HOME comes from the spawner; fall back to /tmp so a uid without a home still starts.
set -e
: "${HOME:=/tmp}"
export HOME
cd "$HOME" 2>/dev/null || cd /tmp
exec jupyterhub-singleuser "$@"

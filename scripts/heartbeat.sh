# Sourced by the set-up scripts: `heartbeat MESSAGE COMMAND...` runs COMMAND and, while it
# runs, prints "  MESSAGE ... N s" every 8 s, so a quiet step never looks frozen; returns its status.
heartbeat() {
  local message=$1
  shift
  "$@" &
  local pid=$! start=$SECONDS
  local next=$((start + 8))
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    if (( SECONDS >= next )) && kill -0 "$pid" 2>/dev/null; then
      echo "  $message ... $((SECONDS - start)) s"
      next=$((SECONDS + 8))
    fi
  done
  wait "$pid"
}

#!/bin/sh
# Posts a text into a DingTalk group through the gateway's /notify route.
# No DingTalk credential here: only the route's password.
#
#   NOTIFY_PASSWORD='trial password' examples/notify/notify.sh <conversationId> <text>
#
# LISTEN is the gateway's internal address (default 127.0.0.1:8081).
set -eu
if [ $# -ne 2 ]; then
	echo "usage: $0 <conversationId> <text>" >&2
	exit 2
fi

# json quotes a one-line string for JSON.
json() {
	printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g'
}

body=$(printf '{"conversation_id": "%s", "text": "%s"}' "$(json "$1")" "$(json "$2")")
curl --silent --show-error --fail-with-body \
	--user "ops:${NOTIFY_PASSWORD:?set NOTIFY_PASSWORD to the route's password}" \
	--header 'Content-Type: application/json' --data-binary "$body" \
	"http://${LISTEN:-127.0.0.1:8081}/notify"
echo

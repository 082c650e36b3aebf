#!/bin/sh
# Initialise (first run only) and unseal the docker-compose stack's Vault. One-shot and idempotent: run it as
# often as you like; it initialises only an uninitialised Vault and unseals only a sealed one.
# With UNSEAL_WATCH_S set it is the unseal sidecar instead (the vault-unseal service): it never initialises, and
# checks every UNSEAL_WATCH_S seconds, for ever, unsealing Vault whenever it finds it sealed (after a restart of the
# Vault container or of the host), so that nobody has to.
#
# LOCAL CONVENIENCE ONLY. Keeping the unseal key on a volume next to the server defeats the point of sealing.
# Production uses auto-unseal (a `seal "awskms" | "gcpckms" | "azurekeyvault" | "transit"` stanza in the server
# config), several key shares held by different people, and a root token that is revoked after setup.
#
# Written for the official hashicorp/vault image (Alpine: busybox sh, sed, tr, date; the vault CLI; no jq, no
# curl). Needs root inside the container only to chown the root-token file for the bootstrap's user.
#
# Environment:
#   VAULT_ADDR        the Vault to talk to (default http://vault:8200)
#   INIT_DIR          where the files below live; a named volume (default /vault-init)
#   INIT_TOKEN_OWNER  uid:gid given read access to root-token (the bootstrap container's user); unset = root only
#   INIT_WAIT_S       how long to wait for Vault to answer, and then to become active (default 120)
#   INIT_AUDIT_FILE_PATH  if set, and Vault has no audit device at file/ yet, enable one writing there (a path on
#                     the Vault server). The bootstrap job refuses to run without a file audit device.
#   INIT_AUDIT_STDOUT if "yes", also a second audit device at stdout/, writing to the server's standard output. Vault
#                     refuses a request only when no audit device can record it, so with two a full disk under the
#                     file device does not stop Vault; the container runtime's log rotation bounds the second copy.
#   UNSEAL_WATCH_S    if set, run as the unseal sidecar (above), checking this often
#
# Files in INIT_DIR:
#   init.json   0600 root   the raw `vault operator init -format=json` answer (unseal key and root token)
#   unseal-key  0600 root   the single unseal key share, without a trailing newline
#   root-token  0400 owner  the initial root token, without a trailing newline (read by the bootstrap job)
#
# Secrets are never printed and never put on a command line: `vault operator init` writes straight to a file,
# the values are extracted with shell builtins and sed into files, and the unseal key reaches Vault as
# `key=@file`, which the vault CLI reads itself.

set -eu
umask 077

VAULT_ADDR="${VAULT_ADDR:-http://vault:8200}"
export VAULT_ADDR
# The calls below are unauthenticated; never pick up a token from the environment.
unset VAULT_TOKEN 2>/dev/null || true

INIT_DIR="${INIT_DIR:-/vault-init}"
INIT_WAIT_S="${INIT_WAIT_S:-120}"
INIT_JSON="$INIT_DIR/init.json"
KEY_FILE="$INIT_DIR/unseal-key"
TOKEN_FILE="$INIT_DIR/root-token"

log() {
    printf '%s vault-init: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >&2
}

die() {
    log "ERROR: $*"
    exit 1
}

now() {
    date +%s
}

# Exit code of `vault status`: 0 = unsealed, 2 = sealed (an uninitialised Vault is sealed too), 1 = error or no
# answer.
seal_status() {
    if vault status >/dev/null 2>&1; then
        echo 0
    else
        echo "$?"
    fi
}

wait_until_answering() {
    deadline=$(($(now) + INIT_WAIT_S))
    while [ "$(seal_status)" = 1 ]; do
        if [ "$(now)" -ge "$deadline" ]; then
            die "Vault at $VAULT_ADDR did not answer within ${INIT_WAIT_S}s"
        fi
        sleep 2
    done
}

# `vault status -format=json` with all whitespace removed, or nothing if Vault did not answer.
status_json() {
    vault status -format=json 2>/dev/null | tr -d ' \t\r\n' || true
}

# After unsealing, a node with integrated storage (raft) takes a few seconds to elect itself leader; until then
# every request but sys/health fails. Wait until it is unsealed and, when HA is on, the active node
# ("is_self":true is only present on the active node).
wait_until_active() {
    deadline=$(($(now) + INIT_WAIT_S))
    while :; do
        s=$(status_json)
        case "$s" in
        *'"sealed":false'*)
            case "$s" in
            *'"ha_enabled":true'*)
                case "$s" in *'"is_self":true'*) return 0 ;; esac
                ;;
            *) return 0 ;;
            esac
            ;;
        esac
        if [ "$(now)" -ge "$deadline" ]; then
            die "Vault at $VAULT_ADDR did not become unsealed and active within ${INIT_WAIT_S}s"
        fi
        sleep 1
    done
}

# json_first_string FIELD FILE: the value of `"FIELD": "..."`, or of the first element of `"FIELD": ["...", ...]`,
# in FILE. Whitespace-insensitive, so it does not depend on how the CLI indents its JSON. Enough for the
# init answer, whose values (base64 keys, tokens) never contain quotes or backslashes.
json_first_string() {
    tr -d ' \t\r\n' <"$2" | sed -n 's/.*"'"$1"'":\[*"\([^"]*\)".*/\1/p'
}

# write_secret FILE VALUE: write VALUE without a newline, atomically. printf is a shell builtin, so VALUE never
# appears in a process's argv.
write_secret() {
    printf '%s' "$2" >"$1.tmp"
    mv -f "$1.tmp" "$1"
}

extract_secrets() {
    key=$(json_first_string unseal_keys_b64 "$INIT_JSON")
    token=$(json_first_string root_token "$INIT_JSON")
    if [ -z "$key" ] || [ -z "$token" ]; then
        die "could not find unseal_keys_b64 and root_token in $INIT_JSON (file kept; unseal by hand)"
    fi
    write_secret "$KEY_FILE" "$key"
    write_secret "$TOKEN_FILE" "$token"
    unset key token
}

# Re-applied on every run, so a changed INIT_TOKEN_OWNER or a hand-edited file is put right.
secure_files() {
    chmod 0711 "$INIT_DIR" # others may reach root-token by name, but not list the folder
    for f in "$INIT_JSON" "$KEY_FILE"; do
        if [ -e "$f" ]; then
            chmod 0600 "$f"
        fi
    done
    if [ -e "$TOKEN_FILE" ]; then
        if [ -n "${INIT_TOKEN_OWNER:-}" ]; then
            chown "$INIT_TOKEN_OWNER" "$TOKEN_FILE" || die "cannot chown $TOKEN_FILE to $INIT_TOKEN_OWNER (run as root)"
        fi
        chmod 0400 "$TOKEN_FILE"
    fi
}

# Vault is uninitialised but files from an earlier init exist: Vault's storage was wiped (for example its volume
# was removed) while this volume was kept. Those keys open nothing any more; keep them aside, never overwrite.
set_aside_stale_files() {
    stale="$INIT_DIR/stale-$(date -u +%Y%m%dT%H%M%SZ)"
    moved=
    for f in "$INIT_JSON" "$KEY_FILE" "$TOKEN_FILE"; do
        if [ -e "$f" ]; then
            mkdir -p "$stale"
            mv -f "$f" "$stale/"
            moved=yes
        fi
    done
    if [ -n "$moved" ]; then
        log "WARNING: Vault is not initialised but an earlier init's files were here; moved them to $stale"
    fi
}

initialise() {
    set_aside_stale_files
    log "initialising Vault at $VAULT_ADDR (1 key share, threshold 1)"
    if ! vault operator init -key-shares=1 -key-threshold=1 -format=json >"$INIT_JSON.tmp"; then
        rm -f "$INIT_JSON.tmp"
        die "vault operator init failed"
    fi
    mv -f "$INIT_JSON.tmp" "$INIT_JSON"
    extract_secrets
    log "initialised; unseal key and root token stored in $INIT_DIR (not printed)"
}

unseal() {
    if [ ! -s "$KEY_FILE" ]; then
        die "Vault is sealed and $KEY_FILE is missing: unseal it by hand (vault operator unseal)"
    fi
    log "unsealing Vault at $VAULT_ADDR"
    # sys/unseal needs no token. `key=@file` makes the CLI read the key from the file itself.
    if ! vault write -format=json sys/unseal key=@"$KEY_FILE" >/dev/null; then
        die "unseal failed (is $KEY_FILE the key of this Vault?)"
    fi
}

# enable_audit_device PATH FILE_PATH DEVICES: enable a file-type audit device at PATH unless DEVICES (the answer of
# GET sys/audit, whitespace removed) already has one there.
enable_audit_device() {
    case "$3" in
    *'"'"$1"'/":'*)
        log "an audit device is enabled at $1/"
        ;;
    *)
        log "enabling an audit device at $1/, writing to $2"
        # A LIST's response logged as its count of names: each key-health sweep page lists every user (README.md,
        # Capacity at 1M bindings).
        if ! vault audit enable -path="$1" file file_path="$2" elide_list_responses=true >/dev/null; then
            unset VAULT_TOKEN
            die "could not enable the audit device at $1/"
        fi
        ;;
    esac
}

# Uses the stored root token, from the environment of the vault child processes only (never argv).
ensure_audit_devices() {
    if [ -z "${INIT_AUDIT_FILE_PATH:-}" ] && [ "${INIT_AUDIT_STDOUT:-}" != yes ]; then
        return 0
    fi
    if [ ! -s "$TOKEN_FILE" ]; then
        log "WARNING: no root token in $TOKEN_FILE; not checking the audit devices"
        return 0
    fi
    VAULT_TOKEN=$(cat "$TOKEN_FILE")
    export VAULT_TOKEN
    # GET sys/audit answers the enabled devices, possibly none ("data": {}), with exit code 0. Any error (a
    # revoked root token, say) is only a warning here: the bootstrap job checks for the file device itself.
    if ! devices=$(vault read -format=json sys/audit 2>/dev/null); then
        unset VAULT_TOKEN
        log "WARNING: could not list audit devices with the stored root token; not enabling any"
        return 0
    fi
    devices=$(printf '%s' "$devices" | tr -d ' \t\r\n')
    if [ -n "${INIT_AUDIT_FILE_PATH:-}" ]; then
        enable_audit_device file "$INIT_AUDIT_FILE_PATH" "$devices"
    fi
    if [ "${INIT_AUDIT_STDOUT:-}" = yes ]; then
        enable_audit_device stdout stdout "$devices"
    fi
    unset VAULT_TOKEN
}

# The unseal sidecar: unseal whenever Vault is found sealed; never initialise (that is the one-shot run's job), never
# exit on a Vault that does not answer (it is restarting).
watch() {
    log "unseal sidecar: checking Vault at $VAULT_ADDR every ${UNSEAL_WATCH_S}s"
    while :; do
        if [ "$(seal_status)" = 2 ] && vault operator init -status >/dev/null 2>&1; then
            if [ -s "$KEY_FILE" ] && vault write -format=json sys/unseal key=@"$KEY_FILE" >/dev/null 2>&1; then
                log "Vault was sealed: unsealed it"
            else
                log "WARNING: Vault is sealed and could not be unsealed with $KEY_FILE"
            fi
        fi
        sleep "$UNSEAL_WATCH_S"
    done
}

main() {
    [ -d "$INIT_DIR" ] || die "$INIT_DIR does not exist: mount the vault-init volume there"
    [ -w "$INIT_DIR" ] || die "$INIT_DIR is not writable"

    log "waiting for Vault at $VAULT_ADDR"
    wait_until_answering

    if vault operator init -status >/dev/null 2>&1; then
        initialised=yes
    else
        rc=$?
        [ "$rc" = 2 ] || die "could not read the initialisation status of $VAULT_ADDR"
        initialised=no
    fi

    if [ "$initialised" = no ]; then
        initialise
    elif { [ ! -s "$KEY_FILE" ] || [ ! -s "$TOKEN_FILE" ]; } && [ -s "$INIT_JSON" ]; then
        log "re-creating unseal-key and root-token from $INIT_JSON"
        extract_secrets
    fi
    secure_files

    case "$(seal_status)" in
    0) log "Vault is already unsealed" ;;
    2) unseal ;;
    *) die "lost contact with Vault at $VAULT_ADDR" ;;
    esac

    wait_until_active
    if [ ! -s "$TOKEN_FILE" ]; then
        log "WARNING: $TOKEN_FILE is missing; the bootstrap job needs HASH7_VAULT_TOKEN from elsewhere"
    fi
    ensure_audit_devices
    log "Vault is initialised, unsealed and active"
}

if [ -n "${UNSEAL_WATCH_S:-}" ]; then
    watch
else
    main "$@"
fi

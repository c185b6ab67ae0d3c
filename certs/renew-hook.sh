#!/usr/bin/env bash
# certbot deploy hook: makes running ringcast processes reload their certificate
# after a renewal, without dropping connections (ringcast re-reads --tls-cert and
# --tls-key on SIGHUP; existing connections keep their sessions, new handshakes use
# the new certificate).
#
# Install:
#   install -m 0755 certs/renew-hook.sh /etc/letsencrypt/renewal-hooks/deploy/ringcast-reload.sh
# certbot runs it after each successful renewal with RENEWED_LINEAGE
# (/etc/letsencrypt/live/<domain>) and RENEWED_DOMAINS set. Test with
#   certbot renew --dry-run          (dry runs skip deploy hooks) or run it by hand.
#
# Environment:
#   RINGCAST_TLS_GROUP  group that must be able to read the private key (default:
#                       ringcast, if that group exists): the renewed privkey is made
#                       root:<group> 0640 and the live/archive dirs group-traversable.
#   RINGCAST_UNIT       systemd unit (default ringcast.service)
#   RINGCAST_RELOAD_DRY_RUN=1  print what would be done, signal nothing.
#
# Never fails the renewal: problems are logged to stderr (certbot's log) and the
# hook exits 0, because the certificate itself was renewed fine.
set -euo pipefail

unit="${RINGCAST_UNIT:-ringcast.service}"
group="${RINGCAST_TLS_GROUP:-ringcast}"
dry="${RINGCAST_RELOAD_DRY_RUN:-0}"
log() { echo "ringcast-reload: $*" >&2; }
run() {
    if [[ "$dry" == 1 ]]; then
        log "dry run: $*"
    else
        "$@"
    fi
}

# 1. Let the service user read the renewed key (certbot creates new files in
#    archive/<domain>/ on every renewal).
if [[ -n "${RENEWED_LINEAGE:-}" && -d "$RENEWED_LINEAGE" ]] && getent group "$group" >/dev/null; then
    domain="$(basename "$RENEWED_LINEAGE")"
    archive="$(dirname "$(dirname "$RENEWED_LINEAGE")")/archive/$domain"
    for d in "$(dirname "$RENEWED_LINEAGE")" "$RENEWED_LINEAGE" "$(dirname "$archive")" "$archive"; do
        [[ -d "$d" ]] || continue
        run chgrp "$group" "$d" || log "chgrp $group $d failed"
        run chmod 0750 "$d" || log "chmod 0750 $d failed"
    done
    # chgrp/chmod follow the live/ symlink to the new archive file.
    run chgrp "$group" "$RENEWED_LINEAGE/privkey.pem" || log "chgrp privkey failed"
    run chmod 0640 "$RENEWED_LINEAGE/privkey.pem" || log "chmod privkey failed"
fi

# 2. Signal the processes.
if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]] && systemctl is-active --quiet "$unit"; then
    if [[ "$(systemctl show -p CanReload --value "$unit")" == "yes" ]]; then
        # ExecReload from kernel-tuning/ringcast.service.d-override.conf: SIGHUP to the
        # main process (a --processes supervisor forwards it).
        run systemctl reload "$unit" || log "systemctl reload $unit failed"
        log "reloaded $unit (${RENEWED_DOMAINS:-no domains given})"
    else
        run systemctl kill --kill-whom=all --signal=SIGHUP "$unit" || log "systemctl kill -s HUP $unit failed"
        log "sent SIGHUP to every process of $unit (${RENEWED_DOMAINS:-no domains given})"
    fi
elif pgrep -x ringcast >/dev/null; then
    # Not under systemd: every process named exactly "ringcast".
    run pkill -HUP -x ringcast || log "pkill -HUP -x ringcast failed"
    log "sent SIGHUP to ringcast processes: $(pgrep -x ringcast | tr '\n' ' ')"
else
    log "no running ringcast found; the new certificate is used at the next start"
fi
exit 0

# shellcheck shell=bash
# Helpers shared by kernel-tuning/apply, check and revert (sourced, not run).

TUNING_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
TUNING_CONF="${RINGCAST_TUNING_CONF:-$TUNING_DIR/99-ringcast.conf}"
# Where `apply` records the values it replaced, for `revert`.
TUNING_STATE="${RINGCAST_TUNING_STATE:-/var/lib/ringcast-tuning/previous.conf}"

# /proc/sys path of a sysctl key (net.ipv4.tcp_mem -> /proc/sys/net/ipv4/tcp_mem).
key_path() {
    printf '/proc/sys/%s' "${1//.//}"
}

key_exists() {
    [[ -e "$(key_path "$1")" ]]
}

# Current value with runs of whitespace (sysctl prints tabs) folded to one space.
current_value() {
    local v
    v="$(<"$(key_path "$1")")"
    normalize "$v"
}

normalize() {
    local -a words
    read -r -a words <<<"$1"
    printf '%s' "${words[*]}"
}

# Reads a sysctl file and prints "MODE<TAB>KEY<TAB>VALUE" per setting. MODE comes
# from a preceding "# check: MODE" comment (default eq).
parse_conf() {
    local file="$1" line mode="eq" key value
    [[ -r "$file" ]] || { echo "cannot read $file" >&2; return 1; }
    while IFS= read -r line || [[ -n "$line" ]]; do
        if [[ "$line" =~ ^[[:space:]]*#[[:space:]]*check:[[:space:]]*(min|max|eq)[[:space:]]*$ ]]; then
            mode="${BASH_REMATCH[1]}"
            continue
        fi
        [[ "$line" =~ ^[[:space:]]*([#;]|$) ]] && continue
        if [[ "$line" =~ ^[[:space:]]*-?([A-Za-z0-9_./-]+)[[:space:]]*=[[:space:]]*(.*)$ ]]; then
            key="${BASH_REMATCH[1]}"
            value="$(normalize "${BASH_REMATCH[2]}")"
            printf '%s\t%s\t%s\n' "$mode" "$key" "$value"
            mode="eq"
        fi
    done <"$file"
}

require_root() {
    if [[ "$(id -u)" -ne 0 ]]; then
        echo "$(basename "$0"): must run as root (it writes /proc/sys and $TUNING_STATE)" >&2
        exit 2
    fi
}

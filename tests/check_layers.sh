#!/bin/sh
# Fails, naming the file and line, on an include that goes against the layers
# (server/CMakeLists.txt draws them; docs/architecture.md explains them):
#   - a file in server/<layer>/ may include its own folder and folders of a
#     lower rank only: never a sibling of the same rank, one above, or the
#     top (server/*.h, the collector);
#   - agent/, cli/, common/ and proto/ never include server/;
#   - inside common/ likewise: a file in common/<layer>/ includes its own folder
#     and lower ranks only (base 0, analysis 1, wire 2; common/CMakeLists.txt).
#   tests/check_layers.sh [SOURCE_DIR]
set -eu
cd "${1:-$(dirname "$0")/..}"

# The rank of a server folder; common/ and proto/ are below them all.
rank() {
    case "$1" in
    store | net) echo 0 ;;
    ingest | analysis) echo 1 ;;
    alerts) echo 2 ;;
    api) echo 3 ;;
    top) echo 4 ;;
    *) echo unknown ;;
    esac
}

# The rank of a common folder: base is the lowest.
common_rank() {
    case "$1" in
    base) echo 0 ;;
    analysis) echo 1 ;;
    wire) echo 2 ;;
    *) echo unknown ;;
    esac
}

# Every '#include "TOP/..."' (TOP: server or common) below the folders given,
# as FILE:LINE:TEXT.
includes_of() {
    top=$1
    shift
    find "$@" -type f \( -name '*.c' -o -name '*.h' \) | sort |
        xargs -r grep -Hn "^[[:space:]]*#[[:space:]]*include[[:space:]]*\"$top/" || true
}
includes() { includes_of server "$@"; }

problems=$(
    for dir in server/*/; do
        layer=$(basename "$dir")
        mine=$(rank "$layer")
        if [ "$mine" = unknown ]; then
            echo "$dir: a server folder without a rank (add it here and to server/CMakeLists.txt)"
            continue
        fi
        includes "$dir" | while IFS= read -r hit; do
            where=$(echo "$hit" | cut -d: -f1,2)
            path=$(echo "$hit" | sed 's/.*"server\/\([^"]*\)".*/\1/')
            case "$path" in
            */*) other=${path%%/*} ;;
            *) other=top ;;
            esac
            [ "$other" = "$layer" ] && continue
            theirs=$(rank "$other")
            if [ "$theirs" = unknown ] || [ "$theirs" -ge "$mine" ]; then
                echo "$where: server/$layer/ (rank $mine) includes server/$path (rank $theirs);" \
                    "a layer includes only its own folder and lower ranks"
            fi
        done
    done
    for dir in agent cli common proto; do
        [ -d "$dir" ] || continue
        includes "$dir" | cut -d: -f1,2 | while IFS= read -r where; do
            echo "$where: $dir/ includes server/; only the collector's own code may"
        done
    done
    for f in common/*.c common/*.h; do
        [ -e "$f" ] && echo "$f: a file in common/ outside its layers (base/, analysis/, wire/)"
    done
    for dir in common/*/; do
        layer=$(basename "$dir")
        mine=$(common_rank "$layer")
        if [ "$mine" = unknown ]; then
            echo "$dir: a common folder without a rank (add it here and to common/CMakeLists.txt)"
            continue
        fi
        includes_of common "$dir" | while IFS= read -r hit; do
            where=$(echo "$hit" | cut -d: -f1,2)
            path=$(echo "$hit" | sed 's/.*"common\/\([^"]*\)".*/\1/')
            other=${path%%/*}
            [ "$other" = "$layer" ] && continue
            theirs=$(common_rank "$other")
            if [ "$theirs" = unknown ] || [ "$theirs" -gt "$mine" ]; then
                echo "$where: common/$layer/ (rank $mine) includes common/$path (rank $theirs);" \
                    "a layer of common/ includes only its own folder and lower ranks"
            fi
        done
    done
)

if [ -n "$problems" ]; then
    echo "$problems" >&2
    echo "check_layers: includes against the layers (docs/architecture.md, \"Layers\")" >&2
    exit 1
fi
echo "check_layers: every include follows the layers"

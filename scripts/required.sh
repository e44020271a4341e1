# Sourced by the scripts. In CI (CI=true) or with HITGATE_REQUIRE_ALL=1 every tool and data set the
# checks use must be there: a check that cannot run fails, naming what it misses. Elsewhere it says it
# is skipped and the rest goes on.
hitgate_required() { [ "${HITGATE_REQUIRE_ALL:-}" = 1 ] || [ "${CI:-}" = true ]; }

# `missing WHAT`: fails (exit 1) where everything is required, else says WHAT is skipped.
missing() {
    if hitgate_required; then
        echo "missing, and required here (CI or HITGATE_REQUIRE_ALL=1): $*" >&2
        exit 1
    fi
    echo "skipped: $*" >&2
}

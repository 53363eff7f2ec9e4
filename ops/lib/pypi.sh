# Fetching a wheel from PyPI for the install scripts that take their data
# from one (ops/install-minilm.sh, ops/install-datasets.sh). Sourced, not run.

# pypi_wheel NAME VERSION SHA256 DIR: downloads NAME==VERSION (no
# dependencies) into DIR, checks its sha256 and prints the wheel's path.
pypi_wheel() {
    local name="$1" version="$2" sha256="$3" dir="$4" wheel got
    command -v python3 >/dev/null || { echo "error: python3 is needed to fetch $name from PyPI" >&2; return 1; }
    python3 -m pip --version >/dev/null 2>&1 || { echo "error: pip is needed: apt-get install python3-pip" >&2; return 1; }
    python3 -m pip download --quiet --no-deps --dest "$dir" "$name==$version" >&2 \
        || { echo "error: pip could not download $name==$version from PyPI" >&2; return 1; }
    wheel="$(ls "$dir"/*.whl)"
    got="$(sha256sum "$wheel" | cut -d' ' -f1)"
    [[ "$got" == "$sha256" ]] || { echo "error: $wheel has sha256 $got, expected $sha256" >&2; return 1; }
    echo "$wheel"
}

